/**
 * Prometheus metrics over real HTTP: the app on one port, GET /metrics on a
 * listener of its own. Each request is counted once with labels from closed
 * sets; a key, an organization or a URL never becomes a label value.
 */
import { metricsOf } from '../src/decorators.js'
import t, { type Test } from 'tap'
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { startServerProcess } from './helpers/server.js'
import { orgToken, TEST_SECRET } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'
import { buildApp } from '../src/app.js'
import { listenMetrics } from '../src/metrics-server.js'
import { presignOutcome, refusalReason } from '../plugins/metrics.js'
import Fastify from 'fastify'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { artosFiles } from '../src/index.js'

interface Sample { name: string, labels: Record<string, string>, value: number }

/** The Prometheus text format, enough of it to read our samples. */
function parse (text: string): Sample[] {
  return text.split('\n').filter(line => line !== '' && !line.startsWith('#')).map(line => {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not a sample: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, name, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name] = value
    return { name: match[1], labels, value: Number(match[3]) }
  })
}

function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(s => s.name === name && Object.keys(labels).length === Object.keys(s.labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

/**
 * A response is counted when it closes, which can be a moment after the client
 * has read it: scrapes until `requests` requests are counted (or 5 s passed).
 */
async function scrape (url: string, requests: number): Promise<{ status: number, contentType: string | null, samples: Sample[], text: string }> {
  let status = 0
  let contentType: string | null = null
  const text = await settled(async () => {
    const res = await fetch(url)
    status = res.status
    contentType = res.headers.get('content-type')
    return await res.text()
  }, requests)
  return { status, contentType, samples: parse(text), text }
}

async function settled (read: () => Promise<string>, requests: number): Promise<string> {
  const deadline = Date.now() + 5000
  for (;;) {
    const text = await read()
    const counted = parse(text).filter(s => s.name === 'artos_http_requests_total').reduce((sum, s) => sum + s.value, 0)
    if (counted >= requests || Date.now() > deadline) return text
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

const json = (org = 'org-1') => ({ authorization: `Bearer ${orgToken(org)}`, 'content-type': 'application/json' })

t.test('a presign, a download, a 403 and a 429 are each counted once, with the right labels', async t => {
  const s3 = await startTestS3(t)
  const body = randomBytes(200 * 1024 + 3)
  await s3.put('org-1/reports/q3-secret-plans.pdf', body, 'application/pdf')
  const app = await buildTestApp(t, s3, { metrics: true, rateLimit: { presignPerMinute: 2, proxyPerMinute: 100 } })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const metrics = await listenMetrics(metricsOf(app).registry, { host: '127.0.0.1', port: 0 })
  t.teardown(metrics.close)

  const presign = async (key: string) => await fetch(`${address}/generate-presigned-url`, { method: 'POST', headers: json(), body: JSON.stringify({ key }) })
  const ok = await presign('org-1/reports/q3-secret-plans.pdf')
  t.equal(ok.status, 200)
  const { url } = await ok.json() as { url: string }
  t.equal((await presign('org-2/reports/q3-secret-plans.pdf')).status, 403, 'another organization\'s key')
  t.equal((await presign('org-1/reports/q3-secret-plans.pdf')).status, 429, 'over the budget of 2 a minute')
  const download = await fetch(`${address}${proxyPath(url)}`, { headers: json() })
  t.equal(download.status, 200)
  t.same(Buffer.from(await download.arrayBuffer()), body)
  const stray = await fetch(`${address}/org-1/reports/q3-secret-plans.pdf?presigned_url=${encodeURIComponent(url)}`)
  t.equal(stray.status, 404)
  t.equal((await fetch(`${address}/metrics`)).status, 404, 'no /metrics on the API port')

  const { status, contentType, samples, text } = await scrape(metrics.url, 6)
  t.equal(status, 200)
  t.match(contentType, /^text\/plain; version=0\.0\.4/)
  const presignRoute = { route: '/generate-presigned-url', method: 'POST' }
  for (const code of ['200', '403', '429']) {
    t.equal(value(samples, 'artos_http_requests_total', { ...presignRoute, status: code }), 1, `one POST /generate-presigned-url ${code}`)
    t.equal(value(samples, 'artos_http_request_duration_seconds_count', { ...presignRoute, status: code }), 1, `one ${code} in the latency histogram`)
  }
  const sum = value(samples, 'artos_http_request_duration_seconds_sum', { ...presignRoute, status: '200' }) ?? 0
  t.ok(sum > 0 && sum < 10, `latency measured (${sum} s)`)
  t.equal(value(samples, 'artos_http_requests_total', { route: '/api/v1/proxy/file', method: 'GET', status: '200' }), 1, 'one download')
  t.equal(value(samples, 'artos_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }), 2, 'unmatched paths under one label (the stray URL and /metrics)')
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'ok' }), 1)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'forbidden' }), 1)
  t.same(samples.filter(s => s.name === 'artos_presign_total').length, 2, 'a 429 is no presign outcome')
  t.equal(value(samples, 'artos_refusals_total', { operation: 'presign', reason: 'rate_limit' }), 1)
  t.equal(value(samples, 'artos_proxy_bytes_total', { operation: 'proxy.get' }), body.length, 'every byte relayed, once')
  t.equal(value(samples, 'artos_proxy_downloads_in_progress'), 0)
  t.same(samples.filter(s => s.name === 'artos_upstream_errors_total'), [], 'no upstream errors')
  t.ok(samples.some(s => s.name === 'process_cpu_user_seconds_total'), 'Node\'s process metrics')

  // Label values come from closed sets: never a key, an organization or a URL.
  const labelValues = samples.flatMap(s => Object.values(s.labels))
  for (const secret of ['org-1', 'org-2', 'q3-secret-plans', 'reports', 'presigned_url', 'X-Amz', '127.0.0.1', 'http']) {
    t.notOk(labelValues.some(v => v.includes(secret)), `no label value contains ${secret}`)
  }
  t.notOk(text.includes(orgToken('org-1').split('.')[0]), 'no token')
  const routes = new Set(samples.filter(s => s.name === 'artos_http_requests_total').map(s => s.labels.route))
  t.same([...routes].sort(), ['/api/v1/proxy/file', '/generate-presigned-url', 'unmatched'])
})

