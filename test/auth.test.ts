/**
 * Every token shape gets its exact status: 401 (with WWW-Authenticate) when it
 * does not verify, 400 "Authentication failed" when it verifies but names no
 * usable organization, 403 for another org's key, never a 500.
 */
import t, { type Test } from 'tap'
import { createServer, type Server } from 'node:http'
import { createHmac, createPublicKey } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { ecKeyPair, orgToken, rsaKeyPair, signToken, TEST_SECRET } from './helpers/tokens.js'
import { VerifiedTokens, VERIFIED_TOKEN_LIMIT, VERIFIED_TOKEN_TTL_MS } from '../plugins/auth.js'

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
/** HS256 over arbitrary header and payload JSON, for shapes a JWT library refuses to produce. */
const handMadeHs256 = (header: unknown, payload: unknown): string => {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${createHmac('sha256', TEST_SECRET).update(input).digest('base64url')}`
}
const now = (): number => Math.floor(Date.now() / 1000)

interface Case { name: string, authorization?: string, status: number, message?: RegExp | string }

async function expectCases (t: Test, app: Awaited<ReturnType<typeof buildTestApp>>, cases: Case[], key = 'org-1/a.pdf'): Promise<void> {
  for (const c of cases) {
    const res = await app.inject({
      method: 'POST',
      url: '/generate-presigned-url',
      headers: c.authorization === undefined ? {} : { authorization: c.authorization },
      payload: { key }
    })
    t.equal(res.statusCode, c.status, `${c.name}: ${c.status}`)
    const body = res.json()
    if (c.status === 200) {
      t.type(body.url, 'string', `${c.name}: URL`)
      continue
    }
    t.equal(body.statusCode, c.status, `${c.name}: body statusCode`)
    if (c.message !== undefined) t.match(body.message, c.message, `${c.name}: message`)
    if (c.status === 401) t.match(res.headers['www-authenticate'], /^Bearer realm="artos-files"/, `${c.name}: WWW-Authenticate`)
    t.notOk('url' in body, `${c.name}: no URL`)
  }
}

t.test('HS256 shared secret', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const rsa = rsaKeyPair()
  const claims = { sub: 'u', org_id: 'org-1' }
  const header = b64({ alg: 'HS256', typ: 'JWT' })
  const validSignature = orgToken('org-1').split('.')[2]
  await expectCases(t, app, [
    { name: 'valid', authorization: `Bearer ${orgToken('org-1')}`, status: 200 },
    { name: 'lower-case scheme', authorization: `bearer ${orgToken('org-1')}`, status: 200 },
    { name: 'no Authorization header', status: 401 },
    { name: 'Basic scheme', authorization: 'Basic dXNlcjpwYXNz', status: 401 },
    { name: 'Bearer without token', authorization: 'Bearer', status: 401 },
    { name: 'Bearer with blank token', authorization: 'Bearer    ', status: 401 },
    { name: 'not a JWT', authorization: 'Bearer not-a-jwt', status: 401 },
    { name: 'three garbage parts', authorization: 'Bearer a.b.c', status: 401 },
    { name: 'header not JSON', authorization: `Bearer ${b64('nope')}.${b64(claims)}.${validSignature}`, status: 401 },
    { name: 'payload not an object', authorization: `Bearer ${header}.${b64('"just a string"')}.${validSignature}`, status: 401 },
    { name: 'payload an array', authorization: `Bearer ${header}.${b64([1, 2])}.${validSignature}`, status: 401 },
    { name: 'alg none', authorization: `Bearer ${signToken(claims, { algorithm: 'none' })}`, status: 401 },
    { name: 'alg none, hand-made', authorization: `Bearer ${b64({ alg: 'none' })}.${b64({ ...claims, exp: now() + 60 })}.`, status: 401 },
    { name: 'wrong alg (HS384, same secret)', authorization: `Bearer ${signToken(claims, { algorithm: 'HS384' })}`, status: 401 },
    { name: 'wrong alg (RS256)', authorization: `Bearer ${signToken(claims, { algorithm: 'RS256', key: rsa.privateKey })}`, status: 401 },
    { name: 'wrong secret', authorization: `Bearer ${signToken(claims, { key: 'another-secret-that-is-32-characters-long!' })}`, status: 401 },
    { name: 'tampered payload', authorization: `Bearer ${header}.${b64({ ...claims, org_id: 'org-2', exp: now() + 60 })}.${validSignature}`, status: 401 },
    { name: 'expired', authorization: `Bearer ${signToken({ ...claims, exp: now() - 3600 }, { expiresInSeconds: null })}`, status: 401, message: /expired/ },
    { name: 'not yet valid (nbf in 1 h)', authorization: `Bearer ${signToken(claims, { notBeforeSeconds: 3600, expiresInSeconds: 7200 })}`, status: 401 },
    { name: 'no exp', authorization: `Bearer ${signToken(claims, { expiresInSeconds: null })}`, status: 401 },
    { name: 'exp not a number', authorization: `Bearer ${handMadeHs256({ alg: 'HS256' }, { ...claims, exp: 'tomorrow' })}`, status: 401 },
    { name: 'exp in the past by a string date', authorization: `Bearer ${handMadeHs256({ alg: 'HS256' }, { ...claims, exp: '2000-01-01' })}`, status: 401 },
    { name: 'nbf not a number', authorization: `Bearer ${handMadeHs256({ alg: 'HS256' }, { ...claims, exp: now() + 60, nbf: {} })}`, status: 401 },
    { name: 'payload a JSON string, correctly signed', authorization: `Bearer ${handMadeHs256({ alg: 'HS256' }, 'text')}`, status: 401 },
    { name: 'crit header (unsupported extension must be refused)', authorization: `Bearer ${handMadeHs256({ alg: 'HS256', crit: ['exp'] }, { ...claims, exp: now() + 60 })}`, status: 401 },
    { name: 'hand-made valid token', authorization: `Bearer ${handMadeHs256({ alg: 'HS256', typ: 'JWT' }, { ...claims, exp: now() + 60 })}`, status: 200 },
    { name: 'missing org', authorization: `Bearer ${signToken({ sub: 'u' })}`, status: 400, message: 'Authentication failed' },
    { name: 'empty org', authorization: `Bearer ${signToken({ org_id: '' })}`, status: 400, message: 'Authentication failed' },
    { name: 'null org', authorization: `Bearer ${signToken({ org_id: null })}`, status: 400, message: 'Authentication failed' },
    { name: 'array org', authorization: `Bearer ${signToken({ org_id: ['org-1'] })}`, status: 400, message: 'Authentication failed' },
    { name: 'number org', authorization: `Bearer ${signToken({ org_id: 42 })}`, status: 400, message: 'Authentication failed' },
    { name: 'object org', authorization: `Bearer ${signToken({ org_id: { id: 'org-1' } })}`, status: 400, message: 'Authentication failed' },
    { name: 'traversal org', authorization: `Bearer ${signToken({ org_id: '..' })}`, status: 400, message: 'Authentication failed' },
    { name: 'org with slash', authorization: `Bearer ${signToken({ org_id: 'org-1/a' })}`, status: 400, message: 'Authentication failed' },
    { name: 'oversize org', authorization: `Bearer ${signToken({ org_id: 'o'.repeat(5000) })}`, status: 400, message: 'Authentication failed' },
    { name: 'other org', authorization: `Bearer ${orgToken('org-2')}`, status: 403 }
  ])
})

t.test('an oversize token is refused by the HTTP server with 431, not a crash', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const token = signToken({ org_id: 'org-1', padding: 'x'.repeat(40_000) })
  const res = await fetch(`${address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"key":"org-1/a"}'
  })
  t.equal(res.status, 431)
  await res.arrayBuffer()
  const after = await fetch(`${address}/health`)
  t.equal(after.status, 200, 'server still serves')
})

