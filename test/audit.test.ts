/**
 * The audit trail over the real app (plugins/audit.ts): one event per presign,
 * batch item, download and refusal, with who / what / when and how it ended,
 * the same in the log stream and the file, and never a URL, signature or token.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { startTestS3, type TestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, signToken, TEST_SECRET } from './helpers/tokens.js'
import { proxyPath } from './helpers/presign.js'
import { artosFiles, type BuildAppOptions } from '../src/app.js'
import { escapeLineSeparators, type AuditEvent } from '../src/audit-event.js'

const BASE = 'https://files.example.com'

/**
 * buildApp sheds load (503 ARTOS_OVERLOADED) while the event loop is saturated,
 * as it is for a moment after a cold start on a busy machine. Such answers are
 * not what these tests are about: they are sent again, and their events left out.
 */
async function steadyInject (app: FastifyInstance, options: InjectOptions): Promise<LightMyRequestResponse> {
  for (let attempt = 1; ; attempt++) {
    const res = await app.inject(options)
    if (res.statusCode !== 503 || !res.body.includes('ARTOS_OVERLOADED') || attempt === 100) return res
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

const shed = (event: AuditEvent): boolean => event.code === 'ARTOS_OVERLOADED'

interface Audited {
  app: FastifyInstance
  file: string
  /** Every credential a request of this test carried or got back. */
  secrets: Set<string>
  /** Audit events of the file, once the log stream has exactly the same ones. */
  events: (t: Test) => Promise<AuditEvent[]>
  /** Every audit line of the file and of the log stream, as written. */
  lines: () => Promise<string[]>
  logLines: string[]
}

async function audited (t: Test, s3: TestS3, overrides: Partial<BuildAppOptions> = {}): Promise<Audited> {
  const dir = await mkdtemp(join(tmpdir(), 'artos-audit-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'audit.jsonl')
  const logLines: string[] = []
  const app = await buildTestApp(t, s3, {
    logger: { level: 'info', stream: { write: (line: string) => { logLines.push(line) } } },
    audit: { file },
    ...overrides
  })
  const fileLines = async (): Promise<string[]> => (await readFile(file, 'utf8')).split(/(?<=\n)/).filter(line => line !== '')
  const logged = (): string[] => logLines.filter(line => (JSON.parse(line) as { audit?: unknown }).audit === true)
  return {
    app,
    file,
    secrets: new Set(),
    logLines,
    async lines () { return [...await fileLines(), ...logged()] },
    async events (t) {
      // Download events are written as responses end: let the last one land.
      await new Promise(resolve => setImmediate(resolve))
      const fromFile = (await fileLines()).map(line => JSON.parse(line) as AuditEvent)
      t.same(logged().map(line => (JSON.parse(line) as { event: AuditEvent }).event), fromFile, 'the log stream has the same events as the file')
      return fromFile.filter(event => !shed(event))
    }
  }
}

function auth (audit: Audited, org = 'org-1', claims: Record<string, unknown> = {}): { authorization: string } {
  const token = Object.keys(claims).length === 0 ? orgToken(org) : signToken({ sub: 'user-1', org_id: org, ...claims })
  audit.secrets.add(token)
  audit.secrets.add(token.split('.')[2])
  return { authorization: `Bearer ${token}` }
}

async function presign (audit: Audited, payload: Record<string, unknown>, org = 'org-1'): Promise<{ url: string, expiresAt: string }> {
  const res = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-url', headers: auth(audit, org), payload })
  if (res.statusCode !== 200) throw new Error(`presign failed: ${res.statusCode}`)
  const body = res.json<{ url: string, expiresAt: string, proxyUrl?: string }>()
  remember(audit, body.url)
  if (body.proxyUrl !== undefined) audit.secrets.add(body.proxyUrl)
  return body
}

function remember (audit: Audited, url: string): void {
  audit.secrets.add(url)
  audit.secrets.add(encodeURIComponent(url))
  const params = new URL(url).searchParams
  for (const name of ['X-Amz-Signature', 'X-Amz-Credential']) audit.secrets.add(params.get(name) as string)
}

/** No event, in the file or the log stream, carries a URL, a signature or a token. */
async function assertNoSecrets (t: Test, audit: Audited): Promise<void> {
  const lines = await audit.lines()
  t.ok(lines.length > 0)
  for (const line of lines) {
    for (const secret of audit.secrets) t.notOk(line.includes(secret), 'no credential in an audit line')
    t.notMatch(line, /X-Amz-|presigned_url|https?:|eyJ|Bearer /, 'nothing shaped like a URL, signature or token')
  }
  t.ok(audit.secrets.size > 0, `${audit.secrets.size} credentials looked for`)
}

function pick (events: AuditEvent[], requestId: string): AuditEvent[] {
  return events.filter(event => event.requestId === requestId)
}

t.test('presigns: granted, refused by check, schema, token and media type, one event each', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3)
  const ids: Record<string, string> = {}
  const post = async (name: string, payload: unknown, headers: Record<string, string> = auth(audit), status = 200): Promise<string> => {
    const res = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-url', headers, payload: payload as string })
    t.equal(res.statusCode, status, res.statusCode === status ? name : `${name}: ${res.body}`)
    ids[name] = res.headers['x-request-id'] as string
    if (status === 200) remember(audit, res.json<{ url: string }>().url)
    return res.body
  }
  const granted = JSON.parse(await post('ok', { key: 'org-1/a.pdf', versionId: 'v1', filename: 'A.pdf' })) as { expiresAt: string }
  await post('forbidden', { key: 'org-2/a.pdf' }, auth(audit), 403)
  await post('invalid key', { key: 'org-1/../a.pdf' }, auth(audit), 400)
  await post('invalid body', { key: 'org-1/a.pdf', extra: 1 }, auth(audit), 400)
  await post('no token', { key: 'org-1/a.pdf' }, {}, 401)
  await post('no organization claim', { key: 'org-1/a.pdf' }, auth(audit, 'org-1', { org_id: undefined, tenant: 'x' }), 400)
  await post('not json', 'key=org-1/a.pdf', { ...auth(audit), 'content-type': 'text/plain' }, 415)

  const events = await audit.events(t)
  t.equal(events.length, 7, 'one event per request')
  const [ok] = pick(events, ids.ok)
  t.match(ok, { operation: 'presign', method: 'POST', outcome: 'ok', status: 200, subject: 'user-1', organization: 'org-1', ip: '127.0.0.1', key: 'org-1/a.pdf', versionId: 'v1', expiresAt: granted.expiresAt })
  t.ok(Math.abs(Date.parse(ok.time) - Date.now()) < 60_000, 'time is now')
  t.match(pick(events, ids.forbidden)[0], { outcome: 'forbidden', status: 403, code: 'ARTOS_FORBIDDEN_KEY', key: 'org-2/a.pdf', subject: 'user-1', organization: 'org-1' })
  t.match(pick(events, ids['invalid key'])[0], { outcome: 'invalid', status: 400, code: 'ARTOS_INVALID_KEY', key: 'org-1/../a.pdf' })
  t.match(pick(events, ids['invalid body'])[0], { outcome: 'invalid', status: 400, key: 'org-1/a.pdf' })
  const [noToken] = pick(events, ids['no token'])
  t.match(noToken, { outcome: 'unauthenticated', status: 401, code: 'ARTOS_INVALID_TOKEN' })
  t.notOk('subject' in noToken || 'organization' in noToken || 'key' in noToken, 'nothing known, nothing claimed')
  const [noOrg] = pick(events, ids['no organization claim'])
  t.match(noOrg, { outcome: 'unauthenticated', status: 400, code: 'ARTOS_AUTHENTICATION_FAILED' })
  t.notOk('organization' in noOrg || 'subject' in noOrg, 'a caller is established only with an organization')
  t.match(pick(events, ids['not json'])[0], { outcome: 'invalid', status: 415 })
  for (const event of events.filter(e => e.outcome !== 'ok')) t.notOk('expiresAt' in event, `${event.outcome}: no expiry`)
  await assertNoSecrets(t, audit)
})

t.test('batch: one event per item with its own outcome and position', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3)
  const res = await steadyInject(audit.app, {
    method: 'POST',
    url: '/generate-presigned-urls',
    headers: auth(audit),
    payload: { items: [{ key: 'org-1/a.pdf' }, { key: 'org-2/b.pdf' }, { key: 'org-1/c.pdf', versionId: 'v3' }, { key: 'org-1//d' }] }
  })
  t.equal(res.statusCode, 200)
  const results = res.json<{ results: Array<{ url?: string, expiresAt?: string }> }>().results
  for (const result of results) if (result.url !== undefined) remember(audit, result.url)
  const events = await audit.events(t)
  t.same(events.map(e => [e.operation, e.item, e.key, e.outcome, e.status, e.code, e.versionId, e.expiresAt]), [
    ['presign.batch', 0, 'org-1/a.pdf', 'ok', 200, undefined, undefined, results[0].expiresAt],
    ['presign.batch', 1, 'org-2/b.pdf', 'forbidden', 403, 'ARTOS_FORBIDDEN_KEY', undefined, undefined],
    ['presign.batch', 2, 'org-1/c.pdf', 'ok', 200, undefined, 'v3', results[2].expiresAt],
    ['presign.batch', 3, 'org-1//d', 'invalid', 400, 'ARTOS_INVALID_KEY', undefined, undefined]
  ])
  t.ok(events.every(e => e.requestId === res.headers['x-request-id'] && e.subject === 'user-1' && e.organization === 'org-1'))
  await assertNoSecrets(t, audit)
})

