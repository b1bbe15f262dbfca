/**
 * Prometheus metrics (prom-client) in a registry of this instance's own, never
 * prom-client's global one, so two apps in one process do not collide. Every
 * label value comes from a closed set: route patterns and operations declared
 * in code (src/operations.ts), methods, status codes, outcome and reason names.
 * Never a raw URL, a key or an organization. Serving the registry is the
 * caller's business (src/metrics-server.ts for our server: never the API port).
 */
import fp from 'fastify-plugin'
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { METRICS } from '../src/decorators.js'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { operationOf, presignOutcomesOf, type Operation, type PresignOutcome } from '../src/operations.js'
import { classifyFailure } from './upstream.js'
import { cutByUpstream } from '../src/download-cut.js'

export interface MetricsPluginOptions {
  /** Where the metrics go; by default a new registry that also collects Node's process metrics. */
  registry?: Registry
}

export interface FilesMetrics {
  readonly registry: Registry
  /** Adds a source of downloads in progress (an upstream service's `inFlight`) to the gauge. */
  observeDownloads: (inFlight: () => number) => void
}

/** The code of the error a request was answered with, beside the request (the host owns its type). */
const errorCodes = new WeakMap<FastifyRequest, string>()

/** Node's parser knows more methods; anything else is one label value. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
const OUR_CODE = /^ARTOS_[A-Z_]{1,48}$/
/** Refusals by their error's code; any other 429 of ours is named by its code (a new limit needs no change here). */
const REFUSALS: Record<string, string> = {
  ARTOS_RATE_LIMITED: 'rate_limit',
  ARTOS_OVERLOADED: 'overloaded',
  ARTOS_TOO_BUSY: 'downloads'
}

export function refusalReason (statusCode: number, code: string | null): string | undefined {
  if (code === null || !OUR_CODE.test(code)) return undefined
  return REFUSALS[code] ?? (statusCode === 429 ? code.slice('ARTOS_'.length).toLowerCase() : undefined)
}

/** A single presign's outcome from its answer (a batch's handler records its items instead). */
export function presignOutcome (statusCode: number, code: string | null): PresignOutcome | undefined {
  if (statusCode === 200) return 'ok'
  if (statusCode === 403) return 'forbidden'
  if (statusCode === 500) return 'failed'
  // Bad input: schema, JSON, size, media type, key, name, version. A token without an organization is not.
  if ((statusCode === 400 || statusCode === 413 || statusCode === 415) && code !== 'ARTOS_AUTHENTICATION_FAILED') return 'invalid'
  return undefined
}

async function metricsPlugin (fastify: FastifyInstance, opts: MetricsPluginOptions): Promise<void> {
  const registry = opts.registry ?? new Registry()
  // A host's own registry may collect these already; registering them twice would throw.
  if (opts.registry === undefined) collectDefaultMetrics({ register: registry })
  const registers = [registry]

  const requests = new Counter({ name: 'artos_http_requests_total', help: 'HTTP requests answered, by route pattern, method and status', labelNames: ['route', 'method', 'status'] as const, registers })
  const duration = new Histogram({ name: 'artos_http_request_duration_seconds', help: 'Time from request to the end of the response (whole download for the proxy)', labelNames: ['route', 'method', 'status'] as const, registers })
  const presigns = new Counter({ name: 'artos_presign_total', help: 'Presign requests by outcome; a batch counts each item', labelNames: ['operation', 'outcome'] as const, registers })
  const relayed = new Counter({ name: 'artos_proxy_bytes_total', help: 'Object bytes relayed to clients by the proxy', labelNames: ['operation'] as const, registers })
  const upstreamErrors = new Counter({ name: 'artos_upstream_errors_total', help: 'Storage upstream failures and timeouts (clients leaving are not counted)', labelNames: ['operation', 'kind'] as const, registers })
  const refusals = new Counter({ name: 'artos_refusals_total', help: 'Requests refused by rate limits (429) or load shedding (503)', labelNames: ['operation', 'reason'] as const, registers })
  const downloadSources: Array<() => number> = []
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'artos_proxy_downloads_in_progress',
    help: 'Downloads being streamed by this instance',
    registers,
    collect () { this.set(downloadSources.reduce((sum, inFlight) => sum + inFlight(), 0)) }
  })

  fastify.decorate(METRICS, {
    registry,
    observeDownloads (inFlight) { downloadSources.push(inFlight) }
  } satisfies FilesMetrics)

  function observe (request: FastifyRequest, reply: FastifyReply, seconds: number): void {
    const status = reply.statusCode
    const labels = {
      route: request.is404 ? 'unmatched' : request.routeOptions.url ?? 'unmatched',
      method: METHODS.has(request.method) ? request.method : 'other',
      status: String(status)
    }
    requests.inc(labels)
    duration.observe(labels, seconds)

    const operation: Operation | 'none' = operationOf(request) ?? 'none'
    const code = errorCodes.get(request) ?? null
    const refused = refusalReason(status, code)
    if (refused !== undefined) refusals.inc({ operation, reason: refused })
    if (operation === 'presign' || operation === 'presign.batch') {
      const recorded = presignOutcomesOf(request)
      if (recorded !== undefined) {
        for (const [outcome, count] of Object.entries(recorded)) if (count > 0) presigns.inc({ operation, outcome }, count)
      } else {
        const outcome = presignOutcome(status, code)
        if (outcome !== undefined) presigns.inc({ operation, outcome })
      }
    } else if (operation !== 'none' && (status === 502 || status === 504)) {
      // Before the first byte: the answer says which (UpstreamFailedError, UpstreamTimeoutError).
      upstreamErrors.inc({ operation, kind: status === 504 ? 'timeout' : 'failed' })
    } else if (operation !== 'none' && cutByUpstream(reply.raw)) {
      // Cut off by the deadline or the rate floor while the upstream held it up: its connection
      // reads as a client that left, so the body's error above never counts it.
      upstreamErrors.inc({ operation, kind: 'timeout' })
    }
  }

  // Every request once, when its response closes: finished, or cut off mid-download.
  // (Fastify's reply.elapsedTime runs only with a logger or an onResponse hook.)
  fastify.addHook('onRequest', (request, reply, done) => {
    const start = performance.now()
    reply.raw.once('close', () => { observe(request, reply, (performance.now() - start) / 1000) })
    done()
  })
  fastify.addHook('onError', (request, reply, error, done) => {
    if (typeof error.code === 'string') errorCodes.set(request, error.code)
    done()
  })
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const operation = operationOf(request)
    if (operation?.startsWith('proxy') === true && isStream(payload)) {
      // After the first byte the answer is already 200: a failing body is counted here.
      payload.on('error', err => {
        const kind = classifyFailure(err)
        if (reply.raw.headersSent && kind !== 'client-closed') upstreamErrors.inc({ operation, kind })
      })
      // Counted as the response reads them: a 'data' listener added only once Fastify pipes the body takes nothing from it.
      const bytes = relayed.labels({ operation })
      reply.raw.once('pipe', source => { source.on('data', (chunk: Buffer) => { bytes.inc(chunk.length) }) })
    }
    done(null, payload)
  })
}

function isStream (payload: unknown): payload is Readable {
  return typeof (payload as Readable | null)?.pipe === 'function'
}

export default fp(metricsPlugin, { name: 'artos-files-metrics', fastify: '5.x' })
