/**
 * Soak test (issue 6): does the server stay error-free and flat in memory under
 * sustained load?
 *
 *   npx tsx bench/soak.ts [--seconds 60] [--connections 8] [--no-pin]
 *
 * This process is the load generator (autocannon, two instances) and hosts
 * s3rver (or uses the external S3 named by S3_TEST_*). The app runs alone in a
 * child process (this same file, started with BENCH_SOAK_SERVE set) with rate
 * limits and docs off and its logger at warn. With taskset and at least 2 CPUs,
 * the child is pinned to CPU 0 and this process to CPU 1, as in
 * bench/proxy-throughput.ts.
 *
 * 1. uploads a 64 KiB object as org-1/soak/64k.bin, presigns it once through
 *    POST /generate-presigned-url (a real signed JWT) and checks one proxied
 *    download byte for byte;
 * 2. max: 2 s warm-up, then 5 s at full speed of both endpoints at once, one
 *    autocannon instance each: POST /generate-presigned-url and
 *    GET /api/v1/proxy/file?presigned_url=...; max = 2xx responses per second;
 * 3. soak: --seconds at 80 % of each endpoint's max (autocannon overallRate),
 *    sampling the child's VmRSS every second;
 * 4. prints a Markdown table on stdout (progress on stderr). Goals are PASS/MISS
 *    and never fail the run: it exits 0 unless it could not run at all.
 *
 * autocannon (a devDependency) is loaded lazily, so the type check needs neither
 * it nor its types.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  MiB, ROOT, Teardowns, announceListening, benchCommand, benchS3Json, buildBenchApp, cpuMeter, fetchPresignedUrl, fmt,
  fmtMiB, hostLoad, listenUntilStopped, loadAutocannon, mark, metricTable, onParentGone, pinLoadGenerator, proxyUrlFor,
  readBenchS3, runBench, startServerChild, stderrLog, stopServerChild, vmBytes, type BenchS3
} from './lib.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const SERVE_ENV = 'BENCH_SOAK_SERVE'
const KEY = 'org-1/soak/64k.bin'
const OBJECT_SIZE = 64 * 1024
const WARMUP_SECONDS = 2
const MAX_SECONDS = 5
const LOAD = 0.8
const SLOPE_GOAL_MIB_PER_MIN = 5
/** The presigned URL (and so the run) must stay within the app's default 1-hour URL lifetime. */
const MAX_SOAK_SECONDS = 3300
const SELF = fileURLToPath(import.meta.url)

const log = stderrLog('soak')

// ====================== the server child ======================

async function serve (s3: BenchS3): Promise<void> {
  const delay = process.env.MAX_EVENT_LOOP_DELAY_MS
  const app = await buildBenchApp(s3, {
    // One organization sends all the traffic: per-organization limits would answer 429.
    rateLimit: false,
    docs: false,
    // stdout carries the ready line only; log lines go to stderr, which the parent tallies.
    logger: { level: 'warn', stream: process.stderr },
    ...(delay === undefined || delay === '' ? {} : { maxEventLoopDelayMs: Number(delay) })
  })
  const { address, stop } = await listenUntilStopped(app)
  onParentGone(() => { void stop() })
  announceListening(address)
}

// ====================== autocannon, typed as far as we use it ======================

interface AcRequestOptions {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
}
interface AcOptions extends AcRequestOptions {
  connections: number
  duration: number
  overallRate?: number
  ignoreCoordinatedOmission?: boolean
  warmup?: { connections: number, duration: number }
}
interface AcResult {
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  '2xx': number
  statusCodeStats: Record<string, { count: number }>
  latency: { p50: number, p99: number, totalCount: number }
  requests: { total: number, sent: number }
}
type Autocannon = (opts: AcOptions) => Promise<AcResult>

