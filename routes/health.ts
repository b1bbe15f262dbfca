/** Liveness, without authentication, for load balancers and orchestrators. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HealthResponse } from '../src/schemas.js'

const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/health', {
    schema: { hide: true, response: { 200: HealthResponse } }
  }, async () => ({ status: 'ok' as const }))
}

export default healthRoutes
