/**
 * Proxy throughput and memory benchmark.
 *
 *   npx tsx bench/proxy-throughput.ts [--size-mib 256] [--rss-gib 1] [--repeats 3]
 *                                     [--rss-concurrency 1] [--cpu-prof] [--no-pin]
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
 * Every download must deliver exactly the object's size, else the run aborts.
 * Goals (ratio >= 0.9, growth < 64 MiB) are reported as PASS/MISS, never as a
 * failing exit code.
 */
import http from 'node:http'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes, type Hash } from 'node:crypto'
import { readFileSync, readdirSync, mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { createInterface } from 'node:readline'
import { S3Client, PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3'
import { startTestS3, externalS3Configured } from '../test/helpers/s3.js'
import { signToken } from '../test/helpers/tokens.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const MiB = 1024 * 1024
const KEY = 'org-1/bench/big.bin'
const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = join(HERE, '..')

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    'rss-gib': { type: 'string', default: '1' },
    repeats: { type: 'string', default: '3' },
    'rss-concurrency': { type: 'string', default: '1' },
    'cpu-prof': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false }
  },
  strict: true
})
const sizeMiB = positive('size-mib', args['size-mib'])
const rssGiB = positive('rss-gib', args['rss-gib'])
const repeats = Math.round(positive('repeats', args.repeats))
const rssConcurrency = Math.round(positive('rss-concurrency', args['rss-concurrency']))
const size = Math.round(sizeMiB * MiB)

