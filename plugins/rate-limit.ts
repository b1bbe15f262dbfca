/**
 * Per-organization rate limits with @fastify/rate-limit, keyed by the verified
 * organization (so it runs after authentication) with separate budgets per
 * route. With a Redis URL the counters live in Redis and every instance
 * behind the load balancer shares them; otherwise they are in memory.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import { RateLimitedError } from '../src/errors.js'

export interface RateLimitPluginOptions {
  redisUrl?: string
}

async function rateLimitPlugin (fastify: FastifyInstance, opts: RateLimitPluginOptions): Promise<void> {
  let redis: Redis | undefined
  if (opts.redisUrl !== undefined) {
    // Fail fast rather than queue: a slow Redis must not stall requests.
    redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 2_000, commandTimeout: 1_000, enableOfflineQueue: false, lazyConnect: true })
    try {
      await redis.connect()
    } catch (err) {
      redis.disconnect() // stop ioredis from retrying in the background
      throw new Error(`artos-files: cannot reach Redis for rate limits: ${(err as Error).message}`)
    }
    fastify.addHook('onClose', async () => {
      // quit() waits for pending replies; a lost connection can only be dropped.
      if (redis?.status === 'ready') await redis.quit().catch(() => { redis?.disconnect() })
      else redis?.disconnect()
    })
  }
  await fastify.register(fastifyRateLimit, {
    global: false,
    // Runs after the onRequest authentication, when request.organization is known.
    hook: 'preHandler',
    keyGenerator: request => request.organization,
    redis,
    nameSpace: 'artos-files-rate-limit:',
    // An unreachable Redis lets requests through (and is logged) instead of failing them all.
    skipOnError: true,
    errorResponseBuilder: (_request, context) => new RateLimitedError(context.after)
  })
}

export default fp(rateLimitPlugin, { name: 'artos-files-rate-limit', fastify: '5.x' })
