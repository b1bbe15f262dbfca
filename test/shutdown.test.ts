/**
 * Graceful shutdown of the real service as `npm start` runs it: npm, and its
 * one child `node dist/src/server.js` (the script execs node, so no shell stays
 * in between). SIGTERM or SIGINT sent to node, to npm (which forwards it) or to
 * the whole process group (npm's forwarded copy then arrives as well) lets an
 * in-flight download finish; then everything exits 0, no process of the group
 * is left and the port is free. A second signal exits at once.
 */
import t, { type Test } from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { request, type IncomingMessage } from 'node:http'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { startTestS3, type TestS3 } from './helpers/s3.js'
import { orgToken } from './helpers/tokens.js'
import { serviceEnv } from './helpers/server.js'

const repo = new URL('../', import.meta.url).pathname
const SIZE = 24 * 1024 * 1024
const KEY = 'org-1/big.bin'

interface Service {
  npm: ChildProcess
  /** The node process serving HTTP (from its own log line). */
  nodePid: number
  address: string
  port: number
  /** npm's exit code. */
  exited: Promise<number | null>
}

/** Every process whose process group is `pgid`, from /proc: pid, parent and command line. */
function groupMembers (pgid: number): Array<{ pid: number, ppid: number, command: string }> {
  const members: Array<{ pid: number, ppid: number, command: string }> = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(pgrp) !== pgid || state === 'Z') continue
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')
      members.push({ pid: Number(entry), ppid: Number(ppid), command })
    } catch {} // gone meanwhile
  }
  return members
}

const run = promisify(execFile)

/** The first test builds through `npm start`; a test run on its own builds here. */
async function ensureBuilt (): Promise<void> {
  if (!existsSync(new URL('../dist/src/server.js', import.meta.url))) await run('npm', ['run', 'build'], { cwd: repo })
}

/** `npm start` in a process group of its own (as a terminal runs it); `--ignore-scripts` skips the build in prestart. */
async function startService (t: Test, s3: TestS3, npmArgs: string[] = ['start', '--ignore-scripts']): Promise<Service> {
  if (npmArgs.includes('--ignore-scripts')) await ensureBuilt()
  const npm = spawn('npm', npmArgs, {
    cwd: repo,
    env: { ...serviceEnv(s3), SHUTDOWN_GRACE_MS: '20000' },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true
  })
  const exited = new Promise<number | null>(resolve => npm.once('exit', code => { resolve(code) }))
  t.teardown(() => { try { process.kill(-(npm.pid as number), 'SIGKILL') } catch {} })
  const listening = await new Promise<{ address: string, pid: number }>((resolve, reject) => {
    void exited.then(code => { reject(new Error(`npm start exited early with ${String(code)}`)) })
    createInterface({ input: npm.stdout as NodeJS.ReadableStream }).on('line', line => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match !== null) resolve({ address: match[1], pid: (JSON.parse(line) as { pid: number }).pid })
    })
  })
  return { npm, nodePid: listening.pid, address: listening.address, port: Number(new URL(listening.address).port), exited }
}

async function portIsFree (port: number): Promise<boolean> {
  const server = createServer()
  return await new Promise(resolve => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/** After npm exited: no process of its group is left (polled briefly: the kernel reaps asynchronously), and the port is free. */
async function assertNothingLeft (t: Test, service: Service): Promise<void> {
  const pgid = service.npm.pid as number
  let left = groupMembers(pgid)
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    left = groupMembers(pgid)
  }
  t.same(left, [], 'no process of the group is left running')
  t.ok(await portIsFree(service.port), `port ${service.port} is free`)
}

/** Starts a proxied download that reads `perSecond` bytes a second; resolves once the first bytes arrived. */
async function slowDownload (address: string, url: string, perSecond = 8 * 1024 * 1024) {
  let received = 0
  let complete = false
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(`${address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${orgToken('org-1')}` } }, resolve)
    req.on('error', reject)
    req.end()
  })
  const done = new Promise<void>(resolve => {
    res.on('data', (chunk: Buffer) => {
      received += chunk.length
      // The download stays in flight for seconds.
      res.pause()
      setTimeout(() => res.resume(), Math.ceil(chunk.length * 1000 / perSecond))
    })
    res.on('end', () => { complete = res.complete; resolve() })
    res.on('error', () => { resolve() })
    res.on('close', () => { resolve() })
  })
  await new Promise(resolve => res.once('data', resolve))
  return { status: res.statusCode, done, received: () => received, complete: () => complete }
}

