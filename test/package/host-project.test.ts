/**
 * The package as hosts get it: `npm pack`, an offline install of the tarball
 * into host projects (test/hosts/*, written the way platform teams write
 * Fastify hosts), tsc under the strictest common settings, then run them.
 *   own-types  types its own FastifyJWT, `authenticate: any` (the @fastify/jwt
 *              README), `organization` and `s3`; compiled under node16, nodenext,
 *              bundler, and with skipLibCheck on; runs with artos-files under /files.
 *   plain      no JWT typing of its own; reads what we verified through our
 *              accessors; examples/embed.ts; what registration errors say.
 *   swagger-ui the host's own RS256 @fastify/jwt, @fastify/swagger and Swagger UI:
 *              Authorize + Try it out in Chromium reaches our operation.
 */
import t from 'tap'
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSigner } from 'fast-jwt'
import { copyHostSources, hostSources, installHost, pack, repo, runScript, startHost, tsc } from '../helpers/host-project.js'
import { startTestS3 } from '../helpers/s3.js'
import { orgToken, rsaKeyPair, signToken, TEST_SECRET } from '../helpers/tokens.js'
import { authorize, launchChromium, tryItOut } from '../helpers/swagger-ui.js'

// npm pack builds the package; eight tsc runs follow on a shared machine.
t.setTimeout(15 * 60_000)

const work = await mkdtemp(join(tmpdir(), 'artos-host-'))
t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
const { tarball, files } = await pack(work)
const host = join(work, 'host')
await mkdir(host)
await installHost(host, tarball, ['fastify', '@fastify/jwt', '@fastify/swagger', '@fastify/swagger-ui', '@sinclair/typebox', 'typescript', '@types/node'])
await cp(join(hostSources, 'tsconfig.strict.json'), join(host, 'tsconfig.strict.json'))
for (const name of ['own-types', 'plain', 'swagger-ui']) await copyHostSources(name, host)
// The README's example must compile against the package as published, under the same settings.
await cp(join(repo, 'examples/embed.ts'), join(host, 'plain/embed.ts'))

const HOST_SECRET = 'host-secret-host-secret-host-secret!'

