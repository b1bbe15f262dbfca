/**
 * The host's own typing, as the @fastify/jwt README tells a host to write it:
 * its token payload and user, and `authenticate: any` for its own hook.
 */
import '@fastify/jwt'

export interface HostUser {
  id: number
  name: string
  roles: string[]
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { id: number, name: string, roles: string[] }
    user: HostUser
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: any
    /** The host's own storage client, under the obvious name. */
    s3: { bucket: string }
  }
  interface FastifyRequest {
    /** The host's own tenant, under the obvious name. */
    organization: { id: string, plan: 'free' | 'pro' } | null
  }
}