t.test('a batch counts each item; bad input, failed signing and load shedding are counted by name', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { metrics: true })
  const metrics = await listenMetrics(metricsOf(app).registry, { host: '127.0.0.1', port: 0 })
  t.teardown(metrics.close)
  const batch = await app.inject({
    method: 'POST',
    url: '/generate-presigned-urls',
    headers: json(),
    payload: { items: [{ key: 'org-1/a.txt' }, { key: 'org-1/b.txt' }, { key: 'org-2/a.txt' }, { key: 'org-1/../a.txt' }] }
  })
  t.equal(batch.statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: json(), payload: { nokey: 1 } })).statusCode, 400, 'a body without a key')
  t.equal((await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: json(), payload: { key: 'org-1/x\u0000' } })).statusCode, 400, 'a bad key')
  t.equal((await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: 'Bearer nope' }, payload: { key: 'org-1/a' } })).statusCode, 401, 'no token: no presign outcome')

  const broken = await buildTestApp(t, s3, { metrics: true, credentials: async () => { throw new Error('no credentials today') } })
  t.equal((await broken.inject({ method: 'POST', url: '/generate-presigned-url', headers: json(), payload: { key: 'org-1/a.txt' } })).statusCode, 500)
  const brokenBatch = await broken.inject({ method: 'POST', url: '/generate-presigned-urls', headers: json(), payload: { items: [{ key: 'org-1/a.txt' }, { key: 'org-2/a.txt' }] } })
  t.equal(brokenBatch.statusCode, 500)

  const { samples } = await scrape(metrics.url, 4)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign.batch', outcome: 'ok' }), 2)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign.batch', outcome: 'forbidden' }), 1)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign.batch', outcome: 'invalid' }), 1)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'invalid' }), 2)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'ok' }), undefined)
  t.equal(value(samples, 'artos_http_requests_total', { route: '/generate-presigned-url', method: 'POST', status: '401' }), 1)

  const brokenSamples = parse(await metricsOf(broken).registry.metrics())
  t.equal(value(brokenSamples, 'artos_presign_total', { operation: 'presign', outcome: 'failed' }), 1, 'signing failed')
  t.equal(value(brokenSamples, 'artos_presign_total', { operation: 'presign.batch', outcome: 'failed' }), 1, 'the batch item that would have been signed')
  t.equal(value(brokenSamples, 'artos_presign_total', { operation: 'presign.batch', outcome: 'forbidden' }), 1)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'failed' }), undefined, 'two apps, two registries')

  // Load shedding: the event loop blocked well past the threshold (as in hardening.test.ts).
  const shedding = await buildTestApp(t, s3, { metrics: true, maxEventLoopDelayMs: 50 })
  const address = await shedding.listen({ host: '127.0.0.1', port: 0 })
  for (let i = 0; i < 2; i++) {
    const until = Date.now() + 1500
    while (Date.now() < until) { /* busy */ }
    await new Promise(resolve => setImmediate(resolve))
  }
  t.equal((await fetch(`${address}/generate-presigned-url`, { method: 'POST', headers: json(), body: '{"key":"org-1/a.txt"}' })).status, 503)
  const shed = parse(await settled(async () => await metricsOf(shedding).registry.metrics(), 1))
  t.equal(value(shed, 'artos_refusals_total', { operation: 'presign', reason: 'overloaded' }), 1)
  t.equal(value(shed, 'artos_presign_total', { operation: 'presign', outcome: 'ok' }), undefined, 'a shed request is no presign')
})