t.test('RS256 public key: algorithm pinned to the key', async t => {
  const s3 = await startTestS3(t)
  const rsa = rsaKeyPair()
  const other = rsaKeyPair()
  const ec = ecKeyPair()
  const app = await buildTestApp(t, s3, { jwt: { publicKey: rsa.publicKey } })
  const claims = { org_id: 'org-1' }
  await expectCases(t, app, [
    { name: 'valid RS256', authorization: `Bearer ${signToken(claims, { algorithm: 'RS256', key: rsa.privateKey })}`, status: 200 },
    { name: 'HS256 signed with the public key (alg confusion)', authorization: `Bearer ${signToken(claims, { algorithm: 'HS256', key: rsa.publicKey })}`, status: 401 },
    { name: 'HS256 with some secret', authorization: `Bearer ${signToken(claims)}`, status: 401 },
    { name: 'RS256 by another key', authorization: `Bearer ${signToken(claims, { algorithm: 'RS256', key: other.privateKey })}`, status: 401 },
    { name: 'ES256 token', authorization: `Bearer ${signToken(claims, { algorithm: 'ES256', key: ec.privateKey })}`, status: 401 },
    { name: 'alg none', authorization: `Bearer ${signToken(claims, { algorithm: 'none' })}`, status: 401 }
  ])
})

