/**
 * A platform team's host: its own @fastify/jwt with its own typing, its own
 * `authenticate`, `organization` and `s3` decorators, route modules, and
 * artos-files under /files with its own token verification.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import artosFiles, { organizationOf, tokenClaimsOf, type FilesOptions, type TokenClaims } from 'artos-files'
import './jwt-types.js'
import me from './routes/me.js'

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const app = Fastify()
await app.register(fastifyJwt, { secret: env('HOST_JWT_SECRET') })
app.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => {
  try {
    await request.jwtVerify()
  } catch (err) {
    await reply.send(err)
  }
})
app.decorate('s3', { bucket: 'host-uploads' })
app.decorateRequest('organization', null)
await app.register(me, { prefix: '/host' })

// What the host sees of our requests: our accessors, and its own request.user left alone.
let seen: unknown = null
app.addHook('onResponse', async request => {
  if (!request.url.startsWith('/files/')) return
  const organization: string | undefined = organizationOf(request)
  const claims: TokenClaims | undefined = tokenClaimsOf(request)
  const sub: unknown = claims?.sub
  seen = { organization: organization ?? null, sub: sub ?? null, hostUser: request.user ?? null, hostOrganization: request.organization }
})
app.get('/host/seen', async () => seen)

const files: FilesOptions = {
  bucket: env('S3_BUCKET'),
  region: process.env.S3_REGION,
  endpoint: process.env.S3_ENDPOINT,
  forcePathStyle: true,
  credentials: { accessKeyId: env('S3_ACCESS_KEY_ID'), secretAccessKey: env('S3_SECRET_ACCESS_KEY') },
  jwt: { secret: env('JWT_SECRET'), audience: process.env.JWT_AUDIENCE }
}
await app.register(artosFiles, { ...files, prefix: '/files' })
const address = await app.listen({ host: '127.0.0.1', port: 0 })
console.log('LISTENING ' + address)
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