function positive (name: string, value: string | undefined): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${String(value)}`)
  return n
}

const log = (msg: string): void => { process.stderr.write(`bench: ${msg}\n`) }

// ---------- teardown collector (the shape startTestS3 expects) ----------
const teardowns: Array<() => unknown> = []
const collector = { teardown: (fn: () => unknown) => { teardowns.push(fn) } }
async function runTeardowns (): Promise<void> {
  while (teardowns.length > 0) {
    const fn = teardowns.pop() as () => unknown
    try { await fn() } catch (err) { log(`teardown failed: ${String(err)}`) }
  }
}

// ---------- CPU pinning ----------
function hasTaskset (): boolean {
  try { execFileSync('taskset', ['-V'], { stdio: 'ignore' }); return true } catch { return false }
}
const CPUS = availableParallelism() // before pinning narrows it
const pin = !args['no-pin'] && CPUS >= 2 && hasTaskset()
let pinning = 'no'
if (pin) {
  try {
    // -a: every thread of this process; threads created later (libuv pool) inherit it.
    execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' })
    pinning = externalS3Configured()
      ? 'yes (server child: CPU 0; client: CPU 1; the external S3 is not pinned)'
      : 'yes (server child: CPU 0; client + in-process s3rver: CPU 1)'
  } catch (err) {
    pinning = `no (taskset failed: ${String(err)})`
  }
} else {
  pinning = args['no-pin'] ? 'no (--no-pin)' : `no (${hasTaskset() ? 'fewer than 2 CPUs' : 'taskset not found'})`
}

// ---------- /proc readings of the child ----------
function vm (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100 } catch { return 100 } })()
/** User + system CPU seconds of a process. */
function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK // utime, stime (fields 14, 15)
}
/** Minor page faults of a process so far (fresh pages faulted in, e.g. after the heap was trimmed). */
function minorFaults (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]) // minflt (field 10)
}
/** CPU seconds all CPUs spent busy since boot (/proc/stat), for spotting other load on the host. */
function hostBusySeconds (): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = f
  return (user + nice + system + irq + softirq + steal) / CLK_TCK
}
/** Resets VmHWM (peak RSS) of a process; false when the kernel does not allow it. */
function resetPeak (pid: number): boolean {
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

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
function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
const fmt = (n: number, digits = 1): string => n.toFixed(digits)
const fmtMiB = (bytes: number): string => `${fmt(bytes / MiB)} MiB`

// ---------- the server child ----------
interface Child { proc: ChildProcess, pid: number, address: string, exited: Promise<number | null> }

async function startServerChild (env: Record<string, string>, profileDir: string | undefined): Promise<Child> {
  const nodeArgs = [...process.execArgv]
  if (profileDir !== undefined) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', profileDir)
  nodeArgs.push(join(HERE, 'proxy-server.ts'))
  const [cmd, argv] = pin
    ? ['taskset', ['-c', '0', process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs]
  const proc = spawn(cmd, argv as string[], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<number | null>(resolve => { proc.once('exit', code => { resolve(code) }) })
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout as Readable })
    rl.once('line', l => { rl.close(); resolve(l) })
    proc.once('exit', code => { reject(new Error(`server child exited (${String(code)}) before listening`)) })
    proc.once('error', reject)
  })
  const { address, pid } = JSON.parse(line) as { address: string, pid: number }
  // Under taskset the command execs node, so the pid is the same; trust the child's own report.
  return { proc, pid, address, exited }
}

async function stopServerChild (child: Child): Promise<void> {
  if (child.proc.exitCode !== null) return
  child.proc.kill('SIGTERM')
  const timer = setTimeout(() => { child.proc.kill('SIGKILL') }, 10_000)
  await child.exited
  clearTimeout(timer)
}

// ---------- CPU profile summary ----------
interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

function topFrames (file: string, n = 15): string[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map(node => [node.id, node]))
  const self = new Map<string, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    total += dt
    const f = (byId.get(id) as ProfileNode).callFrame
    const url = f.url.replace(/^file:\/\//, '')
    const where = url === '' ? '' : ` ${url.startsWith(ROOT) ? relative(ROOT, url) : url}:${f.lineNumber + 1}`
    const name = `${f.functionName === '' ? '(anonymous)' : f.functionName}${where}`
    self.set(name, (self.get(name) ?? 0) + dt)
  })
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([name, us]) => `${fmt(100 * us / total).padStart(5)}%  ${fmt(us / 1000, 0).padStart(7)} ms  ${name}`)
}

// ---------- main ----------
async function main (): Promise<void> {
  const wallStart = performance.now()
  const loadStart = loadavg()[0]
  log(`pinning: ${pinning}`)
  const s3 = await startTestS3(collector)
  const s3Label = externalS3Configured() ? `external ${s3.endpoint} (S3_TEST_*)` : `s3rver in-process ${s3.endpoint}`
  log(`S3: ${s3Label}, bucket ${s3.bucket}`)

  // Streamed upload: one 1 MiB chunk in memory at a time. No flexible checksum,
  // so the SDK sends a plain Content-Length PUT that s3rver and Swift both take.
  const uploader = new S3Client({
    endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED'
  })
  collector.teardown(async () => {
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

  let profileDir: string | undefined
  if (args['cpu-prof']) {
    profileDir = join(HERE, 'profiles', new Date().toISOString().replace(/[:.]/g, '-'))
    mkdirSync(profileDir, { recursive: true })
  }
  const child = await startServerChild({
    BENCH_S3: JSON.stringify({ bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials })
  }, profileDir)
  collector.teardown(async () => { await stopServerChild(child) })
  log(`server child pid ${child.pid} on ${child.address}`)

  const token = signToken({ sub: 'bench', org_id: 'org-1' }, { expiresInSeconds: 6 * 3600 })
  const auth = { authorization: `Bearer ${token}` }
  const presign = await fetch(`${child.address}/generate-presigned-url`, {
    method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ key: KEY })
  })
  if (presign.status !== 200) throw new Error(`presign failed: ${presign.status} ${await presign.text()}`)
  const directUrl = ((await presign.json()) as { url: string }).url
  const proxyUrl = `${child.address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(directUrl)}`

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
  const peakReset = resetPeak(child.pid)
  const rssStart = vm(child.pid, 'VmRSS')
  let rssPeakSampled = rssStart
  let samples = 0
  const sampler = setInterval(() => {
    try { rssPeakSampled = Math.max(rssPeakSampled, vm(child.pid, 'VmRSS')); samples++ } catch { /* child gone: the download fails too */ }
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
  rssPeakSampled = Math.max(rssPeakSampled, vm(child.pid, 'VmRSS'))
  const hwm = vm(child.pid, 'VmHWM')
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
  const ownCpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }
  let proxyFaults = 0
  const runProxy = async (i: number): Promise<void> => {
    const c0 = cpuSeconds(child.pid)
    const f0 = minorFaults(child.pid)
    const o0 = ownCpu()
    const d = await proxied(`run ${i + 1}`)
    clientCpu.proxy += ownCpu() - o0
    proxyCpu += cpuSeconds(child.pid) - c0
    proxyFaults += minorFaults(child.pid) - f0
    proxyBytes += d.bytes
    proxyRuns.push(mibps(d))
  }
  const runDirect = async (i: number): Promise<void> => {
    const o0 = ownCpu()
    directRuns.push(mibps(await direct(`run ${i + 1}`)))
    clientCpu.direct += ownCpu() - o0
  }
  const foreign0 = hostBusySeconds() - cpuSeconds(child.pid) - ownCpu()
  const throughputStart = performance.now()
  for (let i = 0; i < repeats; i++) {
    if (i % 2 === 0) { await runDirect(i); await runProxy(i) } else { await runProxy(i); await runDirect(i) }
    log(`run ${i + 1}/${repeats}: direct ${fmt(directRuns[i])} MiB/s, proxy ${fmt(proxyRuns[i])} MiB/s`)
  }
  const foreignCpu = hostBusySeconds() - cpuSeconds(child.pid) - ownCpu() - foreign0
  const throughputSeconds = (performance.now() - throughputStart) / 1000
  const directMedian = median(directRuns)
  const proxyMedian = median(proxyRuns)
  const ratio = proxyMedian / directMedian

  await stopServerChild(child)
  const hotFrames: string[] = []
  if (profileDir !== undefined) {
    const file = readdirSync(profileDir).find(f => f.endsWith('.cpuprofile'))
    if (file === undefined) log(`no .cpuprofile written in ${profileDir}`)
    else {
      hotFrames.push(`CPU profile: ${relative(ROOT, join(profileDir, file))} (whole child lifetime); top self time:`)
      hotFrames.push(...topFrames(join(profileDir, file)))
    }
  }
  await runTeardowns()

  const argv = process.argv.slice(2).join(' ')
  const mallocEnv = Object.entries(process.env).filter(([k]) => k.startsWith('MALLOC_')).map(([k, v]) => `${k}=${String(v)} `).join('')
  const command = `${mallocEnv}npx tsx bench/proxy-throughput.ts${argv === '' ? '' : ' ' + argv}`
  const mark = (ok: boolean): string => ok ? 'PASS' : 'MISS'
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
    ['CPU pinning', pinning],
    ['Node', `${process.version}, ${CPUS} CPUs`],
    [`Other processes' CPU during throughput runs${externalS3Configured() ? ' (incl. the external S3)' : ''}`, `${fmt(100 * Math.max(0, foreignCpu) / throughputSeconds, 0)}% of one CPU`],
    ['Host load (1-min loadavg, start → end)', `${fmt(loadStart, 2)} → ${fmt(loadavg()[0], 2)}`],
    ['Wall time', `${fmt((performance.now() - wallStart) / 1000)} s`],
    ['Command', `\`${externalS3Configured() ? '(S3_TEST_* exported) ' : ''}AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true ${command}\``]
  ]
  const out = ['', '| Metric | Value |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v.replaceAll('|', '\\|')} |`), '']
  if (hotFrames.length > 0) out.push('```', ...hotFrames, '```', '')
  process.stdout.write(out.join('\n'))
  agent.destroy()
}

let interrupted = false
process.once('SIGINT', () => {
  if (interrupted) return
  interrupted = true
  log('interrupted; cleaning up')
  void runTeardowns().finally(() => process.exit(130))
})

main().catch(async (err: unknown) => {
  log(`FAILED: ${err instanceof Error ? err.message : String(err)}`)
  await runTeardowns()
  agent.destroy()
  process.exit(1)
})
