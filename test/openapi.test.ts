/**
 * openapi-v1.json is the contract. It must be valid OpenAPI 3.0, and the
 * document @fastify/swagger generates from the route schemas must agree with
 * it on every path, method, operationId, parameter, request body, response
 * code and schema. Examples and x- annotations are documentation only.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import SwaggerParser from '@apidevtools/swagger-parser'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** Drops documentation-only keys so only the contract's substance is compared. */
function substance (value: Json): Json {
  if (Array.isArray(value)) return value.map(substance)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value)
    .filter(([key]) => key !== 'example' && key !== 'examples' && !key.startsWith('x-'))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, inner]) => [key, substance(inner)]))
}

async function loadContract (): Promise<Record<string, any>> {
  return JSON.parse(await readFile(new URL('../openapi-v1.json', import.meta.url), 'utf8'))
}

t.test('openapi-v1.json is valid OpenAPI 3.0', async t => {
  const contract = await loadContract()
  t.match(contract.openapi, /^3\.0\.\d$/)
  await t.resolves(SwaggerParser.validate(structuredClone(contract) as never), 'validates')
  t.same(contract.servers.map((s: { url: string }) => s.url), ['https://api.artosai.com', 'http://localhost:8000'])
  t.same(contract.components.securitySchemes.bearerAuth, {
    type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Bearer token authentication. Token provides organization-scoped access.'
  })
  t.same(contract.security, [{ bearerAuth: [] }])
})

t.test('the served document agrees with openapi-v1.json', async t => {
  const s3 = await startTestS3(t)
  // Every optional route on, so the whole contract is served.
  const app = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: 'https://api.example.com' } })
  const res = await app.inject({ method: 'GET', url: '/documentation/json' })
  t.equal(res.statusCode, 200)
  const served = res.json()
  const contract = await loadContract()
  await t.resolves(SwaggerParser.validate(structuredClone(served) as never), 'the served document validates too')

  t.same(Object.keys(served.paths).sort(), Object.keys(contract.paths).sort(), 'same paths')
  for (const [path, methods] of Object.entries<Record<string, any>>(contract.paths)) {
    t.same(Object.keys(served.paths[path]).sort(), Object.keys(methods).sort(), `${path}: same methods`)
    for (const [method, operation] of Object.entries<Record<string, any>>(methods)) {
      const ours = served.paths[path][method]
      const where = `${method.toUpperCase()} ${path}`
      t.equal(ours.operationId, operation.operationId, `${where}: operationId`)
      t.same(substance(ours.parameters ?? []), substance(operation.parameters ?? []), `${where}: parameters`)
      t.same(substance(ours.requestBody ?? null), substance(operation.requestBody ?? null), `${where}: request body`)
      t.same(Object.keys(ours.responses).sort(), Object.keys(operation.responses).sort(), `${where}: response codes`)
      t.same(substance(ours.responses), substance(operation.responses), `${where}: responses and their schemas`)
      t.same(substance(ours.security), substance(operation.security), `${where}: security`)
      // Stated per operation, not only document-wide: a host's document that embeds it has no such default.
      t.ok(Array.isArray(operation.security), `${where}: states its own security`)
    }
  }
  t.same(substance(served.components.schemas), substance(contract.components.schemas), 'same component schemas')
  t.same(substance(served.components.securitySchemes), substance(contract.components.securitySchemes), 'same security schemes')
  t.same(substance(served.info), substance(contract.info), 'same info')
  t.same(substance(served.servers), substance([{ url: '/', description: 'This server' }, ...contract.servers]), 'the contract\'s servers, after this one')

  // Sanity: the comparison is not vacuous — a deliberate edit is noticed.
  const edited = structuredClone(contract)
  edited.paths['/generate-presigned-url'].post.responses['418'] = { description: 'teapot' }
  t.notSame(substance(served.paths['/generate-presigned-url'].post.responses), substance(edited.paths['/generate-presigned-url'].post.responses))
})

t.test('the docs are public; every API operation requires a bearer token unless it opts out', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: 'https://api.example.com' } })
  const page = await app.inject({ method: 'GET', url: '/documentation/' })
  t.equal(page.statusCode, 200, 'Swagger UI without a token')
  t.match(page.headers['content-type'], /text\/html/)
  t.notMatch(page.body, /https?:\/\/(?!localhost)[a-z0-9.-]+\.[a-z]{2,}\/[^"']*\.(js|css)/i, 'no assets from the internet')
  const contract = await loadContract()
  for (const [path, methods] of Object.entries<Record<string, any>>(contract.paths)) {
    for (const [method, operation] of Object.entries<Record<string, any>>(methods)) {
      const res = await app.inject({ method: method.toUpperCase() as 'GET', url: path })
      // Plain links declare `security: []`: their presigned URL is the credential.
      const open = Array.isArray(operation.security) && operation.security.length === 0
      t.equal(res.statusCode, open ? 422 : 401, `${method.toUpperCase()} ${path} without a token`)
    }
  }
})
