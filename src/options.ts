/**
 * Options of the Files API plugin. The TypeBox schema is the single source of
 * both the TypeScript type and the register-time validation.
 */
import { Type, type Static, type TOptional, type TSchema, type TUnsafe } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import type { S3Client } from '@aws-sdk/client-s3'
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types'
import type { Registry } from 'prom-client'

export const MIN_EXPIRES_IN = 1
/** SigV4 presigned URLs cannot outlive 7 days. */
export const MAX_EXPIRES_IN = 7 * 24 * 3600

/**
 * An optional option that also takes `undefined` for "not set": hosts compiled
 * with exactOptionalPropertyTypes pass `process.env.X` as it is. The JSON
 * schema is the inner one (validation skips undefined properties).
 */
function Optional<S extends TSchema> (schema: S): TOptional<TUnsafe<Static<S> | undefined>> {
  return Type.Optional(Type.Unsafe<Static<S> | undefined>(schema))
}

const NonEmpty = Type.String({ minLength: 1 })

export const JwtOptions = Type.Union([
  Type.Object({ secret: Type.String({ minLength: 32, description: 'HS256 shared secret (at least 32 characters)' }), issuer: Optional(NonEmpty), audience: Optional(NonEmpty) }, { additionalProperties: false }),
  Type.Object({ publicKey: Type.String({ pattern: '-----BEGIN PUBLIC KEY-----', description: 'RSA or EC public key, PEM (SPKI)' }), issuer: Optional(NonEmpty), audience: Optional(NonEmpty) }, { additionalProperties: false }),
  Type.Object({ jwksUrl: Type.String({ pattern: '^https?://' }), issuer: NonEmpty, audience: Optional(NonEmpty) }, { additionalProperties: false })
])
export type JwtOptions = Static<typeof JwtOptions>

const Milliseconds = Type.Integer({ minimum: 1, maximum: 600_000 })

/** Outbound limits of the proxy (undici's own defaults wait 300 s). */
export const ProxyOptions = Type.Object({
  /** TCP/TLS connect to the S3 endpoint. */
  connectTimeoutMs: Optional(Milliseconds),
  /** Until S3 sends response headers. */
  headersTimeoutMs: Optional(Milliseconds),
  /** Longest silence between two body chunks. */
  idleTimeoutMs: Optional(Milliseconds),
  /** Downloads streamed at once by this instance; more get 503 + Retry-After. */
  maxConcurrentDownloads: Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  /** Downloads one organization may have in progress (on all instances, with Redis); more get 429 + Retry-After. */
  maxDownloadsPerOrg: Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  /** Longest a download may last, however it progresses (up to 7 days). */
  downloadDeadlineMs: Optional(Type.Integer({ minimum: 1, maximum: 7 * 24 * 3_600_000 })),
  /** Slowest a download may move, averaged over each `transferWindowMs`, whichever side is slow; 0 turns it off. */
  minBytesPerSecond: Optional(Type.Integer({ minimum: 0, maximum: 1024 ** 3 })),
  /** Window the transfer rate is averaged over. */
  transferWindowMs: Optional(Milliseconds)
}, { additionalProperties: false })
export type ProxyOptions = Static<typeof ProxyOptions>

/** All of T's properties, set. */
type Defined<T> = { [K in keyof T]-?: Exclude<T[K], undefined> }

export const DEFAULT_PROXY_OPTIONS: Defined<ProxyOptions> = {
  connectTimeoutMs: 5_000,
  headersTimeoutMs: 15_000,
  idleTimeoutMs: 30_000,
  maxConcurrentDownloads: 256,
  // An eighth of an instance's slots: eight busy organizations fill one, none alone can.
  maxDownloadsPerOrg: 32,
  // 6 hours: a 5 GiB object at 256 KiB/s; well past any presigned URL's usual hour.
  downloadDeadlineMs: 6 * 3_600_000,
  // 64 KiB/s (0.5 Mbit/s) per 30 s window: below any link a multi-GiB download is
  // sensibly made over, yet holding all 256 slots then costs 128 Mbit/s received.
  // 30 s rides out TCP stalls, Wi-Fi roaming and GC pauses, like the idle timeout.
  minBytesPerSecond: 64 * 1024,
  transferWindowMs: 30_000
}