async function startUpstream (t: Test, behaviour: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(behaviour)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('upstream failures and timeouts are counted; clients leaving are not', async t => {
  // An upstream double (a real S3 cannot misbehave on demand): the key says how.
  const upstream = await startUpstream(t, (req, res) => {
    if (req.url?.includes('/org-1/stall') === true) return
    if (req.url?.includes('/org-1/error') === true) { res.writeHead(500).end('<Error/>'); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(1024 * 1024) })
    if (req.url?.includes('/org-1/reset') === true) {
      res.write(Buffer.alloc(64 * 1024, 1), () => { setTimeout(() => { res.socket?.destroy() }, 50) })
      return
    }
    const timer = setInterval(() => { res.write(Buffer.alloc(1024, 2)) }, 20)
    res.on('close', () => { clearInterval(timer) })
  })
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const app = await buildApp({
    bucket: 'bucket',
    endpoint: upstream,
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
    jwt: { secret: TEST_SECRET },
    proxy: { headersTimeoutMs: 300, idleTimeoutMs: 5000 },
    metrics: true
  })
  t.teardown(async () => { await app.close() })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const get = async (key: string) => await fetch(`${address}${proxyPath(await presignedUrlFor(app, key))}`, { headers: json() })

  t.equal((await get('org-1/stall')).status, 504)
  t.equal((await get('org-1/error')).status, 502)
  const reset = await get('org-1/reset')
  t.equal(reset.status, 200, 'the reset comes after the headers')
  await t.rejects(reset.arrayBuffer(), 'the client sees a truncated body')
  await new Promise(resolve => setTimeout(resolve, 200))

  // A client that leaves mid-download: the gauge shows it while it runs, no failure after.
  const received = await new Promise<number>((resolve, reject) => {
    void presignedUrlFor(app, 'org-1/slow').then(url => {
      const req = httpRequest(`${address}${proxyPath(url)}`, { headers: json() }, res => {
        res.once('data', () => {
          void metricsOf(app).registry.getSingleMetricAsString('artos_proxy_downloads_in_progress').then(text => {
            t.match(text, /^artos_proxy_downloads_in_progress 1$/m, 'one download in progress')
            let bytes = 0
            res.on('data', (chunk: Buffer) => { bytes += chunk.length })
            setTimeout(() => { req.destroy(); resolve(bytes) }, 100)
          })
        })
      })
      req.on('error', () => {})
      req.end()
    }, reject)
  })
  t.ok(received > 0)

  // Four downloads (504, 502, the reset, the abandoned one) and the four presigns that made their URLs.
  const samples = parse(await settled(async () => await metricsOf(app).registry.metrics(), 4 + 4))
  t.equal(value(samples, 'artos_upstream_errors_total', { operation: 'proxy.get', kind: 'timeout' }), 1, 'the stalled upstream')
  t.equal(value(samples, 'artos_upstream_errors_total', { operation: 'proxy.get', kind: 'failed' }), 2, 'the 500 and the reset mid-body')
  t.equal(samples.filter(s => s.name === 'artos_upstream_errors_total').length, 2, 'nothing else: the client that left is not counted')
  t.equal(value(samples, 'artos_proxy_downloads_in_progress'), 0)
  const bytes = value(samples, 'artos_proxy_bytes_total', { operation: 'proxy.get' }) ?? 0
  t.ok(bytes >= 64 * 1024 + received && bytes < 2 * 1024 * 1024, `bytes of the cut-off downloads counted (${bytes})`)
  t.equal(value(samples, 'artos_http_requests_total', { route: '/api/v1/proxy/file', method: 'GET', status: '200' }), 2, 'the reset and the abandoned download, each once')
})

