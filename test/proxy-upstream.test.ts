/**
 * The proxy against an upstream that misbehaves on purpose, which a real S3
 * server cannot do on demand: redirects, stalls, resets, endless slow bodies,
 * garbage. The double stands where our configured endpoint is, so the URLs it
 * receives are genuinely signed by the app.
 */
import t, { type Test } from 'tap'
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, type AddressInfo, type LookupFunction, type Socket } from 'node:net'
import type { BuildAppOptions } from '../src/app.js'
import { buildAppForUpstream } from './helpers/app.js'
import { kLookup } from '../plugins/upstream.js'
import { orgToken } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'

type Behaviour = (req: IncomingMessage, res: ServerResponse) => void

async function startUpstream (t: Test, behaviour: Behaviour) {
  const requests: Array<{ method?: string, url?: string, headers: IncomingMessage['headers'] }> = []
  const sockets = new Set<Socket>()
  const closedSockets: number[] = []
  const server = createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers })
    behaviour(req, res)
  })
  server.on('connection', socket => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket); closedSockets.push(Date.now()) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, closedSockets }
}

async function appFor (t: Test, endpoint: string, overrides: Partial<BuildAppOptions> = {}) {
  const app = await buildAppForUpstream(t, endpoint, {
    docs: true,
    proxy: { connectTimeoutMs: 1000, headersTimeoutMs: 500, idleTimeoutMs: 500 },
    ...overrides
  })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, address }
}

const auth = { authorization: `Bearer ${orgToken('org-1')}` }

t.test('a redirect is not followed: 502, and the redirect target is never contacted', async t => {
  const target = await startUpstream(t, (_req, res) => { res.end('secret elsewhere') })
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(302, { location: `${target.endpoint}/steal` })
    res.end()
  })
  const { app } = await appFor(t, upstream.endpoint)
  const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  t.equal(res.statusCode, 502)
  t.equal(res.headers.location, undefined)
  t.equal(upstream.requests.length, 1)
  t.equal(target.requests.length, 0)
})

t.test('only safe client headers are forwarded', async t => {
  const upstream = await startUpstream(t, (_req, res) => { res.end('ok') })
  const { app } = await appFor(t, upstream.endpoint)
  const res = await app.inject({
    method: 'GET',
    url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')),
    headers: { ...auth, cookie: 'session=1', range: 'bytes=0-1', 'if-none-match': '"e"', 'x-forwarded-for': '1.2.3.4', 'x-amz-security-token': 'injected' }
  })
  t.equal(res.statusCode, 200)
  const sent = upstream.requests[0].headers
  t.equal(sent.authorization, undefined, 'no Authorization')
  t.equal(sent.cookie, undefined, 'no Cookie')
  t.equal(sent['x-forwarded-for'], undefined)
  t.equal(sent['x-amz-security-token'], undefined)
  t.equal(sent.range, 'bytes=0-1')
  t.equal(sent['if-none-match'], '"e"')
})

t.test('upstream errors never reach the client: XML bodies and x-amz headers are dropped', async t => {
  const xml = '<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><StringToSign>AWS4-HMAC-SHA256 secret</StringToSign><AWSAccessKeyId>AKIDTEST</AWSAccessKeyId></Error>'
  const statuses: Array<[number, number]> = [[403, 410], [404, 404], [500, 502], [503, 502], [400, 502], [301, 502]]
  for (const [upstreamStatus, expected] of statuses) {
    const upstream = await startUpstream(t, (_req, res) => {
      res.writeHead(upstreamStatus, { 'content-type': 'application/xml', 'x-amz-request-id': 'REQ', 'x-amz-id-2': 'ID2' })
      res.end(xml)
    })
    const { app } = await appFor(t, upstream.endpoint)
    const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
    t.equal(res.statusCode, expected, `upstream ${upstreamStatus} → ${expected}`)
    t.notMatch(res.body, /StringToSign|AKIDTEST|<Error>|xml/, `upstream ${upstreamStatus}: no XML reflected`)
    t.same(Object.keys(res.headers).filter(name => name.startsWith('x-amz')), [], `upstream ${upstreamStatus}: no x-amz headers`)
  }
})

