/**
 * Every download has a deadline and a floor under its transfer rate, on both
 * sides: an upstream that drips (headers, then a byte now and then: no idle
 * timeout fires) and a client that stops reading (backpressure: the response's
 * buffers stay full) are cut off, logged at warn, and their slot is freed.
 * The upstream is a loopback double standing where the S3 endpoint is.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { buildAppForUpstream } from './helpers/app.js'
import type { ProxyOptions } from '../src/options.js'
import { judgeWindow } from '../src/transfer-guard.js'
import { orgToken } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'
import { metricsOf } from '../src/decorators.js'
import type { AuditEvent } from '../src/audit-event.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

type Behaviour = (res: ServerResponse, nth: number) => void

async function startUpstream (t: Test, behaviour: Behaviour) {
  const sockets = new Set<Socket>()
  /** Whether the connection that carried the first download has closed. */
  let firstClosed = false
  const timers = new Set<NodeJS.Timeout>()
  let requests = 0
  const server = createServer((req, res) => {
    const nth = ++requests
    if (nth === 1) req.socket.once('close', () => { firstClosed = true })
    behaviour(res, nth)
  })
  server.on('connection', socket => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const timer of timers) clearInterval(timer)
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  /** Repeats `fn` every `ms` until the response closes. */
  const every = (res: ServerResponse, ms: number, fn: () => void): void => {
    const timer = setInterval(fn, ms)
    timers.add(timer)
    res.on('close', () => { clearInterval(timer); timers.delete(timer) })
  }
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, firstClosed: () => firstClosed, every }
}

async function appFor (t: Test, endpoint: string, proxy: ProxyOptions) {
  const lines: string[] = []
  const dir = await mkdtemp(join(tmpdir(), 'artos-cut-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const auditFile = join(dir, 'audit.jsonl')
  const app = await buildAppForUpstream(t, endpoint, {
    logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } },
    proxy,
    audit: { file: auditFile },
    metrics: true
  })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `${address}${proxyPath(await presignedUrlFor(app, 'org-1/big.bin'))}`
  const logged = () => lines.map(line => JSON.parse(line) as { level: number, msg: string, reason?: string })
  /** How the audit trail recorded the downloads, in order. */
  const downloads = async () => (await readFile(auditFile, 'utf8')).trim().split('\n').map(line => JSON.parse(line) as AuditEvent)
    .filter(event => event.operation === 'proxy.get').map(event => [event.outcome, event.code, event.status])
  /** artos_upstream_errors_total by kind. */
  const upstreamErrors = async () => {
    const metric = await metricsOf(app).registry.getSingleMetric('artos_upstream_errors_total')?.get()
    return Object.fromEntries((metric?.values ?? []).map(({ labels, value }) => [String(labels.kind), value]))
  }
  return { url, logged, downloads, upstreamErrors }
}

interface Outcome { status?: number, received: number, complete: boolean, afterMs: number }

/** A download over a real socket, read to its end (clean or not). */
async function download (url: string): Promise<Outcome> {
  const started = Date.now()
  const res = await responseTo(url).catch(() => undefined)
  if (res === undefined) return { received: 0, complete: false, afterMs: Date.now() - started }
  return { status: res.statusCode, ...await readToEnd(res), afterMs: Date.now() - started }
}

async function responseTo (url: string): Promise<IncomingMessage> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { authorization: `Bearer ${orgToken('org-1')}` } }, resolve)
    req.on('error', reject)
    req.end()
  })
}

async function readToEnd (res: IncomingMessage): Promise<{ received: number, complete: boolean }> {
  return await new Promise(resolve => {
    let received = 0
    const done = (complete: boolean) => { resolve({ received, complete }) }
    res.on('data', (chunk: Buffer) => { received += chunk.length })
    res.on('end', () => { done(res.complete) })
    res.on('error', () => { done(false) })
    res.socket.on('close', () => { done(res.complete) })
  })
}

async function waitFor (condition: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms
  while (!condition() && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 20))
}

const octets = { 'content-type': 'application/octet-stream' }

/** Download events are appended as responses end: let the last one land. */
const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 200)) }

t.test('a dripping upstream is cut off at the deadline, and its slot is freed', async t => {
  // Two shapes of drip: a first byte at once (the client has headers), or none before the next one.
  for (const firstByteAtOnce of [true, false]) {
    const upstream = await startUpstream(t, (res, nth) => {
      if (nth > 1) { res.end('next download'); return }
      res.writeHead(200, octets)
      if (firstByteAtOnce) res.write('x')
      else res.flushHeaders()
      upstream.every(res, 10_000, () => res.write('x'))
    })
    // The floor is off: only the deadline can end this. Idle timeout as in production (30 s).
    const { url, logged, downloads, upstreamErrors } = await appFor(t, upstream.endpoint, { downloadDeadlineMs: 2000, minBytesPerSecond: 0, maxConcurrentDownloads: 1 })
    const cut = await download(url)
    const shape = firstByteAtOnce ? 'first byte at once' : 'headers only'
    t.equal(cut.complete, false, `${shape}: the client's response did not end cleanly`)
    t.ok(cut.afterMs >= 1900 && cut.afterMs < 10_000, `${shape}: closed after ${cut.afterMs} ms (deadline 2000 ms)`)
    await waitFor(upstream.firstClosed)
    t.ok(upstream.firstClosed(), `${shape}: the upstream connection was dropped`)
    const warnings = logged().filter(line => line.msg === 'download cut off')
    t.same(warnings.map(line => [line.level, line.reason]), [[40, 'deadline']], `${shape}: one warning, with the reason`)
    t.same(logged().filter(line => line.level >= 50), [], `${shape}: nothing at error`)
    const next = await download(url)
    t.equal(next.status, 200, `${shape}: the only slot is free again`)
    t.equal(next.received, 'next download'.length)
    await settle()
    t.same(await downloads(), [['failed', 'ARTOS_UPSTREAM_TIMEOUT', firstByteAtOnce ? 200 : 504], ['ok', undefined, 200]], `${shape}: the audit trail blames the upstream, not the client`)
    t.same(await upstreamErrors(), { timeout: 1 }, `${shape}: counted once as an upstream timeout`)
  }
})