/** Least-squares slope of y over x. */
function slope (points: Array<[number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  let sxy = 0
  let sxx = 0
  for (const [x, y] of points) { sxy += (x - mx) * (y - my); sxx += (x - mx) ** 2 }
  return sxx === 0 ? 0 : sxy / sxx
}

// ====================== the parent: load generator ======================

const teardowns = new Teardowns(log)

/** Server log lines at warn and above: kind and time, the first few of each kind echoed to stderr. */
const serverLines: Array<{ kind: string, time: number }> = []
const MAX_KEPT_LINES = 200_000
let droppedLines = 0
const echoed = new Map<string, number>()
const LEVELS: Record<number, string> = { 40: 'warn', 50: 'error', 60: 'fatal' }

function tallyServerLine (line: string): void {
  let entry: { level?: number, time?: number, msg?: string, err?: { code?: unknown, type?: string, message?: string } }
  try { entry = JSON.parse(line) } catch { process.stderr.write(`server: ${line}\n`); return }
  const err = entry.err
  const cause = err === undefined ? '' : typeof err.code === 'string' ? ` (${err.code})` : ` (${err.type ?? 'Error'}: ${String(err.message).slice(0, 60)})`
  const kind = `${LEVELS[entry.level ?? 0] ?? String(entry.level)}: ${entry.msg ?? ''}${cause}`
  const seen = echoed.get(kind) ?? 0
  echoed.set(kind, seen + 1)
  if (seen < 2) process.stderr.write(`server: ${line.slice(0, 400)}\n`)
  if (serverLines.length < MAX_KEPT_LINES) serverLines.push({ kind, time: entry.time ?? Date.now() })
  else droppedLines++
}

/** "N× kind" for the lines whose time is inside [from, to] (epoch ms), or outside it. */
function summarizeLines (from: number, to: number, inside: boolean): string {
  const counts = new Map<string, number>()
  for (const l of serverLines) {
    if ((l.time >= from && l.time <= to) === inside) counts.set(l.kind, (counts.get(l.kind) ?? 0) + 1)
  }
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  return total === 0 ? '0' : `${total}: ${[...counts].map(([k, n]) => `${n}× ${k}`).join('; ')}`
}

const perSecond = (r: AcResult): number => r['2xx'] / r.duration
const completedPerSecond = (r: AcResult): number => r.requests.total / r.duration
const socketErrors = (r: AcResult): number => r.errors - r.timeouts // autocannon counts timeouts among errors
const failures = (r: AcResult): number => r.non2xx + r.errors
function codes (r: AcResult): string {
  return Object.entries(r.statusCodeStats).map(([code, { count }]) => `${code}×${count}`).join(', ') || 'none'
}
function failureDetail (r: AcResult): string {
  return `non-2xx ${r.non2xx}, timeouts ${r.timeouts}, socket errors ${socketErrors(r)} (status: ${codes(r)})`
}

async function main (): Promise<void> {
  const wallStart = performance.now()
  const { values: args } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      connections: { type: 'string', default: '8' },
      'no-pin': { type: 'boolean', default: false }
    },
    strict: true
  })
  const seconds = Math.round(Number(args.seconds))
  if (!Number.isFinite(seconds) || seconds < 5 || seconds > MAX_SOAK_SECONDS) {
    throw new Error(`--seconds must be between 5 and ${MAX_SOAK_SECONDS} (the presigned URL lives 1 hour), got ${String(args.seconds)}`)
  }
  const connections = Math.round(Number(args.connections))
  if (!Number.isFinite(connections) || connections < 1 || connections > 200) {
    throw new Error(`--connections must be between 1 and 200 (the proxy allows 256 downloads at once), got ${String(args.connections)}`)
  }

  // Bounded whatever happens: the whole run gets its planned time plus two minutes.
  const watchdog = setTimeout(() => {
    log('watchdog: the run overran its time budget; stopping')
    void teardowns.run().finally(() => process.exit(1))
  }, (WARMUP_SECONDS + MAX_SECONDS + seconds + 120) * 1000)
  watchdog.unref()

  const autocannon = await loadAutocannon<Autocannon>()
  const acVersion = (JSON.parse(readFileSync(join(ROOT, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version

  // Imported here, not up front: the server child runs this file too, and must not load s3rver.
  const { startTestS3, externalS3Configured } = await import('../test/helpers/s3.js')
  const { signToken } = await import('../test/helpers/tokens.js')
  const pinning = pinLoadGenerator(args['no-pin'], externalS3Configured()
    ? 'yes (server child: CPU 0; autocannon: CPU 1; the external S3 is not pinned)'
    : 'yes (server child: CPU 0; autocannon + in-process s3rver: CPU 1)')

  const s3 = await startTestS3(teardowns)
  const s3Label = externalS3Configured() ? `external (${s3.endpoint})` : 's3rver, in-process'
  const body = randomBytes(OBJECT_SIZE)
  await s3.put(KEY, body)
  const digest = createHash('sha256').update(body).digest('hex')
  log(`s3: ${s3Label}, uploaded ${KEY} (${OBJECT_SIZE} bytes)`)

  const child = await startServerChild({
    script: SELF,
    env: { [SERVE_ENV]: benchS3Json(s3) },
    cpus: pinning.pin ? '0' : undefined,
    onStderrLine: tallyServerLine
  })
  teardowns.teardown(async () => { await stopServerChild(child) })
  log(`server child pid ${child.pid} on ${child.address}`)
  if (!child.address.startsWith('http://127.0.0.1:')) throw new Error(`server is not on loopback: ${child.address}`)

  // One URL up front, from the API itself, with a token that outlives the run.
  const token = signToken({ sub: 'soak', org_id: 'org-1' }, { expiresInSeconds: seconds + 3600 })
  const authorization = `Bearer ${token}`
  const presignBody = JSON.stringify({ key: KEY })
  const directUrl = await fetchPresignedUrl(child.address, authorization, KEY)
  const proxyUrl = proxyUrlFor(child.address, directUrl)
  const check = await fetch(proxyUrl, { headers: { authorization } })
  const got = Buffer.from(await check.arrayBuffer())
  if (check.status !== 200 || createHash('sha256').update(got).digest('hex') !== digest) {
    throw new Error(`proxied download check failed: HTTP ${check.status}, ${got.length} bytes`)
  }
  log('presign + proxied download checked (sha256 ok)')

  const presignReq: AcRequestOptions = {
    url: `${child.address}/generate-presigned-url`,
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json' },
    body: presignBody
  }
  const proxyReq: AcRequestOptions = { url: proxyUrl, method: 'GET', headers: { authorization } }
  // autocannon's coordinated-omission correction under a rate uses an expected interval of
  // ceil(1 / rate) = 1 ms and would add made-up samples; the latencies below are as measured.
  const both = async (duration: number, rates?: [number, number], warmup = false): Promise<[AcResult, AcResult]> => {
    const common = { connections, duration, ...(warmup ? { warmup: { connections, duration: WARMUP_SECONDS } } : {}) }
    // autocannon rejects ignoreCoordinatedOmission without a rate.
    const rate = (overallRate: number | undefined) => overallRate === undefined ? {} : { overallRate, ignoreCoordinatedOmission: true }
    return await Promise.all([
      autocannon({ ...presignReq, ...common, ...rate(rates?.[0]) }),
      autocannon({ ...proxyReq, ...common, ...rate(rates?.[1]) })
    ])
  }

  // ---- max ----
  log(`max: ${WARMUP_SECONDS} s warm-up + ${MAX_SECONDS} s at full speed, ${connections} connections per endpoint`)
  const maxCpu = cpuMeter(child.pids)
  const [maxPresign, maxProxy] = await both(MAX_SECONDS, undefined, true)
  const maxCpuUse = maxCpu()
  const maxRates: [number, number] = [perSecond(maxPresign), perSecond(maxProxy)]
  const maxTotal = maxRates[0] + maxRates[1]
  if (maxRates[0] < 1 || maxRates[1] < 1) {
    throw new Error(`max phase got no successful responses (presign: ${failureDetail(maxPresign)}; proxy: ${failureDetail(maxProxy)})`)
  }
  const targets: [number, number] = [Math.max(1, Math.round(LOAD * maxRates[0])), Math.max(1, Math.round(LOAD * maxRates[1]))]
  const targetTotal = targets[0] + targets[1]
  log(`max: ${fmt(maxTotal, 0)} req/s (presign ${fmt(maxRates[0], 0)}, proxy ${fmt(maxRates[1], 0)}); ` +
    `server CPU ${fmt(maxCpuUse.server, 0)}%, load generator ${fmt(maxCpuUse.client, 0)}%`)

  // ---- soak ----
  log(`soak: ${seconds} s at ${targetTotal} req/s (presign ${targets[0]}, proxy ${targets[1]}), VmRSS sampled every second`)
  const samples: Array<[number, number]> = []
  const t0 = performance.now()
  const sample = (): void => {
    try { samples.push([(performance.now() - t0) / 60_000, vmBytes(child.pid, 'VmRSS')]) } catch { /* the child is gone: the soak's errors show it */ }
  }
  sample()
  const rssStart = samples[0][1]
  const sampler = setInterval(() => {
    sample()
    const n = samples.length - 1
    if (n % 10 === 0) log(`  ${n} s: VmRSS ${fmtMiB(samples[samples.length - 1][1])}`)
  }, 1000)
  const soakCpu = cpuMeter(child.pids)
  const soakStartEpoch = Date.now()
  const [soakPresign, soakProxy] = await both(seconds, targets).finally(() => { clearInterval(sampler) })
  const soakEndEpoch = Date.now()
  const soakCpuUse = soakCpu()
  sample()
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
    throw new Error(`server child died during the soak (exit ${String(child.proc.exitCode ?? child.proc.signalCode)})`)
  }
  const rssEnd = samples[samples.length - 1][1]
  const rssPeak = Math.max(...samples.map(([, y]) => y))
  const mib = samples.map(([x, y]): [number, number] => [x, y / MiB])
  const rssSlope = slope(mib)
  // V8's heap breathes (a sawtooth of tens of MiB between major GCs), which a short run's
  // slope mistakes for a trend; a leak also lifts the troughs, the sawtooth does not.
  const span = mib[mib.length - 1][0]
  const troughs = [0, 1, 2].map(i => Math.min(...mib.filter(([x]) => x >= span * i / 3 && x <= span * (i + 1) / 3).map(([, y]) => y)))

  await stopServerChild(child)
  await teardowns.run()

  const soakTotal = soakPresign.requests.total + soakProxy.requests.total
  const achieved = completedPerSecond(soakPresign) + completedPerSecond(soakProxy)
  const errors = failures(soakPresign) + failures(soakProxy)
  const maxErrors = failures(maxPresign) + failures(maxProxy)
  // When a run ends, autocannon drops its connections with requests in flight; what the
  // server logs about those is told apart from what it logs in the soak's steady state.
  const steadyFrom = soakStartEpoch + 500
  const steadyTo = soakEndEpoch - 500
  const delay = process.env.MAX_EVENT_LOOP_DELAY_MS
  const rows: Array<[string, string]> = [
    ['Workload', `POST /generate-presigned-url + GET /api/v1/proxy/file (${OBJECT_SIZE / 1024} KiB object), one autocannon ${acVersion} instance each, ${connections} keep-alive connections each`],
    ['S3 server', s3Label],
    [`Max req/s (2xx; ${MAX_SECONDS} s after ${WARMUP_SECONDS} s warm-up)`, `${fmt(maxTotal, 0)} (presign ${fmt(maxRates[0], 0)}, proxy ${fmt(maxRates[1], 0)}); failures ${maxErrors === 0 ? '0' : `${maxErrors}: presign ${failureDetail(maxPresign)}; proxy ${failureDetail(maxProxy)}`}`],
    [`Target rate (${fmt(LOAD * 100, 0)} % of max)`, `${targetTotal} req/s (presign ${targets[0]}, proxy ${targets[1]})`],
    ['Achieved rate (goal ≥ 95 % of target)', `${fmt(achieved, 0)} req/s (presign ${fmt(completedPerSecond(soakPresign), 0)}, proxy ${fmt(completedPerSecond(soakProxy), 0)}) ${mark(achieved >= 0.95 * targetTotal)}`],
    ['Duration / total requests', `${fmt(Math.max(soakPresign.duration, soakProxy.duration), 1)} s / ${soakTotal} (presign ${soakPresign.requests.total}, proxy ${soakProxy.requests.total})`],
    ['Errors (goal 0)', `${errors} ${mark(errors === 0)} — presign: ${failureDetail(soakPresign)}; proxy: ${failureDetail(soakProxy)}`],
    ['Latency p50 / p99', `presign ${soakPresign.latency.p50} / ${soakPresign.latency.p99} ms; proxy ${soakProxy.latency.p50} / ${soakProxy.latency.p99} ms`],
    ['Server RSS start (after warm-up + max phase)', fmtMiB(rssStart)],
    ['Server RSS end / peak', `${fmtMiB(rssEnd)} / ${fmtMiB(rssPeak)}`],
    [`Server RSS slope (goal \\|slope\\| < ${SLOPE_GOAL_MIB_PER_MIN} MiB/min)`, `${fmt(rssSlope, 2)} MiB/min (least squares, ${samples.length} samples @1 s) ${mark(Math.abs(rssSlope) < SLOPE_GOAL_MIB_PER_MIN)}`],
    ['Server RSS minimum per third of the soak', `${troughs.map(y => fmt(y)).join(' → ')} MiB`],
    ['Server log lines ≥ warn, soak steady state', summarizeLines(steadyFrom, steadyTo, true)],
    ['Server log lines ≥ warn, elsewhere (warm-up, max phase, ±0.5 s around run ends)', summarizeLines(steadyFrom, steadyTo, false) + (droppedLines > 0 ? ` (+${droppedLines} not kept)` : '')],
    ['CPU, % of one core (max phase → soak)', `server ${fmt(maxCpuUse.server, 0)} → ${fmt(soakCpuUse.server, 0)}; load generator${externalS3Configured() ? '' : ' + s3rver'} ${fmt(maxCpuUse.client, 0)} → ${fmt(soakCpuUse.client, 0)}; other processes ${fmt(maxCpuUse.others, 0)} → ${fmt(soakCpuUse.others, 0)}`],
    ['Server settings', `rate limits off, docs off, logger warn, under-pressure maxEventLoopDelay ${delay === undefined || delay === '' ? '1000 (default)' : delay} ms + ELU 0.98, proxy maxConcurrentDownloads 256`],
    ['CPU pinning', pinning.label],
    ['Node', `${process.version}, ${pinning.cpus} CPUs; host 1-min loadavg at end ${fmt(hostLoad(), 2)}`],
    ['Wall time', `${fmt((performance.now() - wallStart) / 1000)} s`],
    ['Command', `\`${externalS3Configured() ? '(S3_TEST_* exported) ' : ''}${benchCommand('soak.ts')}\``]
  ]
  const out = metricTable(rows)
  process.stdout.write(out.join('\n'))
  clearTimeout(watchdog)
}

// ====================== entry ======================

const serveS3 = readBenchS3(SERVE_ENV)
if (serveS3 !== undefined) {
  await serve(serveS3)
} else {
  // Ctrl-C, or a SIGTERM (npx, timeout): stop the child and s3rver and remove its files.
  await runBench(main, teardowns, log, { signals: { SIGINT: 130, SIGTERM: 143 }, exit: true })
}
