/**
 * The package as a user gets it: `npm pack`, install the tarball into a fresh
 * TypeScript host project offline (tarball + local npm cache), type-check the
 * host with tsc, run it, and use both endpoints over HTTP.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createInterface } from 'node:readline'
import { startTestS3 } from '../helpers/s3.js'
import { orgToken, TEST_SECRET } from '../helpers/tokens.js'

const run = promisify(execFile)
const repo = new URL('../../', import.meta.url).pathname

async function installedVersion (name: string): Promise<string> {
  return JSON.parse(await readFile(join(repo, 'node_modules', name, 'package.json'), 'utf8')).version
}

const HOST_APP = `
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import artosFiles, { checkKeyForOrg, GeneratePresignedUrlRequest, type FilesOptions, type FilesS3, type TokenClaims } from 'artos-files'
import type { Static } from '@sinclair/typebox'

const app = Fastify()
await app.register(fastifyJwt, { secret: 'host-secret-host-secret-host-secret!' })

// Declaration merging: request.user is typed as the plugin's TokenClaims, the S3 decorator exists.
app.get('/host/me', async (request) => {
  await request.jwtVerify()
  const claims: TokenClaims = request.user
  return { sub: claims.sub ?? null }
})
const s3Type: FilesS3['presignGetObject'] | undefined = undefined
const body: Static<typeof GeneratePresignedUrlRequest> = { key: 'org-1/a.txt' }
if (!checkKeyForOrg(body.key, 'org-1').ok || s3Type !== undefined) throw new Error('unexpected')

const options: FilesOptions = {
  bucket: process.env.S3_BUCKET as string,
  region: process.env.S3_REGION,
  endpoint: process.env.S3_ENDPOINT,
  forcePathStyle: true,
  credentials: { accessKeyId: process.env.S3_ACCESS_KEY_ID as string, secretAccessKey: process.env.S3_SECRET_ACCESS_KEY as string },
  jwt: { secret: process.env.JWT_SECRET as string }
}
await app.register(artosFiles, { ...options, prefix: '/files' })
const address = await app.listen({ host: '127.0.0.1', port: 0 })
console.log('LISTENING ' + address)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
`

t.test('npm pack → offline install into a TypeScript host → tsc → run → HTTP', async t => {
  const work = await mkdtemp(join(tmpdir(), 'artos-host-'))
  t.teardown(async () => { await rm(work, { recursive: true, force: true }) })

  const packed = await run('npm', ['pack', '--silent', '--pack-destination', work], { cwd: repo, maxBuffer: 16 * 1024 * 1024 })
  const tarball = join(work, packed.stdout.trim().split('\n').pop() as string)
  const listing = await run('tar', ['-tzf', tarball])
  const files = listing.stdout.split('\n').filter(Boolean)
  t.ok(files.includes('package/dist/src/index.js'), 'built entry point is packed')
  t.ok(files.includes('package/dist/src/index.d.ts'), 'type declarations are packed')
  t.notOk(files.some(f => f.startsWith('package/test/') || f.startsWith('package/src/')), 'no tests or TypeScript sources')

  const host = join(work, 'host')
  await mkdir(host)
  await writeFile(join(host, 'package.json'), JSON.stringify({ name: 'host', private: true, type: 'module' }))
  await writeFile(join(host, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'dist', skipLibCheck: false, types: ['node'] },
    include: ['app.ts', 'embed.ts']
  }))
  await writeFile(join(host, 'app.ts'), HOST_APP)
  // The README's example must compile against the package as published, too.
  await writeFile(join(host, 'embed.ts'), await readFile(join(repo, 'examples/embed.ts'), 'utf8'))
  const deps = await Promise.all(['fastify', '@fastify/jwt', '@sinclair/typebox', 'typescript', '@types/node'].map(async name => `${name}@${await installedVersion(name)}`))
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball, ...deps], { cwd: host, maxBuffer: 16 * 1024 * 1024 })
  t.pass('installed offline from the tarball and the npm cache')

  const tsc = await run(join(host, 'node_modules/.bin/tsc'), ['-p', host], { cwd: host }).then(() => '', (err: { stdout: string }) => err.stdout)
  t.equal(tsc, '', 'the host and examples/embed.ts type-check against the published declarations')
  if (tsc !== '') return

  const s3 = await startTestS3(t)
  await s3.put('org-1/report.txt', 'report contents')
  const child = spawn(process.execPath, [join(host, 'dist/app.js')], {
    cwd: host,
    env: {
      ...process.env,
      S3_BUCKET: s3.bucket,
      S3_REGION: s3.region,
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      JWT_SECRET: TEST_SECRET
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { child.kill('SIGTERM') })
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', code => { reject(new Error(`host exited with ${String(code)}`)) })
    createInterface({ input: child.stdout }).on('line', line => {
      if (line.startsWith('LISTENING ')) resolve(line.slice('LISTENING '.length))
    })
  })

  const headers = { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }
  const presign = await fetch(`${address}/files/generate-presigned-url`, { method: 'POST', headers, body: JSON.stringify({ key: 'org-1/report.txt' }) })
  t.equal(presign.status, 200, 'presign through the installed package')
  const { url } = await presign.json() as { url: string }
  t.equal(await (await fetch(url)).text(), 'report contents', 'the URL downloads the object')
  const proxied = await fetch(`${address}/files/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers })
  t.equal(proxied.status, 200, 'proxy through the installed package')
  t.equal(await proxied.text(), 'report contents')
  const other = await fetch(`${address}/files/generate-presigned-url`, { method: 'POST', headers, body: JSON.stringify({ key: 'org-2/report.txt' }) })
  t.equal(other.status, 403)
  await other.arrayBuffer()
})
