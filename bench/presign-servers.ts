/**
 * The servers bench/presign.ts compares, one per process, so the CPU each uses
 * is its own:
 *
 *   --variant A   the ceiling: bare Fastify 5, POST /generate-presigned-url parses
 *                 the JSON body and returns a constant {"url": BENCH_CONSTANT_URL};
 *   --variant N   the naive server from the AWS docs: @fastify/jwt (HS256 secret,
 *                 no verify cache) + getSignedUrl(s3Client, new GetObjectCommand())
 *                 on every request, the S3Client created once at startup;
 *   --variant P   our app: buildApp() with rate limits, docs and logging off.
 *   --workers N   (P only) N processes on one port with node:cluster.
 *
 * and the servers bench/presign-batch.ts compares on POST /generate-presigned-urls:
 *
 *   --variant B   our app, as P;
 *   --variant L   N's naive server, whose batch route loops `await getSignedUrl(...)`
 *                 over the items and answers our JSON shape.
 *
 * Input: BENCH_S3 (JSON: bucket, region, endpoint, forcePathStyle, credentials);
 * BENCH_CONSTANT_URL for A.
 * Output: one JSON line on stdout, {"address": "...", "pids": [N, ...]}, once
 * listening (for a cluster, the primary's pid first, then the workers').
 * Exits cleanly (so --cpu-prof writes its profile) on SIGTERM/SIGINT or when
 * stdin closes (the parent died).
 */
import cluster from 'node:cluster'
import { parseArgs } from 'node:util'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { TEST_SECRET } from '../test/helpers/tokens.js'
import { announceListening, buildBenchApp, exitChild, listenUntilStopped, onParentGone, readBenchS3 } from './lib.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const { values: args } = parseArgs({
  options: { variant: { type: 'string' }, workers: { type: 'string', default: '1' } },
  strict: true
})
const variant = args.variant
const workers = Number(args.workers)
if (variant !== 'A' && variant !== 'N' && variant !== 'P' && variant !== 'B' && variant !== 'L') fail('--variant must be A, N, P, B or L')
if (!Number.isInteger(workers) || workers < 1 || (workers > 1 && variant !== 'P')) fail('--workers must be 1, or more with --variant P')
const s3 = readBenchS3() ?? fail('BENCH_S3 must be set (started by bench/presign.ts)')

function fail (message: string): never {
  return exitChild('presign-servers', message)
}

/** A: what any Fastify route answering this request costs, and nothing more. */
async function ceiling (): Promise<FastifyInstance> {
  const url = process.env.BENCH_CONSTANT_URL
  if (url === undefined || url === '') fail('BENCH_CONSTANT_URL must be set for --variant A')
  const app = Fastify({ logger: false })
  app.post('/generate-presigned-url', async () => ({ url }))
  return app
}

/**
 * N: the AWS SDK docs' getSignedUrl example behind @fastify/jwt's README setup.
 * L: the same, as it would answer a batch: one getSignedUrl after another.
 */
async function naive (): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(fastifyJwt, { secret: TEST_SECRET })
  const client = new S3Client({
    region: s3.region, endpoint: s3.endpoint, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials
  })
  app.addHook('onClose', async () => { client.destroy() })
  const expiresIn = 3600
  const presign = async (key: string): Promise<string> =>
    await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: key }), { expiresIn })
  const onRequest = async (request: FastifyRequest): Promise<void> => { await request.jwtVerify() }
  app.post('/generate-presigned-url', { onRequest }, async request => {
    const { key } = request.body as { key: string }
    return { url: await presign(key) }
  })
  app.post('/generate-presigned-urls', { onRequest }, async request => {
    const { items } = request.body as { items: Array<{ key: string }> }
    const results = []
    for (const { key } of items) {
      const url = await presign(key)
      results.push({ key, url, expiresAt: new Date(Date.now() + expiresIn * 1000).toISOString() })
    }
    return { results }
  })
  return app
}

/** P and B: the real service, as src/server.ts builds it, minus per-org rate limits, docs and logs. */
async function ours (): Promise<FastifyInstance> {
  return await buildBenchApp(s3, { rateLimit: false, docs: false, logger: false })
}

async function serve (): Promise<{ address: string, stop: () => Promise<void> }> {
  const app = variant === 'A' ? await ceiling() : variant === 'N' || variant === 'L' ? await naive() : await ours()
  const served = await listenUntilStopped(app)
  if (cluster.isWorker) process.once('disconnect', () => { void served.stop() })
  return served
}

if (workers === 1) {
  const { address, stop } = await serve()
  onParentGone(() => { void stop() })
  announceListening(address)
} else if (cluster.isWorker) {
  // listen(0) in a cluster: the primary picks the port once, every worker shares it.
  const { address } = await serve()
  process.send?.({ address, pid: process.pid })
} else {
  // Linux default: the primary accepts and hands connections to workers round-robin.
  // Keep-alive connections then stay with their worker; the primary is idle.
  const started = await Promise.all(Array.from({ length: workers }, () => new Promise<{ address: string, pid: number }>((resolve, reject) => {
    const worker = cluster.fork()
    worker.once('message', resolve)
    worker.once('exit', code => { reject(new Error(`worker exited (${String(code)}) before listening`)) })
  })))
  const addresses = new Set(started.map(s => s.address))
  if (addresses.size !== 1) fail(`workers listen on different addresses: ${[...addresses].join(', ')}`)
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    const live = Object.values(cluster.workers ?? {}).filter(w => w !== undefined && !w.isDead())
    let left = live.length
    if (left === 0) process.exit(0)
    for (const w of live) {
      w?.once('exit', () => { if (--left === 0) process.exit(0) })
      w?.process.kill('SIGTERM')
    }
    setTimeout(() => { process.exit(1) }, 10_000).unref()
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  onParentGone(stop)
  announceListening(started[0].address, [process.pid, ...started.map(s => s.pid)])
}
