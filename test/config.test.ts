import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import { DEFAULT_PROXY_OPTIONS, DEFAULT_RATE_LIMITS, definedOnly, resolveFilesOptions } from '../src/options.js'

const SECRET = 's'.repeat(32)

t.test('production without S3 or JWT configuration fails fast with a clear message', async t => {
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), new ConfigError('NODE_ENV=production requires S3_BUCKET and one of JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL (with JWT_ISSUER)'))
  t.throws(() => loadConfig({ NODE_ENV: 'production', S3_BUCKET: 'bucket' }), /requires one of JWT_SECRET/)
  t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }), /requires S3_BUCKET$/)
  t.throws(() => loadConfig({ NODE_ENV: 'production', S3_BUCKET: '', JWT_SECRET: SECRET }), /requires S3_BUCKET/, 'empty counts as unset')
  const ok = loadConfig({ NODE_ENV: 'production', S3_BUCKET: 'bucket', JWT_SECRET: SECRET })
  t.equal(ok.production, true)
  t.equal(ok.files.bucket, 'bucket')
})

t.test('development defaults leave S3 and JWT to the embedded dev environment', async t => {
  const config = loadConfig({})
  t.equal(config.production, false)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.port, 8000)
  t.equal(config.logLevel, 'info')
  t.equal(config.files.bucket, undefined)
  t.equal(config.files.jwt, undefined)
  t.equal(config.files.region, 'us-east-1')
  t.equal(config.files.orgClaim, 'org_id')
  t.equal(config.files.expiresIn, 3600)
})

t.test('values are parsed and checked', async t => {
  const config = loadConfig({
    PORT: '9000', LOG_LEVEL: 'debug', S3_BUCKET: 'b-1', AWS_REGION: 'eu-west-1', S3_ENDPOINT: 'http://127.0.0.1:9000',
    S3_FORCE_PATH_STYLE: 'true', JWT_SECRET: SECRET, JWT_AUDIENCE: 'files', JWT_ORG_CLAIM: 'tenant'
  })
  t.equal(config.port, 9000)
  t.equal(config.logLevel, 'debug')
  t.equal(config.files.region, 'eu-west-1', 'AWS_REGION is the fallback region')
  t.equal(config.files.forcePathStyle, true)
  t.same(config.files.jwt, { secret: SECRET, audience: 'files' })
  t.equal(config.files.orgClaim, 'tenant')
  t.equal(loadConfig({ S3_REGION: 'ap-south-1', AWS_REGION: 'eu-west-1' }).files.region, 'ap-south-1', 'S3_REGION wins')

  t.throws(() => loadConfig({ PORT: 'eighty' }), /PORT/)
  t.throws(() => loadConfig({ PORT: '70000' }), /PORT/)
  t.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL/)
  t.throws(() => loadConfig({ JWT_SECRET: 'short' }), /JWT_SECRET/)
  t.throws(() => loadConfig({ S3_ENDPOINT: 'ftp://x' }), /S3_ENDPOINT/)
  t.throws(() => loadConfig({ S3_ENDPOINT: 'http://127.0.0.1:9000' }), /S3_ENDPOINT is set but S3_BUCKET is not/)
  t.throws(() => loadConfig({ PRESIGN_EXPIRES_IN: '604801' }), /PRESIGN_EXPIRES_IN/)
})

t.test('exactly one JWT key source; JWKS needs a pinned issuer', async t => {
  t.throws(() => loadConfig({ JWT_SECRET: SECRET, JWT_JWKS_URL: 'https://idp/jwks.json' }), /only one of/)
  t.throws(() => loadConfig({ JWT_JWKS_URL: 'https://idp.example/.well-known/jwks.json' }), /requires JWT_ISSUER/)
  t.same(loadConfig({ JWT_JWKS_URL: 'https://idp.example/jwks.json', JWT_ISSUER: 'https://idp.example/' }).files.jwt,
    { jwksUrl: 'https://idp.example/jwks.json', issuer: 'https://idp.example/' })
  const pem = '-----BEGIN PUBLIC KEY-----\\nABC\\n-----END PUBLIC KEY-----'
  t.same(loadConfig({ JWT_PUBLIC_KEY: pem }).files.jwt, { publicKey: '-----BEGIN PUBLIC KEY-----\nABC\n-----END PUBLIC KEY-----' }, 'escaped newlines restored')
})