t.test('embedded: the plugin counts its own routes into the host\'s registry', async t => {
  const s3 = await startTestS3(t)
  const registry = new Registry()
  collectDefaultMetrics({ register: registry }) // the host's own: ours must not register them again
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  host.get('/host-route', async () => 'host')
  await host.register(artosFiles, {
    prefix: '/files', bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials,
    jwt: { secret: TEST_SECRET }, metrics: { registry }
  })
  const address = await host.listen({ host: '127.0.0.1', port: 0 })
  t.equal((await fetch(`${address}/files/generate-presigned-url`, { method: 'POST', headers: json(), body: '{"key":"org-1/a.txt"}' })).status, 200)
  t.equal((await fetch(`${address}/host-route`)).status, 200)
  const samples = parse(await settled(async () => await registry.metrics(), 1))
  t.equal(value(samples, 'artos_http_requests_total', { route: '/files/generate-presigned-url', method: 'POST', status: '200' }), 1, 'route patterns carry the host\'s prefix')
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'ok' }), 1)
  t.notOk(samples.some(s => s.labels.route === '/host-route'), 'the host\'s routes are the host\'s')
  t.ok(samples.some(s => s.name === 'process_cpu_user_seconds_total'), 'the host\'s default metrics, registered once')
})

t.test('refusal reasons and single presign outcomes are named from closed sets', async t => {
  t.equal(refusalReason(429, 'ARTOS_RATE_LIMITED'), 'rate_limit')
  t.equal(refusalReason(503, 'ARTOS_OVERLOADED'), 'overloaded')
  t.equal(refusalReason(503, 'ARTOS_TOO_BUSY'), 'downloads')
  t.equal(refusalReason(429, 'ARTOS_ORGANIZATION_DOWNLOADS_LIMITED'), 'organization_downloads_limited', 'a new 429 of ours is named by its code')
  t.equal(refusalReason(503, 'ARTOS_TOKEN_VERIFICATION_UNAVAILABLE'), undefined, 'not every 503 is shedding')
  t.equal(refusalReason(429, 'not-ours'), undefined)
  t.equal(refusalReason(429, null), undefined)
  t.equal(presignOutcome(200, null), 'ok')
  t.equal(presignOutcome(403, 'ARTOS_FORBIDDEN_KEY'), 'forbidden')
  t.equal(presignOutcome(400, 'FST_ERR_VALIDATION'), 'invalid')
  t.equal(presignOutcome(415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'), 'invalid')
  t.equal(presignOutcome(400, 'ARTOS_AUTHENTICATION_FAILED'), undefined)
  t.equal(presignOutcome(500, 'ARTOS_PRESIGN_FAILED'), 'failed')
  for (const status of [401, 429, 503]) t.equal(presignOutcome(status, null), undefined, `${status} is not a presign outcome`)
})

t.test('the server: METRICS_PORT opens its own listener; the API port has no /metrics', async t => {
  const s3 = await startTestS3(t)
  const server = await startServerProcess(t, s3, { METRICS_PORT: '0' })
  const line = await server.waitForLine(/metrics listening/)
  const metricsUrl = (JSON.parse(line) as { url: string }).url
  t.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'bound to HOST')
  t.not(new URL(metricsUrl).port, new URL(server.address).port)
  const presign = await fetch(`${server.address}/generate-presigned-url`, { method: 'POST', headers: json(), body: '{"key":"org-1/a.txt"}' })
  t.equal(presign.status, 200)
  t.equal((await fetch(`${server.address}/metrics`)).status, 404)
  t.equal((await fetch(metricsUrl.replace('/metrics', '/'))).status, 404, 'the metrics listener serves nothing else')
  const { samples } = await scrape(metricsUrl, 2)
  t.equal(value(samples, 'artos_presign_total', { operation: 'presign', outcome: 'ok' }), 1)
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'both listeners close on shutdown')

  const off = await startServerProcess(t, s3)
  t.notOk(off.lines.some(l => l.includes('metrics listening')), 'no metrics listener without METRICS_PORT')
  off.child.kill('SIGTERM')
  t.equal(await off.exited, 0)
})
