/**
 * What each route of the Files API is, declared once in its route `config`
 * (`artosOperation`), so cross-cutting plugins (rate limits, metrics, audit)
 * key on one closed set of names instead of paths or options threaded through.
 */
import type { FastifyRequest } from 'fastify'

export type Operation = 'presign' | 'presign.batch' | 'proxy.get' | 'proxy.head' | 'proxy.link'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which Files API operation a route is (artos-files). */
    artosOperation?: Operation
  }
}

export function operationOf (request: FastifyRequest): Operation | undefined {
  return request.routeOptions.config.artosOperation
}

/** The per-organization budget an operation draws on. */
export function budgetOf (operation: Operation): 'presign' | 'proxy' {
  return operation.startsWith('presign') ? 'presign' : 'proxy'
}
