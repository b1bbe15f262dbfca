/**
 * Spans and trace ids for the Files API, from whatever OpenTelemetry SDK the
 * process registered (src/tracing.ts in our server, a host's own when
 * embedded). Registered only with `tracing: true`, so @opentelemetry/api is not
 * even loaded otherwise. Span attributes are set here by name and value, never
 * copied from a request: no URL, key, token or organization reaches a span.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { TRACER } from '../src/decorators.js'
import type { Attributes } from '@opentelemetry/api'

export interface FilesSpanOptions {
  /** `client` for a call to another service (the storage upstream). */
  kind?: 'internal' | 'client'
  attributes: Attributes
}

export interface FilesTracer {
  /**
   * Runs `fn` in a child span of the active one. `annotate` adds attributes known
   * only afterwards; a failure sets the span's status to the error's code, never its message.
   */
  span: <T>(name: string, options: FilesSpanOptions, fn: (annotate: (attributes: Attributes) => void) => Promise<T>) => Promise<T>
}


const ignore = (): void => {}

/** No spans: what routes use when tracing is off. */
export const untraced: FilesTracer = { span: async (_name, _options, fn) => fn(ignore) }

/** The tracer of an instance, or `untraced` (routes registered without this plugin keep working). */
export function tracerOf (fastify: FastifyInstance): FilesTracer {
  return fastify.hasDecorator(TRACER) ? (fastify as unknown as Record<string, FilesTracer>)[TRACER] : untraced
}

/** Error codes are ours or libraries' constants (ARTOS_UPSTREAM_TIMEOUT, UND_ERR_SOCKET); anything else is just "error". */
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/

async function tracingPlugin (fastify: FastifyInstance): Promise<void> {
  const { trace, isSpanContextValid, SpanKind, SpanStatusCode } = await import('@opentelemetry/api')
  const tracer = trace.getTracer('artos-files')

  fastify.decorate(TRACER, {
    async span (name, { kind, attributes }, fn) {
      return await tracer.startActiveSpan(name, { kind: kind === 'client' ? SpanKind.CLIENT : SpanKind.INTERNAL, attributes }, async span => {
        try {
          return await fn(more => { span.setAttributes(more) })
        } catch (err) {
          const code = (err as { code?: unknown } | undefined)?.code
          span.setStatus({ code: SpanStatusCode.ERROR, message: typeof code === 'string' && CODE.test(code) ? code : 'error' })
          throw err
        } finally {
          span.end()
        }
      })
    }
  } satisfies FilesTracer)

  // Log lines of a traced request carry its trace id. The request span is
  // @fastify/otel's (or a host's), active while the hooks after its own run.
  fastify.addHook('onRequest', (request, reply, done) => {
    const span = trace.getActiveSpan()?.spanContext()
    if (span !== undefined && isSpanContextValid(span)) {
      const log = request.log.child({ trace_id: span.traceId, span_id: span.spanId })
      request.log = log
      reply.log = log
    }
    done()
  })
}

export default fp(tracingPlugin, { name: 'artos-files-tracing', fastify: '5.x' })