t.test('plugin options are validated at register time, naming the bad option', async t => {
  const jwt = { secret: SECRET }
  t.throws(() => resolveFilesOptions({ jwt }), /invalid option "bucket"/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, expiresIn: 0 }), /invalid option "expiresIn"/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, expiresIn: 604801 }), /invalid option "expiresIn"/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, endpoint: 'file:///etc' }), /invalid option "endpoint"/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt: { secret: 'short' } }), /invalid option "jwt/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket' }), /option "jwt" is required/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, useHostJwt: true }), /either "jwt" or "useHostJwt"/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, credentials: { accessKeyId: 'a' } }), /invalid option "credentials"/)
  t.throws(() => resolveFilesOptions(null), /options must be an object/)
  const resolved = resolveFilesOptions({ bucket: 'bucket', jwt })
  t.equal(resolved.expiresIn, 3600)
  t.equal(resolved.orgClaim, 'org_id')
  t.equal(resolved.region, 'us-east-1')
})

t.test('an option set to undefined is an option not set (hosts with exactOptionalPropertyTypes pass process.env values as they are)', async t => {
  const jwt = { secret: SECRET }
  const credentials = async () => ({ accessKeyId: 'a', secretAccessKey: 'b' })
  const resolved = resolveFilesOptions({
    bucket: 'bucket',
    jwt: { ...jwt, audience: undefined, issuer: undefined },
    region: undefined,
    endpoint: undefined,
    credentials,
    expiresIn: undefined,
    useHostJwt: undefined,
    proxy: { connectTimeoutMs: undefined, maxConcurrentDownloads: 5 },
    rateLimit: { presignPerMinute: undefined, redisUrl: undefined },
    proxyLinks: undefined
  })
  t.same(resolved.proxy, { ...DEFAULT_PROXY_OPTIONS, maxConcurrentDownloads: 5 }, 'an undefined timeout keeps its default')
  t.same(resolved.rateLimit, DEFAULT_RATE_LIMITS, 'so does an undefined limit')
  t.same(resolved.jwt, jwt)
  t.equal(resolved.region, 'us-east-1')
  t.equal(resolved.expiresIn, 3600)
  t.equal(resolved.credentials, credentials, 'non-plain values are passed on as they are')
  t.notOk('endpoint' in resolved || 'proxyLinks' in resolved, 'no undefined option is passed on')
  const client = new (class S3Like { region = undefined })()
  t.equal(definedOnly({ s3Client: client }).s3Client, client, 'class instances (an S3Client) are not rebuilt')

  // Any optional options set to undefined resolve like the same options left out.
  const base = { bucket: 'bucket', jwt, proxy: { idleTimeoutMs: 1000 }, rateLimit: { proxyPerMinute: 7 } }
  const optional = ['region', 'endpoint', 'forcePathStyle', 'credentials', 's3Client', 'orgClaim', 'expiresIn', 'proxyLinks', 'healthRoutes', 'prefix', 'proxy.connectTimeoutMs', 'proxy.maxConcurrentDownloads', 'rateLimit.presignPerMinute', 'rateLimit.redisUrl', 'jwt.audience', 'jwt.issuer']
  const expected = resolveFilesOptions(base)
  t.doesNotThrow(() => fc.assert(fc.property(fc.subarray(optional), names => {
    const options = structuredClone(base) as unknown as Record<string, Record<string, unknown>>
    for (const name of names) {
      const [outer, inner] = name.split('.') as [string, string | undefined]
      if (inner === undefined) options[outer] = undefined as never
      else options[outer] = { ...options[outer], [inner]: undefined }
    }
    return isDeepStrictEqual(resolveFilesOptions(options), expected)
  }), { numRuns: 300 }), 'any subset of optional options set to undefined')
})

