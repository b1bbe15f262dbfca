/**
 * Options of the Files API plugin. The TypeBox schema is the single source of
 * both the TypeScript type and the register-time validation.
 */
import { Type, type Static } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import type { S3Client } from '@aws-sdk/client-s3'
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types'
import type { Registry } from 'prom-client'

export const MIN_EXPIRES_IN = 1
/** SigV4 presigned URLs cannot outlive 7 days. */
export const MAX_EXPIRES_IN = 7 * 24 * 3600

const NonEmpty = Type.String({ minLength: 1 })

export const JwtOptions = Type.Union([
  Type.Object({ secret: Type.String({ minLength: 32, description: 'HS256 shared secret (at least 32 characters)' }), issuer: Type.Optional(NonEmpty), audience: Type.Optional(NonEmpty) }, { additionalProperties: false }),
  Type.Object({ publicKey: Type.String({ pattern: '-----BEGIN PUBLIC KEY-----', description: 'RSA or EC public key, PEM (SPKI)' }), issuer: Type.Optional(NonEmpty), audience: Type.Optional(NonEmpty) }, { additionalProperties: false }),
  Type.Object({ jwksUrl: Type.String({ pattern: '^https?://' }), issuer: NonEmpty, audience: Type.Optional(NonEmpty) }, { additionalProperties: false })
])
export type JwtOptions = Static<typeof JwtOptions>

const Milliseconds = Type.Integer({ minimum: 1, maximum: 600_000 })

/** Outbound limits of the proxy (undici's own defaults wait 300 s). */
export const ProxyOptions = Type.Object({
  /** TCP/TLS connect to the S3 endpoint. */
  connectTimeoutMs: Type.Optional(Milliseconds),
  /** Until S3 sends response headers. */
  headersTimeoutMs: Type.Optional(Milliseconds),
  /** Longest silence between two body chunks. */
  idleTimeoutMs: Type.Optional(Milliseconds),
  /** Downloads streamed at once by this instance; more get 503 + Retry-After. */
  maxConcurrentDownloads: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 }))
}, { additionalProperties: false })
export type ProxyOptions = Static<typeof ProxyOptions>

export const DEFAULT_PROXY_OPTIONS: Required<ProxyOptions> = { connectTimeoutMs: 5_000, headersTimeoutMs: 15_000, idleTimeoutMs: 30_000, maxConcurrentDownloads: 256 }

/** Per-organization request limits (per minute), shared through Redis when `redisUrl` is set. */
export const RateLimitOptions = Type.Object({
  presignPerMinute: Type.Optional(Type.Integer({ minimum: 1 })),
  proxyPerMinute: Type.Optional(Type.Integer({ minimum: 1 })),
  /** redis:// or rediss:// URL; counters are then shared by every instance. */
  redisUrl: Type.Optional(Type.String({ pattern: '^rediss?://' }))
}, { additionalProperties: false })
export type RateLimitOptions = Static<typeof RateLimitOptions>

export const DEFAULT_RATE_LIMITS = { presignPerMinute: 1200, proxyPerMinute: 300 }

export const FilesOptionsSchema = Type.Object({
  bucket: Type.String({ minLength: 3, maxLength: 63 }),
  region: Type.Optional(NonEmpty),
  endpoint: Type.Optional(Type.String({ pattern: '^https?://' })),
  forcePathStyle: Type.Optional(Type.Boolean()),
  // Objects and functions from the AWS SDK: typed below, checked by shape here.
  credentials: Type.Optional(Type.Unsafe<AwsCredentialIdentity | AwsCredentialIdentityProvider>({})),
  s3Client: Type.Optional(Type.Unsafe<S3Client>({})),
  jwt: Type.Optional(JwtOptions),
  useHostJwt: Type.Optional(Type.Boolean()),
  orgClaim: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  expiresIn: Type.Optional(Type.Integer({ minimum: MIN_EXPIRES_IN, maximum: MAX_EXPIRES_IN })),
  proxy: Type.Optional(ProxyOptions),
  /** Per-organization limits; `false` turns them off (e.g. when the host limits already). */
  rateLimit: Type.Optional(Type.Union([RateLimitOptions, Type.Literal(false)])),
  /**
   * Plain-link downloads: GET /api/v1/proxy/link streams a presigned URL with no
   * Authorization header, and presign responses carry `proxyUrl`. Off unless set:
   * the contract's proxy requires the Bearer token.
   */
  proxyLinks: Type.Optional(Type.Object({
    /** Where clients reach this API (links are built from it, never from request headers), e.g. https://api.example.com */
    publicBaseUrl: Type.String({ pattern: '^https?://[^/?#]+(/[^?#]*)?$' })
  }, { additionalProperties: false })),
  /** Also serve GET /health (liveness) and GET /ready (readiness) without authentication. */
  healthRoutes: Type.Optional(Type.Boolean()),
  /**
   * Prometheus metrics (plugins/metrics.ts) into `registry` (a prom-client Registry);
   * `true`: a new registry of this instance's own. Off by default. Serving them is the host's.
   */
  metrics: Type.Optional(Type.Union([Type.Boolean(), Type.Object({
    registry: Type.Optional(Type.Unsafe<Registry>({}))
  }, { additionalProperties: false })])),
  /**
   * Child spans (signing, upstream fetches) and trace ids in request log lines, through
   * @opentelemetry/api's global tracer provider: the process sets up the SDK. Off by default.
   */
  tracing: Type.Optional(Type.Boolean()),
  prefix: Type.Optional(Type.String())
})
export type FilesOptions = Static<typeof FilesOptionsSchema>

