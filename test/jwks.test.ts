/**
 * The JWKS key set under a flood of made-up key ids: a key in the set, or one
 * the IdP added after our last fetch, verifies on every attempt; the IdP sees
 * at most one fetch per second; tokens for another issuer or audience never
 * cause a fetch. First as properties over a simulated clock, then end to end
 * against a loopback JWKS server.
 */
import t from 'tap'
import fc from 'fast-check'
import { createServer } from 'node:http'
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { JwksKeys, parseKeySet, selectKey } from '../src/jwks.js'
import { addressedToUs } from '../src/token-claims.js'
import { InvalidTokenError, TokenVerificationUnavailableError } from '../src/errors.js'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { ecKeyPair, rsaKeyPair, signToken } from './helpers/tokens.js'

const INTERVAL = 1_000

function publicJwk (pem: string, kid: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...createPublicKey(pem).export({ format: 'jwk' }), kid, use: 'sig', ...extra }
}
const pemOf = (publicKeyPem: string): string => createPublicKey(publicKeyPem).export({ format: 'pem', type: 'spki' }).toString()

/** Time that moves only when every pending promise has settled and the next timer is due. */
class SimulatedClock {
  now = 0
  private timers: Array<{ at: number, order: number, fire: () => void }> = []
  private order = 0
  readonly sleep = async (ms: number): Promise<void> => { await new Promise<void>(resolve => { this.at(this.now + ms, resolve) }) }
  at (time: number, fire: () => void): void { this.timers.push({ at: Math.max(time, this.now), order: this.order++, fire }) }
  async run (): Promise<void> {
    for (;;) {
      await new Promise(resolve => setImmediate(resolve))
      if (this.timers.length === 0) return
      this.timers.sort((a, b) => a.at - b.at || a.order - b.order)
      const next = this.timers.shift() as { at: number, fire: () => void }
      this.now = next.at
      next.fire()
    }
  }
}

t.test('parseKeySet keeps usable signature keys by kid; selectKey matches kid, alg and key type', async t => {
  const rsa = rsaKeyPair()
  const ec = ecKeyPair()
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const keys = parseKeySet({
    keys: [
      publicJwk(rsa.publicKey, 'rsa', { alg: 'RS256' }),
      publicJwk(ec.publicKey, 'ec'),
      publicJwk(p384.publicKey, 'p384'),
      publicJwk(rsa.publicKey, 'enc', { use: 'enc' }),
      publicJwk(rsa.publicKey, 'ps', { alg: 'PS256' }),
      { kty: 'RSA', kid: 'broken', e: 'AQAB' },
      { ...publicJwk(ec.publicKey, 'broken'), x: 'AA', y: 'AA' },
      { kty: 'oct', k: 'c2VjcmV0', kid: 'oct' },
      { ...publicJwk(rsa.publicKey, 'x'), kid: 42 },
      null,
      'text'
    ]
  })
  t.equal(selectKey(keys, 'rsa', 'RS256')?.pem, pemOf(rsa.publicKey), 'RSA key for RS256')
  t.equal(selectKey(keys, 'rsa', 'ES256'), undefined, 'not for another algorithm')
  t.equal(selectKey(keys, 'ec', 'ES256')?.pem, pemOf(ec.publicKey), 'P-256 key without alg for ES256')
  t.equal(selectKey(keys, 'ec', 'RS256'), undefined, 'an EC key never verifies RS256')
  t.equal(selectKey(keys, 'p384', 'ES256'), undefined, 'P-384 is not ES256')
  for (const kid of ['enc', 'oct', 'broken', '42', 'missing']) {
    t.equal(selectKey(keys, kid, 'RS256'), undefined, `${kid}: not usable for RS256`)
    t.equal(selectKey(keys, kid, 'ES256'), undefined, `${kid}: not usable for ES256`)
  }
  t.equal(selectKey(keys, 'ps', 'RS256'), undefined, 'a key pinned to PS256 does not verify RS256')
  t.throws(() => parseKeySet({}), /keys/, 'a document without keys is not a key set')
  t.throws(() => parseKeySet('nope'), /keys/)
  t.equal(parseKeySet({ keys: [] }).size, 0, 'an empty set is a set')

  fc.assert(fc.property(fc.constantFrom('rsa', 'ec', 'p384', 'enc', 'other'), fc.constantFrom('RS256', 'ES256', 'HS256', 'none', 'PS256'), (kid, alg) => {
    const key = selectKey(keys, kid, alg)
    const expected = (kid === 'rsa' && alg === 'RS256') || (kid === 'ec' && alg === 'ES256')
    return expected ? key?.kid === kid : key === undefined
  }))
})

