/**
 * Configuration from environment variables, validated by env-schema against a
 * TypeBox schema. Nothing here reads process.env by itself: server.ts passes
 * the environment in, so tests can load any configuration they like.
 */
import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'
import { definedOnly, ProxyOptions, type FilesOptions, type JwtOptions } from './options.js'

/** OTLP over HTTP; gRPC would need another exporter (and @grpc/grpc-js) for the same collectors. */
const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const
export type OtlpProtocol = typeof OTLP_PROTOCOLS[number]

export const EnvSchema = Type.Object({
  NODE_ENV: Type.String({ default: 'development' }),
  HOST: Type.String({ default: '127.0.0.1' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8000 }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l)), { default: 'info' }),
  TRUST_PROXY: Type.Boolean({ default: false }),
  S3_BUCKET: Type.Optional(Type.String({ minLength: 3, maxLength: 63 })),
  S3_REGION: Type.Optional(Type.String({ minLength: 1 })),
  AWS_REGION: Type.Optional(Type.String({ minLength: 1 })),
  S3_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  S3_FORCE_PATH_STYLE: Type.Boolean({ default: false }),
  PRESIGN_EXPIRES_IN: Type.Integer({ minimum: 1, maximum: 604800, default: 3600 }),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1 })),
  JWT_JWKS_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  JWT_ISSUER: Type.Optional(Type.String({ minLength: 1 })),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_ORG_CLAIM: Type.String({ minLength: 1, default: 'org_id' }),
  DATA_DIR: Type.String({ default: '.data' }),
  CORS_ORIGINS: Type.Optional(Type.String()),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  RATE_LIMIT_PRESIGN_PER_MIN: Type.Integer({ minimum: 1, default: 1200 }),
  RATE_LIMIT_PROXY_PER_MIN: Type.Integer({ minimum: 1, default: 300 }),
  PROXY_LINKS: Type.Boolean({ default: false }),
  PUBLIC_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://[^/?#]+(/[^?#]*)?$' })),
  PROXY_MAX_CONCURRENT_DOWNLOADS: Type.Integer({ minimum: 1, default: 256 }),
  // Bounds and defaults are the options schema's (src/options.ts).
  PROXY_MAX_DOWNLOADS_PER_ORG: ProxyOptions.properties.maxDownloadsPerOrg,
  PROXY_DOWNLOAD_DEADLINE_MS: ProxyOptions.properties.downloadDeadlineMs,
  PROXY_MIN_BYTES_PER_SECOND: ProxyOptions.properties.minBytesPerSecond,
  PROXY_TRANSFER_WINDOW_MS: ProxyOptions.properties.transferWindowMs,
  MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 10, default: 1000 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, default: 30000 }),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  // OpenTelemetry's own variables (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):
  // the ones that decide whether and how we trace are checked here; the SDK and exporter read the rest.
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_EXPORTER_OTLP_PROTOCOL: Type.Optional(Type.String()),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Type.Optional(Type.String()),
  OTEL_TRACES_EXPORTER: Type.Optional(Type.Union([Type.Literal('otlp'), Type.Literal('none')])),
  OTEL_SDK_DISABLED: Type.Boolean({ default: false }),
  // Audit trail: defaults live in src/options.ts (DEFAULT_AUDIT_OPTIONS), so these are only mapped when set.
  AUDIT_EVENTS: Type.Optional(Type.Boolean()),
  AUDIT_LOG_FILE: Type.Optional(Type.String({ minLength: 1 })),
  AUDIT_LOG_FSYNC: Type.Optional(Type.Boolean())
})
export type Env = Static<typeof EnvSchema>

export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export interface Config {
  production: boolean
  host: string
  port: number
  logLevel: Env['LOG_LEVEL']
  trustProxy: boolean
  dataDir: string
  corsOrigins: string[]
  maxEventLoopDelayMs: number
  shutdownGraceMs: number
  /** Serve GET /metrics on this port (on `host`), apart from the API. */
  metricsPort?: number
  /** Export traces (src/tracing.ts); the exporter reads its endpoint, headers and timeout from OTEL_* itself. */
  tracing?: { protocol: OtlpProtocol }
  /** Files API options; `bucket`/`jwt` are absent when the dev environment must supply them. */
  files: Omit<FilesOptions, 'bucket'> & { bucket?: string }
}

