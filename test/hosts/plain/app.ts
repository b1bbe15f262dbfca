/**
 * A host with no JWT of its own: its sessions put its own `request.user` on
 * requests. What artos-files verified is read through its typed accessors.
 */
import Fastify from 'fastify'
import artosFiles, { organizationOf, tokenClaimsOf, type FilesOptions } from 'artos-files'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the host's session hook (as @fastify/passport would). */
    user?: { id: string, email: string }
  }
}

const app = Fastify()
app.addHook('onResponse', async request => {
  const organization: string | undefined = organizationOf(request)
  const expires: number | undefined = tokenClaimsOf(request)?.exp
  const sub: unknown = tokenClaimsOf(request)?.sub
  // @ts-expect-error the accessors are typed, not `any`
  const wrong: number | undefined = organizationOf(request)
  // @ts-expect-error artos-files declares no property on the host's requests
  const claimed: unknown = request.organization
  app.log.info({ organization, expires, sub, wrong, claimed, user: request.user?.email })
})

const files: FilesOptions = {
  bucket: process.env.S3_BUCKET ?? 'bucket',
  endpoint: process.env.S3_ENDPOINT,
  jwt: { jwksUrl: 'https://idp.example/.well-known/jwks.json', issuer: 'https://idp.example/', audience: process.env.JWT_AUDIENCE }
}
await app.register(artosFiles, { ...files, prefix: '/files' })
// @ts-expect-error artos-files declares no property on the host's instance
app.s3?.bucket.toString()
