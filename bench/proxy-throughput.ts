/**
 * Proxy throughput and memory benchmark.
 *
 *   npx tsx bench/proxy-throughput.ts [--size-mib 256] [--rss-gib 1] [--repeats 3]
 *                                     [--rss-concurrency 1] [--cpu-prof] [--no-pin] [--glibc-defaults]
 *
 * This process is the load generator (and hosts s3rver, unless S3_TEST_* names
 * an external S3 such as Swift from scripts/swift-s3.sh). The app runs alone in
 * a child process (bench/proxy-server.ts), so its RSS and CPU are its own. With
 * taskset and at least 2 CPUs, the child is pinned to CPU 0 and this process to
 * CPU 1.
 *
 * 1. uploads --size-mib MiB of random bytes as org-1/bench/big.bin (streamed);
 * 2. presigns it through POST /generate-presigned-url (a real signed JWT);
 * 3. warm-up: one direct and one proxied download, both SHA-256-checked;
 * 4. RSS: streams --rss-gib GiB through the proxy, sampling the child's VmRSS
 *    every 100 ms; growth = peak - RSS right after the warm-up;
 * 5. throughput: --repeats rounds of direct + proxied downloads, interleaved
 *    (ABBA order), medians in MiB/s and their ratio.
 * The server child runs as `npm start` runs the service: with
 * MALLOC_TRIM_THRESHOLD_ (SERVICE_MALLOC_ENV in bench/lib.ts) unless the
 * environment sets it; --glibc-defaults runs it without, for comparison.
 * Every download must deliver exactly the object's size, else the run aborts.
 * Goals (ratio >= 0.9, growth < 64 MiB) are reported as PASS/MISS, never as a
 * failing exit code.
 */
import http from 'node:http'
import { createHash, randomBytes, type Hash } from 'node:crypto'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { S3Client, PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3'
import { startTestS3, externalS3Configured } from '../test/helpers/s3.js'
import { signToken } from '../test/helpers/tokens.js'
import {
  BENCH_DIR, MiB, Teardowns, addTo, benchCommand, benchS3Json, cpuMeter, cpuSeconds, describeS3, fetchPresignedUrl,
  findProfile, fmt, fmtMiB, frameLabel, hostLoad, mallocVariables, mark, median, metricTable, minorFaults, newProfileDir, ownCpuSeconds,
  pinLoadGenerator, positive, projectPath, proxyUrlFor, readCpuProfile, resetPeakRss, runBench, SERVICE_MALLOC_ENV, startServerChild,
  stderrLog, stopServerChild, topShares, vmBytes
} from './lib.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const KEY = 'org-1/bench/big.bin'

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    'rss-gib': { type: 'string', default: '1' },
    repeats: { type: 'string', default: '3' },
    'rss-concurrency': { type: 'string', default: '1' },
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
const size = Math.round(sizeMiB * MiB)
// The service's own runtime setting (package.json "start"); the load generator keeps the environment's.
const serverMallocEnv: Record<string, string> = args['glibc-defaults'] ? {} : { ...SERVICE_MALLOC_ENV, ...mallocVariables(process.env) }

const log = stderrLog('bench')
const teardowns = new Teardowns(log)
const pinning = pinLoadGenerator(args['no-pin'], externalS3Configured()
  ? 'yes (server child: CPU 0; client: CPU 1; the external S3 is not pinned)'
  : 'yes (server child: CPU 0; client + in-process s3rver: CPU 1)')

// ---------- downloads ----------
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })

interface Download { bytes: number, seconds: number }

function download (url: string, headers: Record<string, string>, what: string, hash?: Hash): Promise<Download> {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const req = http.get(url, { agent, headers }, res => {
      if (res.statusCode !== 200) {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { if (text.length < 500) text += c })
        res.on('end', () => { reject(new Error(`${what}: HTTP ${String(res.statusCode)} ${text.slice(0, 500)}`)) })
        return
      }
      let bytes = 0
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        hash?.update(chunk)
      })
      res.on('end', () => {
        const seconds = (performance.now() - start) / 1000
        if (bytes !== size) reject(new Error(`${what}: got ${bytes} bytes, expected ${size}`))
        else resolve({ bytes, seconds })
      })
      res.on('close', () => { if (!res.complete) reject(new Error(`${what}: connection closed after ${bytes} of ${size} bytes`)) })
      res.on('error', reject)
    })
    req.on('error', err => { reject(new Error(`${what}: ${err.message}`)) })
  })
}

