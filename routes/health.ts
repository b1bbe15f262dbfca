/**
 * Liveness and readiness, without authentication, for load balancers and
 * orchestrators. Registered inside the Files API plugin (healthRoutes option)
 * so readiness can ask the S3 plugin whether it could sign right now.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HealthResponse } from '../src/schemas.js'
import { NotReadyError } from '../src/errors.js'
import { filesS3Of } from '../src/decorators.js'

/** A readiness probe must answer quickly even when the credential source hangs. */
const READINESS_TIMEOUT_MS = 2_000

const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const s3 = filesS3Of(fastify)
  fastify.get('/health', {
    schema: { hide: true, response: { 200: HealthResponse } }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/ready', { schema: { hide: true } }, async (request, reply) => {
    try {
      // Resolving credentials that outlast a new URL is exactly what presigning needs.
      await Promise.race([
        s3.credentials(),
        new Promise((_resolve, reject) => setTimeout(() => { reject(new Error('credential resolution timed out')) }, READINESS_TIMEOUT_MS).unref())
      ])
      return { status: 'ok' }
    } catch (err) {
      request.log.warn({ err }, 'not ready: credentials cannot be resolved')
      void reply.header('retry-after', '5')
      throw new NotReadyError()
    }
  })
}

export default healthRoutes
