/**
 * Traces from the real server process (the OpenTelemetry SDK is process-global)
 * to an OTLP/HTTP receiver on loopback: a span per request joined to the
 * caller's `traceparent`, child spans for signing and the upstream fetch, the
 * trace id in log lines, and never a token, signature, credential or presigned
 * URL in anything exported.
 */
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node'
import { startTestS3 } from './helpers/s3.js'
import { startServerProcess } from './helpers/server.js'
import { orgToken, signToken } from './helpers/tokens.js'
import { redactingProcessor } from '../src/tracing.js'

interface Received { contentType: string, body: Buffer }

/** Accepts OTLP/HTTP trace exports (JSON or protobuf) and keeps them as they came. */
async function startReceiver (t: Test): Promise<{ endpoint: string, received: Received[] }> {
  const received: Received[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') received.push({ contentType: req.headers['content-type'] ?? '', body: Buffer.concat(chunks) })
      const json = req.headers['content-type']?.includes('json') === true
      res.writeHead(req.url === '/v1/traces' ? 200 : 404, { 'content-type': json ? 'application/json' : 'application/x-protobuf' })
      res.end(json ? '{}' : undefined)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received }
}

interface OtlpValue { stringValue?: string, intValue?: string | number, boolValue?: boolean }
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: Array<{ key: string, value: OtlpValue }>
  status?: { code?: number, message?: string }
}

function spansOf (received: Received[]): OtlpSpan[] {
  return received.flatMap(({ body }) => (JSON.parse(body.toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> })
    .resourceSpans.flatMap(resource => resource.scopeSpans.flatMap(scope => scope.spans)))
}

function attribute (span: OtlpSpan, key: string): string | number | boolean | undefined {
  const value = span.attributes.find(a => a.key === key)?.value
  return value?.stringValue ?? (value?.intValue === undefined ? value?.boolValue : Number(value.intValue))
}

const traceparent = (traceId: string, parentId: string) => `00-${traceId}-${parentId}-01`

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