t.test('addressedToUs: exactly our issuer, and our audience when we have one', async t => {
  const issuer = 'https://issuer.example/'
  t.equal(addressedToUs({ iss: issuer }, issuer, undefined), true)
  t.equal(addressedToUs({ iss: issuer, aud: 'api' }, issuer, 'api'), true)
  t.equal(addressedToUs({ iss: issuer, aud: ['other', 'api'] }, issuer, 'api'), true)
  for (const payload of [{}, { iss: 'https://issuer.example' }, { iss: 'HTTPS://issuer.example/' }, { iss: [issuer] }, { iss: null }, null, 'x', [issuer]]) {
    t.equal(addressedToUs(payload, issuer, undefined), false, `not ours: ${JSON.stringify(payload)}`)
  }
  for (const aud of [undefined, 'API', 'api ', ['other'], [], { api: true }]) {
    t.equal(addressedToUs({ iss: issuer, aud }, issuer, 'api'), false, `wrong audience: ${JSON.stringify(aud)}`)
  }
  fc.assert(fc.property(fc.anything(), fc.anything(), fc.option(fc.string(), { nil: undefined }), (iss, aud, audience) => {
    const claimsOk = iss === issuer && (audience === undefined || aud === audience || (Array.isArray(aud) && aud.includes(audience)))
    return addressedToUs({ iss, aud }, issuer, audience) === claimsOk
  }), { numRuns: 2000 })
})