const mibps = (d: Download): number => d.bytes / MiB / d.seconds

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

// ---------- main ----------
async function main (): Promise<void> {
  const wallStart = performance.now()
  const loadStart = hostLoad()
  log(`pinning: ${pinning.label}`)
  const s3 = await startTestS3(teardowns)
  const s3Label = describeS3(s3.endpoint, externalS3Configured())
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
  const child = await startServerChild({
    script: join(BENCH_DIR, 'proxy-server.ts'),
    env: { BENCH_S3: benchS3Json(s3), ...serverMallocEnv },
    cpus: pinning.pin ? '0' : undefined,
    profileDir
  })
  teardowns.teardown(async () => { await stopServerChild(child) })
  log(`server child pid ${child.pid} on ${child.address}`)

  const token = signToken({ sub: 'bench', org_id: 'org-1' }, { expiresInSeconds: 6 * 3600 })
  const auth = { authorization: `Bearer ${token}` }
  const directUrl = await fetchPresignedUrl(child.address, auth.authorization, KEY)
  const proxyUrl = proxyUrlFor(child.address, directUrl)

  const direct = (what: string, hash?: Hash): Promise<Download> => download(directUrl, {}, `direct ${what}`, hash)
  const proxied = (what: string, hash?: Hash): Promise<Download> => download(proxyUrl, auth, `proxy ${what}`, hash)

  // Warm-up, content-checked.
  for (const [name, get] of [['direct', direct], ['proxy', proxied]] as const) {
    const h = createHash('sha256')
    const d = await get('warm-up', h)
    if (h.digest('hex') !== digest) throw new Error(`${name} warm-up: content differs from the uploaded object`)
    log(`warm-up ${name}: ${fmt(mibps(d))} MiB/s, sha256 ok`)
  }

  // RSS: stream rssGiB through the proxy while sampling the child.
  const peakReset = resetPeakRss(child.pid)
  const rssStart = vmBytes(child.pid, 'VmRSS')
  let rssPeakSampled = rssStart
  let samples = 0
  const sampler = setInterval(() => {
    try { rssPeakSampled = Math.max(rssPeakSampled, vmBytes(child.pid, 'VmRSS')); samples++ } catch { /* child gone: the download fails too */ }
  }, 100)
  const rssDownloads = Math.max(1, Math.ceil(rssGiB * 1024 / sizeMiB))
  let next = 0
  t = performance.now()
  const cpuBeforeRss = cpuSeconds(child.pid)
  await Promise.all(Array.from({ length: Math.min(rssConcurrency, rssDownloads) }, async () => {
    while (next < rssDownloads) {
      const i = next++
      await proxied(`rss ${i + 1}/${rssDownloads}`)
    }
  })).finally(() => { clearInterval(sampler) })
  const rssSeconds = (performance.now() - t) / 1000
  const rssCpu = cpuSeconds(child.pid) - cpuBeforeRss
  rssPeakSampled = Math.max(rssPeakSampled, vmBytes(child.pid, 'VmRSS'))
  const hwm = vmBytes(child.pid, 'VmHWM')
  const rssPeak = peakReset ? Math.max(rssPeakSampled, hwm) : rssPeakSampled
  const rssGrowth = rssPeak - rssStart
  const rssBytes = rssDownloads * size
  log(`rss: ${rssDownloads} × ${fmtMiB(size)} (concurrency ${rssConcurrency}) in ${fmt(rssSeconds)} s; ${samples} samples; ` +
    `start ${fmtMiB(rssStart)}, sampled peak ${fmtMiB(rssPeakSampled)}, VmHWM ${fmtMiB(hwm)}${peakReset ? ' (reset after warm-up)' : ' (not resettable: includes start-up)'}`)

  // Throughput, interleaved in ABBA order so drift hits both sides alike.
  const directRuns: number[] = []
  const proxyRuns: number[] = []
  let proxyCpu = 0
  let proxyBytes = 0
  // This process's CPU (client, plus s3rver when in-process) per GiB, direct vs proxied.
  const clientCpu = { direct: 0, proxy: 0 }
  let proxyFaults = 0
  const runProxy = async (i: number): Promise<void> => {
    const c0 = cpuSeconds(child.pid)
    const f0 = minorFaults(child.pid)
    const o0 = ownCpuSeconds()
    const d = await proxied(`run ${i + 1}`)
    clientCpu.proxy += ownCpuSeconds() - o0
    proxyCpu += cpuSeconds(child.pid) - c0
    proxyFaults += minorFaults(child.pid) - f0
    proxyBytes += d.bytes
    proxyRuns.push(mibps(d))
  }
  const runDirect = async (i: number): Promise<void> => {
    const o0 = ownCpuSeconds()
    directRuns.push(mibps(await direct(`run ${i + 1}`)))
    clientCpu.direct += ownCpuSeconds() - o0
  }
  const throughputCpu = cpuMeter(child.pids)
  for (let i = 0; i < repeats; i++) {
    if (i % 2 === 0) { await runDirect(i); await runProxy(i) } else { await runProxy(i); await runDirect(i) }
    log(`run ${i + 1}/${repeats}: direct ${fmt(directRuns[i])} MiB/s, proxy ${fmt(proxyRuns[i])} MiB/s`)
  }
  const foreignPct = throughputCpu().others
  const directMedian = median(directRuns)
  const proxyMedian = median(proxyRuns)
  const ratio = proxyMedian / directMedian

  await stopServerChild(child)
  const hotFrames: string[] = []
  const profile = profileDir === undefined ? undefined : findProfile(profileDir, /\.cpuprofile$/, log)
  if (profile !== undefined) {
    hotFrames.push(`CPU profile: ${projectPath(profile)} (whole child lifetime); top self time:`)
    hotFrames.push(...topFrames(profile))
  }
  await teardowns.run()

  const mallocEnv = Object.entries(mallocVariables(process.env)).map(([k, v]) => `${k}=${v} `).join('')
  const serverGlibc = Object.entries(serverMallocEnv).map(([k, v]) => `${k}=${v}`).join(' ')
  const rows: Array<[string, string]> = [
    ['Object size', fmtMiB(size)],
    ['S3 server', s3Label],
    ['Direct MiB/s (median)', `${fmt(directMedian)} (runs: ${directRuns.map(x => fmt(x)).join(', ')})`],
    ['Proxy MiB/s (median)', `${fmt(proxyMedian)} (runs: ${proxyRuns.map(x => fmt(x)).join(', ')})`],
    ['Ratio proxy/direct (goal ≥ 0.9)', `${fmt(ratio, 3)} ${mark(ratio >= 0.9)}`],
    ['Server CPU per GiB proxied', `${fmt(proxyCpu / (proxyBytes / 1024 / MiB), 2)} s (throughput runs)`],
    ['Server minor page faults per GiB proxied', `${Math.round(proxyFaults / (proxyBytes / 1024 / MiB))} (262144 = one fresh 4 KiB page per 4 KiB relayed)`],
    [`Load-generator CPU per GiB${externalS3Configured() ? '' : ' (incl. s3rver)'}`, `direct ${fmt(clientCpu.direct / (repeats * size / 1024 / MiB), 2)} s, proxy ${fmt(clientCpu.proxy / (repeats * size / 1024 / MiB), 2)} s`],
    [`RSS phase (${rssDownloads} × object, concurrency ${rssConcurrency})`, `${fmt(rssBytes / 1024 / MiB, 2)} GiB in ${fmt(rssSeconds)} s = ${fmt(rssBytes / MiB / rssSeconds)} MiB/s, server CPU ${fmt(rssCpu, 2)} s`],
    ['Server RSS start (after warm-up)', fmtMiB(rssStart)],
    ['Server RSS peak', `${fmtMiB(rssPeak)} (${samples} samples @100 ms${peakReset ? ', + VmHWM reset after warm-up' : ''})`],
    ['Server RSS growth (goal < 64 MiB)', `${fmtMiB(rssGrowth)} ${mark(rssGrowth < 64 * MiB)}`],
    ['Server glibc malloc settings', serverGlibc === '' ? 'glibc defaults (--glibc-defaults)' : `${serverGlibc} (as \`npm start\` runs the service)`],
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
  agent.destroy()
}

await runBench(main, teardowns, log)
