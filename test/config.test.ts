import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'
import { resolveFilesOptions } from '../src/options.js'

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
