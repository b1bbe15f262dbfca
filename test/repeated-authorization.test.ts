/**
 * A request with two Authorization headers is refused (400, RFC 6750
 * `invalid_request`) on every route, whichever header comes first: Node
 * would verify the first, a proxy in front may have judged the last.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { hasRepeatedAuthorization } from '../src/repeated-authorization.js'
import { artosFiles } from '../src/app.js'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, TEST_SECRET } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'
import { rawRequest } from './helpers/raw-http.js'

t.test('hasRepeatedAuthorization: two or more header names equal to Authorization in any case, values ignored', async t => {
  const authorizationName = fc.constantFrom('authorization', 'Authorization', 'AUTHORIZATION', 'aUtHoRiZaTiOn')
  const otherName = fc.constantFrom('host', 'content-type', 'x-authorization', 'authorization-x', 'authorizatio', 'proxy-authorization', 'Authorisation')
  const value = fc.oneof(fc.string(), authorizationName)
  const header = fc.tuple(fc.oneof(authorizationName, otherName), value)
  fc.assert(fc.property(fc.array(header, { maxLength: 12 }), headers => {
    const raw = headers.flat()
    const count = headers.filter(([name]) => name.toLowerCase() === 'authorization').length
    return hasRepeatedAuthorization(raw) === (count > 1)
  }), { numRuns: 2000 })
  t.equal(hasRepeatedAuthorization([]), false)
  t.equal(hasRepeatedAuthorization(['Authorization', 'Bearer a']), false)
  t.equal(hasRepeatedAuthorization(['Authorization', 'Bearer a', 'authorization', 'Bearer a']), true, 'even the same value twice')
  t.equal(hasRepeatedAuthorization(['Authorization', 'authorization', 'x', 'authorization']), false, 'a value that reads "authorization" is not a name')
})

t.test('the raw helper really sends both headers (nothing merges them on the way)', async t => {
  let seen: string[] = []
  const server = createServer((req, res) => { seen = req.rawHeaders; res.end() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  await rawRequest(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'GET', '/', [['Authorization', 'Bearer a'], ['authorization', 'Bearer b']])
  t.same(seen.filter((_, i) => i % 2 === 0 && seen[i]?.toLowerCase() === 'authorization'), ['Authorization', 'authorization'])
})

const BAD = 'Bearer not.a.token'

/** Sends the request with a valid token and a bad one, in both orders, and expects a 400 in our error shape both times. */
async function expectRefused (t: Test, base: string, method: string, path: string, valid: string, body?: string, label = path): Promise<void> {
  const json: Array<[string, string]> = body === undefined ? [] : [['Content-Type', 'application/json']]
  for (const [order, first, second] of [['valid-then-bad', valid, BAD], ['bad-then-valid', BAD, valid], ['valid twice', valid, valid]] as const) {
    const res = await rawRequest(base, method, path, [...json, ['Authorization', first], ['authorization', second]], body)
    const where = `${method} ${label} ${order}`
    t.equal(res.status, 400, `${where}: 400`)
    if (method !== 'HEAD') {
      t.same(parseOrText(res.body), { statusCode: 400, code: 'ARTOS_REPEATED_AUTHORIZATION', error: 'Bad Request', message: 'Only one Authorization header is allowed' }, `${where}: error body`)
    }
    t.equal(res.headers['www-authenticate'], 'Bearer realm="artos-files", error="invalid_request"', `${where}: WWW-Authenticate`)
  }
}

function parseOrText (text: string): unknown {
  try { return JSON.parse(text) } catch { return text }
}

t.test('standalone (buildApp): every route refuses two Authorization headers, 404s and docs included', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'hello')
  const app = await buildTestApp(t, s3)
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const valid = `Bearer ${orgToken('org-1')}`
  const body = JSON.stringify({ key: 'org-1/a.txt' })

  // The same token alone works, and is now remembered: the memory must not let the pair through.
  const alone = await rawRequest(base, 'POST', '/generate-presigned-url', [['Content-Type', 'application/json'], ['Authorization', valid]], body)
  t.equal(alone.status, 200, 'one valid header: 200')
  const proxied = proxyPath(await presignedUrlFor(app, 'org-1/a.txt'))
  t.equal((await rawRequest(base, 'GET', proxied, [['Authorization', valid]])).status, 200, 'one valid header on the proxy: 200')

  await expectRefused(t, base, 'POST', '/generate-presigned-url', valid, body)
  await expectRefused(t, base, 'GET', proxied, valid, undefined, '<proxy path>')
  await expectRefused(t, base, 'HEAD', proxied, valid, undefined, '<proxy path>')
  await expectRefused(t, base, 'GET', '/health', valid)
  await expectRefused(t, base, 'GET', '/ready', valid)
  await expectRefused(t, base, 'GET', '/documentation/json', valid)
  await expectRefused(t, base, 'GET', '/no/such/route', valid)
  t.equal((await rawRequest(base, 'GET', '/health', [])).status, 200, 'no Authorization header at all is fine where none is needed')
})

t.test('embedded: all of our routes refuse two Authorization headers; the host\'s routes are its own business', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'hello')
  for (const mode of ['jwt', 'useHostJwt'] as const) {
    const host = Fastify()
    t.teardown(async () => { await host.close() })
    await host.register(fastifyJwt, { secret: TEST_SECRET })
    host.get('/host-route', async () => ({ ok: true }))
    await host.register(artosFiles, {
      prefix: '/files',
      bucket: s3.bucket,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: s3.region,
      credentials: s3.credentials,
      healthRoutes: true,
      ...(mode === 'jwt' ? { jwt: { secret: TEST_SECRET } } : { useHostJwt: true })
    })
    const base = await host.listen({ host: '127.0.0.1', port: 0 })
    const valid = `Bearer ${orgToken('org-1')}`
    const body = JSON.stringify({ key: 'org-1/a.txt' })
    const alone = await rawRequest(base, 'POST', '/files/generate-presigned-url', [['Content-Type', 'application/json'], ['Authorization', valid]], body)
    t.equal(alone.status, 200, `${mode}: one valid header: 200`)
    const proxied = `/files${proxyPath(JSON.parse(alone.body).url)}`
    await expectRefused(t, base, 'POST', '/files/generate-presigned-url', valid, body)
    await expectRefused(t, base, 'GET', proxied, valid, undefined, '<proxy path>')
    await expectRefused(t, base, 'HEAD', proxied, valid, undefined, '<proxy path>')
    await expectRefused(t, base, 'GET', '/files/health', valid)
    await expectRefused(t, base, 'GET', '/files/ready', valid)
    const hostRoute = await rawRequest(base, 'GET', '/host-route', [['Authorization', valid], ['Authorization', BAD]])
    t.equal(hostRoute.status, 200, `${mode}: the host's own route is not ours to police (encapsulation holds)`)
  }
})
