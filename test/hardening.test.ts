/**
 * What an SRE checks before sign-off: CORS from an exact allowlist, security
 * headers, per-organization rate limits, the download cap, request ids,
 * load shedding and readiness.
 */
import t from 'tap'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, TEST_SECRET } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'
import { buildApp } from '../src/app.js'

const auth = (org = 'org-1') => ({ authorization: `Bearer ${orgToken(org)}` })

t.test('CORS: only the listed origins, exactly', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { corsOrigins: ['https://app.artosai.com', 'http://localhost:3000'] })
  const preflight = (origin: string) => app.inject({
    method: 'OPTIONS',
    url: '/generate-presigned-url',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' }
  })
  const allowed = await preflight('https://app.artosai.com')
  t.equal(allowed.statusCode, 204)
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.artosai.com')
  t.match(String(allowed.headers['access-control-allow-headers']), /Authorization/)
  t.equal(allowed.headers['access-control-allow-credentials'], undefined, 'no credentials mode')
  t.equal((await preflight('http://localhost:3000')).headers['access-control-allow-origin'], 'http://localhost:3000')
  for (const origin of ['null', 'https://app.artosai.com.evil.com', 'https://evilapp.artosai.com', 'http://app.artosai.com', 'https://APP.artosai.com', 'https://app.artosai.com:8443', '*']) {
    const res = await preflight(origin)
    t.equal(res.headers['access-control-allow-origin'], undefined, `refused: ${origin}`)
  }
  const simple = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth(), origin: 'https://app.artosai.com' }, payload: { key: 'org-1/a.pdf' } })
  t.equal(simple.headers['access-control-allow-origin'], 'https://app.artosai.com')
  t.match(String(simple.headers['access-control-expose-headers']), /Content-Disposition/)
  // A browser app must be able to read why its token was refused.
  const refused = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: 'Bearer not.a.token', origin: 'https://app.artosai.com' }, payload: { key: 'org-1/a.pdf' } })
  t.equal(refused.statusCode, 401)
  t.match(String(refused.headers['www-authenticate']), /error="invalid_token"/)
  t.match(String(refused.headers['access-control-expose-headers']), /\bWWW-Authenticate\b/i, 'WWW-Authenticate is exposed to the page')

  const closed = await buildTestApp(t, s3)
  const none = await closed.inject({ method: 'OPTIONS', url: '/generate-presigned-url', headers: { origin: 'https://app.artosai.com', 'access-control-request-method': 'POST' } })
  t.equal(none.headers['access-control-allow-origin'], undefined, 'no origins by default')
  t.equal(none.statusCode, 404, 'and no preflight route')
})

t.test('security headers and request ids', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth(), 'x-request-id': 'edge-123.abc' }, payload: { key: 'org-1/a.pdf' } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(res.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'")
  t.match(String(res.headers['strict-transport-security']), /max-age=/)
  t.equal(res.headers['referrer-policy'], 'no-referrer')
  t.equal(res.headers['cross-origin-resource-policy'], 'same-origin')
  for (const pageOnly of ['x-dns-prefetch-control', 'x-download-options', 'x-permitted-cross-domain-policies', 'x-xss-protection', 'origin-agent-cluster']) {
    t.equal(res.headers[pageOnly], undefined, `no ${pageOnly} on an API response`)
  }
  t.equal(res.headers['x-request-id'], 'edge-123.abc', 'a plain incoming id is echoed')
  const unsafe = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'evil\u0000id with spaces' } })
  t.match(String(unsafe.headers['x-request-id']), /^[0-9a-f-]{36}$/, 'an unsafe id is replaced')
  const fresh = await app.inject({ method: 'GET', url: '/health' })
  t.match(String(fresh.headers['x-request-id']), /^[0-9a-f-]{36}$/, 'one is generated when absent')
  const docs = await app.inject({ method: 'GET', url: '/documentation/' })
  t.equal(docs.statusCode, 200, 'docs page served')
  t.match(String(docs.headers['content-security-policy']), /script-src 'self'/, 'Swagger UI keeps a policy that lets it run')
})

