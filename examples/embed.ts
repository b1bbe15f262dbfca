/**
 * Embedding the Files API in a larger Fastify server (see README, "Embedding").
 * Run from a project that installed artos-files:
 *   S3_BUCKET=... JWT_SECRET=... node --experimental-strip-types embed.ts   (or compile with tsc)
 */
import Fastify from 'fastify'
import fastifySwagger from '@fastify/swagger'
import artosFiles, { organizationOf, type FilesOptions } from 'artos-files'

const app = Fastify({ logger: true })

// The host's own OpenAPI document gains our operations (under the prefix), each
// asking for a bearer token, and the `bearerAuth` scheme they name (unless it has its own).
await app.register(fastifySwagger, { openapi: { info: { title: 'Host API', version: '1.0.0' } } })

app.get('/status', async () => ({ ok: true }))

// What artos-files verified, read in the host's own hooks: typed, with no request property claimed.
app.addHook('onResponse', async (request, reply) => {
  const organization = organizationOf(request) // string | undefined
  if (organization !== undefined) request.log.info({ organization, statusCode: reply.statusCode }, 'files request')
})

const files: FilesOptions = {
  bucket: process.env.S3_BUCKET ?? 'my-bucket',
  region: process.env.S3_REGION ?? 'us-east-1',
  endpoint: process.env.S3_ENDPOINT,
  forcePathStyle: process.env.S3_ENDPOINT !== undefined,
  jwt: { secret: process.env.JWT_SECRET ?? '' },
  orgClaim: 'org_id',
  expiresIn: 3600
}
// POST /files/generate-presigned-url and GET /files/api/v1/proxy/file
await app.register(artosFiles, { ...files, prefix: '/files' })

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 3000) })
