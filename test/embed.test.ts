/**
 * The plugin inside somebody else's Fastify server: under a prefix, next to
 * the host's own routes, hooks, @fastify/jwt and @fastify/swagger.
 */
import t from 'tap'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import fastifySwagger from '@fastify/swagger'
import artosFiles, { bearerAuthScheme, organizationOf, tokenClaimsOf } from '../src/index.js'
import { startTestS3 } from './helpers/s3.js'
import { orgToken, signToken, TEST_SECRET } from './helpers/tokens.js'

t.test('under a prefix, beside a host with its own @fastify/jwt, hooks and @fastify/swagger', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.txt', 'hello')
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  let hostHookCalls = 0
  host.addHook('onRequest', async () => { hostHookCalls++ })
  await host.register(fastifySwagger, { openapi: { info: { title: 'Host', version: '1.0.0' }, components: { securitySchemes: { bearerAuth: bearerAuthScheme } } } })
  // The host's own JWT setup, with a different secret than ours.
  await host.register(fastifyJwt, { secret: 'host-secret-host-secret-host-secret!' })
  host.get('/me', async request => {
    await request.jwtVerify()
    return { user: request.user }
  })
  await host.register(artosFiles, {
    prefix: '/files',
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: s3.region,
    credentials: s3.credentials,
    jwt: { secret: TEST_SECRET }
  })
  await host.ready()

  const presign = await host.inject({ method: 'POST', url: '/files/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.txt' } })
  t.equal(presign.statusCode, 200, 'our route under the prefix')
  const { url } = presign.json()
  const proxied = await host.inject({ method: 'GET', url: `/files/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, headers: { authorization: `Bearer ${orgToken('org-1')}` } })
  t.equal(proxied.statusCode, 200)
  t.equal(proxied.body, 'hello')
  t.equal((await host.inject({ method: 'POST', url: '/generate-presigned-url', payload: { key: 'org-1/a.txt' } })).statusCode, 404, 'nothing outside the prefix')

  const hostToken = host.jwt.sign({ sub: 'host-user' })
  const me = await host.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${hostToken}` } })
  t.equal(me.statusCode, 200, 'the host\'s JWT still works with its own secret')
  t.equal(me.json().user.sub, 'host-user')
  const crossed = await host.inject({ method: 'POST', url: '/files/generate-presigned-url', headers: { authorization: `Bearer ${host.jwt.sign({ org_id: 'org-1' })}` }, payload: { key: 'org-1/a.txt' } })
  t.equal(crossed.statusCode, 401, 'a token for the host is not a token for us')
  t.ok(hostHookCalls >= 5, 'host hooks run for our routes too')

  const doc = host.swagger() as { paths: Record<string, Record<string, { operationId?: string }>> }
  t.equal(doc.paths['/files/generate-presigned-url']?.post?.operationId, 'generatePresignedUrl', 'host document has our presign path, prefixed')
  t.equal(doc.paths['/files/api/v1/proxy/file']?.get?.operationId, 'proxyPresignedFile', 'and the proxy path')
  t.ok(doc.paths['/me'], 'and keeps its own')
})

t.test('useHostJwt reuses the host\'s @fastify/jwt and its tokens', async t => {
  const s3 = await startTestS3(t)
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  await host.register(fastifyJwt, { secret: 'host-secret-host-secret-host-secret!' })
  let seen: unknown
  host.addHook('onResponse', async request => { seen = { organization: organizationOf(request), tenant: tokenClaimsOf(request)?.tenant, user: request.user } })
  await host.register(artosFiles, {
    bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, useHostJwt: true, orgClaim: 'tenant'
  })
  const ok = await host.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${host.jwt.sign({ tenant: 'org-7' })}` }, payload: { key: 'org-7/x.pdf' } })
  t.equal(ok.statusCode, 200)
  t.match(seen, { organization: 'org-7', tenant: 'org-7', user: { tenant: 'org-7' } }, 'the accessors read what the host\'s @fastify/jwt verified, which it keeps as its request.user')
  const foreign = await host.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${signToken({ tenant: 'org-7' })}` }, payload: { key: 'org-7/x.pdf' } })
  t.equal(foreign.statusCode, 401)
})

