/**
 * Several instances behind a load balancer share one per-organization budget
 * when REDIS_URL points them at the same Redis (a real redis-server that
 * .ci/run starts). Without REDIS_URL this suite fails instead of passing
 * vacuously.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { startTestS3 } from '../helpers/s3.js'
import { buildTestApp } from '../helpers/app.js'
import { orgToken } from '../helpers/tokens.js'

const redisUrl = process.env.REDIS_URL
if (redisUrl === undefined || redisUrl === '') throw new Error('REDIS_URL is not set: start redis-server and export REDIS_URL (see README)')

t.test('two instances share one limit through Redis', async t => {
  const s3 = await startTestS3(t)
  const rateLimit = { presignPerMinute: 4, proxyPerMinute: 100, redisUrl }
  const instances = [await buildTestApp(t, s3, { rateLimit }), await buildTestApp(t, s3, { rateLimit })]
  // A fresh organization per run, so counters from earlier runs never interfere.
  const org = `org-${randomBytes(4).toString('hex')}`
  const statuses: number[] = []
  for (let i = 0; i < 6; i++) {
    const res = await instances[i % 2].inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken(org)}` }, payload: { key: `${org}/a.pdf` } })
    statuses.push(res.statusCode)
    if (res.statusCode === 429) t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After')
  }
  t.same(statuses, [200, 200, 200, 200, 429, 429], 'requests alternating between instances share the budget of 4')

  const alone = await buildTestApp(t, s3, { rateLimit: { presignPerMinute: 4, proxyPerMinute: 100 } })
  const inMemory = await alone.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken(org)}` }, payload: { key: `${org}/a.pdf` } })
  t.equal(inMemory.statusCode, 200, 'an instance without Redis keeps its own counters')
})

t.test('Redis unreachable at startup: the instance refuses to start', async t => {
  const s3 = await startTestS3(t)
  await t.rejects(buildTestApp(t, s3, { rateLimit: { presignPerMinute: 4, proxyPerMinute: 4, redisUrl: 'redis://127.0.0.1:1' } }))
})

t.test('Redis lost while running: requests are served (fail open), not refused', async t => {
  const port = 20000 + Math.floor(Math.random() * 20000)
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  t.teardown(() => { redis.kill('SIGKILL') })
  const s3 = await startTestS3(t)
  let app: Awaited<ReturnType<typeof buildTestApp>> | undefined
  for (let attempt = 0; app === undefined && attempt < 200; attempt++) {
    app = await buildTestApp(t, s3, { rateLimit: { presignPerMinute: 100, proxyPerMinute: 100, redisUrl: `redis://127.0.0.1:${port}` } }).catch(async () => {
      await new Promise(resolve => setTimeout(resolve, 100))
      return undefined
    })
  }
  if (app === undefined) throw new Error('private redis-server did not come up')
  const presign = async () => (await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.pdf' } })).statusCode
  t.equal(await presign(), 200, 'with Redis')
  redis.kill('SIGKILL')
  await new Promise(resolve => redis.once('exit', resolve))
  t.equal(await presign(), 200, 'without Redis: served, the failure is logged')
})