t.test('JwksKeys (property, simulated clock): keys in the set and keys rotated in always verify, fetches stay 1 per interval', async t => {
  const pairs = Array.from({ length: 4 }, () => ecKeyPair())
  const jwks = pairs.map((pair, i) => publicJwk(pair.publicKey, `key-${i}`, { alg: 'ES256' }))
  // key-0 and key-1 are in the set from the start; key-2 and key-3 are rotated in during the run.
  const request = fc.record({
    at: fc.integer({ min: 0, max: 5_000 }),
    kind: fc.constantFrom('in-set', 'rotated', 'made-up', 'made-up', 'made-up'),
    which: fc.integer({ min: 0, max: 1 })
  })
  const scenario = fc.record({
    requests: fc.array(request, { minLength: 1, maxLength: 120 }),
    rotatedAt: fc.tuple(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 0, max: 5_000 })),
    latencies: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 8 })
  })
  let runs = 0
  await fc.assert(fc.asyncProperty(scenario, async ({ requests, rotatedAt, latencies }) => {
    runs++
    const clock = new SimulatedClock()
    const fetchStarts: number[] = []
    let firstFetchDone = Infinity
    const keys = new JwksKeys({
      // The IdP answers with the set as it is when asked, after some latency.
      fetchDocument: async () => {
        const asked = clock.now
        fetchStarts.push(asked)
        const document = { keys: jwks.filter((_, i) => i < 2 || rotatedAt[i - 2] <= asked) }
        await clock.sleep(latencies[fetchStarts.length % latencies.length])
        firstFetchDone = Math.min(firstFetchDone, clock.now)
        return document
      },
      minFetchIntervalMs: INTERVAL,
      maxAgeMs: 600_000,
      now: () => clock.now,
      sleep: clock.sleep
    })
    const outcomes: Array<Promise<{ ok: boolean, detail: string }>> = []
    for (const { at, kind, which } of requests) {
      // A rotated key's tokens exist only once the IdP has the key.
      const arrival = kind === 'rotated' ? Math.max(at, rotatedAt[which]) : at
      clock.at(arrival, () => {
        const index = kind === 'in-set' ? which : which + 2
        const kid = kind === 'made-up' ? randomUUID() : `key-${index}`
        outcomes.push(keys.publicKey(kid, 'ES256').then(
          pem => {
            const waited = clock.now - arrival
            // Once the set is here, a key in it never waits.
            const bound = kind === 'in-set' && arrival > firstFetchDone ? 0 : INTERVAL + 300
            const ok = kind !== 'made-up' && pem === pemOf(pairs[index].publicKey) && waited <= bound
            return { ok, detail: `${kind} ${kid} at ${arrival}: verified after ${waited} ms` }
          },
          (err: unknown) => ({ ok: kind === 'made-up' && err instanceof InvalidTokenError && clock.now - arrival <= INTERVAL + 300, detail: `${kind} ${kid} at ${arrival}: ${String(err)}` })
        ))
      })
    }
    await clock.run()
    const results = await Promise.all(outcomes)
    const failed = results.filter(result => !result.ok)
    if (failed.length > 0) throw new Error(failed.map(result => result.detail).join('\n'))
    for (let i = 1; i < fetchStarts.length; i++) {
      if (fetchStarts[i] - fetchStarts[i - 1] < INTERVAL) throw new Error(`fetches at ${fetchStarts[i - 1]} and ${fetchStarts[i]}`)
    }
    return true
  }), { numRuns: 150 })
  t.equal(runs, 150, 'every scenario held: no refusal of a real key, no wait for a key already in the set, no fetch closer than the interval, no wait beyond one interval plus the IdP\'s latency')
})

t.test('JwksKeys: refresh after maxAge, the previous set while the IdP is down (for one maxAge more), then 503', async t => {
  const clock = new SimulatedClock()
  const [a, b] = [ecKeyPair(), ecKeyPair()]
  let document: unknown = { keys: [publicJwk(a.publicKey, 'a'), publicJwk(b.publicKey, 'b')] }
  let up = true
  let fetches = 0
  const keys = new JwksKeys({
    fetchDocument: async () => { fetches++; if (!up) throw new Error('connection refused'); return document },
    minFetchIntervalMs: INTERVAL,
    maxAgeMs: 60_000,
    now: () => clock.now,
    sleep: clock.sleep
  })
  const lookup = async (kid: string, atMs: number): Promise<string | Error> => {
    clock.now = atMs
    const result = keys.publicKey(kid, 'ES256').catch((err: Error) => err)
    await clock.run()
    return await result
  }
  t.equal(await lookup('a', 0), pemOf(a.publicKey))
  t.equal(await lookup('b', 30_000), pemOf(b.publicKey), 'within maxAge: no fetch')
  t.equal(fetches, 1)
  document = { keys: [publicJwk(a.publicKey, 'a')] }
  t.type(await lookup('b', 60_000), InvalidTokenError, 'after maxAge the set is fetched again: a key the IdP dropped stops verifying')
  t.equal(fetches, 2)
  up = false
  t.equal(await lookup('a', 121_000), pemOf(a.publicKey), 'IdP down: the previous set still verifies its keys')
  t.type(await lookup('zzz', 122_500), TokenVerificationUnavailableError, 'IdP down: an id not in the set is 503, not 401')
  t.type(await lookup('a', 180_000), TokenVerificationUnavailableError, 'IdP down for longer than maxAge past the set: 503')
  up = true
  t.equal(await lookup('a', 190_000), pemOf(a.publicKey), 'IdP back: verifies again')
})

