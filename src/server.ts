/**
 * Entry point: load config from the environment, build the app, listen, and
 * shut down gracefully. Without S3 or JWT configuration outside production, a
 * dev environment (embedded local S3, persisted dev secret) fills the gaps.
 */
import { resolve } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import type { FilesOptions } from './options.js'

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

  // Imported only when needed, so production installs need not carry s3rver.
  const needsDev = config.files.bucket === undefined || config.files.jwt === undefined
  const dev = needsDev ? await (await import('./dev-environment.js')).prepareDevEnvironment(config.files, resolve(config.dataDir)) : undefined
  const files = dev?.files ?? config.files as FilesOptions

  const app = await buildApp({
    ...files,
    logger: { level: config.logLevel },
    trustProxy: config.trustProxy,
    corsOrigins: config.corsOrigins,
    maxEventLoopDelayMs: config.maxEventLoopDelayMs
  })

  // In-flight downloads get SHUTDOWN_GRACE_MS to finish; a second signal exits at once.
  closeWithGrace({ delay: config.shutdownGraceMs }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an unexpected error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
    await dev?.close()
  })

  const address = await app.listen({ host: config.host, port: config.port })
  if (dev !== undefined) process.stdout.write(dev.banner(address))
}

main().catch((err: unknown) => {
  // Configuration problems are the operator's to fix: one line saying what to set, no stack.
  const message = err instanceof ConfigError ? err.message : `failed to start: ${err instanceof Error ? err.message : String(err)}`
  process.stderr.write(`artos-files: ${message}\n`)
  process.exit(1)
})