t.test('spans per request with signing and upstream children, joined to traceparent, with no secrets', async t => {
  const receiver = await startReceiver(t)
  const s3 = await startTestS3(t)
  await s3.put('org-1/secret-plans.pdf', 'plans')
  const server = await startServerProcess(t, s3, {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'artos-files-test',
    OTEL_BSP_SCHEDULE_DELAY: '50'
  })
  const token = orgToken('org-1')
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
  const presignTrace = randomBytes(16).toString('hex')
  const proxyTrace = randomBytes(16).toString('hex')
  const callerSpan = randomBytes(8).toString('hex')

  const presign = await fetch(`${server.address}/generate-presigned-url`, {
    method: 'POST', headers: { ...headers, traceparent: traceparent(presignTrace, callerSpan) }, body: JSON.stringify({ key: 'org-1/secret-plans.pdf' })
  })
  t.equal(presign.status, 200)
  const { url } = await presign.json() as { url: string }
  const download = await fetch(`${server.address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers: { ...headers, traceparent: traceparent(proxyTrace, callerSpan) } })
  t.equal(download.status, 200)
  t.equal(await download.text(), 'plans')
  // Refusals and stray paths are traced too, and carry secrets of their own.
  const forged = signToken({ sub: 'user-1', org_id: 'org-1' }, { key: 'another-secret-that-is-at-least-32-characters' })
  t.equal((await fetch(`${server.address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${forged}` } })).status, 401)
  t.equal((await fetch(`${server.address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url.replace('127.0.0.1', 'localhost'))}`, { headers })).status, 403)
  t.equal((await fetch(`${server.address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url.replace(/X-Amz-Signature=([0-9a-f]{4})/, (_, head: string) => `X-Amz-Signature=${head === '0000' ? 'ffff' : '0000'}`))}`, { headers })).status, 410)
  t.equal((await fetch(`${server.address}/files/${token}?${new URL(url).search.slice(1)}`, { headers })).status, 404)

  await until(() => {
    const names = spansOf(receiver.received).map(span => span.name)
    return names.includes('artos.presign.sign') && names.includes('artos.upstream.fetch') && names.filter(name => name.startsWith('GET ')).length >= 5
  }, 'the spans of every request')
  const spans = spansOf(receiver.received)
  const byId = new Map(spans.map(span => [span.spanId, span]))
  const ancestors = (span: OtlpSpan): OtlpSpan[] => {
    const parent = span.parentSpanId === undefined ? undefined : byId.get(span.parentSpanId)
    return parent === undefined ? [] : [parent, ...ancestors(parent)]
  }

  const presignRequest = spans.find(span => span.name === 'POST /generate-presigned-url')
  t.ok(presignRequest, 'a request span for the presign, named by method and route pattern')
  t.equal(presignRequest?.traceId, presignTrace, 'in the caller\'s trace')
  t.equal(presignRequest?.parentSpanId, callerSpan, 'a child of the caller\'s span')
  t.equal(presignRequest?.kind, 2, 'SERVER')
  t.equal(presignRequest === undefined ? undefined : attribute(presignRequest, 'artos.operation'), 'presign')
  t.equal(presignRequest === undefined ? undefined : attribute(presignRequest, 'http.response.status_code'), 200)
  const sign = spans.find(span => span.name === 'artos.presign.sign')
  t.equal(sign?.traceId, presignTrace, 'signing in the same trace')
  t.ok(sign !== undefined && presignRequest !== undefined && ancestors(sign).includes(presignRequest), 'signing is a descendant of the request span')
  t.equal(sign === undefined ? undefined : attribute(sign, 'artos.presign.items'), 1)

  const proxyRequest = spans.find(span => span.name === 'GET /api/v1/proxy/file' && span.traceId === proxyTrace)
  t.ok(proxyRequest, 'a request span for the download, in the caller\'s trace')
  t.equal(proxyRequest === undefined ? undefined : attribute(proxyRequest, 'url.path'), '/api/v1/proxy/file', 'url.path without the query')
  const fetchSpan = spans.find(span => span.name === 'artos.upstream.fetch')
  t.equal(fetchSpan?.traceId, proxyTrace)
  t.ok(fetchSpan !== undefined && proxyRequest !== undefined && ancestors(fetchSpan).includes(proxyRequest), 'the upstream fetch is a descendant of the request span')
  t.equal(fetchSpan?.kind, 3, 'CLIENT')
  t.equal(fetchSpan === undefined ? undefined : attribute(fetchSpan, 'http.response.status_code'), 200)
  t.equal(fetchSpan === undefined ? undefined : attribute(fetchSpan, 'server.address'), '127.0.0.1')
  t.ok(spans.some(span => span.name === 'GET unmatched'), 'an unmatched path is one span name, not its URL')

  // The trace id joins log lines to the trace.
  for (const [what, traceId] of [['presign', presignTrace], ['download', proxyTrace]]) {
    const line = JSON.parse(await server.waitForLine(new RegExp(`"trace_id":"${traceId}".*"msg":"request completed"`))) as { trace_id: string, span_id?: string }
    t.match(line, { trace_id: traceId, span_id: /^[0-9a-f]{16}$/ }, `the ${what}'s log line carries its trace id`)
  }

  const exported = Buffer.concat(receiver.received.map(r => r.body)).toString()
  const parsed = new URL(url)
  const secrets = {
    token,
    'token signature': token.split('.')[2],
    'forged token signature': forged.split('.')[2],
    'X-Amz-Signature value': parsed.searchParams.get('X-Amz-Signature') as string,
    'X-Amz-Credential value': parsed.searchParams.get('X-Amz-Credential') as string,
    'encoded X-Amz-Credential': encodeURIComponent(parsed.searchParams.get('X-Amz-Credential') as string),
    'presigned URL': url,
    'encoded presigned URL': encodeURIComponent(url).slice(0, 60),
    'presigned URL query': parsed.search.slice(1, 60)
  }
  for (const [name, secret] of Object.entries(secrets)) t.notOk(exported.includes(secret), `no ${name} in any span`)
  t.notMatch(exported, /X-Amz-(Signature|Credential)=(?!\[REDACTED\])/i)
  t.notMatch(exported, /eyJ[\w-]+\.[\w-]+/, 'nothing JWT-shaped')

  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'shuts down cleanly with the exporter flushed')
})

