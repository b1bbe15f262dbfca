/**
 * artos-files: the Files API as Fastify 5 plugins.
 *
 *   import artosFiles from 'artos-files'
 *   await app.register(artosFiles, { bucket, jwt: { secret }, prefix: '/files' })
 */
import { artosFiles } from './app.js'

export default artosFiles
export { artosFiles, buildApp, type BuildAppOptions } from './app.js'

// What we verified about a request, for the host's hooks and routes (we type no request property of the host's).
export { organizationOf, tokenClaimsOf, type ArtosFilesCaller } from './decorators.js'
export type { TokenClaims } from './token-claims.js'

// The pieces, for hosts that compose their own (authenticateOf(fastify) is authPlugin's onRequest hook).
export { authenticateOf } from './decorators.js'
export { default as authPlugin, type AuthPluginOptions } from '../plugins/auth.js'
export { default as s3Plugin, createFilesS3, encodeKeyPath, type FilesS3, type S3PluginOptions } from '../plugins/s3.js'
export { default as filesRoutes } from '../routes/files.js'
export { default as proxyRoutes, type ProxyRoutesOptions } from '../routes/proxy.js'
export { default as upstreamPlugin, type FilesUpstream, type UpstreamPluginOptions } from '../plugins/upstream.js'
export { default as openapiPlugin, bearerAuthScheme } from '../plugins/openapi.js'
// Types only: prom-client is loaded when `metrics` is on, not when the package is imported.
export type { FilesMetrics, MetricsPluginOptions } from '../plugins/metrics.js'
export type { FilesTracer, FilesSpanOptions } from '../plugins/tracing.js'

// Contract schemas and options.
export * from './schemas.js'
export {
  FilesOptionsSchema, JwtOptions, ProxyOptions, DEFAULT_PROXY_OPTIONS, resolveFilesOptions,
  type FilesOptions, type ResolvedFilesOptions
} from './options.js'

// The security decisions: which keys and URLs are allowed.
export { checkKeyForOrg, checkKeySyntax, isSafeOrgId, MAX_KEY_BYTES, type KeyVerdict } from './object-key.js'
export { checkPresignedUrl, objectOriginOf, type ObjectOrigin, type PresignedGet, type UrlVerdict } from './presigned-url.js'
export { logRedact, logSerializers, redactUrl } from './log-redaction.js'
// The audit trail's record, and the log-line hardening a host's logger can take (hooks.streamWrite).
export { escapeLineSeparators, type AuditEvent, type AuditOutcome } from './audit-event.js'
export * as errors from './errors.js'