t.test('ES256 public key', async t => {
  const s3 = await startTestS3(t)
  const ec = ecKeyPair()
  const app = await buildTestApp(t, s3, { jwt: { publicKey: ec.publicKey } })
  const rsa = rsaKeyPair()
  await expectCases(t, app, [
    { name: 'valid ES256', authorization: `Bearer ${signToken({ org_id: 'org-1' }, { algorithm: 'ES256', key: ec.privateKey })}`, status: 200 },
    { name: 'RS256 token', authorization: `Bearer ${signToken({ org_id: 'org-1' }, { algorithm: 'RS256', key: rsa.privateKey })}`, status: 401 }
  ])
})

t.test('audience, when configured, is required and checked', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { jwt: { secret: TEST_SECRET, audience: 'artos-files' } })
  await expectCases(t, app, [
    { name: 'right audience', authorization: `Bearer ${signToken({ org_id: 'org-1', aud: 'artos-files' })}`, status: 200 },
    { name: 'wrong audience', authorization: `Bearer ${signToken({ org_id: 'org-1', aud: 'another-api' })}`, status: 401 },
    { name: 'no audience', authorization: `Bearer ${signToken({ org_id: 'org-1' })}`, status: 401 }
  ])
})

t.test('JWKS with a pinned issuer', async t => {
  const s3 = await startTestS3(t)
  const rsa = rsaKeyPair()
  const jwk = { ...createPublicKey(rsa.publicKey).export({ format: 'jwk' }), kid: 'key-1', alg: 'RS256', use: 'sig' }
  let jwksRequests = 0
  let jwksUp = true
  const jwksServer: Server = createServer((req, res) => {
    jwksRequests++
    if (!jwksUp) { res.statusCode = 503; res.end('{}'); return }
    if (req.url !== '/tenant/.well-known/jwks.json') { res.statusCode = 404; res.end('{}'); return }
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [jwk] }))
  })
  await new Promise<void>(resolve => jwksServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { jwksServer.close() })
  const base = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`
  const issuer = 'https://issuer.example/'
  const app = await buildTestApp(t, s3, { jwt: { jwksUrl: `${base}/tenant/.well-known/jwks.json`, issuer } })
  const sign = (claims: Record<string, unknown>, kid = 'key-1'): string => signToken(claims, { algorithm: 'RS256', key: rsa.privateKey, kid })
  await expectCases(t, app, [
    { name: 'valid', authorization: `Bearer ${sign({ org_id: 'org-1', iss: issuer })}`, status: 200 },
    { name: 'valid again (cached key)', authorization: `Bearer ${sign({ org_id: 'org-1', iss: issuer, n: 2 })}`, status: 200 },
    { name: 'wrong issuer', authorization: `Bearer ${sign({ org_id: 'org-1', iss: 'https://evil.example/' })}`, status: 401 },
    { name: 'no issuer', authorization: `Bearer ${sign({ org_id: 'org-1' })}`, status: 401 },
    { name: 'unknown kid', authorization: `Bearer ${sign({ org_id: 'org-1', iss: issuer }, 'key-2')}`, status: 401 },
    { name: 'no kid', authorization: `Bearer ${signToken({ org_id: 'org-1', iss: issuer }, { algorithm: 'RS256', key: rsa.privateKey })}`, status: 401 },
    { name: 'HS256 token', authorization: `Bearer ${signToken({ org_id: 'org-1', iss: issuer }, { kid: 'key-1' })}`, status: 401 }
  ])
  t.ok(jwksRequests >= 1, 'the key set was fetched over HTTP')
  // Unknown key ids come from attackers as easily as from rotation: they share one fetch (test/jwks.test.ts has the flood).
  await new Promise(resolve => setTimeout(resolve, 1100))
  const before = jwksRequests
  const unknown = await Promise.all(['random-1', 'random-2', 'random-3'].map(async kid =>
    await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${sign({ org_id: 'org-1', iss: issuer }, kid)}` }, payload: { key: 'org-1/a.pdf' } })))
  t.same(unknown.map(res => res.statusCode), [401, 401, 401], 'unknown key ids')
  // One fetch, or two when the others arrive after it went out (its answer may predate their keys).
  t.ok(jwksRequests - before >= 1 && jwksRequests - before <= 2, `three unknown key ids at once: ${jwksRequests - before} key-set fetches`)
  t.equal((await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${sign({ org_id: 'org-1', iss: issuer, n: 3 })}` }, payload: { key: 'org-1/a.pdf' } })).statusCode, 200, 'known keys are unaffected')
  await new Promise(resolve => setTimeout(resolve, 1100))
  jwksUp = false
  await expectCases(t, app, [
    { name: 'key set unreachable, uncached kid', authorization: `Bearer ${sign({ org_id: 'org-1', iss: issuer }, 'key-3')}`, status: 503 }
  ])
})

t.test('verified-token memory: never past exp, at most 5 minutes, bounded', async t => {
  let now = 1_000_000_000_000
  const memory = new VerifiedTokens(() => now)
  const claims = (expInSeconds: number) => ({ org_id: 'org-1', exp: Math.floor(now / 1000) + expInSeconds })
  memory.remember('Bearer a', claims(60), 'org-1')
  t.same(memory.get('Bearer a')?.organization, 'org-1')
  now += 59_000
  t.ok(memory.get('Bearer a'), 'still valid one second before exp')
  now += 1_000
  t.equal(memory.get('Bearer a'), undefined, 'gone at exp (verification decides again, with its own tolerance)')

  memory.remember('Bearer long', claims(24 * 3600), 'org-1')
  now += VERIFIED_TOKEN_TTL_MS
  t.equal(memory.get('Bearer long'), undefined, 're-verified after 5 minutes even if exp is far')

  memory.remember('Bearer no-exp', { org_id: 'org-1' }, 'org-1')
  t.equal(memory.get('Bearer no-exp'), undefined, 'tokens without a numeric exp are never remembered')
  t.equal(memory.get(undefined), undefined)

  for (let i = 0; i <= VERIFIED_TOKEN_LIMIT; i++) memory.remember(`Bearer ${i}`, claims(600), 'org-1')
  t.equal(memory.get('Bearer 0'), undefined, 'the oldest is evicted beyond the limit')
  t.ok(memory.get(`Bearer ${VERIFIED_TOKEN_LIMIT}`), 'the newest is kept')
})

t.test('with useHostJwt every request goes through the host\'s verification (no memory)', async t => {
  const s3 = await startTestS3(t)
  const { default: Fastify } = await import('fastify')
  const { default: fastifyJwt } = await import('@fastify/jwt')
  const { artosFiles } = await import('../src/app.js')
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  let revoked = false
  await host.register(fastifyJwt, { secret: TEST_SECRET, trusted: () => !revoked })
  await host.register(artosFiles, { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, useHostJwt: true })
  const token = orgToken('org-1')
  const call = async () => (await host.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${token}` }, payload: { key: 'org-1/a.pdf' } })).statusCode
  t.equal(await call(), 200)
  revoked = true
  t.equal(await call(), 401, 'the host revoked it, and we noticed')
})
