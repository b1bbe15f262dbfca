/**
 * Proxy throughput and memory benchmark.
 *
 *   npx tsx bench/proxy-throughput.ts [--size-mib 256] [--rss-gib 1] [--repeats 6]
 *                                     [--rss-concurrency 1] [--client-cpu N] [--cpu-prof]
 *                                     [--no-pin] [--glibc-defaults]
 *
 * Three parties, each a process of its own: S3 (s3rver from bench/s3rver-server.ts,
 * unless S3_TEST_* names an external S3 such as Swift from scripts/swift-s3.sh),
 * the app (bench/proxy-server.ts) and the download client, curl. With taskset and
 * at least 2 CPUs: app on CPU 0, s3rver on CPU 1, curl on --client-cpu (CPU 2 if
 * there are 3, else 0). On 2 CPUs a direct download then crosses between CPUs
 * once, S3 → client, and a proxied one once too, S3 → app; --client-cpu 1 makes
 * the proxied bytes cross twice and the direct ones never.
 *
 * 1. uploads --size-mib MiB of random bytes as org-1/bench/big.bin (streamed);
 * 2. presigns it through POST /generate-presigned-url (a real signed JWT);
 * 3. warm-up: the SHA-256 of what each path serves (read in this process),
 *    then one curl download of each;
 * 4. RSS: streams --rss-gib GiB through the proxy, sampling the app's VmRSS
 *    every 100 ms; growth = peak - RSS right after the warm-up;
 * 5. throughput: --repeats rounds of direct + proxied downloads, interleaved
 *    (ABBA order), medians in MiB/s and their ratio.
 * The app runs as `npm start` runs the service: with MALLOC_TRIM_THRESHOLD_
 * (SERVICE_MALLOC_ENV in bench/lib.ts) unless the environment sets it;
 * --glibc-defaults runs it without, for comparison. Every download must deliver
 * exactly the object's size, else the run aborts. Goals (ratio >= 0.9, growth
 * < 64 MiB) are reported as PASS/MISS, never as a failing exit code.
 */
import http from 'node:http'
import { execFileSync, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { S3Client, PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3'
import { startTestS3, externalS3Configured, useS3rver, type TestS3 } from '../test/helpers/s3.js'
import { signToken } from '../test/helpers/tokens.js'
import {
  BENCH_DIR, MiB, Teardowns, addTo, benchCommand, benchS3Json, cpuSeconds, fetchPresignedUrl, findProfile, fmt, fmtMiB,
  frameLabel, hostBusySeconds, hostLoad, mallocVariables, mark, median, metricTable, minorFaults, newProfileDir, ownCpuSeconds,
  pinLoadGenerator, positive, projectPath, proxyUrlFor, readCpuProfile, reapedChildrenCpuSeconds, resetPeakRss, runBench,
  SERVICE_MALLOC_ENV, startServerChild, stderrLog, stopServerChild, topShares, vmBytes, type ServerChild
} from './lib.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const KEY = 'org-1/bench/big.bin'
const APP_CPU = '0'
const S3_CPU = '1'

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    'rss-gib': { type: 'string', default: '1' },
    repeats: { type: 'string', default: '6' },
    'rss-concurrency': { type: 'string', default: '1' },
    'client-cpu': { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    'glibc-defaults': { type: 'boolean', default: false }
  },
  strict: true
})
const sizeMiB = positive('size-mib', args['size-mib'])
const rssGiB = positive('rss-gib', args['rss-gib'])
const repeats = Math.round(positive('repeats', args.repeats))
const rssConcurrency = Math.round(positive('rss-concurrency', args['rss-concurrency']))
const cpuCount = availableParallelism()
// With 3 CPUs each party gets one; with 2, curl (the cheapest) shares the app's.
const clientCpu = args['client-cpu'] ?? (cpuCount >= 3 ? '2' : APP_CPU)
if (!/^\d+$/.test(clientCpu) || Number(clientCpu) >= cpuCount) throw new Error(`--client-cpu must be a CPU number below ${cpuCount}, got ${clientCpu}`)
const size = Math.round(sizeMiB * MiB)
// The service's own runtime setting (package.json "start"); curl and s3rver keep the environment's.
const serverMallocEnv: Record<string, string> = args['glibc-defaults'] ? {} : { ...SERVICE_MALLOC_ENV, ...mallocVariables(process.env) }
const hops = (from: string, to: string): number => from === to ? 0 : 1
const s3Placement = externalS3Configured()
  ? 'the external S3: not pinned'
  : `s3rver: CPU ${S3_CPU}; the bytes cross between CPUs ${hops(S3_CPU, clientCpu)}× on a direct download, ` +
    `${hops(S3_CPU, APP_CPU) + hops(APP_CPU, clientCpu)}× on a proxied one`