async function presign (address: string, key: string): Promise<string> {
  const res = await fetch(`${address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }, body: JSON.stringify({ key })
  })
  return (await res.json() as { url: string }).url
}

type Target = 'node' | 'npm' | 'the process group'

function send (service: Service, target: Target, signal: NodeJS.Signals): void {
  if (target === 'node') process.kill(service.nodePid, signal)
  else if (target === 'npm') process.kill(service.npm.pid as number, signal)
  else process.kill(-(service.npm.pid as number), signal)
}

/** A download in flight, `signal` to `target`: the download completes, everything exits 0, nothing is left. */
async function gracefulShutdown (t: Test, service: Service, target: Target, signal: NodeJS.Signals): Promise<void> {
  const download = await slowDownload(service.address, await presign(service.address, KEY))
  t.equal(download.status, 200)
  send(service, target, signal)
  await new Promise(resolve => setTimeout(resolve, 300))
  const refused = await fetch(`${service.address}/health`).then(res => res.status, () => 'refused')
  t.not(refused, 200, `new requests are not served while closing (${String(refused)})`)
  await download.done
  const downloaded = Date.now()
  t.equal(download.received(), SIZE, 'the in-flight download got every byte')
  t.equal(download.complete(), true)
  t.equal(await service.exited, 0, 'npm (so node too) exited 0')
  // Not held by the download's idle keep-alive connection (Node's keep-alive timeout is 5 s).
  t.ok(Date.now() - downloaded < 4000, `exited soon after the last download (${Date.now() - downloaded} ms)`)
  await assertNothingLeft(t, service)
}

const s3 = await startTestS3(t)
await s3.put(KEY, randomBytes(SIZE))

t.test('npm start builds, then leaves one long-lived process: node dist/src/server.js, npm\'s child', async t => {
  const service = await startService(t, s3, ['start'])
  const members = groupMembers(service.npm.pid as number)
  t.equal(members.length, 2, `npm and node, nothing else: ${members.map(m => m.command).join(' | ')}`)
  const node = members.find(m => m.pid === service.nodePid)
  t.equal(node?.ppid, service.npm.pid, 'node is npm\'s own child: no shell in between')
  t.match(node?.command ?? '', /^\S*node dist\/src\/server\.js$/, 'plain node runs the compiled server')
  await gracefulShutdown(t, service, 'npm', 'SIGTERM')
})

const matrix: Array<[Target, NodeJS.Signals]> = [
  ['npm', 'SIGINT'],
  ['the process group', 'SIGTERM'],
  // Ctrl-C in a terminal: node gets SIGINT from the terminal and again from npm.
  ['the process group', 'SIGINT'],
  ['node', 'SIGTERM'],
  ['node', 'SIGINT']
]
for (const [target, signal] of matrix) {
  t.test(`${signal} to ${target}: the in-flight download finishes, everything exits 0, the port is free`, async t => {
    await gracefulShutdown(t, await startService(t, s3), target, signal)
  })
}

t.test('a second, different signal exits at once, without waiting for the download', async t => {
  const service = await startService(t, s3)
  const download = await slowDownload(service.address, await presign(service.address, KEY))
  send(service, 'node', 'SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 200))
  const signalledAt = Date.now()
  send(service, 'node', 'SIGINT')
  t.equal(await service.exited, 1, 'forced exit')
  t.ok(Date.now() - signalledAt < 5000, 'promptly')
  await download.done
  t.ok(download.received() < SIZE, 'the download was cut short')
  t.equal(download.complete(), false)
  await assertNothingLeft(t, service)
})

t.test('the same signal again, later than npm\'s copy would come, exits at once', async t => {
  const service = await startService(t, s3)
  const download = await slowDownload(service.address, await presign(service.address, KEY), 4 * 1024 * 1024)
  send(service, 'node', 'SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.ok(download.received() < SIZE, 'still downloading')
  send(service, 'node', 'SIGTERM')
  t.equal(await service.exited, 1, 'forced exit')
  await download.done
  t.equal(download.complete(), false, 'the download was cut short')
  await assertNothingLeft(t, service)
})

t.test('NODE_ENV=production with nothing configured: one line saying what to set, exit 1', async t => {
  // Production never reaches for the embedded S3 (test/package checks an install without dev dependencies).
  await ensureBuilt()
  const failure = await run(process.execPath, ['dist/src/server.js'], {
    cwd: repo,
    env: { PATH: process.env.PATH, NODE_ENV: 'production' }
  }).then(() => undefined, (err: { code: number, stderr: string }) => err)
  t.equal(failure?.code, 1)
  t.match(failure?.stderr, /^artos-files: NODE_ENV=production requires S3_BUCKET and one of JWT_SECRET/)
  t.equal(failure?.stderr.trim().split('\n').length, 1, 'one line, no stack trace')
})