t.test('bearer proxy: downloads with bytes and duration, every refusal with what it asked for', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3)
  const body = randomBytes(100_000)
  await s3.put('org-1/a.bin', body)
  await s3.put('org-2/b.bin', 'b')
  const own = (await presign(audit, { key: 'org-1/a.bin' })).url
  const versioned = (await presign(audit, { key: 'org-1/a.bin', versionId: 'v7' })).url
  const otherOrgs = (await presign(audit, { key: 'org-2/b.bin' }, 'org-2')).url
  const missing = (await presign(audit, { key: 'org-1/missing.bin' })).url
  const tampered = own.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === 'a' ? 'b' : 'a'}`)
  remember(audit, tampered)
  const foreign = own.replace('127.0.0.1', 'localhost')
  remember(audit, foreign)
  const presigns = (await audit.events(t)).length

  const ids: Record<string, string> = {}
  const get = async (name: string, url: string, status: number | undefined, headers: Record<string, string> = auth(audit), method: 'GET' | 'HEAD' = 'GET'): Promise<void> => {
    const res = await steadyInject(audit.app, { method, url, headers })
    if (status !== undefined) t.equal(res.statusCode, status, name)
    ids[name] = res.headers['x-request-id'] as string
  }
  await get('ok', proxyPath(own), 200)
  await get('range', proxyPath(own), 206, { ...auth(audit), range: 'bytes=10-19' })
  await get('head', proxyPath(own), 200, auth(audit), 'HEAD')
  // s3rver keeps no versions: whatever it answers, the event names the version asked for.
  await get('version', proxyPath(versioned), undefined)
  await get('another organization', proxyPath(otherOrgs), 403)
  await get('foreign host', proxyPath(foreign), 403)
  await get('tampered', proxyPath(tampered), 410)
  await get('missing', proxyPath(missing), 404)
  await get('no parameter', '/api/v1/proxy/file', 422)
  await get('no token', proxyPath(own), 401, {})

  const events = (await audit.events(t)).slice(presigns)
  const one = (name: string): AuditEvent => {
    const found = pick(events, ids[name])
    t.equal(found.length, 1, `${name}: one event`)
    return found[0]
  }
  t.match(one('ok'), { operation: 'proxy.get', method: 'GET', outcome: 'ok', status: 200, subject: 'user-1', organization: 'org-1', key: 'org-1/a.bin', bytes: body.length })
  t.type(one('ok').durationMs, 'number')
  t.match(one('range'), { outcome: 'ok', status: 206, bytes: 10 })
  t.match(one('head'), { operation: 'proxy.head', method: 'HEAD', outcome: 'ok', bytes: 0 })
  t.match(one('version'), { key: 'org-1/a.bin', versionId: 'v7' })
  t.match(one('another organization'), { outcome: 'forbidden', status: 403, code: 'ARTOS_FORBIDDEN_URL', key: 'org-2/b.bin', organization: 'org-1', bytes: 0 })
  t.notOk('key' in one('foreign host'), 'a URL of another endpoint names no object of ours')
  t.match(one('foreign host'), { outcome: 'forbidden', status: 403 })
  t.match(one('tampered'), { outcome: 'expired', status: 410, code: 'ARTOS_EXPIRED_URL', key: 'org-1/a.bin' })
  t.match(one('missing'), { outcome: 'not-found', status: 404, code: 'ARTOS_FILE_NOT_FOUND', key: 'org-1/missing.bin' })
  t.match(one('no parameter'), { outcome: 'invalid', status: 422, code: 'ARTOS_INVALID_PRESIGNED_URL' })
  t.notOk('key' in one('no parameter'))
  t.match(one('no token'), { outcome: 'unauthenticated', status: 401 })
  t.notOk('key' in one('no token') || 'subject' in one('no token'), 'the URL is not looked at before the token')
  t.equal(events.length, 10, 'one event per download request')
  await assertNoSecrets(t, audit)
})

t.test('rate limits: 429s are recorded, with the key when it is known', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3, { rateLimit: { presignPerMinute: 2, proxyPerMinute: 1 } })
  await s3.put('org-1/a.txt', 'a')
  const { url } = await presign(audit, { key: 'org-1/a.txt' })
  await presign(audit, { key: 'org-1/b.txt' })
  const single = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-url', headers: auth(audit), payload: { key: 'org-1/c.txt' } })
  const batch = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-urls', headers: auth(audit), payload: { items: [{ key: 'org-1/d' }, { key: 'org-1/e' }, { key: 'org-1/f' }] } })
  t.equal((await steadyInject(audit.app, { url: proxyPath(url), headers: auth(audit) })).statusCode, 200)
  const download = await steadyInject(audit.app, { url: proxyPath(url), headers: auth(audit) })
  t.same([single.statusCode, batch.statusCode, download.statusCode], [429, 429, 429])
  const events = await audit.events(t)
  t.match(pick(events, single.headers['x-request-id'] as string), [{ operation: 'presign', outcome: 'rate-limited', status: 429, code: 'ARTOS_RATE_LIMITED', key: 'org-1/c.txt', subject: 'user-1', organization: 'org-1' }])
  const refusedBatch = pick(events, batch.headers['x-request-id'] as string)
  t.equal(refusedBatch.length, 1, 'a batch refused whole is one event…')
  t.match(refusedBatch[0], { operation: 'presign.batch', outcome: 'rate-limited', items: 3 })
  t.notOk('key' in refusedBatch[0], '…naming none of the keys it was not given')
  const [limited] = pick(events, download.headers['x-request-id'] as string)
  t.match(limited, { operation: 'proxy.get', outcome: 'rate-limited', status: 429, organization: 'org-1', bytes: 0 })
  t.notOk('key' in limited, 'the bearer proxy reads the URL only after the budget')
  await assertNoSecrets(t, audit)
})

t.test('plain links: no subject, the key\'s organization, refusals and expiry', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3, { proxyLinks: { publicBaseUrl: BASE }, rateLimit: { presignPerMinute: 100, proxyPerMinute: 2 } })
  // URLs that live one second, from another instance with the same bucket and key (no wait bounds the main app's URLs).
  const shortLived = await buildTestApp(t, s3, { expiresIn: 1 })
  const body = randomBytes(50_000)
  await s3.put('org-1/doc.pdf', body, 'application/pdf')
  const res = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-url', headers: auth(audit), payload: { key: 'org-1/doc.pdf' } })
  const { url, proxyUrl } = res.json<{ url: string, proxyUrl: string }>()
  remember(audit, url)
  audit.secrets.add(proxyUrl)
  const path = proxyUrl.slice(BASE.length)
  const ids: string[] = []
  const send = async (method: 'GET' | 'HEAD', target: string, status: number): Promise<void> => {
    const reply = await steadyInject(audit.app, { method, url: target })
    t.equal(reply.statusCode, status, reply.statusCode === status ? `${method} ${status}` : `${method} ${status}: ${reply.body}`)
    ids.push(reply.headers['x-request-id'] as string)
  }
  await send('GET', path, 200)
  await send('HEAD', path, 200)
  // Refused before its budget is counted: the third download of a budget of two is the 429.
  await send('GET', '/api/v1/proxy/link?presigned_url=nope', 422)
  await send('GET', path, 429)
  const expiring = (await steadyInject(shortLived, { method: 'POST', url: '/generate-presigned-url', headers: auth(audit), payload: { key: 'org-1/doc.pdf' } })).json<{ url: string }>().url
  remember(audit, expiring)
  await new Promise(resolve => setTimeout(resolve, 1100))
  await send('GET', `/api/v1/proxy/link?presigned_url=${encodeURIComponent(expiring)}`, 410)
  const events = await audit.events(t)
  const [got, head, invalid, limited, expired] = ids.map(id => pick(events, id)[0])
  t.match(got, { operation: 'proxy.link', method: 'GET', outcome: 'ok', status: 200, organization: 'org-1', key: 'org-1/doc.pdf', bytes: body.length })
  t.match(head, { operation: 'proxy.link', method: 'HEAD', outcome: 'ok', bytes: 0 })
  t.match(invalid, { operation: 'proxy.link', outcome: 'invalid', status: 422 })
  t.notOk('organization' in invalid || 'key' in invalid)
  t.match(limited, { outcome: 'rate-limited', key: 'org-1/doc.pdf', organization: 'org-1' }, 'a link\'s key is known before its budget')
  t.match(expired, { outcome: 'expired', status: 410, key: 'org-1/doc.pdf' })
  for (const event of [got, head, invalid, limited, expired]) t.notOk('subject' in event, 'a link carries no token, so no subject')
  await assertNoSecrets(t, audit)
})

/** A GET through the real HTTP server that the client closes after its first chunk (sent again while load is shed). */
async function abortedDownload (address: string, path: string, headers: Record<string, string>): Promise<{ received: number, requestId: string }> {
  for (;;) {
    const outcome = await new Promise<{ received: number, requestId: string } | undefined>((resolve, reject) => {
      const req = httpRequest(`${address}${path}`, { headers }, res => {
        if (res.statusCode === 503) {
          res.resume()
          res.on('end', () => { resolve(undefined) })
          return
        }
        res.once('data', (chunk: Buffer) => {
          req.destroy()
          resolve({ received: chunk.length, requestId: res.headers['x-request-id'] as string })
        })
      })
      req.on('error', () => {})
      req.on('close', () => { reject(new Error('closed before any data')) })
      req.end()
    })
    if (outcome !== undefined) return outcome
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function eventually (read: () => Promise<AuditEvent[]>, found: (events: AuditEvent[]) => boolean): Promise<AuditEvent[]> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const events = await read()
    if (found(events) || Date.now() > deadline) return events
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

t.test('a download the client abandons is recorded as aborted, with the bytes it was sent', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3)
  const size = 32 * 1024 * 1024
  await s3.put('org-1/big.bin', randomBytes(size))
  const { url } = await presign(audit, { key: 'org-1/big.bin' })
  const address = await audit.app.listen({ host: '127.0.0.1', port: 0 })
  const { received, requestId } = await abortedDownload(address, proxyPath(url), auth(audit))
  const events = await eventually(async () => (await readFile(audit.file, 'utf8')).trim().split('\n').map(line => JSON.parse(line) as AuditEvent), events => pick(events, requestId).length > 0)
  const [aborted] = pick(events, requestId)
  t.match(aborted, { operation: 'proxy.get', outcome: 'aborted', status: 200, key: 'org-1/big.bin', subject: 'user-1' })
  t.ok(aborted.bytes !== undefined && aborted.bytes >= received && aborted.bytes < size, `partial: ${String(aborted.bytes)} bytes sent, ${received} received, of ${size}`)
  t.equal(pick(events, requestId).length, 1, 'one event, not one per hook')
})

t.test('a storage upstream that fails is recorded as failed, before or after the headers', async t => {
  // A test double where the S3 endpoint is (a real S3 cannot reset on demand): 64 KiB, then a reset; or no answer at all.
  const sockets = new Set<Socket>()
  const upstream = createServer((req, res) => {
    if (req.url?.includes('/org-1/stall') === true) return
    res.writeHead(200, { 'content-length': String(1024 * 1024), 'content-type': 'application/octet-stream' })
    res.write(Buffer.alloc(64 * 1024, 1), () => { setTimeout(() => { res.socket?.destroy() }, 50) })
  })
  upstream.on('connection', socket => { sockets.add(socket) })
  await new Promise<void>(resolve => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => upstream.close(resolve))
  })
  const dir = await mkdtemp(join(tmpdir(), 'artos-audit-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'audit.jsonl')
  const app = await buildTestApp(t, {
    endpoint: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, region: 'us-east-1', bucket: 'bucket', forcePathStyle: true,
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' }
  } as unknown as TestS3, { audit: { file }, proxy: { headersTimeoutMs: 300, idleTimeoutMs: 1000 } })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const headers = { authorization: `Bearer ${orgToken('org-1')}` }
  const presigned = async (key: string): Promise<string> => (await steadyInject(app, { method: 'POST', url: '/generate-presigned-url', headers, payload: { key } })).json<{ url: string }>().url

  const resetUrl = `${address}${proxyPath(await presigned('org-1/reset'))}`
  let reset: { requestId: string, received: number, status?: number }
  do {
    reset = await new Promise(resolve => {
      httpRequest(resetUrl, { headers }, res => {
        let received = 0
        res.on('data', (chunk: Buffer) => { received += chunk.length })
        res.on('close', () => { resolve({ requestId: res.headers['x-request-id'] as string, received, status: res.statusCode }) })
        res.on('error', () => {})
      }).end()
    })
  } while (reset.status === 503)
  const stalled = await steadyInject(app, { url: proxyPath(await presigned('org-1/stall')), headers })
  t.equal(stalled.statusCode, 504)
  const read = async (): Promise<AuditEvent[]> => (await readFile(file, 'utf8')).trim().split('\n').map(line => JSON.parse(line) as AuditEvent)
  const events = await eventually(read, events => pick(events, reset.requestId).length > 0)
  const [cut] = pick(events, reset.requestId)
  t.match(cut, { operation: 'proxy.get', outcome: 'failed', status: 200, code: 'ARTOS_UPSTREAM_FAILED', key: 'org-1/reset' }, 'cut short by the upstream: failed, not aborted')
  t.ok(cut.bytes !== undefined && cut.bytes >= reset.received && cut.bytes < 1024 * 1024, `partial: ${String(cut.bytes)} bytes sent, ${reset.received} received`)
  t.match(pick(events, stalled.headers['x-request-id'] as string), [{ outcome: 'failed', status: 504, code: 'ARTOS_UPSTREAM_TIMEOUT', key: 'org-1/stall', bytes: 0 }])
})

t.test('keys with newlines, quotes, line separators and JSON fragments cannot forge or split an event', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3)
  const forged = '{"audit":true,"event":{"outcome":"ok","key":"org-1/secret.pdf"}}'
  const valid = [`org-1/quote"d.txt`, 'org-1/line\u2028sep.txt', 'org-1/para\u2029graph.txt', `org-1/${forged}.txt`]
  const invalid = [`org-1/a\n${forged}`, `org-1/a\r\n${forged}`, 'org-1/nel\u0085.txt', `org-1/"}\n{"outcome":"ok`, 'org-1/back\\slash']
  const sent: string[] = []
  for (const key of valid) await s3.put(key, 'x')
  for (const key of [...valid, ...invalid]) {
    const res = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-url', headers: auth(audit), payload: { key } })
    // (Names escaped too: a raw U+2028 splits a TAP line as well.)
    const name = escapeLineSeparators(JSON.stringify(key))
    t.equal(res.statusCode, valid.includes(key) ? 200 : 400, name)
    sent.push(key)
    if (res.statusCode === 200) {
      const { url } = res.json<{ url: string }>()
      remember(audit, url)
      const download = await steadyInject(audit.app, { url: proxyPath(url), headers: auth(audit) })
      t.equal(download.statusCode, 200, `download ${name}`)
      sent.push(key)
      // The same URL with a newline spliced into its path: refused, and its key recorded as decoded.
      const spliced = url.replace('/org-1/', `/org-1/${encodeURIComponent(`\n${forged}`)}`)
      remember(audit, spliced)
      t.equal((await steadyInject(audit.app, { url: proxyPath(spliced), headers: auth(audit) })).statusCode, 403, `spliced ${name}`)
      sent.push(`org-1/\n${forged}${key.slice('org-1/'.length)}`)
    }
  }
  const batch = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-urls', headers: auth(audit), payload: { items: [...valid, ...invalid].map(key => ({ key })) } })
  t.equal(batch.statusCode, 200)
  for (const result of batch.json<{ results: Array<{ url?: string }> }>().results) if (result.url !== undefined) remember(audit, result.url)
  sent.push(...valid, ...invalid)

  const fileText = await readFile(audit.file, 'utf8')
  const lines = fileText.split('\n').slice(0, -1).filter(line => !shed(JSON.parse(line) as AuditEvent))
  t.equal(lines.length, sent.length, 'exactly one line per event, whatever the keys')
  // Booleans, not t.notMatch: a failure report quoting a raw U+2028 would split tap's own output.
  t.notOk(/[\r\u0085\u2028\u2029]/.test(fileText), 'no character any line splitter breaks on')
  const events = lines.map(line => JSON.parse(line) as AuditEvent)
  t.same(events.map(event => event.key), sent, 'each key parses back exactly as sent')
  t.notOk(events.some(event => 'event' in event || 'audit' in event), 'no field smuggled in')
  t.same(await audit.events(t), events)
  for (const line of audit.logLines) {
    t.notOk(/[\n\r\u0085\u2028\u2029]/.test(line.slice(0, -1)), `log lines are single lines too: ${escapeLineSeparators(JSON.stringify(line.slice(0, 200)))}`)
    t.doesNotThrow(() => JSON.parse(line))
  }
  await assertNoSecrets(t, audit)
})