t.test('hardening settings: CORS origins are exact, limits and Redis are passed on', async t => {
  const config = loadConfig({
    CORS_ORIGINS: 'https://app.artosai.com, http://localhost:3000',
    REDIS_URL: 'redis://127.0.0.1:6379',
    RATE_LIMIT_PRESIGN_PER_MIN: '10',
    RATE_LIMIT_PROXY_PER_MIN: '5',
    PROXY_MAX_CONCURRENT_DOWNLOADS: '7',
    SHUTDOWN_GRACE_MS: '1000'
  })
  t.same(config.corsOrigins, ['https://app.artosai.com', 'http://localhost:3000'])
  t.same(config.files.rateLimit, { presignPerMinute: 10, proxyPerMinute: 5, redisUrl: 'redis://127.0.0.1:6379' })
  t.same(config.files.proxy, { maxConcurrentDownloads: 7 })
  t.equal(config.shutdownGraceMs, 1000)
  t.same(loadConfig({}).corsOrigins, [], 'no origins by default')
  for (const bad of ['*', 'null', 'https://app.artosai.com/', 'https://*.artosai.com', 'app.artosai.com', 'ftp://x.example']) {
    t.throws(() => loadConfig({ CORS_ORIGINS: bad }), /CORS_ORIGINS/, `refused: ${bad}`)
  }
  t.throws(() => loadConfig({ REDIS_URL: 'http://redis:6379' }), /REDIS_URL/)
  t.throws(() => loadConfig({ RATE_LIMIT_PRESIGN_PER_MIN: '0' }), /RATE_LIMIT_PRESIGN_PER_MIN/)
})

t.test('download caps, deadline and transfer floor: env vars reach the proxy options; unset, the options schema decides', async t => {
  const config = loadConfig({ PROXY_MAX_DOWNLOADS_PER_ORG: '4', PROXY_DOWNLOAD_DEADLINE_MS: '7200000', PROXY_MIN_BYTES_PER_SECOND: '0', PROXY_TRANSFER_WINDOW_MS: '10000' })
  t.same(config.files.proxy, { maxConcurrentDownloads: 256, maxDownloadsPerOrg: 4, downloadDeadlineMs: 7_200_000, minBytesPerSecond: 0, transferWindowMs: 10_000 })
  t.same(loadConfig({}).files.proxy, { maxConcurrentDownloads: 256 }, 'nothing set, nothing passed')
  const resolved = resolveFilesOptions({ bucket: 'bucket', jwt: { secret: SECRET } })
  t.equal(resolved.proxy.maxDownloadsPerOrg, 32, 'default per-organization cap: 32')
  t.throws(() => loadConfig({ PROXY_MAX_DOWNLOADS_PER_ORG: '0' }), /PROXY_MAX_DOWNLOADS_PER_ORG/)
  t.equal(resolved.proxy.downloadDeadlineMs, 6 * 3_600_000, 'default deadline: 6 h')
  t.equal(resolved.proxy.minBytesPerSecond, 64 * 1024, 'default floor: 64 KiB/s')
  t.equal(resolved.proxy.transferWindowMs, 30_000, 'default window: 30 s')
  t.throws(() => loadConfig({ PROXY_TRANSFER_WINDOW_MS: '0' }), /PROXY_TRANSFER_WINDOW_MS/)
  t.throws(() => loadConfig({ PROXY_MIN_BYTES_PER_SECOND: '-1' }), /PROXY_MIN_BYTES_PER_SECOND/)
  t.throws(() => loadConfig({ PROXY_DOWNLOAD_DEADLINE_MS: String(8 * 24 * 3_600_000) }), /PROXY_DOWNLOAD_DEADLINE_MS/, 'beyond 7 days')
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt: { secret: SECRET }, proxy: { minBytesPerSecond: -1 } }), /invalid option "proxy.minBytesPerSecond"/)
})

t.test('npm start sets the glibc malloc setting the proxy benchmark runs its server with', async t => {
  const { readFile } = await import('node:fs/promises')
  const { SERVICE_MALLOC_ENV } = await import('../bench/lib.js')
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
  const entries = Object.entries(SERVICE_MALLOC_ENV)
  t.ok(entries.length > 0, 'the benchmark names a setting')
  for (const [name, value] of entries) {
    t.match(pkg.scripts.start, `${name}=\${${name}:-${value}}`, `${name}=${value}, unless the environment sets it`)
  }
})

