/**
 * Graceful shutdown of the real server process (src/server.ts): SIGTERM lets
 * an in-flight download finish and then exits 0; a second signal exits at once.
 */
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { startTestS3, type TestS3 } from './helpers/s3.js'
import { orgToken, TEST_SECRET } from './helpers/tokens.js'

const repo = new URL('../', import.meta.url).pathname
const SIZE = 24 * 1024 * 1024

async function startServer (t: Test, s3: TestS3): Promise<{ child: ChildProcess, address: string, exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: repo,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PORT: '0',
      LOG_LEVEL: 'info',
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: s3.region,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      JWT_SECRET: TEST_SECRET,
      SHUTDOWN_GRACE_MS: '20000',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
  t.teardown(() => { child.kill('SIGKILL') })
  const address = await new Promise<string>((resolve, reject) => {
    void exited.then(code => { reject(new Error(`server exited early with ${String(code)}`)) })
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match !== null) resolve(match[1])
    })
  })
  return { child, address, exited }
}

/** Starts a proxied download that reads slowly; resolves once the first bytes arrived. */
async function slowDownload (address: string, url: string) {
  let received = 0
  let complete = false
  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
    const req = request(`${address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${orgToken('org-1')}` } }, resolve)
    req.on('error', reject)
    req.end()
  })
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
  return { status: res.statusCode, done, received: () => received, complete: () => complete }
}

async function presign (address: string, key: string): Promise<string> {
  const res = await fetch(`${address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }, body: JSON.stringify({ key })
  })
  return (await res.json() as { url: string }).url
}

t.test('SIGTERM: stops accepting, finishes the in-flight download, exits 0', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/big.bin', randomBytes(SIZE))
  const { child, address, exited } = await startServer(t, s3)
  const url = await presign(address, 'org-1/big.bin')
  const download = await slowDownload(address, url)
  t.equal(download.status, 200)
  child.kill('SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 300))
  const refused = await fetch(`${address}/health`).then(res => res.status, () => 'refused')
  t.not(refused, 200, `new requests are not served while closing (${String(refused)})`)
  await download.done
  t.equal(download.received(), SIZE, 'the in-flight download got every byte')
  t.equal(download.complete(), true)
  t.equal(await exited, 0, 'clean exit')
})

t.test('a second signal exits at once, without waiting for the download', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/big.bin', randomBytes(SIZE))
  const { child, address, exited } = await startServer(t, s3)
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
})
