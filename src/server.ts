/**
 * Entry point: load config from the environment, build the app, listen, and
 * shut down gracefully. Without S3 configuration outside production, it runs
 * on an embedded local S3 with a persisted dev JWT secret.
 */
import { join, resolve } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import {
  DEV_BUCKET, DEV_OBJECT_KEY, DEV_ORG, EMBEDDED_S3_CREDENTIALS,
  loadOrCreateDevJwtSecret, signDevToken, startEmbeddedS3, type EmbeddedS3
} from './dev-environment.js'

/** In-flight requests get this long to finish after SIGTERM/SIGINT. */
const SHUTDOWN_GRACE_MS = 10_000

async function main (): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`artos-files: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }

  let embeddedS3: EmbeddedS3 | undefined
  const files = { ...config.files }
  const dataDir = resolve(config.dataDir)
  if (files.bucket === undefined) {
    embeddedS3 = await startEmbeddedS3(join(dataDir, 's3'), DEV_BUCKET)
    Object.assign(files, { bucket: DEV_BUCKET, endpoint: embeddedS3.endpoint, forcePathStyle: true, credentials: EMBEDDED_S3_CREDENTIALS })
  }
  let devSecret: string | undefined
  if (files.jwt === undefined) {
    devSecret = await loadOrCreateDevJwtSecret(dataDir)
    files.jwt = { secret: devSecret }
  }

  const app = await buildApp({
    ...files,
    bucket: files.bucket as string,
    logger: { level: config.logLevel },
    trustProxy: config.trustProxy
  })

  closeWithGrace({ delay: SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an unexpected error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
    await embeddedS3?.close()
  })

  const address = await app.listen({ host: config.host, port: config.port })

  if (embeddedS3 !== undefined) {
    app.log.info({ endpoint: embeddedS3.endpoint, bucket: DEV_BUCKET }, `embedded local S3 (data in ${join(dataDir, 's3')}); seeded ${DEV_OBJECT_KEY}`)
  }
  if (devSecret !== undefined) {
    const token = signDevToken(devSecret, DEV_ORG, { orgClaim: files.orgClaim })
    process.stdout.write([
      '',
      `Dev token for organization "${DEV_ORG}" (valid 12 h; new ones: npm run token -- --org <org>):`,
      token,
      '',
      'Try it:',
      `curl -s -X POST ${address}/generate-presigned-url -H "Authorization: Bearer ${token}" -H 'Content-Type: application/json' -d '{"key":"${DEV_OBJECT_KEY}"}'`,
      ''
    ].join('\n') + '\n')
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`artos-files: failed to start: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
