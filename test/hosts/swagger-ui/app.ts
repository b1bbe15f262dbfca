/**
 * A platform's host with its own RS256 @fastify/jwt, @fastify/swagger and
 * @fastify/swagger-ui (no document-wide `security`), and artos-files under
 * /files verifying the host's own tokens (`useHostJwt`).
 */
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import artosFiles from 'artos-files'

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const app = Fastify()
await app.register(fastifyJwt, {
  secret: { private: env('HOST_JWT_PRIVATE_KEY'), public: env('HOST_JWT_PUBLIC_KEY') },
  sign: { algorithm: 'RS256' },
  verify: { algorithms: ['RS256'] }
})
await app.register(fastifySwagger, { openapi: { info: { title: 'Platform API', version: '1.0.0' } } })
await app.register(fastifySwaggerUi, { routePrefix: '/docs' })
app.get('/status', { schema: { tags: ['Platform'] } }, async () => ({ ok: true }))

await app.register(artosFiles, {
  prefix: '/files',
  bucket: env('S3_BUCKET'),
  region: process.env.S3_REGION,
  endpoint: process.env.S3_ENDPOINT,
  forcePathStyle: true,
  credentials: { accessKeyId: env('S3_ACCESS_KEY_ID'), secretAccessKey: env('S3_SECRET_ACCESS_KEY') },
  useHostJwt: true
})
const address = await app.listen({ host: '127.0.0.1', port: 0 })
console.log('LISTENING ' + address)
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