t.test('our own verification writes nothing of the host\'s: request.user stays the host\'s', async t => {
  const s3 = await startTestS3(t)
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  await host.register(fastifyJwt, { secret: 'host-secret-host-secret-host-secret!' })
  let seen: unknown
  host.addHook('onResponse', async request => { seen = { user: request.user ?? null, organization: organizationOf(request), sub: tokenClaimsOf(request)?.sub } })
  await host.register(artosFiles, { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, jwt: { secret: TEST_SECRET } })
  const res = await host.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.txt' } })
  t.equal(res.statusCode, 200)
  t.same(seen, { user: null, organization: 'org-1', sub: 'user-1' }, 'the host\'s request.user is untouched; ours is read through the accessors')
  t.same(Object.keys(host.jwt).filter(key => key.startsWith('artosFiles')), ['artosFiles'], 'our verifier sits under a namespace of ours in the host\'s fastify.jwt')
  const outside = await host.inject({ method: 'GET', url: '/nowhere' })
  t.equal(outside.statusCode, 404)
  t.same(seen, { user: null, organization: undefined, sub: undefined }, 'outside our routes the accessors answer undefined')
})

t.test('two instances (two buckets under two prefixes) beside the host\'s @fastify/jwt', async t => {
  const s3 = await startTestS3(t)
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  await host.register(fastifyJwt, { secret: 'host-secret-host-secret-host-secret!' })
  const options = { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials }
  await host.register(artosFiles, { ...options, prefix: '/a', jwt: { secret: TEST_SECRET } })
  await host.register(artosFiles, { ...options, prefix: '/b', jwt: { secret: 'another-secret-another-secret-another!' } })
  const a = await host.inject({ method: 'POST', url: '/a/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.txt' } })
  t.equal(a.statusCode, 200, 'the first verifies its tokens')
  const b = await host.inject({ method: 'POST', url: '/b/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1', { key: 'another-secret-another-secret-another!' })}` }, payload: { key: 'org-1/a.txt' } })
  t.equal(b.statusCode, 200, 'the second its own')
  const crossed = await host.inject({ method: 'POST', url: '/b/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.txt' } })
  t.equal(crossed.statusCode, 401, 'and not the first one\'s')
})

t.test('registration: a host\'s own names stay its own; a name of ours already taken is refused, naming artos-files', async t => {
  const options = { bucket: 'bucket', endpoint: 'http://127.0.0.1:9', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, jwt: { secret: TEST_SECRET } }
  const hostNames = Fastify()
  hostNames.decorateRequest('organization', null)
  // (the type of request.user is @fastify/jwt's here; this host's is its own)
  hostNames.decorateRequest('user', null as never)
  hostNames.decorate('s3', null)
  hostNames.decorate('authenticate', null)
  await t.resolves(async () => { await hostNames.register(artosFiles, options).ready() }, 'organization, user, s3 and authenticate are the host\'s')
  await hostNames.close()
  const cases: Array<[string, (app: ReturnType<typeof Fastify>) => void]> = [
    ['artosFiles', app => { app.decorateRequest('artosFiles', null) }],
    ['artosFilesAuthenticate', app => { app.decorate('artosFilesAuthenticate', null) }],
    ['artosFilesS3', app => { app.decorate('artosFilesS3', null) }],
    ['artosFilesUpstream', app => { app.decorate('artosFilesUpstream', null) }],
    ['artosFilesJwtVerify', app => { app.decorateRequest('artosFilesJwtVerify', null) }],
    ['artosFilesJwtSign', app => { app.decorateReply('artosFilesJwtSign', null) }]
  ]
  for (const [name, prepare] of cases) {
    const host = Fastify()
    prepare(host)
    await t.rejects(async () => { await host.register(artosFiles, options).ready() }, new RegExp(`^artos-files: the (instance|request|reply) decorator "${name}" already exists where artos-files is registered .*; rename the other decorator`), name)
    await host.close()
  }
})

t.test('a host\'s @fastify/swagger document gains our bearer scheme, or keeps its own', async t => {
  const s3 = await startTestS3(t)
  const options = { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, jwt: { secret: TEST_SECRET }, prefix: '/files' }
  const bare = Fastify()
  t.teardown(async () => { await bare.close() })
  const swaggerOptions = { openapi: { info: { title: 'Host', version: '1.0.0' }, components: { securitySchemes: {} } } }
  await bare.register(fastifySwagger, swaggerOptions)
  await bare.register(artosFiles, options)
  await bare.ready()
  const doc = bare.swagger() as { components: { securitySchemes: Record<string, unknown> }, paths: Record<string, Record<string, { security?: unknown }>> }
  t.same(doc.components.securitySchemes, { bearerAuth: bearerAuthScheme }, 'a document with no bearerAuth gains ours')
  t.same(swaggerOptions.openapi.components.securitySchemes, {}, 'the options the host passed stay as they were')
  for (const [path, method] of [['/files/generate-presigned-url', 'post'], ['/files/generate-presigned-urls', 'post'], ['/files/api/v1/proxy/file', 'get']] as const) {
    t.same(doc.paths[path]?.[method]?.security, [{ bearerAuth: [] }], `${method.toUpperCase()} ${path} asks for it`)
  }

  const own = Fastify()
  t.teardown(async () => { await own.close() })
  const hostScheme = { type: 'http' as const, scheme: 'bearer', description: 'The platform\'s tokens' }
  await own.register(fastifySwagger, { openapi: { info: { title: 'Host', version: '1.0.0' }, components: { securitySchemes: { bearerAuth: hostScheme } } } })
  await own.register(artosFiles, options)
  await own.ready()
  t.same((own.swagger() as typeof doc).components.securitySchemes, { bearerAuth: hostScheme }, 'a host\'s own bearerAuth is kept')
})

t.test('bad options fail at register time with the option named', async t => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ jwt: { secret: TEST_SECRET } }, /invalid option "bucket"/],
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET }, expiresIn: 8 * 24 * 3600 }, /invalid option "expiresIn"/],
    [{ bucket: 'bucket', jwt: { jwksUrl: 'https://idp.example/jwks.json' } }, /invalid option "jwt/],
    [{ bucket: 'bucket' }, /option "jwt" is required/],
    [{ bucket: 'bucket', useHostJwt: true }, /host has not registered @fastify\/jwt/],
    // Typos from JavaScript are refused, with the closest valid name.
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET }, endPoint: 'http://127.0.0.1:9000' }, /unknown option "endPoint"; did you mean "endpoint"\?/],
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET }, expiresin: 60 }, /unknown option "expiresin"; did you mean "expiresIn"\?/],
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET, audiance: 'x' } }, /unknown option "jwt.audiance"; did you mean "jwt.audience"\?/],
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET }, proxy: { maxConcurrentDownload: 5 } }, /unknown option "proxy.maxConcurrentDownload"; did you mean "proxy.maxConcurrentDownloads"\?/],
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET }, rateLimit: { presignPerMin: 5 } }, /unknown option "rateLimit.presignPerMin"; did you mean "rateLimit.presignPerMinute"\?/],
    [{ bucket: 'bucket', jwt: { secret: TEST_SECRET }, proxyLink: { publicBaseUrl: 'https://x.example' } }, /unknown option "proxyLink"; did you mean "proxyLinks"\?/]
  ]
  for (const [options, message] of cases) {
    const host = Fastify()
    await t.rejects((async () => { await host.register(artosFiles, options as never).ready() })(), message, JSON.stringify(options))
    await host.close()
  }
})
