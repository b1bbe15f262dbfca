/**
 * What each route of the Files API is, declared once in its route `config`
 * (`artosOperation`), so cross-cutting plugins (rate limits, metrics, audit)
 * key on one closed set of names instead of paths or options threaded through.
 */
import type { FastifyRequest } from 'fastify'

export type Operation = 'presign' | 'presign.batch' | 'proxy.get' | 'proxy.head' | 'proxy.link'

/** What became of one presign request (or one item of a batch). */
export type PresignOutcome = 'ok' | 'forbidden' | 'invalid' | 'failed'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which Files API operation a route is (artos-files). */
    artosOperation?: Operation
  }
  interface FastifyRequest {
    /**
     * Items of a presign batch by outcome, recorded by its handler (a batch's
     * response is 200 whatever became of its items). Read by metrics.
     */
    artosPresignOutcomes?: Partial<Record<PresignOutcome, number>> | null
  }
}

export function operationOf (request: FastifyRequest): Operation | undefined {
  return request.routeOptions.config.artosOperation
}

/** The per-organization budget an operation draws on. */
export function budgetOf (operation: Operation): 'presign' | 'proxy' {
  return operation.startsWith('presign') ? 'presign' : 'proxy'
}
