/**
 * The Files API as a plugin (`filesApi`), and `buildApp`, which wraps it in a
 * standalone Fastify instance the way src/server.ts and the tests use it.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { Ajv } from 'ajv'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import authPlugin from '../plugins/auth.js'
import s3Plugin from '../plugins/s3.js'
import filesRoutes from '../routes/files.js'
import proxyRoutes from '../routes/proxy.js'
import healthRoutes from '../routes/health.js'
import openapiPlugin from '../plugins/openapi.js'
import { resolveFilesOptions, type FilesOptions } from './options.js'
import { sharedSchemas } from './schemas.js'
import { errorHandler } from './error-handler.js'
import { logSerializers, redactUrl } from './log-redaction.js'

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
  // Every route of the Files API requires a verified token.
  await fastify.register(async function authenticatedRoutes (group) {
    group.addHook('onRequest', group.authenticate)
    await group.register(filesRoutes)
    await group.register(proxyRoutes, { proxy: opts.proxy })
  })
}

/** The embeddable plugin: encapsulated, so a host's prefix, hooks and schemas stay its own. */
export const artosFiles = fp(filesApi, { name: 'artos-files', fastify: '5.x', encapsulate: true })

export interface BuildAppOptions extends FilesOptions {
  logger?: FastifyServerOptions['logger']
  /** Trust X-Forwarded-* from a proxy in front of us (see Fastify's trustProxy). */
  trustProxy?: FastifyServerOptions['trustProxy']
  /** Serve the OpenAPI document and Swagger UI under /documentation (default true). */
  docs?: boolean
}

export async function buildApp ({ logger, trustProxy, docs = true, ...files }: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: logger === undefined || logger === false ? false : { ...(typeof logger === 'object' ? logger : {}), serializers: logSerializers },
    trustProxy: trustProxy ?? false,
    // Request ids from a trusted edge are kept so log lines can be joined across services.
    requestIdHeader: 'x-request-id'
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.setErrorHandler(errorHandler)
  // Fastify's default 404 logs and echoes the raw URL, query string included.
  app.setNotFoundHandler(async (request, reply) => {
    const message = `Route ${request.method}:${redactUrl(request.url)} not found`
    request.log.info(message)
    return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message })
  })
  // Registered first so it sees every route added after it.
  if (docs) await app.register(openapiPlugin)
  await app.register(healthRoutes)
  await app.register(artosFiles, files)
  return app
}