t.test('rate limits are per organization and per route, with Retry-After', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'a')
  const app = await buildTestApp(t, s3, { rateLimit: { presignPerMinute: 3, proxyPerMinute: 2 } })
  const presign = async (org: string) => await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(org), payload: { key: `${org}/a.txt` } })
  const url = (await presign('org-1')).json().url as string
  const statuses = [(await presign('org-1')).statusCode, (await presign('org-1')).statusCode]
  const limited = await presign('org-1')
  t.same([...statuses, limited.statusCode], [200, 200, 429], 'the fourth presign in a minute is refused')
  t.ok(Number(limited.headers['retry-after']) > 0, `Retry-After: ${String(limited.headers['retry-after'])}`)
  t.equal(limited.json().code, 'ARTOS_RATE_LIMITED')
  t.same(Object.keys(limited.json()).sort(), ['code', 'error', 'message', 'statusCode'], 'the usual error shape')
  t.equal((await presign('org-2')).statusCode, 200, 'another organization has its own budget')

  const proxy = async () => (await app.inject({ method: 'GET', url: proxyPath(url), headers: auth('org-1') })).statusCode
  t.same([await proxy(), await proxy(), await proxy()], [200, 200, 429], 'the proxy has its own budget, unaffected by presign')
  const anonymous = await app.inject({ method: 'POST', url: '/generate-presigned-url', payload: { key: 'org-1/a.txt' } })
  t.equal(anonymous.statusCode, 401, 'authentication comes first')
})

t.test('the proxy caps concurrent downloads with 503 + Retry-After', async t => {
  const open: ServerResponse[] = []
  const upstream = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write('first bytes')
    open.push(res)
  })
  await new Promise<void>(resolve => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const res of open) res.destroy()
    await new Promise(resolve => upstream.close(resolve))
  })
  const app = await buildApp({
    bucket: 'bucket',
    endpoint: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret' },
    jwt: { secret: TEST_SECRET },
    proxy: { maxConcurrentDownloads: 2 }
  })
  t.teardown(async () => { await app.close() })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const path = proxyPath(await presignedUrlFor(app, 'org-1/a.txt'))
  const controllers = [new AbortController(), new AbortController()]
  const running = await Promise.all(controllers.map(async c => await fetch(`${address}${path}`, { headers: auth(), signal: c.signal })))
  t.same(running.map(r => r.status), [200, 200], 'two downloads in flight')
  const third = await fetch(`${address}${path}`, { headers: auth() })
  t.equal(third.status, 503)
  t.equal(third.headers.get('retry-after'), '1')
  t.equal((await third.json() as { code: string }).code, 'ARTOS_TOO_BUSY')
  controllers[0].abort()
  await running[0].body?.cancel().catch(() => {})
  await new Promise(resolve => setTimeout(resolve, 200))
  const afterOneEnded = await fetch(`${address}${path}`, { headers: auth(), signal: controllers[1].signal })
  t.equal(afterOneEnded.status, 200, 'a slot frees up when a download ends')
  controllers[1].abort()
})

t.test('an event loop that stays blocked sheds load with 503 + Retry-After', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { maxEventLoopDelayMs: 50 })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  t.equal((await fetch(`${address}/health`)).status, 200)
  // Block the loop well past the threshold, twice, so under-pressure samples the lag.
  for (let i = 0; i < 2; i++) {
    const until = Date.now() + 1500
    while (Date.now() < until) { /* busy */ }
    await new Promise(resolve => setImmediate(resolve))
  }
  const res = await fetch(`${address}/health`)
  t.equal(res.status, 503)
  t.ok(res.headers.get('retry-after'))
  t.equal((await res.json() as { code: string }).code, 'ARTOS_OVERLOADED')
})

t.test('readiness reflects whether credentials can be resolved', async t => {
  const s3 = await startTestS3(t)
  const ready = await buildTestApp(t, s3)
  const ok = await ready.inject({ method: 'GET', url: '/ready' })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { status: 'ok' })
  const broken = await buildTestApp(t, s3, { credentials: async () => { throw new Error('no credentials here') } })
  const notReady = await broken.inject({ method: 'GET', url: '/ready' })
  t.equal(notReady.statusCode, 503)
  t.ok(notReady.headers['retry-after'])
  t.notMatch(notReady.body, /no credentials here/)
  t.equal((await broken.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'still alive')
})