export function loadConfig (env: Record<string, string | undefined>): Config {
  let parsed: Env
  try {
    // Unset and empty variables are the same thing to an operator.
    const data = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''))
    parsed = envSchema<Env>({ schema: EnvSchema, data, dotenv: false })
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`)
  }
  const production = parsed.NODE_ENV === 'production'
  const jwt = jwtOptionsFrom(parsed)

  if (production) {
    const missing = [
      parsed.S3_BUCKET === undefined && 'S3_BUCKET',
      jwt === undefined && 'one of JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL (with JWT_ISSUER)'
    ].filter(Boolean)
    if (missing.length > 0) throw new ConfigError(`NODE_ENV=production requires ${missing.join(' and ')}`)
  }
  if (parsed.PROXY_LINKS && parsed.PUBLIC_BASE_URL === undefined) {
    throw new ConfigError('PROXY_LINKS=true requires PUBLIC_BASE_URL (where clients reach this API, e.g. https://api.example.com): links are never built from request headers')
  }
  if (parsed.AUDIT_EVENTS === false && (parsed.AUDIT_LOG_FILE !== undefined || parsed.AUDIT_LOG_FSYNC !== undefined)) {
    throw new ConfigError('AUDIT_EVENTS=false turns the audit trail off: unset AUDIT_LOG_FILE and AUDIT_LOG_FSYNC, or drop AUDIT_EVENTS=false')
  }
  if (parsed.METRICS_PORT !== undefined && parsed.METRICS_PORT !== 0 && parsed.METRICS_PORT === parsed.PORT) {
    throw new ConfigError('METRICS_PORT must differ from PORT: metrics are never served on the API port')
  }
  const tracing = tracingFrom(parsed)
  if (parsed.S3_BUCKET === undefined && (parsed.S3_ENDPOINT !== undefined)) {
    throw new ConfigError('S3_ENDPOINT is set but S3_BUCKET is not')
  }

  return {
    production,
    host: parsed.HOST,
    port: parsed.PORT,
    logLevel: parsed.LOG_LEVEL,
    trustProxy: parsed.TRUST_PROXY,
    dataDir: parsed.DATA_DIR,
    corsOrigins: corsOriginsFrom(parsed.CORS_ORIGINS),
    maxEventLoopDelayMs: parsed.MAX_EVENT_LOOP_DELAY_MS,
    shutdownGraceMs: parsed.SHUTDOWN_GRACE_MS,
    ...(parsed.METRICS_PORT === undefined ? {} : { metricsPort: parsed.METRICS_PORT }),
    ...(tracing === undefined ? {} : { tracing }),
    files: {
      bucket: parsed.S3_BUCKET,
      region: parsed.S3_REGION ?? parsed.AWS_REGION ?? 'us-east-1',
      endpoint: parsed.S3_ENDPOINT,
      forcePathStyle: parsed.S3_FORCE_PATH_STYLE,
      jwt,
      orgClaim: parsed.JWT_ORG_CLAIM,
      expiresIn: parsed.PRESIGN_EXPIRES_IN,
      rateLimit: {
        presignPerMinute: parsed.RATE_LIMIT_PRESIGN_PER_MIN,
        proxyPerMinute: parsed.RATE_LIMIT_PROXY_PER_MIN,
        ...(parsed.REDIS_URL === undefined ? {} : { redisUrl: parsed.REDIS_URL })
      },
      proxy: {
        maxConcurrentDownloads: parsed.PROXY_MAX_CONCURRENT_DOWNLOADS,
        // Unset variables leave their option out: the options schema's default applies.
        ...definedOnly({
          maxDownloadsPerOrg: parsed.PROXY_MAX_DOWNLOADS_PER_ORG,
          downloadDeadlineMs: parsed.PROXY_DOWNLOAD_DEADLINE_MS,
          minBytesPerSecond: parsed.PROXY_MIN_BYTES_PER_SECOND,
          transferWindowMs: parsed.PROXY_TRANSFER_WINDOW_MS
        })
      },
      metrics: parsed.METRICS_PORT !== undefined,
      tracing: tracing !== undefined,
      ...(parsed.PROXY_LINKS && parsed.PUBLIC_BASE_URL !== undefined ? { proxyLinks: { publicBaseUrl: parsed.PUBLIC_BASE_URL } } : {}),
      ...auditOptionsFrom(parsed)
    }
  }
}

function auditOptionsFrom (env: Env): Pick<FilesOptions, 'audit'> {
  if (env.AUDIT_EVENTS === false) return { audit: false }
  const audit = {
    ...(env.AUDIT_LOG_FILE === undefined ? {} : { file: env.AUDIT_LOG_FILE }),
    ...(env.AUDIT_LOG_FSYNC === undefined ? {} : { fsync: env.AUDIT_LOG_FSYNC })
  }
  return Object.keys(audit).length === 0 ? {} : { audit }
}

/** Traces are exported only to an endpoint someone named, and not when OpenTelemetry's own switches say no. */
function tracingFrom (env: Env): Config['tracing'] {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT
  if (endpoint === undefined || env.OTEL_SDK_DISABLED || env.OTEL_TRACES_EXPORTER === 'none') return undefined
  const name = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL === undefined ? 'OTEL_EXPORTER_OTLP_PROTOCOL' : 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf'
  if (!(OTLP_PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new ConfigError(`${name}=${protocol} is not supported: use http/protobuf (the default) or http/json`)
  }
  return { protocol: protocol as OtlpProtocol }
}

function jwtOptionsFrom (env: Env): JwtOptions | undefined {
  const configured = [env.JWT_SECRET, env.JWT_PUBLIC_KEY, env.JWT_JWKS_URL].filter(v => v !== undefined)
  if (configured.length > 1) throw new ConfigError('set only one of JWT_SECRET, JWT_PUBLIC_KEY and JWT_JWKS_URL')
  const audience = env.JWT_AUDIENCE === undefined ? {} : { audience: env.JWT_AUDIENCE }
  const issuer = env.JWT_ISSUER === undefined ? {} : { issuer: env.JWT_ISSUER }
  if (env.JWT_SECRET !== undefined) return { secret: env.JWT_SECRET, ...issuer, ...audience }
  // PEM keys often arrive through env files with escaped newlines.
  if (env.JWT_PUBLIC_KEY !== undefined) return { publicKey: env.JWT_PUBLIC_KEY.replaceAll('\\n', '\n'), ...issuer, ...audience }
  if (env.JWT_JWKS_URL !== undefined) {
    if (env.JWT_ISSUER === undefined) throw new ConfigError('JWT_JWKS_URL requires JWT_ISSUER: tokens are only trusted from one pinned issuer')
    return { jwksUrl: env.JWT_JWKS_URL, issuer: env.JWT_ISSUER, ...audience }
  }
  return undefined
}

/** Comma-separated exact origins ("https://app.artosai.com"); no wildcards, no "null". */
function corsOriginsFrom (value: string | undefined): string[] {
  if (value === undefined) return []
  return value.split(',').map(origin => origin.trim()).filter(origin => origin !== '').map(origin => {
    let parsed: URL | undefined
    try { parsed = new URL(origin) } catch {}
    const plainHost = parsed !== undefined && /^([a-z0-9-]+\.)*[a-z0-9-]+$|^\[[0-9a-f:.]+\]$/.test(parsed.hostname)
    if (parsed === undefined || !plainHost || parsed.origin !== origin || !/^https?:$/.test(parsed.protocol)) {
      throw new ConfigError(`CORS_ORIGINS: "${origin}" is not an exact origin such as https://app.example.com (no path, wildcard or trailing slash)`)
    }
    return origin
  })
}