t.test('an error status with an endless body, and a HEAD on an endless body, are answered without crashing', async t => {
  let timers: NodeJS.Timeout[] = []
  t.teardown(() => { timers.forEach(clearInterval); timers = [] })
  const endless = (status: number) => (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/xml' })
    const timer = setInterval(() => { res.write('<Error>'.repeat(1000)) }, 5)
    timers.push(timer)
    res.on('close', () => { clearInterval(timer) })
  }
  for (const [status, expected] of [[500, 502], [403, 410], [404, 404]]) {
    const upstream = await startUpstream(t, endless(status))
    const { app } = await appFor(t, upstream.endpoint)
    const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
    t.equal(res.statusCode, expected, `upstream ${status} with an endless body → ${expected}`)
    await new Promise(resolve => setTimeout(resolve, 50))
    t.equal((await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })).statusCode, expected, 'still serving')
  }
  const upstream = await startUpstream(t, endless(200))
  const { app } = await appFor(t, upstream.endpoint)
  const head = await app.inject({ method: 'HEAD', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  t.equal(head.statusCode, 200, 'HEAD when the upstream ignores the range and streams forever')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal((await app.inject({ method: 'HEAD', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })).statusCode, 200)
})

t.test('a connection the upstream drops before answering is retried once, then 502', async t => {
  let requests = 0
  const flaky = await startUpstream(t, (req, res) => {
    requests++
    if (requests === 1) { req.socket.destroy(); return }
    res.end('second time lucky')
  })
  const { app } = await appFor(t, flaky.endpoint)
  const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  t.equal(res.statusCode, 200)
  t.equal(res.body, 'second time lucky')
  t.equal(requests, 2)

  const broken = await startUpstream(t, req => { req.socket.destroy() })
  const { app: brokenApp } = await appFor(t, broken.endpoint)
  const failed = await brokenApp.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(brokenApp, 'org-1/a.txt')), headers: auth })
  t.equal(failed.statusCode, 502)
  t.equal(broken.requests.length, 2, 'one retry, not more')
})

t.test('garbage instead of HTTP, or a refused connection, is a 502', async t => {
  const garbage = await startRawUpstream(t, socket => { socket.end('NOT HTTP AT ALL\r\n\r\n') })
  const { app } = await appFor(t, garbage.endpoint)
  const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  t.equal(res.statusCode, 502)
  t.equal(garbage.connections(), 1, 'the proxy did talk to it')

  await garbage.close()
  const refused = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  t.equal(refused.statusCode, 502)
})

t.test('an upstream that never answers is a 504 within the configured timeout', async t => {
  const upstream = await startUpstream(t, () => { /* never respond */ })
  const { app } = await appFor(t, upstream.endpoint)
  const started = Date.now()
  const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  const elapsed = Date.now() - started
  t.equal(res.statusCode, 504)
  t.equal(res.json().message, 'Storage upstream timed out')
  t.ok(elapsed < 5000, `answered after ${elapsed} ms (headers timeout 500 ms), not undici's 300 s`)
})

t.test('a reset mid-body aborts the client response instead of ending it cleanly', async t => {
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-length': String(1024 * 1024), 'content-type': 'application/octet-stream' })
    res.write(Buffer.alloc(64 * 1024, 1), () => { setTimeout(() => { res.socket?.destroy() }, 50) })
  })
  const { app, address } = await appFor(t, upstream.endpoint)
  const url = `${address}${proxyPath(await presignedUrlFor(app, 'org-1/a.txt'))}`
  const outcome = await new Promise<{ status?: number, received: number, error?: string, complete: boolean }>(resolve => {
    const req = httpRequest(url, { headers: auth }, res => {
      let received = 0
      res.on('data', (chunk: Buffer) => { received += chunk.length })
      res.on('end', () => { resolve({ status: res.statusCode, received, complete: res.complete }) })
      res.on('error', err => { resolve({ status: res.statusCode, received, error: err.message, complete: res.complete }) })
      res.on('aborted', () => { resolve({ status: res.statusCode, received, error: 'aborted', complete: false }) })
    })
    req.on('error', err => { resolve({ received: 0, error: err.message, complete: false }) })
    req.end()
  })
  t.equal(outcome.status, 200, 'headers had been sent')
  t.equal(outcome.complete, false, 'the response did not end cleanly')
  t.ok(outcome.received < 1024 * 1024, `truncated at ${outcome.received} bytes`)
})