t.test('property: one line per batch item for any keys, each parsing back to the key sent', async t => {
  const s3 = await startTestS3(t)
  const audit = await audited(t, s3, { logger: false, rateLimit: false })
  const token = auth(audit)
  let expected: string[] = []
  await fc.assert(fc.asyncProperty(
    fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 60 })).map(rest => `org-1/${rest}`), { minLength: 1, maxLength: 50 }),
    async keys => {
      const res = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-urls', headers: token, payload: { items: keys.map(key => ({ key })) } })
      if (res.statusCode !== 200) return false
      expected = [...expected, ...keys]
      const text = await readFile(audit.file, 'utf8')
      const lines = text.split('\n').slice(0, -1).filter(line => !shed(JSON.parse(line) as AuditEvent))
      return !/[\r\u0085\u2028\u2029]/.test(text) && lines.length === expected.length &&
        lines.every((line, i) => (JSON.parse(line) as AuditEvent).key === expected[i])
    }
  ), { numRuns: 40 })
  t.pass(`${expected.length} items over 40 batches`)
})

t.test('the embedded plugin: events in the host\'s log without a file; `audit: false` turns them off', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'a')
  for (const audit of [undefined, false] as const) {
    const lines: string[] = []
    const host = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
    t.teardown(async () => { await host.close() })
    await host.register(artosFiles, {
      bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials,
      jwt: { secret: TEST_SECRET }, prefix: '/files', ...(audit === undefined ? {} : { audit })
    })
    const res = await host.inject({ method: 'POST', url: '/files/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.txt' } })
    t.equal(res.statusCode, 200)
    const download = await host.inject({ url: `/files${proxyPath(res.json<{ url: string }>().url)}`, headers: { authorization: `Bearer ${orgToken('org-1')}` } })
    t.equal(download.body, 'a')
    await host.close()
    const events = lines.map(line => JSON.parse(line) as { audit?: boolean, msg: string, event?: AuditEvent }).filter(line => line.audit === true)
    if (audit === false) {
      t.same(events, [], 'audit: false: no events')
    } else {
      t.same(events.map(line => [line.msg, line.event?.operation, line.event?.outcome, line.event?.key]), [['audit', 'presign', 'ok', 'org-1/a.txt'], ['audit', 'proxy.get', 'ok', 'org-1/a.txt']])
    }
  }
})