/** Per-organization request limits (per minute), shared through Redis when `redisUrl` is set. */
export const RateLimitOptions = Type.Object({
  presignPerMinute: Optional(Type.Integer({ minimum: 1 })),
  proxyPerMinute: Optional(Type.Integer({ minimum: 1 })),
  /** redis:// or rediss:// URL; counters are then shared by every instance. */
  redisUrl: Optional(Type.String({ pattern: '^rediss?://' }))
}, { additionalProperties: false })
export type RateLimitOptions = Static<typeof RateLimitOptions>

export const DEFAULT_RATE_LIMITS = { presignPerMinute: 1200, proxyPerMinute: 300 }

/** The audit trail (plugins/audit.ts): events go to the log stream, and with `file` also to a JSON-lines file. */
export const AuditOptions = Type.Object({
  /** Append every event to this file (created owner-only), before a presign is answered. */
  file: Optional(Type.String({ minLength: 1 })),
  /** fdatasync the file before a presign is answered, so its record survives power loss too (default true). */
  fsync: Optional(Type.Boolean())
}, { additionalProperties: false })
export type AuditOptions = Static<typeof AuditOptions>

export const DEFAULT_AUDIT_OPTIONS = { fsync: true }

export const FilesOptionsSchema = Type.Object({
  bucket: Type.String({ minLength: 3, maxLength: 63 }),
  region: Optional(NonEmpty),
  endpoint: Optional(Type.String({ pattern: '^https?://' })),
  forcePathStyle: Optional(Type.Boolean()),
  // Objects and functions from the AWS SDK: typed below, checked by shape here.
  credentials: Optional(Type.Unsafe<AwsCredentialIdentity | AwsCredentialIdentityProvider>({})),
  s3Client: Optional(Type.Unsafe<S3Client>({})),
  jwt: Optional(JwtOptions),
  useHostJwt: Optional(Type.Boolean()),
  orgClaim: Optional(Type.String({ minLength: 1, maxLength: 256 })),
  expiresIn: Optional(Type.Integer({ minimum: MIN_EXPIRES_IN, maximum: MAX_EXPIRES_IN })),
  proxy: Optional(ProxyOptions),
  /** Per-organization limits; `false` turns them off (e.g. when the host limits already). */
  rateLimit: Optional(Type.Union([RateLimitOptions, Type.Literal(false)])),
  /**
   * Plain-link downloads: GET /api/v1/proxy/link streams a presigned URL with no
   * Authorization header, and presign responses carry `proxyUrl`. Off unless set:
   * the contract's proxy requires the Bearer token.
   */
  proxyLinks: Optional(Type.Object({
    /** Where clients reach this API (links are built from it, never from request headers), e.g. https://api.example.com */
    publicBaseUrl: Type.String({ pattern: '^https?://[^/?#]+(/[^?#]*)?$' })
  }, { additionalProperties: false })),
  /** Audit events (on by default, to the log stream); `false` turns them off. */
  audit: Optional(Type.Union([AuditOptions, Type.Literal(false)])),
  /** Also serve GET /health (liveness) and GET /ready (readiness) without authentication. */
  healthRoutes: Optional(Type.Boolean()),
  /**
   * Prometheus metrics (plugins/metrics.ts) into `registry` (a prom-client Registry);
   * `true`: a new registry of this instance's own. Off by default. Serving them is the host's.
   */
  metrics: Optional(Type.Union([Type.Boolean(), Type.Object({
    registry: Optional(Type.Unsafe<Registry>({}))
  }, { additionalProperties: false })])),
  /**
   * Child spans (signing, upstream fetches) and trace ids in request log lines, through
   * @opentelemetry/api's global tracer provider: the process sets up the SDK. Off by default.
   */
  tracing: Optional(Type.Boolean()),
  prefix: Optional(Type.String())
})
export type FilesOptions = Static<typeof FilesOptionsSchema>

