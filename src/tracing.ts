/**
 * The server's OpenTelemetry SDK: imported by src/server.ts only when an OTLP
 * endpoint is configured (so start-up and memory are untouched otherwise), and
 * before Fastify is, so @fastify/otel sees the instance being created.
 *
 * Spans: one per request (@fastify/otel, named "METHOD /route/pattern", W3C
 * `traceparent` accepted) with its handler's span, and the Files API's own
 * children (plugins/tracing.ts). The standard OTEL_* variables configure the
 * exporter (endpoint, headers, timeout, compression), the resource
 * (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), sampling and batching.
 *
 * Presigned URLs travel in query strings and tokens can be pasted into paths:
 * the request span's `url.path` is redacted as logs redact it, and every span's
 * URL-shaped attributes are redacted once more as it ends, whoever set them.
 */
import { NodeTracerProvider, BatchSpanProcessor, type SpanExporter, type SpanProcessor, type Span } from '@opentelemetry/sdk-trace-node'
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import type { FastifyRequest } from 'fastify'
import type { OtlpProtocol } from './config.js'
import { REDACTED, redactUrl } from './log-redaction.js'

export interface Tracing {
  /** Exports what is buffered, then stops. */
  shutdown: () => Promise<void>
}

const JWT_ANYWHERE = /eyJ[\w-]*\.[\w-]*\.?[\w-]*/g

/** Attributes that hold a URL or part of one, in current and older semantic conventions. */
const URL_ATTRIBUTES = ['url.full', 'url.path', 'url.query', 'http.url', 'http.target']

/**
 * Redacts URL-shaped attributes as a span ends, before any exporter sees it, and
 * URLs or tokens inside a status message (@fastify/otel copies an error's message there).
 */
export const redactingProcessor: SpanProcessor = {
  onStart () {},
  onEnding (span: Span) {
    for (const name of URL_ATTRIBUTES) {
      const value = span.attributes[name]
      if (typeof value === 'string') span.setAttribute(name, name === 'url.query' ? redactUrl(`?${value}`).slice(1) : redactAbsoluteUrl(value))
    }
    const message = span.status.message
    if (message !== undefined && message !== '') {
      const redacted = message.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, redactAbsoluteUrl).replace(JWT_ANYWHERE, REDACTED)
      if (redacted !== message) span.setStatus({ ...span.status, message: redacted })
    }
  },
  onEnd () {},
  async forceFlush () {},
  async shutdown () {}
}

/** redactUrl for a URL that may be absolute: scheme and host kept, userinfo dropped. */
function redactAbsoluteUrl (url: string): string {
  const absolute = /^([a-z][a-z0-9+.-]*:\/\/)(?:[^/?#@]*@)?([^/?#]*)(.*)$/i.exec(url)
  return absolute === null ? redactUrl(url) : `${absolute[1]}${absolute[2]}${absolute[3] === '' ? '' : redactUrl(absolute[3])}`
}

function pathOf (url: string): string {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

export async function startTracing ({ protocol }: { protocol: OtlpProtocol }): Promise<Tracing> {
  const exporter: SpanExporter = protocol === 'http/json'
    ? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter()
    : new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter()
  const provider = new NodeTracerProvider({
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our default name.
    resource: resourceFromAttributes({ 'service.name': 'artos-files' }).merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [redactingProcessor, new BatchSpanProcessor(exporter)]
  })
  provider.register() // AsyncLocalStorage context, W3C trace context and baggage propagation

  const fastifyOtel = new FastifyOtelInstrumentation({
    // Every Fastify instance created from here on: the app builds its own.
    registerOnInitialization: true,
    // Hook spans would outnumber the ones that tell something; the request span covers them.
    instrumentHooks: false,
    // 4xx are answers, not exceptions; a 5xx's status still says so, and its log line has the stack and trace id.
    recordExceptions: false,
    requestHook (span, request: FastifyRequest) {
      const route = request.routeOptions.url
      span.updateName(`${request.method} ${route ?? 'unmatched'}`)
      span.setAttribute('url.path', redactUrl(pathOf(request.url)))
      const operation = request.routeOptions.config.artosOperation
      if (operation !== undefined) span.setAttribute('artos.operation', operation)
    }
  })
  fastifyOtel.setTracerProvider(provider)

  return {
    async shutdown () {
      fastifyOtel.disable()
      await provider.shutdown()
    }
  }
}