t.test('without info logs (a level above info, or no logger) the file still gets every event', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'a')
  for (const quiet of ['warn', 'no logger'] as const) {
    const warnLines: string[] = []
    const logger = quiet === 'warn' ? { level: 'warn', stream: { write: (line: string) => { warnLines.push(line) } } } : false
    const audit = await audited(t, s3, { logger })
    const batch = await steadyInject(audit.app, { method: 'POST', url: '/generate-presigned-urls', headers: auth(audit), payload: { items: [{ key: 'org-1/a.txt' }, { key: 'org-2/b' }] } })
    t.equal(batch.statusCode, 200)
    const url = batch.json<{ results: Array<{ url: string }> }>().results[0].url
    const download = await audit.app.inject({ url: proxyPath(url), headers: auth(audit) })
    t.equal(download.body, 'a')
    await new Promise(resolve => setImmediate(resolve))
    const fromFile = (await readFile(audit.file, 'utf8')).trim().split('\n').map(line => JSON.parse(line) as AuditEvent)
    t.same(fromFile.map(e => [e.operation, e.key, e.outcome]), [['presign.batch', 'org-1/a.txt', 'ok'], ['presign.batch', 'org-2/b', 'forbidden'], ['proxy.get', 'org-1/a.txt', 'ok']], quiet)
    t.same(warnLines.filter(line => line.includes('"audit":true')), [], `${quiet}: no audit line in the log`)
  }
})