t.test('METRICS_PORT turns metrics on, on a port other than the API\'s', async t => {
  const off = loadConfig({})
  t.equal(off.metricsPort, undefined)
  t.equal(off.files.metrics, false, 'off by default')
  const on = loadConfig({ METRICS_PORT: '9464' })
  t.equal(on.metricsPort, 9464)
  t.equal(on.files.metrics, true)
  t.equal(loadConfig({ METRICS_PORT: '0', PORT: '0' }).metricsPort, 0, 'any free port (tests)')
  t.throws(() => loadConfig({ METRICS_PORT: '8000' }), /METRICS_PORT must differ from PORT/)
  t.throws(() => loadConfig({ METRICS_PORT: 'ninety' }), /METRICS_PORT/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt: { secret: SECRET }, metrics: { registry: {} } }), /invalid option "metrics.registry"/)
  t.same(resolveFilesOptions({ bucket: 'bucket', jwt: { secret: SECRET } }).metrics, false)
  t.same(resolveFilesOptions({ bucket: 'bucket', jwt: { secret: SECRET }, metrics: true }).metrics, {})
})

t.test('traces are on only when an OTLP endpoint is named, over HTTP', async t => {
  t.equal(loadConfig({}).tracing, undefined)
  t.equal(loadConfig({}).files.tracing, false, 'off by default')
  const on = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })
  t.same(on.tracing, { protocol: 'http/protobuf' }, 'OTLP\'s default protocol')
  t.equal(on.files.tracing, true)
  t.same(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).tracing, { protocol: 'http/json' })
  t.same(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }).tracing, { protocol: 'http/protobuf' }, 'the traces-specific variable wins')
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).tracing, undefined, 'OTEL_SDK_DISABLED')
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).tracing, undefined, 'OTEL_TRACES_EXPORTER=none')
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).tracing, undefined, 'no endpoint, no traces')
  t.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: use http\/protobuf/)
  t.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT/)
})

t.test('audit trail: AUDIT_* are mapped only when set; the options schema owns the defaults', async t => {
  t.notOk('audit' in loadConfig({}).files, 'unset: the plugin default (events in the log stream, no file)')
  t.same(loadConfig({ AUDIT_LOG_FILE: '/var/log/artos/audit.jsonl' }).files.audit, { file: '/var/log/artos/audit.jsonl' })
  t.same(loadConfig({ AUDIT_LOG_FILE: '/a.jsonl', AUDIT_LOG_FSYNC: 'false' }).files.audit, { file: '/a.jsonl', fsync: false })
  t.equal(loadConfig({ AUDIT_EVENTS: 'false' }).files.audit, false)
  t.same(loadConfig({ AUDIT_EVENTS: 'true' }).files, loadConfig({}).files, 'true is the default')
  t.throws(() => loadConfig({ AUDIT_EVENTS: 'false', AUDIT_LOG_FILE: '/a.jsonl' }), new ConfigError('AUDIT_EVENTS=false turns the audit trail off: unset AUDIT_LOG_FILE and AUDIT_LOG_FSYNC, or drop AUDIT_EVENTS=false'))
  t.throws(() => loadConfig({ AUDIT_LOG_FSYNC: 'sometimes' }), ConfigError)

  const jwt = { secret: SECRET }
  t.same(resolveFilesOptions({ bucket: 'bucket', jwt }).audit, { fsync: true }, 'on, to the log stream, fsync when a file is set')
  t.same(resolveFilesOptions({ bucket: 'bucket', jwt, audit: { file: '/a.jsonl' } }).audit, { file: '/a.jsonl', fsync: true })
  t.equal(resolveFilesOptions({ bucket: 'bucket', jwt, audit: false }).audit, false)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, audit: { fiel: '/a.jsonl' } }), /unknown option "audit.fiel"; did you mean "audit.file"/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, audit: { file: '' } }), /invalid option "audit/)
  t.throws(() => resolveFilesOptions({ bucket: 'bucket', jwt, audit: true }), /invalid option "audit"/)
})
