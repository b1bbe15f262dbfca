/** A route module as @fastify/autoload would load it: the host's user, typed by the host. */
import type { FastifyInstance } from 'fastify'

export default async function me (fastify: FastifyInstance): Promise<void> {
  fastify.get('/me', { onRequest: [fastify.authenticate] }, async request => {
    const roles: string[] = request.user.roles
    const tenant: string | null = request.organization?.id ?? null
    return { id: request.user.id, name: request.user.name, admin: roles.includes('admin'), tenant, bucket: fastify.s3.bucket }
  })
}
