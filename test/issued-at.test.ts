/**
 * A token that says it was issued in the future (beyond the 30 s clock
 * tolerance), or whose iat is not a number, is refused with 401: with our
 * HS256 secret, a public key, a JWKS, and the host's @fastify/jwt.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { createHmac, createPublicKey, sign as signWith } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { issuedAtVerdict } from '../src/token-claims.js'
import { artosFiles } from '../src/app.js'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { ecKeyPair, rsaKeyPair, TEST_SECRET } from './helpers/tokens.js'

const TOLERANCE_MS = 30_000
const now = (): number => Math.floor(Date.now() / 1000)
const b64 = (text: string): string => Buffer.from(text).toString('base64url')

/** A JWT over an exact payload text (so `1e400` or a string iat get through), signed for real. */
function handMade (payloadJson: string, alg: 'HS256' | 'RS256' | 'ES256', key: string, kid?: string): string {
  const input = `${b64(JSON.stringify({ alg, typ: 'JWT', ...(kid === undefined ? {} : { kid }) }))}.${b64(payloadJson)}`
  const signature = alg === 'HS256'
    ? createHmac('sha256', key).update(input).digest()
    : signWith('sha256', Buffer.from(input), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key)
  return `${input}.${signature.toString('base64url')}`
}

/** The payload text of a token with the given iat (raw JSON text; undefined for none). */
function payloadWith (iatJson: string | undefined, extra: Record<string, unknown> = {}): string {
  const base = JSON.stringify({ org_id: 'org-1', exp: now() + 300, ...extra })
  return iatJson === undefined ? base : `${base.slice(0, -1)},"iat":${iatJson}}`
}

const CASES: Array<[string, string | undefined, number]> = [
  ['no iat', undefined, 200],
  ['iat now', String(now()), 200],
  ['iat an hour ago', String(now() - 3600), 200],
  ['iat 20 s ahead (within the tolerance)', String(now() + 20), 200],
  ['iat 2 min ahead', String(now() + 120), 401],
  ['iat a day ahead', String(now() + 86_400), 401],
  ['iat a string', '"yesterday"', 401],
  ['iat a numeric string', `"${now()}"`, 401],
  ['iat null', 'null', 401],
  ['iat an array', `[${now()}]`, 401],
  ['iat an object', '{}', 401],
  ['iat true', 'true', 401],
  ['iat 1e400 (Infinity once parsed)', '1e400', 401],
  ['iat -1e400', '-1e400', 401]
]

async function expectIssuedAt (t: Test, send: (authorization: string) => Promise<{ statusCode: number, json: () => any, headers: Record<string, unknown> }>, token: (payloadJson: string) => string): Promise<void> {
  for (const [name, iat, status] of CASES) {
    const res = await send(`Bearer ${token(payloadWith(iat))}`)
    t.equal(res.statusCode, status, `${name}: ${status}`)
    if (status === 401) {
      t.match(res.json().message, /iat is not a number|issued in the future/, `${name}: says why`)
      t.match(res.headers['www-authenticate'], /error="invalid_token"/, `${name}: WWW-Authenticate`)
    }
  }
}

t.test('issuedAtVerdict: absent is fine, a finite number up to now + tolerance is fine, anything else is refused', async t => {
  const nowMs = 1_700_000_000_000
  fc.assert(fc.property(fc.double(), seconds => {
    const expected = !Number.isFinite(seconds) ? 'not-a-number' : seconds * 1000 > nowMs + TOLERANCE_MS ? 'in-the-future' : 'ok'
    return issuedAtVerdict(seconds, nowMs, TOLERANCE_MS) === expected
  }), { numRuns: 5000 })
  fc.assert(fc.property(fc.integer({ min: -TOLERANCE_MS, max: 2 * TOLERANCE_MS }), offsetMs => {
    const verdict = issuedAtVerdict((nowMs + offsetMs) / 1000, nowMs, TOLERANCE_MS)
    return verdict === (offsetMs > TOLERANCE_MS ? 'in-the-future' : 'ok')
  }), { numRuns: 2000 })
  fc.assert(fc.property(fc.anything().filter(value => typeof value !== 'number' && value !== undefined), value =>
    issuedAtVerdict(value, nowMs, TOLERANCE_MS) === 'not-a-number'), { numRuns: 2000 })
  t.equal(issuedAtVerdict(undefined, nowMs, TOLERANCE_MS), 'ok')
  t.equal(issuedAtVerdict(nowMs / 1000 + 30, nowMs, TOLERANCE_MS), 'ok', 'exactly at the tolerance')
  t.equal(issuedAtVerdict(nowMs / 1000 + 30.001, nowMs, TOLERANCE_MS), 'in-the-future', 'just past it')
})

t.test('HS256 secret', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await expectIssuedAt(t, async authorization => await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization }, payload: { key: 'org-1/a.pdf' } }),
    payload => handMade(payload, 'HS256', TEST_SECRET))
})

t.test('public key (ES256)', async t => {
  const s3 = await startTestS3(t)
  const ec = ecKeyPair()
  const app = await buildTestApp(t, s3, { jwt: { publicKey: ec.publicKey } })
  await expectIssuedAt(t, async authorization => await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization }, payload: { key: 'org-1/a.pdf' } }),
    payload => handMade(payload, 'ES256', ec.privateKey))
})

t.test('JWKS (RS256)', async t => {
  const s3 = await startTestS3(t)
  const rsa = rsaKeyPair()
  const idp = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [{ ...createPublicKey(rsa.publicKey).export({ format: 'jwk' }), kid: 'k', alg: 'RS256', use: 'sig' }] }))
  })
  await new Promise<void>(resolve => idp.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { idp.close() })
  const issuer = 'https://issuer.example/'
  const app = await buildTestApp(t, s3, { jwt: { jwksUrl: `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`, issuer } })
  await expectIssuedAt(t, async authorization => await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization }, payload: { key: 'org-1/a.pdf' } }),
    payload => handMade(payload.replace(/^\{/, `{"iss":"${issuer}",`), 'RS256', rsa.privateKey, 'k'))
})

t.test('useHostJwt: the host\'s verification, our iat rule', async t => {
  const s3 = await startTestS3(t)
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  await host.register(fastifyJwt, { secret: TEST_SECRET })
  await host.register(artosFiles, { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, useHostJwt: true })
  await expectIssuedAt(t, async authorization => await host.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization }, payload: { key: 'org-1/a.pdf' } }),
    payload => handMade(payload, 'HS256', TEST_SECRET))
})