t.test('a dripping upstream is cut off under the transfer-rate floor, long before the deadline', async t => {
  const upstream = await startUpstream(t, (res, nth) => {
    if (nth > 1) { res.end('next download'); return }
    res.writeHead(200, octets)
    res.write('x')
    upstream.every(res, 100, () => res.write('x'))
  })
  const { url, logged, downloads, upstreamErrors } = await appFor(t, upstream.endpoint, { minBytesPerSecond: 64 * 1024, transferWindowMs: 500, maxConcurrentDownloads: 1 })
  const cut = await download(url)
  t.equal(cut.status, 200)
  t.equal(cut.complete, false, 'truncated')
  t.ok(cut.afterMs < 10_000, `closed after ${cut.afterMs} ms (window 500 ms)`)
  await waitFor(upstream.firstClosed)
  t.ok(upstream.firstClosed(), 'the upstream connection was dropped')
  t.same(logged().filter(line => line.msg === 'download cut off').map(line => [line.level, line.reason]), [[40, 'upstream-too-slow']])
  t.equal((await download(url)).status, 200, 'the slot is free again')
  await settle()
  t.same(await downloads(), [['failed', 'ARTOS_UPSTREAM_TIMEOUT', 200], ['ok', undefined, 200]], 'the audit trail blames the upstream')
  t.same(await upstreamErrors(), { timeout: 1 }, 'counted once as an upstream timeout')
})

t.test('a client that stops reading is cut off under the floor, and the upstream is dropped', async t => {
  const upstream = await startUpstream(t, (res, nth) => {
    if (nth > 1) { res.end('next download'); return }
    res.writeHead(200, octets)
    // Up to 12.8 MB/s, for ever, whenever the proxy takes more: far above the floor,
    // yet idle enough not to saturate this process (the app would shed load).
    const chunk = Buffer.alloc(64 * 1024, 1)
    upstream.every(res, 5, () => { if (!res.writableNeedDrain) res.write(chunk) })
  })
  const { url, logged, downloads, upstreamErrors } = await appFor(t, upstream.endpoint, { minBytesPerSecond: 64 * 1024, transferWindowMs: 500, maxConcurrentDownloads: 1 })
  const started = Date.now()
  const stalled = await responseTo(url)
  t.equal(stalled.statusCode, 200)
  stalled.pause()
  // A client that does not read cannot notice anything: watch the proxy's side.
  await waitFor(upstream.firstClosed, 10_000)
  const droppedAfter = Date.now() - started
  t.ok(upstream.firstClosed(), `the upstream connection was dropped after ${droppedAfter} ms (window 500 ms)`)
  t.same(logged().filter(line => line.msg === 'download cut off').map(line => [line.level, line.reason]), [[40, 'client-too-slow']])
  t.equal((await download(url)).status, 200, 'the slot is free again')
  // Reading again, the client finds its response cut short.
  stalled.resume()
  const rest = await readToEnd(stalled)
  t.equal(rest.complete, false, `the client's response did not end cleanly (${rest.received} bytes were still buffered for it)`)
  await settle()
  t.same(await downloads(), [['aborted', undefined, 200], ['ok', undefined, 200]], 'the audit trail records the slow client as one that left')
  t.same(await upstreamErrors(), {}, 'no upstream error counted')
})

t.test('a download that keeps above the floor is not cut off', async t => {
  const chunk = Buffer.alloc(64 * 1024, 3)
  const chunks = 30
  const upstream = await startUpstream(t, res => {
    res.writeHead(200, { ...octets, 'content-length': String(chunk.length * chunks) })
    let sent = 0
    // ~1.3 MiB/s for ~1.5 s: three windows, twenty times the floor.
    upstream.every(res, 50, () => { if (sent++ < chunks) res.write(chunk); if (sent === chunks) res.end() })
  })
  const { url, logged } = await appFor(t, upstream.endpoint, { minBytesPerSecond: 64 * 1024, transferWindowMs: 500, downloadDeadlineMs: 60_000 })
  const fine = await download(url)
  t.equal(fine.status, 200)
  t.equal(fine.complete, true)
  t.equal(fine.received, chunk.length * chunks)
  t.same(logged(), [], 'nothing logged')
})

t.test('judgeWindow: too slow exactly below the floor; the side that held it up is blamed', async t => {
  t.equal(judgeWindow(65536 * 30, 30_000, 65536, true), undefined, 'exactly the floor is enough')
  t.equal(judgeWindow(65536 * 30 - 1, 30_000, 65536, true), 'client')
  t.equal(judgeWindow(65536 * 30 - 1, 30_000, 65536, false), 'upstream')
  t.equal(judgeWindow(0, 30_000, 0, false), undefined, 'a floor of 0 never cuts')
  fc.assert(fc.property(fc.nat(), fc.integer({ min: 1, max: 600_000 }), fc.nat({ max: 1024 ** 3 }), fc.boolean(), (bytes, ms, floor, backedUp) => {
    const verdict = judgeWindow(bytes, ms, floor, backedUp)
    const tooSlow = bytes / (ms / 1000) < floor
    return tooSlow ? verdict === (backedUp ? 'client' : 'upstream') : verdict === undefined
  }))
})
