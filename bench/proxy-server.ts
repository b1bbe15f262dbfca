/**
 * The app alone in a process of its own, for bench/proxy-throughput.ts: its
 * RSS and CPU are then the server's only, not the load generator's.
 *
 * Input: BENCH_S3 (JSON: bucket, region, endpoint, forcePathStyle, credentials).
 * Output: one JSON line on stdout, {"address": "...", "pid": N}, once listening.
 * Exits cleanly (so --cpu-prof writes its profile) on SIGTERM/SIGINT or when
 * stdin closes (the parent died).
 */
import { buildApp } from '../src/app.js'
import { TEST_SECRET } from '../test/helpers/tokens.js'

interface BenchS3 {
  bucket: string
  region: string
  endpoint: string
  forcePathStyle: boolean
  credentials: { accessKeyId: string, secretAccessKey: string }
}

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
const raw = process.env.BENCH_S3
if (raw === undefined || raw === '') {
  process.stderr.write('proxy-server: BENCH_S3 must be set (started by bench/proxy-throughput.ts)\n')
  process.exit(2)
}
const s3 = JSON.parse(raw) as BenchS3

const app = await buildApp({
  bucket: s3.bucket,
  region: s3.region,
  endpoint: s3.endpoint,
  forcePathStyle: s3.forcePathStyle,
  credentials: s3.credentials,
  jwt: { secret: TEST_SECRET },
  // Per-organization request limits would answer 429 to runs of many small objects; a download's cost is the same.
  rateLimit: false,
  logger: process.env.BENCH_LOG_LEVEL === undefined ? false : { level: process.env.BENCH_LOG_LEVEL }
})
const address = await app.listen({ host: '127.0.0.1', port: 0 })

let stopping = false
async function stop (): Promise<void> {
  if (stopping) return
  stopping = true
  await app.close().catch(() => {})
  process.exit(0)
}
process.once('SIGTERM', () => { void stop() })
process.once('SIGINT', () => { void stop() })
process.stdin.on('end', () => { void stop() })
process.stdin.resume()

process.stdout.write(JSON.stringify({ address, pid: process.pid }) + '\n')