// strict: false lets Ajv ignore TypeBox's annotations; the Unsafe members compile to {} (anything).
const validateOptions = new Ajv({ strict: false, allErrors: false }).compile(FilesOptionsSchema)

export interface ResolvedFilesOptions extends FilesOptions {
  region: string
  orgClaim: string
  expiresIn: number
  proxy: Required<ProxyOptions>
  rateLimit: false | (Required<Omit<RateLimitOptions, 'redisUrl'>> & Pick<RateLimitOptions, 'redisUrl'>)
  /** false, or where the metrics go (no registry: a new one). */
  metrics: false | { registry?: Registry }
  tracing: boolean
}

/** Validates at register time and names the offending option, so a host sees its mistake at boot. */
export function resolveFilesOptions (options: unknown): ResolvedFilesOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('artos-files: options must be an object')
  if (!validateOptions(options)) {
    const first = validateOptions.errors?.[0]
    const path = (first?.instancePath ?? '').slice(1).replaceAll('/', '.')
    if (path === 'jwt' || path.startsWith('jwt.')) {
      throw new TypeError('artos-files: invalid option "jwt": expected { secret } (32+ characters), { publicKey } (PEM) or { jwksUrl, issuer }, each with an optional audience')
    }
    const missing = first?.params !== undefined && 'missingProperty' in first.params ? String(first.params.missingProperty) : undefined
    const name = [path, missing].filter(part => part !== undefined && part !== '').join('.') || 'options'
    throw new TypeError(`artos-files: invalid option "${name}": ${first?.message ?? 'invalid'}`)
  }
  const opts = options as FilesOptions
  if (opts.jwt !== undefined && opts.useHostJwt === true) throw new TypeError('artos-files: set either "jwt" or "useHostJwt", not both')
  if (opts.jwt === undefined && opts.useHostJwt !== true) throw new TypeError('artos-files: option "jwt" is required (or set "useHostJwt: true")')
  if (opts.s3Client !== undefined && (opts.credentials !== undefined || opts.endpoint !== undefined)) {
    throw new TypeError('artos-files: "s3Client" already carries its endpoint and credentials; do not also set "credentials" or "endpoint"')
  }
  if (opts.credentials !== undefined && !isCredentialsLike(opts.credentials)) {
    throw new TypeError('artos-files: invalid option "credentials": expected {accessKeyId, secretAccessKey, sessionToken?} or a provider function')
  }
  const registry = typeof opts.metrics === 'object' ? opts.metrics.registry : undefined
  if (registry !== undefined && !isRegistryLike(registry)) {
    throw new TypeError('artos-files: invalid option "metrics.registry": expected a prom-client Registry')
  }
  return {
    ...opts,
    region: opts.region ?? 'us-east-1',
    orgClaim: opts.orgClaim ?? 'org_id',
    expiresIn: opts.expiresIn ?? 3600,
    proxy: { ...DEFAULT_PROXY_OPTIONS, ...opts.proxy },
    rateLimit: opts.rateLimit === false ? false : { ...DEFAULT_RATE_LIMITS, ...opts.rateLimit },
    metrics: opts.metrics === undefined || opts.metrics === false ? false : opts.metrics === true ? {} : opts.metrics,
    tracing: opts.tracing ?? false
  }
}

function isRegistryLike (value: unknown): boolean {
  const registry = value as Partial<Registry> | null
  return typeof registry === 'object' && registry !== null && typeof registry.registerMetric === 'function' && typeof registry.metrics === 'function'
}

function isCredentialsLike (value: unknown): boolean {
  if (typeof value === 'function') return true
  if (typeof value !== 'object' || value === null) return false
  const { accessKeyId, secretAccessKey, sessionToken } = value as Record<string, unknown>
  return typeof accessKeyId === 'string' && accessKeyId !== '' &&
    typeof secretAccessKey === 'string' && secretAccessKey !== '' &&
    (sessionToken === undefined || typeof sessionToken === 'string')
}
