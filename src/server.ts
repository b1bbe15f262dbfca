/**
 * Entry point: load config from the environment, build the app, listen, and
 * shut down gracefully. Without S3 or JWT configuration outside production, a
 * dev environment (embedded local S3, persisted dev secret) fills the gaps.
 * `npm start` runs the compiled file (dist/src/server.js) with plain node.
 */
import { metricsOf } from './decorators.js'
import { resolve } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from './config.js'
import type { FilesOptions } from './options.js'
import { releaseStartupMemory } from './startup-memory.js'

/**
 * npm run-script forwards the SIGINT and SIGTERM it receives to its child, so
 * under `npm start` a signal sent to the whole process group (Ctrl-C in a
 * terminal, `kill -- -PGID`) reaches us twice, milliseconds apart. A repeat of
 * the first signal within this window is that same request, not the second
 * signal that cuts in-flight downloads short.
 */
const SAME_SIGNAL_WINDOW_MS = 1000

/** How long after listening start-up's spare memory is handed back (src/startup-memory.ts). */
const STARTUP_MEMORY_RELEASE_DELAY_MS = 1000

async function main (): Promise<void> {
  // The AWS SDK's notice that its 2027 releases need Node 22; Node 20 is still a supported line here.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const config = loadConfig(process.env)

  // The tracing SDK only when traces go somewhere, and before Fastify is loaded.
  const tracing = config.tracing === undefined ? undefined : await (await import('./tracing.js')).startTracing(config.tracing)
  const { buildApp } = await import('./app.js')

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

  // Scraped on a port of its own, never the API's (src/metrics-server.ts).
  const metrics = config.metricsPort === undefined
    ? undefined
    : await (await import('./metrics-server.js')).listenMetrics(metricsOf(app).registry, { host: config.host, port: config.metricsPort })
  if (metrics !== undefined) app.log.info({ url: metrics.url }, 'metrics listening')
  // Node closes a keep-alive connection that goes idle after close() began only when its
  // keep-alive timeout ends (5 s): every download finishing during shutdown would hold the exit that long.
  let closing = false
  app.addHook('onResponse', (_request, _reply, done) => {
    if (closing) setImmediate(() => { app.server.closeIdleConnections() })
    done()
  })

  // In-flight downloads get SHUTDOWN_GRACE_MS to finish; a second signal exits at once.
  // SIGINT and SIGTERM are handled below, to tell a second signal from npm's copy of the first.
  const shutdown = closeWithGrace({ delay: config.shutdownGraceMs, skip: ['SIGINT', 'SIGTERM'] }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an unexpected error')
    else if (signal !== undefined) app.log.info({ signal }, 'shutting down')
    closing = true
    await app.close()
    await metrics?.close()
    await tracing?.shutdown()
    await dev?.close()
  })
  let first: { signal: NodeJS.Signals, at: number } | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = { signal, at: Date.now() }
      app.log.info({ signal }, 'shutting down')
      void shutdown.close()
    } else if (signal !== first.signal || Date.now() - first.at >= SAME_SIGNAL_WINDOW_MS) {
      app.log.error({ signal }, 'second signal: exiting without waiting for in-flight requests')
      process.exit(1)
    }
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const address = await app.listen({ host: config.host, port: config.port })
  if (dev !== undefined) process.stdout.write(dev.banner(address))
  // Not in the way of the first requests (readiness probes): the collection costs 40–60 ms of CPU.
  setTimeout(releaseStartupMemory, STARTUP_MEMORY_RELEASE_DELAY_MS).unref()
}

main().catch((err: unknown) => {
  // Configuration problems are the operator's to fix: one line saying what to set, no stack.
  const message = err instanceof ConfigError ? err.message : `failed to start: ${err instanceof Error ? err.message : String(err)}`
  process.stderr.write(`artos-files: ${message}\n`)
  process.exit(1)
})