// strict: false lets Ajv ignore TypeBox's annotations; the Unsafe members compile to {} (anything).
const validateOptions = new Ajv({ strict: false, allErrors: false }).compile(FilesOptionsSchema)

export interface ResolvedFilesOptions extends FilesOptions {
  region: string
  orgClaim: string
  expiresIn: number
  proxy: Defined<ProxyOptions>
  rateLimit: false | (Defined<Omit<RateLimitOptions, 'redisUrl'>> & Pick<RateLimitOptions, 'redisUrl'>)
  /** false, or where the metrics go (no registry: a new one). */
  metrics: false | { registry?: Registry }
  tracing: boolean
  audit: false | (Defined<Omit<AuditOptions, 'file'>> & Pick<AuditOptions, 'file'>)
}

/**
 * `options` without its undefined properties, at every level of plain
 * objects: an option set to undefined is an option not set, so it never
 * spreads over a default.
 */
export function definedOnly<T extends object> (options: T): T {
  const kept: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue
    kept[name] = isPlainObject(value) ? definedOnly(value) : value
  }
  return kept as T
}

function isPlainObject (value: unknown): value is object {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}

/** Options Fastify itself passes to every plugin it registers. */
const FASTIFY_REGISTER_OPTIONS = ['prefix', 'logLevel', 'logSerializers']

/**
 * The first option name no schema knows, with the closest known one: from
 * JavaScript, `endPoint` or `expiresin` would otherwise be ignored silently.
 */
export function unknownOption (options: object, schema: TSchema = FilesOptionsSchema, path = ''): { name: string, closest: string } | undefined {
  const known = propertiesOf(schema)
  if (known === undefined) return undefined
  const names = path === '' ? [...known.keys(), ...FASTIFY_REGISTER_OPTIONS] : [...known.keys()]
  for (const [name, value] of Object.entries(options)) {
    const inner = known.get(name)
    if (inner === undefined) {
      if (path === '' && FASTIFY_REGISTER_OPTIONS.includes(name)) continue
      return { name: `${path}${name}`, closest: `${path}${closestName(name, names)}` }
    }
    // Only plain option objects are ours to walk (not an S3Client or a credentials object).
    if (isPlainObject(value)) {
      const nested = unknownOption(value, inner, `${path}${name}.`)
      if (nested !== undefined) return nested
    }
  }
  return undefined
}

/** Property schemas of an object schema, or of every member of a union of them. */
function propertiesOf (schema: TSchema): Map<string, TSchema> | undefined {
  const members = (schema.anyOf as TSchema[] | undefined) ?? [schema]
  const objects = members.filter(member => typeof member.properties === 'object')
  if (objects.length === 0) return undefined
  return new Map(objects.flatMap(member => Object.entries(member.properties as Record<string, TSchema>)))
}

function closestName (name: string, candidates: string[]): string {
  let best = candidates[0]
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** Levenshtein distance. */
function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}

/** Validates at register time and names the offending option, so a host sees its mistake at boot. */
export function resolveFilesOptions (options: unknown): ResolvedFilesOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('artos-files: options must be an object')
  const unknown = unknownOption(options)
  if (unknown !== undefined) throw new TypeError(`artos-files: unknown option "${unknown.name}"; did you mean "${unknown.closest}"?`)
  options = definedOnly(options)
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
    tracing: opts.tracing ?? false,
    audit: opts.audit === false ? false : { ...DEFAULT_AUDIT_OPTIONS, ...opts.audit }
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
