/**
 * Per-organization download slots shared through Redis (a real redis-server
 * that .ci/run starts): two instances, one cap; a crashed instance's slots
 * expire; Redis lost at runtime lets downloads through. The upstream is a
 * loopback double standing where the S3 endpoint is, holding downloads open.
 * Without REDIS_URL this suite fails instead of passing vacuously.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { Redis } from 'ioredis'
import { Agent, fetch } from 'undici'
import type { BuildAppOptions } from '../../src/app.js'
import { buildAppForUpstream } from '../helpers/app.js'
import { startHoldingUpstream } from '../helpers/holding-upstream.js'
import { redisSlots, REDIS_SLOT_PREFIX } from '../../src/download-slots.js'
import { orgToken } from '../helpers/tokens.js'
import { presignedUrlFor, proxyPath } from '../helpers/presign.js'

const redisUrl = process.env.REDIS_URL
if (redisUrl === undefined || redisUrl === '') throw new Error('REDIS_URL is not set: start redis-server and export REDIS_URL (see README)')

/** Answers `done` paths at once and holds every other download open. */

async function instance (t: Test, endpoint: string, overrides: Partial<BuildAppOptions> = {}) {
  const app = await buildAppForUpstream(t, endpoint, {
    proxy: { maxDownloadsPerOrg: 2 },
    rateLimit: { presignPerMinute: 1000, proxyPerMinute: 1000, redisUrl },
    ...overrides
  })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  // Our own client pool, closed before the app: its idle keep-alive connections would hold app.close().
  const client = new Agent()
  t.teardown(async () => { await client.destroy() })
  return async (key: string, signal?: AbortSignal) => await fetch(`${address}${proxyPath(await presignedUrlFor(app, key))}`, {
    headers: { authorization: `Bearer ${orgToken(key.split('/')[0])}` }, signal, dispatcher: client
  })
}

t.test('two instances share one organization cap through Redis', async t => {
  const endpoint = (await startHoldingUpstream(t)).endpoint
  const [one, two] = [await instance(t, endpoint), await instance(t, endpoint)]
  // Fresh organizations per run, so slots from earlier runs never interfere.
  const org = `org-${randomBytes(4).toString('hex')}`
  const other = `org-${randomBytes(4).toString('hex')}`
  const controllers = [new AbortController(), new AbortController()]
  const running = [await one(`${org}/slow-1.bin`, controllers[0].signal), await two(`${org}/slow-2.bin`, controllers[1].signal)]
  t.same(running.map(res => res.status), [200, 200], 'one download on each instance')
  for (const [name, get] of [['first', one], ['second', two]] as const) {
    const refused = await get(`${org}/slow-3.bin`)
    t.equal(refused.status, 429, `the ${name} instance refuses a third`)
    t.equal(refused.headers.get('retry-after'), '5')
    t.equal((await refused.json() as { code: string }).code, 'ARTOS_ORGANIZATION_DOWNLOADS_LIMITED')
  }
  const elsewhere = await two(`${other}/slow.bin`)
  t.equal(elsewhere.status, 200, 'another organization still streams')
  await elsewhere.body?.cancel()

  // Aborted on the second instance, the slot is back for the first.
  controllers[1].abort()
  await running[1].body?.cancel().catch(() => {})
  let again: Awaited<ReturnType<typeof one>> | undefined
  for (let i = 0; i < 100 && again?.status !== 200; i++) {
    if (i > 0) await new Promise(resolve => setTimeout(resolve, 20))
    again = await one(`${org}/done.txt`)
    await again.text()
  }
  t.equal(again?.status, 200, 'a slot freed on one instance is free on the other')
  controllers[0].abort()
  await running[0].body?.cancel().catch(() => {})
})

t.test('a crashed instance\'s slots expire; a running download keeps its own', async t => {
  const org = `org-${randomBytes(4).toString('hex')}`
  const connect = () => {
    const redis = new Redis(redisUrl)
    t.teardown(() => { redis.disconnect() })
    return redis
  }
  const quiet = () => {}
  const crashing = redisSlots(connect(), { cap: 1, leaseMs: 600, onBackgroundError: quiet })
  const survivor = redisSlots(connect(), { cap: 1, leaseMs: 600, onBackgroundError: quiet })

  const held = await crashing.acquire(org)
  t.ok(held !== undefined, 'the instance takes the only slot')
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.equal(await survivor.acquire(org), undefined, 'renewed past its lease time, the slot is still taken')

  // The instance dies: no release, no more renewals.
  const dying = new Redis(redisUrl)
  const doomed = redisSlots(dying, { cap: 1, leaseMs: 600, onBackgroundError: quiet })
  held?.release()
  const orphan = await doomed.acquire(org)
  t.ok(orphan !== undefined, 'another instance takes it')
  dying.disconnect()
  t.equal(await survivor.acquire(org), undefined, 'taken while the lease runs')
  await new Promise(resolve => setTimeout(resolve, 900))
  const taken = await survivor.acquire(org)
  t.ok(taken !== undefined, 'after the lease, the dead instance\'s slot is free')
  taken?.release()
  await new Promise(resolve => setTimeout(resolve, 50))
  const admin = connect()
  t.equal(await admin.zcard(REDIS_SLOT_PREFIX + org), 0, 'released leases leave nothing behind')
})

t.test('Redis lost while running: downloads go ahead (fail open), not refused', async t => {
  const port = 20000 + Math.floor(Math.random() * 20000)
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  t.teardown(() => { redis.kill('SIGKILL') })
  const endpoint = (await startHoldingUpstream(t)).endpoint
  const lines: string[] = []
  const overrides = {
    rateLimit: { presignPerMinute: 1000, proxyPerMinute: 1000, redisUrl: `redis://127.0.0.1:${port}` },
    proxy: { maxDownloadsPerOrg: 1 },
    logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } }
  }
  let get: Awaited<ReturnType<typeof instance>> | undefined
  for (let attempt = 0; get === undefined && attempt < 50; attempt++) {
    get = await instance(t, endpoint, overrides).catch(async () => {
      await new Promise(resolve => setTimeout(resolve, 100))
      return undefined
    })
  }
  if (get === undefined) throw new Error('private redis-server did not come up')
  const first = await get('org-1/done.txt')
  t.equal(first.status, 200, 'with Redis')
  await first.text()
  redis.kill('SIGKILL')
  await new Promise(resolve => redis.once('exit', resolve))
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) {
    const res = await get('org-1/done.txt')
    statuses.push(res.status)
    await res.text()
  }
  t.same(statuses, [200, 200, 200], 'without Redis: served, even past the cap of 1 (uncounted)')
  t.ok(lines.some(line => /download slot store unavailable/.test(line)), 'and the failure is logged')
})