t.test('the tarball: built code and declarations that claim no global names', async t => {
  t.ok(files.includes('package/dist/src/index.js'), 'built entry point is packed')
  t.ok(files.includes('package/dist/src/index.d.ts'), 'type declarations are packed')
  t.notOk(files.some(f => f.startsWith('package/test/') || f.startsWith('package/src/')), 'no tests or TypeScript sources')
  const claiming: string[] = []
  const importingJwt: string[] = []
  for (const file of files.filter(f => f.endsWith('.d.ts'))) {
    const text = await readFile(join(host, 'node_modules/artos-files', file.slice('package/'.length)), 'utf8')
    if (/declare module ['"]@fastify\/jwt['"]|interface (FastifyRequest|FastifyInstance|FastifyReply)\b/.test(text)) claiming.push(file)
    // @fastify/jwt's own declarations type request.user and jwtVerify for every host that loads them.
    if (/from ['"]@fastify\/jwt['"]|import\(['"]@fastify\/jwt['"]\)/.test(text)) importingJwt.push(file)
  }
  t.same(claiming, [], 'no declaration augments @fastify/jwt or the host\'s request, reply or instance types')
  t.same(importingJwt, [], 'none loads @fastify/jwt\'s declarations')
})

t.test('hosts compile against the published declarations under strict settings', async t => {
  const projects = [
    'own-types/tsconfig.node16.json', 'own-types/tsconfig.nodenext.json', 'own-types/tsconfig.bundler.json', 'own-types/tsconfig.skiplibcheck.json',
    'plain/tsconfig.node16.json', 'plain/tsconfig.nodenext.json', 'plain/tsconfig.bundler.json',
    'swagger-ui/tsconfig.nodenext.json'
  ]
  // Two at a time: the machine has two cores.
  const results = new Map<string, string>()
  const queue = [...projects]
  await Promise.all([0, 1].map(async () => {
    for (let project = queue.shift(); project !== undefined; project = queue.shift()) results.set(project, await tsc(host, project))
  }))
  for (const project of projects) t.equal(results.get(project), '', `${project}: no errors`)
})

t.test('own-types host: its JWT, user and decorators stay its own beside ours', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/report.txt', 'report contents')
  const { address } = await startHost(t, join(host, 'own-types/dist/app.js'), {
    HOST_JWT_SECRET: HOST_SECRET,
    JWT_SECRET: TEST_SECRET,
    S3_BUCKET: s3.bucket,
    S3_REGION: s3.region,
    S3_ENDPOINT: s3.endpoint,
    S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey
  })
  const hostToken = signToken({ id: 7, name: 'Ada', roles: ['admin'] }, { key: HOST_SECRET })
  const me = await fetch(`${address}/host/me`, { headers: { authorization: `Bearer ${hostToken}` } })
  t.equal(me.status, 200, 'the host\'s authenticate and route module')
  t.same(await me.json(), { id: 7, name: 'Ada', admin: true, tenant: null, bucket: 'host-uploads' }, 'its user, organization and s3, as it typed them')

  const headers = { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }
  const presign = await fetch(`${address}/files/generate-presigned-url`, { method: 'POST', headers, body: JSON.stringify({ key: 'org-1/report.txt' }) })
  t.equal(presign.status, 200, 'presign through the installed package')
  const { url } = await presign.json() as { url: string }
  t.equal(await (await fetch(url)).text(), 'report contents', 'the URL downloads the object')
  const seen = await (await fetch(`${address}/host/seen`)).json()
  t.same(seen, { organization: 'org-1', sub: 'user-1', hostUser: null, hostOrganization: null }, 'the host reads ours through the accessors; its request.user and request.organization are untouched')

  const proxied = await fetch(`${address}/files/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, { headers })
  t.equal(proxied.status, 200, 'proxy through the installed package')
  t.equal(await proxied.text(), 'report contents', 'the proxied bytes')
  const other = await fetch(`${address}/files/generate-presigned-url`, { method: 'POST', headers, body: JSON.stringify({ key: 'org-2/report.txt' }) })
  t.equal(other.status, 403, 'another organization\'s key')
  await other.arrayBuffer()
  const crossed = await fetch(`${address}/files/generate-presigned-url`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${hostToken}` }, body: JSON.stringify({ key: 'org-1/report.txt' }) })
  t.equal(crossed.status, 401, 'a host token is not ours')
  await crossed.arrayBuffer()
  const ours = await fetch(`${address}/host/me`, { headers: { authorization: `Bearer ${orgToken('org-1')}` } })
  t.equal(ours.status, 401, 'our token is not the host\'s')
  await ours.arrayBuffer()
})

t.test('registration: names a host owns are left alone; ours collide with a message naming artos-files', async t => {
  const results = await runScript(join(host, 'plain/dist/conflicts.js')) as Array<{ name: string, ok: boolean, code?: string, message?: string }>
  const byName = new Map(results.map(result => [result.name, result]))
  t.same(byName.get('host decorates organization, user, s3, authenticate'), { name: 'host decorates organization, user, s3, authenticate', ok: true }, 'a host\'s organization, user, s3 and authenticate do not collide with us')
  for (const [name, decorator] of [['host decorates artosFiles on requests', 'artosFiles'], ['host decorates artosFilesS3', 'artosFilesS3']]) {
    const result = byName.get(name)
    t.equal(result?.ok, false, `${name}: refused`)
    t.match(result?.message, /^artos-files: /, `${name}: the message names the package`)
    t.match(result?.message, new RegExp(`"${decorator}"`), `${name}: and the name`)
    t.match(result?.message, /rename/, `${name}: and what to change`)
  }
  t.match(byName.get('option typo')?.message, /^artos-files: unknown option "endPoint"; did you mean "endpoint"\?$/, 'a mistyped option names the closest valid one')
})

t.test('swagger-ui host: Authorize + Try it out in the host\'s Swagger UI reaches our operation', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/protocol.pdf', '%PDF-1.4 pretend', 'application/pdf')
  const keys = rsaKeyPair()
  const { address } = await startHost(t, join(host, 'swagger-ui/dist/app.js'), {
    HOST_JWT_PRIVATE_KEY: keys.privateKey,
    HOST_JWT_PUBLIC_KEY: keys.publicKey,
    S3_BUCKET: s3.bucket,
    S3_REGION: s3.region,
    S3_ENDPOINT: s3.endpoint,
    S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey
  })
  const document = await (await fetch(`${address}/docs/json`)).json() as { components?: { securitySchemes?: Record<string, { scheme?: string }> }, paths: Record<string, Record<string, { security?: unknown }>> }
  t.equal(document.components?.securitySchemes?.bearerAuth?.scheme, 'bearer', 'the host\'s document carries our bearer scheme')
  t.same(document.paths['/files/generate-presigned-url']?.post?.security, [{ bearerAuth: [] }], 'and our operation asks for it')

  // The host's token: RS256, signed with the host's key, carrying the organization.
  const token = createSigner({ key: keys.privateKey, algorithm: 'RS256', expiresIn: 300_000 })({ sub: 'user-1', org_id: 'org-1' })
  const browser = await launchChromium(t)
  const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } })
  await page.goto(`${address}/docs/`)
  await page.waitForSelector('#operations-Files-generatePresignedUrl')
  await authorize(page, token)
  const presign = await tryItOut(page, '#operations-Files-generatePresignedUrl', async operation => {
    await operation.locator('textarea.body-param__text').fill(JSON.stringify({ key: 'org-1/protocol.pdf' }))
  })
  t.equal(presign.status, '200', 'presign answered 200 in the host\'s Swagger UI')
  const shown = await presign.operation.locator('.live-responses-table .response-col_description pre').first().innerText()
  const { url } = JSON.parse(shown) as { url: string }
  t.equal(await (await fetch(url)).text(), '%PDF-1.4 pretend', 'and the URL it shows downloads the file')
})
