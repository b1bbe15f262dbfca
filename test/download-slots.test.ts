/**
 * Per-organization download slots: one organization's slow downloads cannot
 * take every slot of the instance. The store (src/download-slots.ts) in memory
 * against a model, then the whole app against a loopback upstream double that
 * stands where the S3 endpoint is and holds downloads open. Redis-shared slots
 * are in test/redis/download-slots.test.ts.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { Agent, fetch, type Response } from 'undici'
import { buildAppForUpstream } from './helpers/app.js'
import { startHoldingUpstream } from './helpers/holding-upstream.js'
import { memorySlots, type SlotLease } from '../src/download-slots.js'
import { orgToken } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'

t.test('memory slots: at most `cap` per organization, each released once', async t => {
  const slots = memorySlots(2)
  const a1 = await slots.acquire('org-a')
  const a2 = await slots.acquire('org-a')
  t.ok(a1 !== undefined && a2 !== undefined, 'two slots')
  t.equal(await slots.acquire('org-a'), undefined, 'no third')
  t.ok(await slots.acquire('org-b') !== undefined, 'another organization has its own')
  a1?.release()
  a1?.release()
  t.ok(await slots.acquire('org-a') !== undefined, 'one comes back')
  t.equal(await slots.acquire('org-a'), undefined, 'a double release does not give back two')
})

t.test('memory slots: any sequence of acquires and releases agrees with a counter per organization', async t => {
  const step = fc.oneof(
    fc.record({ op: fc.constant('acquire' as const), org: fc.constantFrom('a', 'b', 'c') }),
    fc.record({ op: fc.constant('release' as const), index: fc.nat(50) })
  )
  await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(step, { maxLength: 60 }), async (cap, steps) => {
    const slots = memorySlots(cap)
    const held: Array<{ org: string, lease: SlotLease, released: boolean }> = []
    for (const s of steps) {
      if (s.op === 'acquire') {
        const inUse = held.filter(h => h.org === s.org && !h.released).length
        const lease = await slots.acquire(s.org)
        if ((lease !== undefined) !== (inUse < cap)) return false
        if (lease !== undefined) held.push({ org: s.org, lease, released: false })
      } else if (held.length > 0) {
        const h = held[s.index % held.length]
        h.lease.release()
        h.released = true
      }
    }
    return true
  }), { numRuns: 500 })
  t.pass('500 runs')
})


t.test('one organization at its cap gets 429 + Retry-After; another still streams; slots come back', async t => {
  const upstream = await startHoldingUpstream(t)
  const app = await buildAppForUpstream(t, upstream.endpoint, { proxy: { maxConcurrentDownloads: 8, maxDownloadsPerOrg: 2 } })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  // Our own client pool, closed before the app: its idle keep-alive connections would hold app.close().
  const client = new Agent()
  t.teardown(async () => { await client.destroy() })
  // Signed once per key and organization: the test should load the app as little as it can.
  const urls = new Map<string, string>()
  const tokens = new Map<string, string>()
  const get = async (key: string, signal?: AbortSignal) => {
    const org = key.split('/')[0]
    if (!urls.has(key)) urls.set(key, `${address}${proxyPath(await presignedUrlFor(app, key))}`)
    if (!tokens.has(org)) tokens.set(org, orgToken(org))
    return await fetch(urls.get(key) as string, { headers: { authorization: `Bearer ${tokens.get(org) as string}` }, signal, dispatcher: client })
  }

  const controllers = [new AbortController(), new AbortController()]
  const running = [await get('org-a/slow-1.bin', controllers[0].signal), await get('org-a/slow-2.bin', controllers[1].signal)]
  t.same(running.map(res => res.status), [200, 200], 'org-a: two downloads streaming')
  const refused = await get('org-a/slow-3.bin')
  t.equal(refused.status, 429, 'org-a: the third is refused')
  t.equal(refused.headers.get('retry-after'), '5')
  const body = await refused.json() as Record<string, unknown>
  t.equal(body.code, 'ARTOS_ORGANIZATION_DOWNLOADS_LIMITED')
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], 'the usual error shape')
  const quick = await get('org-a/done.txt')
  t.equal(quick.status, 429, 'even a quick download waits for a slot')
  await quick.text()

  const other = await get('org-b/slow.bin')
  t.equal(other.status, 200, 'org-b still streams')
  const reader = (other.body as ReadableStream<Uint8Array>).getReader()
  t.equal(new TextDecoder().decode((await reader.read()).value), 'first bytes', 'and receives bytes')
  await reader.cancel()

  // A client that leaves gives its slot back.
  controllers[0].abort()
  await running[0].body?.cancel().catch(() => {})
  let again: Response | undefined
  for (let i = 0; i < 100 && again?.status !== 200; i++) {
    if (i > 0) await new Promise(resolve => setTimeout(resolve, 20))
    again = await get('org-a/done.txt')
  }
  t.equal(again?.status, 200, 'org-a: a slot is back after one of its downloads was aborted')
  t.equal(await again?.text(), 'done')

  // Downloads that complete or fail give theirs back too: many in a row, one slot free.
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) {
    const done = await get('org-a/done.txt')
    await done.text()
    statuses.push(done.status)
  }
  for (let i = 0; i < 3; i++) {
    const broken = await get('org-a/broken.bin')
    await broken.text()
    statuses.push(broken.status)
  }
  t.same(statuses, [200, 200, 200, 502, 502, 502], 'completed and failed downloads never use up the cap (of 2, one taken)')
  controllers[1].abort()
  await running[1].body?.cancel().catch(() => {})
})
