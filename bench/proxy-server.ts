/**
 * The app alone in a process of its own, for bench/proxy-throughput.ts: its
 * RSS and CPU are then the server's only, not the load generator's.
 *
 * Input: BENCH_S3 (JSON: bucket, region, endpoint, forcePathStyle, credentials).
 * Output: one JSON line on stdout, {"address": "...", "pids": [N]}, once listening.
 * Exits cleanly (so --cpu-prof writes its profile) on SIGTERM/SIGINT or when
 * stdin closes (the parent died).
 */
import { announceListening, buildBenchApp, exitChild, listenUntilStopped, onParentGone, readBenchS3 } from './lib.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
const s3 = readBenchS3() ?? exitChild('proxy-server', 'BENCH_S3 must be set (started by bench/proxy-throughput.ts)')

const app = await buildBenchApp(s3, {
  // Per-organization request limits would answer 429 to runs of many small objects; a download's cost is the same.
  rateLimit: false,
  logger: process.env.BENCH_LOG_LEVEL === undefined ? false : { level: process.env.BENCH_LOG_LEVEL }
})
const { address, stop } = await listenUntilStopped(app)
onParentGone(() => { void stop() })
announceListening(address)