const log = stderrLog('bench')
const teardowns = new Teardowns(log)
// This process only waits for curl, which inherits its CPU.
const pinning = pinLoadGenerator(args['no-pin'], `yes (app: CPU ${APP_CPU}; client (curl): CPU ${clientCpu}; ${s3Placement})`, clientCpu)

// ---------- downloads ----------

interface Download { bytes: number, seconds: number }

/** curl's version line; curl is the download client because it costs the client's CPU almost nothing. */
function curlVersion (): string {
  try {
    return execFileSync('curl', ['--version'], { encoding: 'utf8' }).split('\n')[0].split(' ').slice(0, 2).join(' ')
  } catch {
    throw new Error('curl is not installed (apt-get install curl): it is the download client of this benchmark')
  }
}

/**
 * One download with curl into /dev/null; the time is curl's own (connect to last
 * byte, without its start-up). The URL and headers go in on stdin, as a curl
 * config, so the presigned URL and the token never appear in the process list.
 */
function download (url: string, headers: Record<string, string>, what: string): Promise<Download> {
  return new Promise((resolve, reject) => {
    const curl = spawn('curl', ['--config', '-', '--globoff', '--silent', '--show-error', '--output', '/dev/null', '--max-time', '600',
      '--write-out', '%{http_code} %{size_download} %{time_total}'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    curl.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
    curl.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
    curl.on('error', reject)
    curl.stdin.on('error', reject) // curl gone before it read its config: 'close' says why
    curl.on('close', code => {
      const [status, bytes, seconds] = out.trim().split(' ')
      if (code !== 0) reject(new Error(`${what}: curl exited ${String(code)}: ${err.trim()}`))
      else if (status !== '200') reject(new Error(`${what}: HTTP ${status}`))
      else if (Number(bytes) !== size) reject(new Error(`${what}: got ${bytes} bytes, expected ${size}`))
      else resolve({ bytes: size, seconds: Number(seconds) })
    })
    const quote = (v: string): string => `"${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`
    const config = [`url = ${quote(url)}`, ...Object.entries(headers).map(([k, v]) => `header = ${quote(`${k}: ${v}`)}`)]
    curl.stdin.end(config.join('\n') + '\n')
  })
}

/** The warm-up's content check, in this process: the SHA-256 of what `url` serves. */
function sha256Of (url: string, headers: Record<string, string>, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, res => {
      if (res.statusCode !== 200) {
        res.resume()
        reject(new Error(`${what}: HTTP ${String(res.statusCode)}`))
        return
      }
      const hash = createHash('sha256')
      res.on('data', (chunk: Buffer) => { hash.update(chunk) })
      res.on('end', () => { resolve(hash.digest('hex')) })
      res.on('error', reject)
    }).on('error', err => { reject(new Error(`${what}: ${err.message}`)) })
  })
}

const mibps = (d: Download): number => d.bytes / MiB / d.seconds
const perGiB = (seconds: number, bytes: number): string => `${fmt(seconds / (bytes / 1024 / MiB), 2)} s`

/** Top frames of a profile by self time (idle included, so shares are of wall-clock samples). */
function topFrames (file: string, n = 15): string[] {
  const self = new Map<string, number>()
  let total = 0
  for (const { frame, us } of readCpuProfile(file).samples) {
    total += us
    addTo(self, frameLabel(frame), us)
  }
  return topShares(self, total, n)
}

