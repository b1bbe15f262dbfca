/**
 * The service as production installs it: package.json and package-lock.json
 * with `npm ci --omit=dev` (offline, from the npm cache), and the compiled
 * server, run with plain node. Without dev dependencies there is no s3rver, so
 * with no S3 configured the service must say what to set, in one line; with
 * S3 and a JWT key configured it serves.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { startTestS3 } from '../helpers/s3.js'
import { orgToken, TEST_SECRET } from '../helpers/tokens.js'

const run = promisify(execFile)
const repo = new URL('../../', import.meta.url).pathname

const work = await mkdtemp(join(tmpdir(), 'artos-production-'))
t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
await copyFile(join(repo, 'package.json'), join(work, 'package.json'))
await copyFile(join(repo, 'package-lock.json'), join(work, 'package-lock.json'))
await run('npm', ['ci', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: work, maxBuffer: 16 * 1024 * 1024 })
// Compiled here rather than in the repository's dist/, which test/package/host-project.test.ts rebuilds meanwhile.
await run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.build.json'), '--outDir', join(work, 'dist')], { cwd: repo })
const server = join(work, 'dist/src/server.js')

t.test('the install has no dev dependencies', async t => {
  t.ok(existsSync(join(work, 'node_modules/fastify')), 'dependencies are installed')
  for (const name of ['s3rver', 'tsx', 'typescript', 'tap']) t.notOk(existsSync(join(work, 'node_modules', name)), `no ${name}`)
})

t.test('no S3 configured, no dev dependencies: one line saying what to set, exit 1', async t => {
  for (const env of [{}, { JWT_SECRET: TEST_SECRET }]) {
    const failure = await run(process.execPath, [server], { cwd: work, env: { PATH: process.env.PATH, DATA_DIR: join(work, '.data'), ...env } })
      .then(() => undefined, (err: { code: number, stderr: string }) => err)
    t.equal(failure?.code, 1, `exit 1 with ${JSON.stringify(Object.keys(env))} set`)
    t.match(failure?.stderr, /^artos-files: no S3 configured: set S3_BUCKET .*s3rver.* not installed\n$/, 'names S3_BUCKET and why the embedded S3 is missing')
    t.notMatch(failure?.stderr, /\n\s+at /, 'no stack trace')
  }
})

t.test('S3 and a JWT secret configured: serves without dev dependencies, stops on SIGTERM', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/report.txt', 'report contents')
  const child = spawn(process.execPath, [server], {
    cwd: work,
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      PORT: '0',
      S3_BUCKET: s3.bucket,
      S3_REGION: s3.region,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      JWT_SECRET: TEST_SECRET
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
  t.teardown(() => { child.kill('SIGKILL') })
  const address = await new Promise<string>((resolve, reject) => {
    void exited.then(code => { reject(new Error(`server exited with ${String(code)}`)) })
    createInterface({ input: child.stdout }).on('line', line => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match !== null) resolve(match[1])
    })
  })
  t.equal((await fetch(`${address}/health`)).status, 200)
  const presign = await fetch(`${address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }, body: JSON.stringify({ key: 'org-1/report.txt' })
  })
  t.equal(presign.status, 200)
  const { url } = await presign.json() as { url: string }
  const proxied = await fetch(`${address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers: { authorization: `Bearer ${orgToken('org-1')}` } })
  t.equal(await proxied.text(), 'report contents', 'the proxy streams the object (undici loaded on first use)')
  child.kill('SIGTERM')
  t.equal(await exited, 0)
})