t.test('a grant the file cannot record is not handed out; refusals still are', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'a')
  const lines: string[] = []
  // A real write failure: every write to /dev/full is ENOSPC.
  const app = await buildTestApp(t, s3, { audit: { file: '/dev/full' }, logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  const headers = { authorization: `Bearer ${orgToken('org-1')}` }
  const granted = await steadyInject(app, { method: 'POST', url: '/generate-presigned-url', headers, payload: { key: 'org-1/a.txt' } })
  t.equal(granted.statusCode, 503)
  t.same(granted.json(), { statusCode: 503, code: 'ARTOS_AUDIT_UNAVAILABLE', error: 'Service Unavailable', message: 'Access could not be recorded; retry later' })
  t.notMatch(granted.body, /X-Amz|http/, 'no URL')
  const batch = await steadyInject(app, { method: 'POST', url: '/generate-presigned-urls', headers, payload: { items: [{ key: 'org-1/a.txt' }, { key: 'org-2/b' }] } })
  t.equal(batch.statusCode, 503, 'a batch with any grant is refused whole')
  const refused = await steadyInject(app, { method: 'POST', url: '/generate-presigned-url', headers, payload: { key: 'org-2/a.txt' } })
  t.equal(refused.statusCode, 403, 'a refusal is still a refusal')
  const onlyRefused = await steadyInject(app, { method: 'POST', url: '/generate-presigned-urls', headers, payload: { items: [{ key: 'org-2/b' }] } })
  t.equal(onlyRefused.statusCode, 200, 'a batch that grants nothing is answered')

  const events = lines.map(line => JSON.parse(line) as { audit?: boolean, event?: AuditEvent, msg: string, err?: { code?: string } })
  t.notOk(events.some(line => line.audit === true && line.event?.outcome === 'ok'), 'nothing logged as granted')
  t.match(events.filter(line => line.audit === true && !shed(line.event as AuditEvent)).map(line => line.event), [
    { operation: 'presign', outcome: 'unavailable', status: 503, code: 'ARTOS_AUDIT_UNAVAILABLE', key: 'org-1/a.txt' },
    { operation: 'presign.batch', outcome: 'unavailable', status: 503, items: 2 },
    { operation: 'presign', outcome: 'forbidden', key: 'org-2/a.txt' },
    { operation: 'presign.batch', outcome: 'forbidden', key: 'org-2/b' }
  ], 'the log stream still has every event')
  t.ok(events.some(line => line.msg === 'audit: could not write the audit log file' && line.err?.code === 'ENOSPC'), 'the failure is logged')
})