/** s3rver in a process of its own (pinned to S3_CPU), or the external S3 named by S3_TEST_*. */
async function startS3 (): Promise<{ s3: TestS3, label: string, child?: ServerChild }> {
  if (externalS3Configured()) {
    const s3 = await startTestS3(teardowns)
    return { s3, label: `external ${s3.endpoint} (S3_TEST_*)` }
  }
  const child = await startServerChild({ name: 's3rver', script: join(BENCH_DIR, 's3rver-server.ts'), env: {}, cpus: pinning.pin ? S3_CPU : undefined })
  teardowns.teardown(async () => { await stopServerChild(child) })
  const s3 = await useS3rver(teardowns, child.address)
  return { s3, label: `s3rver in its own process (bench/s3rver-server.ts) ${child.address}`, child }
}

// ---------- main ----------
async function main (): Promise<void> {
  const wallStart = performance.now()
  const loadStart = hostLoad()
  const curl = curlVersion()
  log(`pinning: ${pinning.label}`)
  const { s3, label: s3Label, child: s3Child } = await startS3()
  log(`S3: ${s3Label}, bucket ${s3.bucket}`)

  // Streamed upload: one 1 MiB chunk in memory at a time. No flexible checksum,
  // so the SDK sends a plain Content-Length PUT that s3rver and Swift both take.
  const uploader = new S3Client({
    endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED'
  })
  teardowns.teardown(async () => {
    await uploader.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: KEY })).catch(() => {})
    uploader.destroy()
  })
  const uploadHash = createHash('sha256')
  let left = size
  const body = new Readable({
    read () {
      if (left === 0) { this.push(null); return }
      const chunk = randomBytes(Math.min(MiB, left))
      left -= chunk.length
      uploadHash.update(chunk)
      this.push(chunk)
    }
  })
  let t = performance.now()
  await uploader.send(new PutObjectCommand({ Bucket: s3.bucket, Key: KEY, Body: body, ContentLength: size, ContentType: 'application/octet-stream' }))
  const digest = uploadHash.digest('hex')
  log(`uploaded ${fmtMiB(size)} in ${fmt((performance.now() - t) / 1000)} s (sha256 ${digest.slice(0, 16)}…)`)

  const profileDir = args['cpu-prof'] ? newProfileDir() : undefined
  const app = await startServerChild({
    name: 'app',
    script: join(BENCH_DIR, 'proxy-server.ts'),
    env: { BENCH_S3: benchS3Json(s3), ...serverMallocEnv },
    cpus: pinning.pin ? APP_CPU : undefined,
    profileDir
  })
  teardowns.teardown(async () => { await stopServerChild(app) })
  log(`app pid ${app.pid} on ${app.address}`)

  const token = signToken({ sub: 'bench', org_id: 'org-1' }, { expiresInSeconds: 6 * 3600 })
  const auth = { authorization: `Bearer ${token}` }
  const directUrl = await fetchPresignedUrl(app.address, auth.authorization, KEY)
  const proxyUrl = proxyUrlFor(app.address, directUrl)

  const direct = (what: string): Promise<Download> => download(directUrl, {}, `direct ${what}`)
  const proxied = (what: string): Promise<Download> => download(proxyUrl, auth, `proxy ${what}`)

  // Warm-up: both paths serve exactly the uploaded bytes, then one timed download each.
  for (const [name, url, headers, get] of [['direct', directUrl, {}, direct], ['proxy', proxyUrl, auth, proxied]] as const) {
    if (await sha256Of(url, headers, `${name} warm-up`) !== digest) throw new Error(`${name} warm-up: content differs from the uploaded object`)
    log(`warm-up ${name}: sha256 ok, ${fmt(mibps(await get('warm-up')))} MiB/s`)
  }

  // RSS: stream rssGiB through the proxy while sampling the app.
  const peakReset = resetPeakRss(app.pid)
  const rssStart = vmBytes(app.pid, 'VmRSS')
  let rssPeakSampled = rssStart
  let samples = 0
  const sampler = setInterval(() => {
    try { rssPeakSampled = Math.max(rssPeakSampled, vmBytes(app.pid, 'VmRSS')); samples++ } catch { /* app gone: the download fails too */ }
  }, 100)
  const rssDownloads = Math.max(1, Math.ceil(rssGiB * 1024 / sizeMiB))
  let next = 0
  t = performance.now()
  const cpuBeforeRss = cpuSeconds(app.pid)
  await Promise.all(Array.from({ length: Math.min(rssConcurrency, rssDownloads) }, async () => {
    while (next < rssDownloads) {
      const i = next++
      await proxied(`rss ${i + 1}/${rssDownloads}`)
    }
  })).finally(() => { clearInterval(sampler) })
  const rssSeconds = (performance.now() - t) / 1000
  const rssCpu = cpuSeconds(app.pid) - cpuBeforeRss
  rssPeakSampled = Math.max(rssPeakSampled, vmBytes(app.pid, 'VmRSS'))
  const hwm = vmBytes(app.pid, 'VmHWM')
  const rssPeak = peakReset ? Math.max(rssPeakSampled, hwm) : rssPeakSampled
  const rssGrowth = rssPeak - rssStart
  const rssBytes = rssDownloads * size
  log(`rss: ${rssDownloads} × ${fmtMiB(size)} (concurrency ${rssConcurrency}) in ${fmt(rssSeconds)} s; ${samples} samples; ` +
    `start ${fmtMiB(rssStart)}, sampled peak ${fmtMiB(rssPeakSampled)}, VmHWM ${fmtMiB(hwm)}${peakReset ? ' (reset after warm-up)' : ' (not resettable: includes start-up)'}`)

  // Throughput, interleaved in ABBA order so drift hits both sides alike. CPU
  // seconds per party and path: the app, s3rver (when it is ours) and curl.
  type Path = 'direct' | 'proxy'
  const runs: Record<Path, number[]> = { direct: [], proxy: [] }
  const cpu: Record<Path, { app: number, s3: number, client: number }> = { direct: { app: 0, s3: 0, client: 0 }, proxy: { app: 0, s3: 0, client: 0 } }
  let proxyFaults = 0
  const s3Cpu = (): number => s3Child === undefined ? 0 : cpuSeconds(s3Child.pid)
  const ours = (): number => cpuSeconds(app.pid) + s3Cpu() + reapedChildrenCpuSeconds() + ownCpuSeconds()
  const busy0 = hostBusySeconds()
  const ours0 = ours()
  const timed0 = performance.now()
  const run = async (path: Path, i: number): Promise<void> => {
    const a0 = cpuSeconds(app.pid)
    const s0 = s3Cpu()
    const c0 = reapedChildrenCpuSeconds()
    const f0 = minorFaults(app.pid)
    runs[path].push(mibps(await (path === 'direct' ? direct : proxied)(`run ${i + 1}`)))
    cpu[path].app += cpuSeconds(app.pid) - a0
    cpu[path].s3 += s3Cpu() - s0
    cpu[path].client += reapedChildrenCpuSeconds() - c0
    if (path === 'proxy') proxyFaults += minorFaults(app.pid) - f0
  }
  for (let i = 0; i < repeats; i++) {
    const order: Path[] = i % 2 === 0 ? ['direct', 'proxy'] : ['proxy', 'direct']
    for (const path of order) await run(path, i)
    log(`run ${i + 1}/${repeats}: direct ${fmt(runs.direct[i])} MiB/s, proxy ${fmt(runs.proxy[i])} MiB/s`)
  }
  // Everything else on the host (other work makes the figures noisy), in % of one CPU.
  const foreignPct = 100 * Math.max(0, hostBusySeconds() - busy0 - (ours() - ours0)) / ((performance.now() - timed0) / 1000)
  const directMedian = median(runs.direct)
  const proxyMedian = median(runs.proxy)
  const ratio = proxyMedian / directMedian
  const timedBytes = repeats * size

  await stopServerChild(app)
  const hotFrames: string[] = []
  const profile = profileDir === undefined ? undefined : findProfile(profileDir, /\.cpuprofile$/, log)
  if (profile !== undefined) {
    hotFrames.push(`CPU profile: ${projectPath(profile)} (whole app lifetime); top self time:`)
    hotFrames.push(...topFrames(profile))
  }
  await teardowns.run()

  const mallocEnv = Object.entries(mallocVariables(process.env)).map(([k, v]) => `${k}=${v} `).join('')
  const serverGlibc = Object.entries(serverMallocEnv).map(([k, v]) => `${k}=${v}`).join(' ')
  const cpuRow = (party: 'app' | 's3' | 'client'): string => `direct ${perGiB(cpu.direct[party], timedBytes)}, proxy ${perGiB(cpu.proxy[party], timedBytes)}`
  const rows: Array<[string, string]> = [
    ['Object size', fmtMiB(size)],
    ['S3 server', s3Label],
    ['Download client', `${curl}, into /dev/null`],
    ['Direct MiB/s (median)', `${fmt(directMedian)} (runs: ${runs.direct.map(x => fmt(x)).join(', ')})`],
    ['Proxy MiB/s (median)', `${fmt(proxyMedian)} (runs: ${runs.proxy.map(x => fmt(x)).join(', ')})`],
    ['Ratio proxy/direct (goal ≥ 0.9)', `${fmt(ratio, 3)} ${mark(ratio >= 0.9)}`],
    ['App CPU per GiB proxied', `${perGiB(cpu.proxy.app, timedBytes)} (throughput runs)`],
    ['App minor page faults per GiB proxied', `${Math.round(proxyFaults / (timedBytes / 1024 / MiB))} (262144 = one fresh 4 KiB page per 4 KiB relayed)`],
    ...(s3Child === undefined ? [] : [['s3rver CPU per GiB', cpuRow('s3')] as [string, string]]),
    ['curl CPU per GiB', cpuRow('client')],
    [`RSS phase (${rssDownloads} × object, concurrency ${rssConcurrency})`, `${fmt(rssBytes / 1024 / MiB, 2)} GiB in ${fmt(rssSeconds)} s = ${fmt(rssBytes / MiB / rssSeconds)} MiB/s, app CPU ${fmt(rssCpu, 2)} s`],
    ['App RSS start (after warm-up)', fmtMiB(rssStart)],
    ['App RSS peak', `${fmtMiB(rssPeak)} (${samples} samples @100 ms${peakReset ? ', + VmHWM reset after warm-up' : ''})`],
    ['App RSS growth (goal < 64 MiB)', `${fmtMiB(rssGrowth)} ${mark(rssGrowth < 64 * MiB)}`],
    ['App glibc malloc settings', serverGlibc === '' ? 'glibc defaults (--glibc-defaults)' : `${serverGlibc} (as \`npm start\` runs the service)`],
    ['CPU pinning', pinning.label],
    ['Node', `${process.version}, ${pinning.cpus} CPUs`],
    [`Other processes' CPU during throughput runs${externalS3Configured() ? ' (incl. the external S3)' : ''}`, `${fmt(foreignPct, 0)}% of one CPU`],
    ['Host load (1-min loadavg, start → end)', `${fmt(loadStart, 2)} → ${fmt(hostLoad(), 2)}`],
    ['Wall time', `${fmt((performance.now() - wallStart) / 1000)} s`],
    ['Command', `\`${externalS3Configured() ? '(S3_TEST_* exported) ' : ''}${benchCommand('proxy-throughput.ts', mallocEnv)}\``]
  ]
  const out = metricTable(rows)
  if (hotFrames.length > 0) out.push('```', ...hotFrames, '```', '')
  process.stdout.write(out.join('\n'))
}

await runBench(main, teardowns, log)