t.test('a client that disconnects makes the proxy drop the upstream connection within 1 s', async t => {
  let timer: NodeJS.Timeout | undefined
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    timer = setInterval(() => { res.write(Buffer.alloc(1024, 2)) }, 50)
    res.on('close', () => { clearInterval(timer) })
  })
  t.teardown(() => { clearInterval(timer) })
  const { app, address } = await appFor(t, upstream.endpoint)
  const url = `${address}${proxyPath(await presignedUrlFor(app, 'org-1/a.txt'))}`
  const controller = new AbortController()
  const res = await fetch(url, { headers: auth, signal: controller.signal })
  t.equal(res.status, 200)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  await reader.read()
  const abortedAt = Date.now()
  controller.abort()
  await reader.read().catch(() => {})
  const deadline = abortedAt + 1000
  while (upstream.closedSockets.length === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  t.ok(upstream.closedSockets.length >= 1, 'upstream socket closed')
  if (upstream.closedSockets.length > 0) t.ok(upstream.closedSockets[0] - abortedAt <= 1000, `closed ${upstream.closedSockets[0] - abortedAt} ms after the client left`)
})

t.test('a client that leaves early is not an upstream failure, and its slot is freed', async t => {
  const stalls: Array<[string, (res: ServerResponse) => void]> = [
    ['before the upstream answers', () => {}],
    ['after the upstream headers, before the first body byte', res => { res.writeHead(200, { 'content-type': 'text/plain' }); res.flushHeaders() }]
  ]
  for (const [when, stall] of stalls) {
    const upstream = await startUpstream(t, (_req, res) => {
      // The first request stalls; later ones are answered.
      if (upstream.requests.length > 1) res.end('ok')
      else stall(res)
    })
    const lines: string[] = []
    const logger = { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } }
    const { app, address } = await appFor(t, upstream.endpoint, { logger, proxy: { headersTimeoutMs: 60_000, idleTimeoutMs: 60_000, maxConcurrentDownloads: 1 } })
    const url = `${address}${proxyPath(await presignedUrlFor(app, 'org-1/a.txt'))}`
    const controller = new AbortController()
    const download = fetch(url, { headers: auth, signal: controller.signal }).catch(() => undefined)
    const deadline = Date.now() + 5000
    while (upstream.requests.length === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    await new Promise(resolve => setTimeout(resolve, 50))
    t.equal((await fetch(url, { headers: auth })).status, 503, `${when}: the only slot is taken`)
    controller.abort()
    await download
    while (upstream.closedSockets.length === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    t.ok(upstream.closedSockets.length >= 1, `${when}: the upstream request was aborted`)
    const next = await fetch(url, { headers: auth })
    t.equal(next.status, 200, `${when}: the slot is free again`)
    t.equal(await next.text(), 'ok')
    // (The 503 above is logged as a failed request; nothing else may be.)
    const logged = lines.map(line => JSON.parse(line) as { msg: string, err?: { code?: string } }).filter(line => line.err?.code !== 'ARTOS_TOO_BUSY')
    t.same(logged.map(line => line.msg), [], `${when}: the abort is not logged at warn or above`)
  }
})

t.test('forged and foreign URLs are refused without any outbound request', async t => {
  const upstream = await startUpstream(t, (_req, res) => { res.end('should never be asked') })
  const { app } = await appFor(t, upstream.endpoint)
  const genuine = await presignedUrlFor(app, 'org-1/a.txt')
  const parsed = new URL(genuine)
  const port = parsed.port
  const withParam = (name: string, value: string): string => { const u = new URL(genuine); u.searchParams.set(name, value); return u.href }
  const cases: Array<[string, string, number]> = [
    ['tampered signature', withParam('X-Amz-Signature', 'f'.repeat(64)), 410],
    ['edited expiry', withParam('X-Amz-Expires', '7200'), 410],
    ['other access key id', withParam('X-Amz-Credential', parsed.searchParams.get('X-Amz-Credential')!.replace('AKIDTEST', 'AKIDOTHER')), 410],
    ['other region in scope', withParam('X-Amz-Credential', parsed.searchParams.get('X-Amz-Credential')!.replace('us-east-1', 'eu-west-1')), 410],
    ['signature of another key', genuine.replace('/org-1/a.txt', '/org-1/b.txt'), 410],
    ['foreign host', genuine.replace('127.0.0.1', 'evil.example'), 403],
    ['localhost alias', genuine.replace('127.0.0.1', 'localhost'), 403],
    ['numeric IP alias', genuine.replace('127.0.0.1', '2130706433'), 403],
    ['other port', genuine.replace(`:${port}`, `:${Number(port) + 1}`), 403],
    ['https instead of http', genuine.replace('http://', 'https://'), 403],
    ['userinfo', genuine.replace('http://', 'http://user:pass@'), 403],
    ['other bucket', genuine.replace('/bucket/', '/other-bucket/'), 403],
    ['dot segments', genuine.replace('/org-1/a.txt', '/org-1/../org-2/a.txt'), 403],
    ['encoded dot segments', genuine.replace('/org-1/a.txt', '/org-1/%2e%2e/org-2/a.txt'), 403]
  ]
  for (const [name, url, status] of cases) {
    const res = await app.inject({ method: 'GET', url: proxyPath(url), headers: auth })
    t.equal(res.statusCode, status, name)
  }
  t.equal(upstream.requests.length, 0, 'no request ever left the process')
})

t.test('connect time: a name that resolves to a link-local or metadata address is refused with a 502', async t => {
  const upstream = await startUpstream(t, (_req, res) => { res.end('from the double') })
  const port = new URL(upstream.endpoint).port
  // The endpoint is a name; what it resolves to is decided by this table, per test.
  let answers: Array<{ address: string, family: number }> = []
  const lookups: string[] = []
  const lookup = ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    lookups.push(hostname)
    if (options.all === true) callback(null, answers)
    else callback(null, answers[0].address, answers[0].family)
  }) as unknown as LookupFunction
  const lines: string[] = []
  const logger = { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } }
  const { app } = await appFor(t, `http://storage.test:${port}`, { logger, [kLookup]: lookup } as Partial<BuildAppOptions>)
  const download = async () => await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })

  answers = [{ address: '127.0.0.1', family: 4 }]
  const fine = await download()
  t.equal(fine.statusCode, 200, 'storage.test → 127.0.0.1: served')
  t.equal(fine.body, 'from the double')
  t.same(lookups, ['storage.test'], 'the name is resolved when connecting')

  // Not the metadata addresses themselves (test/address-policy.test.ts has those):
  // should this check ever regress, the test must not talk to a real metadata service.
  const refused: Array<Array<{ address: string, family: number }>> = [
    [{ address: '169.254.1.1', family: 4 }],
    [{ address: 'fd00:ec2::1', family: 6 }],
    [{ address: 'fe80::1%eth0', family: 6 }],
    [{ address: '::ffff:169.254.2.2', family: 6 }],
    [{ address: '127.0.0.1', family: 4 }, { address: '169.254.3.3', family: 4 }]
  ]
  for (const answer of refused) {
    answers = answer
    lines.length = 0
    // A fresh connection each time: the pooled one to 127.0.0.1 would be reused otherwise.
    await app.close()
    const { app: fresh } = await appFor(t, `http://storage.test:${port}`, { logger, [kLookup]: lookup } as Partial<BuildAppOptions>)
    const started = Date.now()
    const res = await fresh.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(fresh, 'org-1/a.txt')), headers: auth })
    const label = answer.map(entry => entry.address).join(' + ')
    t.equal(res.statusCode, 502, `storage.test → ${label}: 502`)
    t.equal(res.json().code, 'ARTOS_UPSTREAM_FAILED')
    t.notMatch(res.body, /169\.254|fd00|fe80|storage\.test/, 'the body names no address')
    t.ok(Date.now() - started < 1000, 'refused at once, no connect timeout')
    const warned = lines.map(line => JSON.parse(line) as { level: number, msg: string, addresses?: string[] })
    t.same(warned.map(line => line.level), [40], 'one line, at warn, nothing at error')
    t.match(warned[0]?.msg, /link-local or metadata/)
    t.ok(warned[0]?.addresses?.some(address => !address.startsWith('127.')), 'naming the refused address')
  }
  t.equal(upstream.requests.length, 1, 'only the first download reached the double')
})

t.test('connect time: a literal IP endpoint is not looked up', async t => {
  const upstream = await startUpstream(t, (_req, res) => { res.end('ok') })
  const lookups: string[] = []
  const lookup = ((hostname: string) => { lookups.push(hostname) }) as unknown as LookupFunction
  const { app } = await appFor(t, upstream.endpoint, { [kLookup]: lookup } as Partial<BuildAppOptions>)
  const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, 'org-1/a.txt')), headers: auth })
  t.equal(res.statusCode, 200)
  t.same(lookups, [], 'connected to the configured address as it is')
})

async function startRawUpstream (t: Test, onSocket: (socket: Socket) => void) {
  let connections = 0
  const server = createTcpServer(socket => {
    connections++
    socket.once('data', () => { onSocket(socket) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const close = async (): Promise<void> => { if (server.listening) await new Promise(resolve => server.close(resolve)) }
  t.teardown(close)
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections, close }
}
