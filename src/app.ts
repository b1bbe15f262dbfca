/**
 * The Files API as a plugin (`filesApi`), and `buildApp`, which wraps it in a
 * standalone Fastify instance the way src/server.ts and the tests use it.
 */
import { randomUUID } from 'node:crypto'
import type { LookupFunction } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import fastifyCors from '@fastify/cors'
import fastifyUnderPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import { Ajv } from 'ajv'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import authPlugin from '../plugins/auth.js'
import s3Plugin from '../plugins/s3.js'
import upstreamPlugin, { kLookup } from '../plugins/upstream.js'
import auditPlugin, { kNoLogStream } from '../plugins/audit.js'
import filesRoutes from '../routes/files.js'
import presignBatchRoutes from '../routes/presign-batch.js'
import proxyRoutes from '../routes/proxy.js'
import healthRoutes from '../routes/health.js'
import rateLimitPlugin from '../plugins/rate-limit.js'
import openapiPlugin from '../plugins/openapi.js'
import securityHeaders from '../plugins/security-headers.js'
import tracingPlugin from '../plugins/tracing.js'
import type { MetricsPluginOptions } from '../plugins/metrics.js'
import { resolveFilesOptions, type FilesOptions } from './options.js'
import { proxyLinkBase } from './proxy-link.js'
import { sharedSchemas } from './schemas.js'
import { errorHandler } from './error-handler.js'
import { OverloadedError } from './errors.js'
import { logRedact, logSerializers, looksLikeJwt, redactUrl } from './log-redaction.js'
import { refuseRepeatedAuthorization } from './repeated-authorization.js'
import { acceptJsonBodiesOnly } from './json-body.js'
import { authenticateOf, filesUpstreamOf, METRICS, metricsOf } from './decorators.js'
import { escapeLineSeparators } from './audit-event.js'

async function filesApi (fastify: FastifyInstance, options: FilesOptions): Promise<void> {
  const opts = resolveFilesOptions(options)

  // Our own Ajv, so unknown body fields are rejected (400) whatever the host's
  // Ajv settings: Fastify's default silently strips them.
  const ajv = new Ajv({ removeAdditional: false, useDefaults: false, coerceTypes: false, allErrors: false })
  for (const schema of sharedSchemas) {
    ajv.addSchema(schema)
    fastify.addSchema(schema)
  }
  fastify.setValidatorCompiler(({ schema }) => ajv.compile(schema))
  fastify.setErrorHandler(errorHandler)
  // Every POST route of ours reads JSON; anything else is 415 (the host's parsers stay its own).
  acceptJsonBodiesOnly(fastify)
  // Before any route, so their hooks see every request. A registration above us (buildApp's) already does.
  if (opts.metrics !== false && !fastify.hasDecorator(METRICS)) await fastify.register(await loadMetricsPlugin(), opts.metrics)
  if (opts.tracing) await fastify.register(tracingPlugin)

  await fastify.register(authPlugin, { jwt: opts.jwt, orgClaim: opts.orgClaim })
  await fastify.register(s3Plugin, {
    bucket: opts.bucket,
    region: opts.region,
    endpoint: opts.endpoint,
    forcePathStyle: opts.forcePathStyle,
    credentials: opts.credentials,
    s3Client: opts.s3Client,
    expiresIn: opts.expiresIn
  })
  await fastify.register(upstreamPlugin, {
    ...opts.proxy,
    redisUrl: opts.rateLimit === false ? undefined : opts.rateLimit.redisUrl,
    lookup: (options as { [kLookup]?: LookupFunction })[kLookup]
  })
  if (opts.metrics !== false) metricsOf(fastify).observeDownloads(() => filesUpstreamOf(fastify).inFlight)
  if (opts.healthRoutes === true) await fastify.register(healthRoutes)
  // One set of per-organization budgets for every route group below.
  if (opts.rateLimit !== false) await fastify.register(rateLimitPlugin, opts.rateLimit)
  // Before the route groups, so its hooks see every operation of both.
  if (opts.audit !== false) await fastify.register(auditPlugin, { ...opts.audit, [kNoLogStream]: (options as { [kNoLogStream]?: boolean })[kNoLogStream] })
  const links = opts.proxyLinks === undefined ? {} : { proxyLinkBase: proxyLinkBase(opts.proxyLinks.publicBaseUrl, fastify.prefix) }
  // Every route of the Files API requires a verified token…
  await fastify.register(async function authenticatedRoutes (group) {
    group.addHook('onRequest', authenticateOf(group))
    await group.register(filesRoutes, links)
    await group.register(presignBatchRoutes, links)
    await group.register(proxyRoutes, { mode: 'bearer' })
  })
  // …except plain links, when enabled: their presigned URL is the credential.
  if (opts.proxyLinks !== undefined) await fastify.register(proxyRoutes, { mode: 'link' })
}

/** prom-client costs ~30 ms of start-up: loaded only when metrics are on. */
async function loadMetricsPlugin (): Promise<FastifyPluginAsync<MetricsPluginOptions>> {
  return (await import('../plugins/metrics.js')).default
}

