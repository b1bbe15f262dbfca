/**
 * The audit file survives shutdown: the real server process (src/server.ts)
 * is signalled mid-download, and whether it finishes the download (SIGTERM) or
 * exits at once (a second signal), AUDIT_LOG_FILE has an event for every
 * download. Signal handling itself is test/shutdown.test.ts's.
 */
import t, { type Test } from 'tap'
import type { ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AuditEvent } from '../src/audit-event.js'
import { startTestS3, type TestS3 } from './helpers/s3.js'
import { orgToken } from './helpers/tokens.js'
import { startServerProcess } from './helpers/server.js'

const SIZE = 24 * 1024 * 1024

async function startServer (t: Test, s3: TestS3): Promise<{ child: ChildProcess, address: string, exited: Promise<number | null>, auditFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'artos-audit-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const auditFile = join(dir, 'audit.jsonl')
  const { child, address, exited } = await startServerProcess(t, s3, { SHUTDOWN_GRACE_MS: '20000', AUDIT_LOG_FILE: auditFile })
  return { child, address, exited, auditFile }
}

/** The audit file's events, without those of requests shed for load (sent again). */
async function auditEvents (file: string): Promise<AuditEvent[]> {
  return (await readFile(file, 'utf8')).split('\n').slice(0, -1).map(line => JSON.parse(line) as AuditEvent).filter(event => event.code !== 'ARTOS_OVERLOADED')
}

/** Starts a proxied download that reads slowly; resolves once the first bytes arrived. */
async function slowDownload (address: string, url: string) {
  let received = 0
  let complete = false
  let req: import('node:http').ClientRequest | undefined
  let res: import('node:http').IncomingMessage
  for (;;) {
    res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      req = request(`${address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${orgToken('org-1')}` } }, resolve)
      req.on('error', reject)
      req.end()
    })
    req?.on('error', () => {})
    if (!await shedding(res)) break
  }
  const done = new Promise<void>(resolve => {
    res.on('data', (chunk: Buffer) => {
      received += chunk.length
      // About 8 MiB/s: the download stays in flight for a few seconds.
      res.pause()
      setTimeout(() => res.resume(), Math.ceil(chunk.length / (8 * 1024)))
    })
    res.on('end', () => { complete = res.complete; resolve() })
    res.on('error', () => { resolve() })
    res.on('close', () => { resolve() })
  })
  await new Promise(resolve => res.once('data', resolve))
  return {
    status: res.statusCode,
    requestId: res.headers['x-request-id'] as string,
    done,
    received: () => received,
    complete: () => complete,
    abort: () => { req?.destroy() }
  }
}

async function presign (address: string, key: string): Promise<string> {
  for (;;) {
    const res = await fetch(`${address}/generate-presigned-url`, {
      method: 'POST', headers: { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }, body: JSON.stringify({ key })
    })
    const body = await res.json() as { url: string, code?: string }
    if (body.code !== 'ARTOS_OVERLOADED') return body.url
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/**
 * The server sheds load (503 ARTOS_OVERLOADED) while its event loop is
 * saturated, as it is for a moment after a cold start on a busy machine: such
 * an answer is drained, and the request sent again.
 */
async function shedding (res: import('node:http').IncomingMessage): Promise<boolean> {
  if (res.statusCode !== 503) return false
  res.resume()
  await new Promise(resolve => res.once('end', resolve))
  await new Promise(resolve => setTimeout(resolve, 100))
  return true
}

t.test('SIGTERM: stops accepting, finishes the in-flight download, exits 0; the audit file has every event', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/big.bin', randomBytes(SIZE))
  const { child, address, exited, auditFile } = await startServer(t, s3)
  const url = await presign(address, 'org-1/big.bin')
  const download = await slowDownload(address, url)
  const abandoned = await slowDownload(address, url)
  t.equal(download.status, 200)
  child.kill('SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 300))
  const refused = await fetch(`${address}/health`).then(res => res.status, () => 'refused')
  t.not(refused, 200, `new requests are not served while closing (${String(refused)})`)
  // A client that leaves while the server is closing.
  abandoned.abort()
  await download.done
  t.equal(download.received(), SIZE, 'the in-flight download got every byte')
  t.equal(download.complete(), true)
  t.equal(await exited, 0, 'clean exit')

  const events = await auditEvents(auditFile)
  t.match(events.filter(event => event.operation === 'presign'), [{ outcome: 'ok', key: 'org-1/big.bin', subject: 'user-1', organization: 'org-1' }])
  const finished = events.filter(event => event.requestId === download.requestId)
  t.match(finished, [{ operation: 'proxy.get', outcome: 'ok', status: 200, key: 'org-1/big.bin', bytes: SIZE }], 'the download that finished during shutdown')
  const left = events.filter(event => event.requestId === abandoned.requestId)
  t.match(left, [{ operation: 'proxy.get', outcome: 'aborted', status: 200, key: 'org-1/big.bin' }], 'the download abandoned during shutdown')
  t.ok(left[0]?.bytes !== undefined && left[0].bytes >= abandoned.received() && left[0].bytes < SIZE, `partial: ${String(left[0]?.bytes)} bytes sent, ${abandoned.received()} received`)
  t.equal(events.length, 3, 'nothing else, nothing twice')
})

t.test('a second signal exits at once, without waiting for the download; its event is still written', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/big.bin', randomBytes(SIZE))
  const { child, address, exited, auditFile } = await startServer(t, s3)
  const url = await presign(address, 'org-1/big.bin')
  const download = await slowDownload(address, url)
  child.kill('SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 200))
  const signalledAt = Date.now()
  child.kill('SIGINT')
  const code = await exited
  t.equal(code, 1, 'forced exit')
  t.ok(Date.now() - signalledAt < 2000, 'promptly')
  await download.done
  t.ok(download.received() < SIZE, 'the download was cut short')
  t.equal(download.complete(), false)
  // Written as the process exits, with what had been sent.
  const events = await auditEvents(auditFile)
  t.match(events, [
    { operation: 'presign', outcome: 'ok', key: 'org-1/big.bin' },
    { operation: 'proxy.get', outcome: 'aborted', status: 200, key: 'org-1/big.bin', requestId: download.requestId }
  ])
  t.equal(events.length, 2)
  t.ok(events[1]?.bytes !== undefined && events[1].bytes >= download.received() && events[1].bytes < SIZE, `partial: ${String(events[1]?.bytes)} bytes sent, ${download.received()} received`)
})