t.test('end to end: a flood of made-up key ids never makes a real key fail, and the IdP sees at most ~1 fetch per second', async t => {
  const s3 = await startTestS3(t)
  const current = rsaKeyPair()
  const unused = rsaKeyPair()
  const rotated = rsaKeyPair()
  const jwks = [publicJwk(current.publicKey, 'current', { alg: 'RS256' }), publicJwk(unused.publicKey, 'unused', { alg: 'RS256' })]
  let fetches = 0
  const idp = createServer((req, res) => {
    fetches++
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: jwks }))
  })
  await new Promise<void>(resolve => idp.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { idp.close() })
  const issuer = 'https://issuer.example/'
  const audience = 'artos-files'
  const app = await buildTestApp(t, s3, { jwt: { jwksUrl: `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`, issuer, audience } })
  // A fresh jti every time, so no cache (ours or fast-jwt's) can answer for the key set.
  const token = (kid: string, privateKey: string, claims: Record<string, unknown> = {}): string =>
    `Bearer ${signToken({ org_id: 'org-1', iss: issuer, aud: audience, jti: randomUUID(), ...claims }, { algorithm: 'RS256', key: privateKey, kid })}`
  const presign = async (authorization: string): Promise<number> =>
    (await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization }, payload: { key: 'org-1/a.pdf' } })).statusCode

  t.equal(await presign(token('current', current.privateKey)), 200, 'warm: the set is fetched once')
  t.equal(fetches, 1)

  const started = Date.now()
  let flooding = true
  let floodRequests = 0
  const floodStatuses = new Set<number>()
  const flood = Promise.all(Array.from({ length: 40 }, async () => {
    while (flooding) {
      // Refusals can be answered without I/O; yielding keeps a fast flood from starving the timers.
      await new Promise(resolve => setImmediate(resolve))
      floodRequests++
      floodStatuses.add(await presign(token(randomUUID(), current.privateKey)))
    }
  }))
  const attempts: Array<[string, number]> = []
  for (let i = 0; i < 15; i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
    attempts.push([`unused (in the set, never used) #${i}`, await presign(token('unused', unused.privateKey))])
    attempts.push([`current #${i}`, await presign(token('current', current.privateKey))])
  }
  // The IdP rotates a new key in; our last fetched set does not have it.
  jwks.push(publicJwk(rotated.publicKey, 'rotated', { alg: 'RS256' }))
  for (let i = 0; i < 8; i++) {
    attempts.push([`rotated (added after the last fetch) #${i}`, await presign(token('rotated', rotated.privateKey))])
  }
  flooding = false
  await flood
  const seconds = (Date.now() - started) / 1000
  for (const [name, status] of attempts) t.equal(status, 200, name)
  t.same([...floodStatuses], [401], `the flood (${floodRequests} requests) is refused`)
  t.ok(floodRequests >= 40, 'the flood really ran alongside')
  t.ok(fetches - 1 <= Math.ceil(seconds) + 1, `${fetches - 1} fetches in ${seconds.toFixed(1)} s: at most one per second`)
  t.ok(seconds < 60, 'ended within a generous bound')

  // Tokens for another issuer or audience never reach the key set, whatever their key id.
  await new Promise(resolve => setTimeout(resolve, INTERVAL + 100))
  const before = fetches
  const foreign = await Promise.all([
    ...Array.from({ length: 10 }, async () => await presign(token(randomUUID(), current.privateKey, { iss: 'https://evil.example/' }))),
    ...Array.from({ length: 10 }, async () => await presign(token(randomUUID(), current.privateKey, { aud: 'another-api' }))),
    presign(token(randomUUID(), current.privateKey, { iss: undefined })),
    presign(token('rotated', rotated.privateKey, { iss: 'https://evil.example/' }))
  ])
  t.same(new Set(foreign), new Set([401]), 'foreign tokens: 401')
  t.equal(fetches - before, 0, 'foreign tokens: zero fetches')
})
