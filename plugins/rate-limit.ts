/**
 * Per-organization rate limits (rate-limiter-flexible), keyed by the verified
 * organization, with one budget for presigning and one for downloads. Routes
 * declare their operation (src/operations.ts); a batch of N presigns costs N
 * and is refused whole when it does not fit. With a Redis URL the counters
 * live in Redis and every instance behind the load balancer shares them.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { RateLimitedError } from '../src/errors.js'
import { budgetOf, operationOf } from '../src/operations.js'
import { requireOrganization } from '../src/decorators.js'

export interface RateLimitPluginOptions {
  presignPerMinute: number
  proxyPerMinute: number
  redisUrl?: string | undefined
}

const WINDOW_SECONDS = 60

async function rateLimitPlugin (fastify: FastifyInstance, opts: RateLimitPluginOptions): Promise<void> {
  let redis: Redis | undefined
  if (opts.redisUrl !== undefined) {
    // Imported only with a Redis URL: ioredis is not loaded by instances that count in memory.
    const { Redis } = await import('ioredis')
    // Fail fast rather than queue: a slow Redis must not stall requests.
    redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 2_000, commandTimeout: 1_000, enableOfflineQueue: false, lazyConnect: true })
    // A lost connection is logged once per error, not thrown as an unhandled 'error' event (requests fail open).
    redis.on('error', (err: Error) => { fastify.log.warn({ err }, 'rate limit store: Redis connection error') })
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
  const limiter = (budget: string, points: number): RateLimiterAbstract => redis === undefined
    ? new RateLimiterMemory({ points, duration: WINDOW_SECONDS, keyPrefix: `artos-files:${budget}` })
    : new RateLimiterRedis({ storeClient: redis, points, duration: WINDOW_SECONDS, keyPrefix: `artos-files-rate-limit:${budget}`, rejectIfRedisNotReady: true })
  const budgets = { presign: limiter('presign', opts.presignPerMinute), proxy: limiter('proxy', opts.proxyPerMinute) }

  // After authentication and body validation: the organization and the batch size are known.
  fastify.addHook('preHandler', async (request, reply) => {
    const operation = operationOf(request)
    if (operation === undefined) return
    const budget = budgets[budgetOf(operation)]
    const cost = operation === 'presign.batch' ? batchSize(request) : 1
    const organization = requireOrganization(request)
    let state: RateLimiterRes
    try {
      state = await budget.consume(organization, cost)
    } catch (outcome) {
      if (!(outcome instanceof RateLimiterRes)) {
        // An unreachable Redis lets requests through (and is logged) instead of failing them all.
        request.log.warn({ err: outcome }, 'rate limit store unavailable; request allowed')
        return
      }
      // Refused whole: give back what this request took, so it costs nothing.
      await budget.reward(organization, cost).catch(() => {})
      const retryAfter = Math.max(1, Math.ceil(outcome.msBeforeNext / 1000))
      void reply.header('retry-after', String(retryAfter))
      setLimitHeaders(reply, budget.points, 0, retryAfter)
      throw new RateLimitedError(`${retryAfter} seconds`)
    }
    setLimitHeaders(reply, budget.points, state.remainingPoints, Math.ceil(state.msBeforeNext / 1000))
  })
}

function setLimitHeaders (reply: { header: (name: string, value: string) => unknown }, limit: number, remaining: number, resetSeconds: number): void {
  reply.header('x-ratelimit-limit', String(limit))
  reply.header('x-ratelimit-remaining', String(remaining))
  reply.header('x-ratelimit-reset', String(resetSeconds))
}

function batchSize (request: FastifyRequest): number {
  const items = (request.body as { items?: unknown[] } | undefined)?.items
  return Array.isArray(items) ? items.length : 1
}

export default fp(rateLimitPlugin, { name: 'artos-files-rate-limit', fastify: '5.x' })