/** The embeddable plugin: encapsulated, so a host's prefix, hooks and schemas stay its own. */
export const artosFiles = fp(filesApi, { name: 'artos-files', fastify: '5.x', encapsulate: true })

export interface BuildAppOptions extends FilesOptions {
  logger?: FastifyServerOptions['logger'] | undefined
  /** Trust X-Forwarded-* from a proxy in front of us (see Fastify's trustProxy). */
  trustProxy?: FastifyServerOptions['trustProxy'] | undefined
  /** Serve the OpenAPI document and Swagger UI under /documentation (default true). */
  docs?: boolean | undefined
  /** Exact origins allowed to call the API from browsers (CORS); none by default. */
  corsOrigins?: string[] | undefined
  /** Shed load (503 + Retry-After) when the event loop lags more than this (default 1000 ms). */
  maxEventLoopDelayMs?: number | undefined
  /** …or is busier than this share of the time (default 0.98; 1 turns this trigger off). */
  maxEventLoopUtilization?: number | undefined
}

/** Incoming request ids are kept only when they are short and plain, so they are safe to log and echo. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export async function buildApp ({ logger, trustProxy, docs = true, corsOrigins = [], maxEventLoopDelayMs = 1000, maxEventLoopUtilization = 0.98, ...files }: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // streamWrite: a raw U+2028 in a logged key would split the line for some readers (src/audit-event.ts).
    logger: logger === undefined || logger === false ? false : { ...(typeof logger === 'object' ? logger : {}), serializers: logSerializers, redact: logRedact, hooks: { streamWrite: escapeLineSeparators } },
    trustProxy: trustProxy ?? false,
    // Request ids from the edge are kept (and echoed) so log lines join across services.
    requestIdHeader: false,
    genReqId: request => {
      const incoming = request.headers['x-request-id']
      return typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) && !looksLikeJwt(incoming) ? incoming : randomUUID()
    },
    // A path Fastify cannot decode is answered with the raw path in the message; ours is redacted.
    frameworkErrors: (error, request, reply) => {
      const safe = error.code === 'FST_ERR_BAD_URL' || error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? Object.assign(new Error(`'${redactUrl(request.url)}' is not a valid URL`), { code: error.code, statusCode: 400 })
        : error
      errorHandler(safe, request, reply)
    }
  }).withTypeProvider<TypeBoxTypeProvider>()
  // First, so its hooks see every request: 404s, docs and load shedding included.
  const metrics = files.metrics === undefined || files.metrics === false ? false : resolveFilesOptions(files).metrics
  if (metrics !== false) await app.register(await loadMetricsPlugin(), metrics)
  app.setErrorHandler(errorHandler)
  app.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id)
    done()
  })
  // Every route, docs and 404s included (the plugin refuses them on its own routes too).
  app.addHook('onRequest', refuseRepeatedAuthorization)
  // Fastify's default 404 logs and echoes the raw URL, query string included: ours logs and echoes it redacted.
  app.setNotFoundHandler(async (request, reply) => {
    const message = `Route ${request.method}:${redactUrl(request.url)} not found`
    request.log.info(message)
    return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message })
  })

  await app.register(fastifyUnderPressure, {
    maxEventLoopDelay: maxEventLoopDelayMs,
    maxEventLoopUtilization,
    retryAfter: 5,
    customError: OverloadedError
  })
  // An API's headers (OWASP REST Security Cheat Sheet): nothing here is meant to
  // be rendered or framed. helmet's page-oriented extras (DNS prefetch, IE download
  // options, Flash policies, XSS auditor, origin-agent-cluster) are left out: each
  // is bytes and header validation on every response. Swagger UI sets its own,
  // looser policy on its pages (staticCSP in plugins/openapi.ts).
  await app.register(securityHeaders, {
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    xFrameOptions: { action: 'deny' },
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false
  })
  // Exact origins only; bearer tokens travel in a header, so no credentials mode.
  // With no origins there is nothing to allow: no plugin, no per-request hook.
  if (corsOrigins.length > 0) {
    await app.register(fastifyCors, {
      origin: corsOrigins,
      credentials: false,
      methods: ['GET', 'HEAD', 'POST'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Range', 'If-None-Match', 'If-Modified-Since', 'If-Range', 'X-Request-Id'],
      exposedHeaders: ['WWW-Authenticate', 'Content-Disposition', 'Content-Length', 'Content-Range', 'ETag', 'Last-Modified', 'Accept-Ranges', 'Retry-After', 'X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'],
      maxAge: 600
    })
  }

  // Registered before the API so it sees every route added after it.
  if (docs) await app.register(openapiPlugin)
  // Without a logger the audit trail has only its file (if any) to write to.
  const filesOptions: FilesOptions & { [kNoLogStream]?: boolean } = { ...files, healthRoutes: files.healthRoutes ?? true, [kNoLogStream]: logger === undefined || logger === false }
  await app.register(artosFiles, filesOptions)
  return app
}