t.test('OTLP over HTTP/protobuf by default; nothing secret in the bytes either', async t => {
  const receiver = await startReceiver(t)
  const s3 = await startTestS3(t)
  const server = await startServerProcess(t, s3, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.endpoint}/v1/traces`, OTEL_BSP_SCHEDULE_DELAY: '50' })
  const token = orgToken('org-1')
  const traceId = randomBytes(16).toString('hex')
  const presign = await fetch(`${server.address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', traceparent: traceparent(traceId, randomBytes(8).toString('hex')) }, body: JSON.stringify({ key: 'org-1/a.txt' })
  })
  t.equal(presign.status, 200)
  const { url } = await presign.json() as { url: string }
  await until(() => receiver.received.some(r => r.body.includes(Buffer.from(traceId, 'hex'))), 'the presign\'s spans')
  t.ok(receiver.received.every(r => r.contentType === 'application/x-protobuf'), 'protobuf')
  const exported = Buffer.concat(receiver.received.map(r => r.body))
  t.ok(exported.includes('artos.presign.sign'), 'the signing span')
  for (const secret of [token, token.split('.')[2], url, new URL(url).searchParams.get('X-Amz-Signature') as string]) {
    t.notOk(exported.includes(secret), 'no token, URL or signature in the bytes')
  }
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})

t.test('URL attributes are redacted as a span ends, whoever set them', async t => {
  const exporter = new InMemorySpanExporter()
  // A provider of its own, not registered globally: nothing else in this process sees it.
  const provider = new NodeTracerProvider({ spanProcessors: [redactingProcessor, new SimpleSpanProcessor(exporter)] })
  t.teardown(async () => { await provider.shutdown() })
  const signature = 'a'.repeat(64)
  const span = provider.getTracer('test').startSpan('GET', {
    attributes: {
      'url.full': `https://bucket.s3.amazonaws.com/org-1/a.pdf?X-Amz-Signature=${signature}`,
      'http.url': `http://user:${signature}@127.0.0.1:8000/api/v1/proxy/file?presigned_url=${signature}#${signature}`,
      'http.target': `/files/${orgToken('org-1')}`,
      'url.path': '/api/v1/proxy/file',
      'url.query': `presigned_url=${signature}`,
      'http.route': '/api/v1/proxy/file'
    }
  })
  span.setStatus({ code: 2, message: `fetch https://bucket.s3.amazonaws.com/a?X-Amz-Signature=${signature} failed for ${orgToken('org-1')}` })
  span.end()
  const [finished] = exporter.getFinishedSpans()
  t.same(finished.status, { code: 2, message: 'fetch https://bucket.s3.amazonaws.com/a?X-Amz-Signature=[REDACTED] failed for [REDACTED]' }, 'URLs and tokens in a status message')
  const attributes = finished.attributes
  t.same(attributes, {
    'url.full': 'https://bucket.s3.amazonaws.com/org-1/a.pdf?X-Amz-Signature=[REDACTED]',
    'http.url': 'http://127.0.0.1:8000/api/v1/proxy/file?presigned_url=[REDACTED]#[REDACTED]',
    'http.target': '/files/[REDACTED]',
    'url.path': '/api/v1/proxy/file',
    'url.query': 'presigned_url=[REDACTED]',
    'http.route': '/api/v1/proxy/file'
  })
})
