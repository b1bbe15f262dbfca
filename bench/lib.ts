/**
 * What the benchmarks (proxy-throughput.ts, presign.ts, soak.ts) and their server
 * children share: a server child pinned with taskset, /proc readings of its memory
 * and CPU, cleanup on every way out, CPU profiles and the Markdown result.
 *
 * Only node: built-ins are imported up front. Server children import this file
 * too, and their RSS must not include s3rver, the AWS SDK or autocannon; the app
 * itself is imported only when a child builds it.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync, mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import type { BuildAppOptions } from '../src/app.js'

export const MiB = 1024 * 1024

/**
 * How package.json's "start" runs the service (keep the two in step). glibc
 * otherwise hands the heap top back to the kernel after every GC frees a batch
 * of 64 KiB socket buffers, and the next reads fault every page in again: a
 * streaming proxy then spends ~40 % of its CPU in page faults (bench/README.md).
 */
export const SERVICE_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_TRIM_THRESHOLD_: '67108864' }

/** The glibc malloc tunables set in `env` (MALLOC_*_ variables). */
export function mallocVariables (env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('MALLOC_') && e[1] !== undefined))
}
export const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
export const ROOT = join(BENCH_DIR, '..')

// ---------- command line and progress ----------

export type Log = (msg: string) => void

/** Progress goes to stderr, so stdout carries the result table alone. */
export function stderrLog (prefix: string): Log {
  return msg => { process.stderr.write(`${prefix}: ${msg}\n`) }
}

export function positive (name: string, value: string | undefined): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${String(value)}`)
  return n
}

// ---------- cleanup ----------

/**
 * Cleanup steps (server children, s3rver and its files, uploaded objects), run
 * last in, first out. `teardown` is the shape startTestS3 expects from a test.
 */
export class Teardowns {
  private readonly steps: Array<() => unknown> = []
  constructor (private readonly log: Log) {}

  teardown (fn: () => unknown): void { this.steps.push(fn) }

  private running: Promise<void> | undefined

  /** Runs the steps; a second call while they run (a signal during a failing run) waits for the first. */
  async run (): Promise<void> {
    this.running ??= this.drain().finally(() => { this.running = undefined })
    await this.running
  }

  private async drain (): Promise<void> {
    while (this.steps.length > 0) {
      const fn = this.steps.pop() as () => unknown
      try { await fn() } catch (err) { this.log(`teardown failed: ${String(err)}`) }
    }
  }
}

export interface RunOptions {
  /** Exit code per signal that should stop the run (default: SIGINT → 130). */
  signals?: Partial<Record<'SIGINT' | 'SIGTERM', number>>
  /** Print the stack, not just the message, of an error that ends the run. */
  stack?: boolean
  /** Exit 0 after main(), instead of waiting for the event loop to empty. */
  exit?: boolean
}

/** Runs main() so that the teardowns run on every way out: success, failure (exit 1) or a signal. */
export async function runBench (main: () => Promise<void>, teardowns: Teardowns, log: Log, opts: RunOptions = {}): Promise<void> {
  let interrupted = false
  for (const [signal, code] of Object.entries(opts.signals ?? { SIGINT: 130 })) {
    process.once(signal, () => {
      if (interrupted) return
      interrupted = true
      log('interrupted; cleaning up')
      void teardowns.run().finally(() => process.exit(code))
    })
  }
  try {
    await main()
  } catch (err) {
    log(`FAILED: ${err instanceof Error ? (opts.stack === true ? err.stack ?? err.message : err.message) : String(err)}`)
    await teardowns.run()
    process.exit(1)
  }
  if (opts.exit === true) process.exit(0)
}

// ---------- CPU pinning ----------

export interface Pinning {
  /** CPUs this process could use before pinning narrowed its affinity. */
  cpus: number
  /** taskset is there and there are at least 2 CPUs. */
  canPin: boolean
  /** Pinning is possible and not turned off: server children go to CPU 0. */
  pin: boolean
  /** This process (the load generator) is pinned: to CPU 1, or the CPU its caller chose. */
  pinned: boolean
  /** The table's "CPU pinning" row. */
  label: string
}

function hasTaskset (): boolean {
  try { execFileSync('taskset', ['-V'], { stdio: 'ignore' }); return true } catch { return false }
}

/** Pins every thread of this process (client, in-process s3rver, libuv pool); threads created later inherit it. */
export function pinSelf (cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' })
}

export const allCpus = (cpus: number): string => `0-${cpus - 1}`

/**
 * Pins this process, the load generator, to `cpu`: by default CPU 1, off the
 * server children's CPU 0, so the server's figures are not its competitor's
 * (proxy-throughput.ts places its client itself). `pinnedLabel` says who runs where.
 */
export function pinLoadGenerator (noPin: boolean, pinnedLabel: string, cpu = '1'): Pinning {
  const cpus = availableParallelism()
  const taskset = hasTaskset()
  const canPin = cpus >= 2 && taskset
  if (noPin || !canPin) {
    const label = noPin ? 'no (--no-pin)' : `no (${taskset ? 'fewer than 2 CPUs' : 'taskset not found'})`
    return { cpus, canPin, pin: false, pinned: false, label }
  }
  try {
    pinSelf(cpu)
    return { cpus, canPin, pin: true, pinned: true, label: pinnedLabel }
  } catch (err) {
    return { cpus, canPin, pin: true, pinned: false, label: `no (taskset failed: ${String(err)})` }
  }
}

// ---------- /proc readings ----------

let clockTicks: number | undefined
/** The unit of CPU times in /proc; asked once, when first needed (server children never need it). */
function ticksPerSecond (): number {
  clockTicks ??= (() => { try { return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100 } catch { return 100 } })()
  return clockTicks
}

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces), so fields[0] is field 3. */
function statFields (pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** Resident memory now (VmRSS) or its peak (VmHWM) of a process, in bytes. */
export function vmBytes (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

/** Resets VmHWM (peak RSS) of a process; false when the kernel does not allow it. */
export function resetPeakRss (pid: number): boolean {
  try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true } catch { return false }
}

/** User + system CPU seconds of a process. */
export function cpuSeconds (pid: number): number {
  const fields = statFields(pid)
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond() // utime, stime (fields 14, 15)
}

/** Minor page faults of a process so far (fresh pages faulted in, e.g. after the heap was trimmed). */
export function minorFaults (pid: number): number {
  return Number(statFields(pid)[7]) // minflt (field 10)
}

/** CPU seconds of this process's children that have exited and been waited for (cutime + cstime). */
export function reapedChildrenCpuSeconds (): number {
  const fields = statFields(process.pid)
  return (Number(fields[13]) + Number(fields[14])) / ticksPerSecond() // fields 16, 17
}

/** CPU seconds all CPUs spent busy since boot (/proc/stat), for spotting other load on the host. */
export function hostBusySeconds (): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = f
  return (user + nice + system + irq + softirq + steal) / ticksPerSecond()
}

/** CPU seconds of this process: the load generator (and s3rver when in-process). */
export function ownCpuSeconds (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** CPU use over one phase, each in % of one core. */
export interface CpuUse { server: number, client: number, others: number }

/**
 * Starts measuring the CPU of the server processes, of this process, and of
 * everything else on the host (other load makes the figures noisy); the returned
 * function reads the shares since the start.
 */
export function cpuMeter (serverPids: number[]): () => CpuUse {
  const serverCpu = (): number => serverPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
  const t0 = performance.now()
  const s0 = serverCpu()
  const c0 = ownCpuSeconds()
  const h0 = hostBusySeconds()
  return () => {
    const wall = (performance.now() - t0) / 1000
    const server = serverCpu() - s0
    const client = ownCpuSeconds() - c0
    const others = Math.max(0, hostBusySeconds() - h0 - server - client)
    return { server: 100 * server / wall, client: 100 * client / wall, others: 100 * others / wall }
  }
}

/** The 1-minute load average of the host. */
export const hostLoad = (): number => loadavg()[0]

// ---------- the server child (parent side) ----------

export interface ServerChild {
  name: string
  proc: ChildProcess
  /** The process's pids (for a cluster: the primary's first); the first is `pid`. */
  pids: number[]
  pid: number
  address: string
  exited: Promise<number | null>
}

export interface ServerChildOptions {
  /** Names the child in errors. */
  name?: string
  script: string
  args?: string[]
  env: Record<string, string>
  /** A taskset CPU list; undefined leaves the child this process's affinity. */
  cpus?: string
  /** Where --cpu-prof writes the child's profile. */
  profileDir?: string
  /** Takes the child's stderr line by line; without it, stderr is this process's. */
  onStderrLine?: (line: string) => void
}

/**
 * Starts a server in a process of its own, so its RSS and CPU are the server's
 * alone, and waits for its ready line (see announceListening). Its stdin stays
 * open: it closes when this process dies, and the child then stops.
 */
export async function startServerChild (o: ServerChildOptions): Promise<ServerChild> {
  const name = o.name ?? 'child'
  const nodeArgs = [...process.execArgv]
  if (o.profileDir !== undefined) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', o.profileDir)
  nodeArgs.push(o.script, ...(o.args ?? []))
  // taskset execs node, so the pid is the same; the child reports its own anyway.
  const [cmd, argv]: [string, string[]] = o.cpus !== undefined
    ? ['taskset', ['-c', o.cpus, process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs]
  const proc = spawn(cmd, argv, {
    cwd: ROOT, env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', o.onStderrLine === undefined ? 'inherit' : 'pipe']
  })
  if (o.onStderrLine !== undefined) createInterface({ input: proc.stderr as Readable }).on('line', o.onStderrLine)
  const exited = new Promise<number | null>(resolve => { proc.once('exit', code => { resolve(code) }) })
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout as Readable })
    rl.once('line', l => { rl.close(); resolve(l) })
    proc.once('exit', code => { reject(new Error(`server ${name} exited (${String(code)}) before listening`)) })
    proc.once('error', reject)
  })
  const { address, pids } = JSON.parse(line) as { address: string, pids: number[] }
  return { name, proc, pids, pid: pids[0], address, exited }
}

/** SIGTERM lets the child close cleanly (and write its CPU profile); SIGKILL if it takes more than 10 s. */
export async function stopServerChild (child: ServerChild): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
  child.proc.kill('SIGTERM')
  const timer = setTimeout(() => { child.proc.kill('SIGKILL') }, 10_000)
  await child.exited
  clearTimeout(timer)
}

/** CPU seconds of all of a server child's processes. */
export const serverCpuSeconds = (child: ServerChild): number => child.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)

// ---------- the server child (child side) ----------

/** How a server child reaches the test S3; handed over as JSON in an environment variable. */
export interface BenchS3 {
  bucket: string
  region: string
  endpoint: string
  forcePathStyle: boolean
  credentials: { accessKeyId: string, secretAccessKey: string }
}

/** Just the connection settings (a TestS3 also holds a client and helpers). */
export function s3Settings (s3: BenchS3): BenchS3 {
  return { bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials }
}

export const benchS3Json = (s3: BenchS3): string => JSON.stringify(s3Settings(s3))

/** The S3 settings in `variable` (default BENCH_S3), or undefined when it is not set. */
export function readBenchS3 (variable = 'BENCH_S3'): BenchS3 | undefined {
  const raw = process.env[variable]
  return raw === undefined || raw === '' ? undefined : JSON.parse(raw) as BenchS3
}

/** A server child that cannot start says why and exits 2. */
export function exitChild (who: string, message: string): never {
  process.stderr.write(`${who}: ${message}\n`)
  process.exit(2)
}

/** The app as test/helpers/app.ts builds it (the test JWT secret, the given S3), with `options` on top. */
export async function buildBenchApp (s3: BenchS3, options: Partial<BuildAppOptions>): Promise<FastifyInstance> {
  const [{ buildApp }, { TEST_SECRET }] = await Promise.all([import('../src/app.js'), import('../test/helpers/tokens.js')])
  return await buildApp({ ...s3Settings(s3), jwt: { secret: TEST_SECRET }, ...options })
}

/**
 * Listens on loopback. stop() closes the app and exits 0, so --cpu-prof can write
 * its profile; SIGTERM and SIGINT call it.
 */
export async function listenUntilStopped (app: FastifyInstance): Promise<{ address: string, stop: () => Promise<void> }> {
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  return { address, stop: exitOnStop(async () => { await app.close().catch(() => {}) }) }
}

/** A stop() that runs `close` once and exits 0; SIGTERM and SIGINT call it. */
export function exitOnStop (close: () => Promise<void>): () => Promise<void> {
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    await close()
    process.exit(0)
  }
  process.once('SIGTERM', () => { void stop() })
  process.once('SIGINT', () => { void stop() })
  return stop
}

/** The parent holds our stdin open; it ends when the parent dies, even by SIGKILL. */
export function onParentGone (fn: () => void): void {
  process.stdin.on('end', fn)
  process.stdin.resume()
}

/** The ready line startServerChild waits for; stdout carries nothing else. */
export function announceListening (address: string, pids: number[] = [process.pid]): void {
  process.stdout.write(JSON.stringify({ address, pids }) + '\n')
}

// ---------- requests ----------

/** A presigned GET URL for `key` from the server's own POST /generate-presigned-url. */
export async function fetchPresignedUrl (address: string, authorization: string, key: string): Promise<string> {
  const res = await fetch(`${address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify({ key })
  })
  if (res.status !== 200) throw new Error(`presign failed: ${res.status} ${await res.text()}`)
  return ((await res.json()) as { url: string }).url
}

export const proxyUrlFor = (address: string, presignedUrl: string): string =>
  `${address}/api/v1/proxy/file?presigned_url=${encodeURIComponent(presignedUrl)}`

/** autocannon, loaded lazily: the type check needs neither it nor its types. `T` types the part a script uses. */
export async function loadAutocannon<T> (): Promise<T> {
  const name = 'autocannon' // not a literal import, for the same reason
  try {
    const mod = await import(name) as { default?: T }
    return (mod.default ?? mod) as T
  } catch {
    throw new Error('autocannon is not installed: npm ci (it is a devDependency), or npm i --no-save autocannon@^8')
  }
}

// ---------- CPU profiles ----------

/** A fresh bench/profiles/<timestamp>/ for a child's --cpu-prof. */
export function newProfileDir (): string {
  const dir = join(BENCH_DIR, 'profiles', new Date().toISOString().replace(/[:.]/g, '-'))
  mkdirSync(dir, { recursive: true })
  return dir
}

/** The path of the first profile in `dir` whose name matches, or undefined (logged). */
export function findProfile (dir: string, name: RegExp, log: Log): string | undefined {
  const file = readdirSync(dir).find(f => name.test(f))
  if (file === undefined) log(`no .cpuprofile written in ${dir}`)
  return file === undefined ? undefined : join(dir, file)
}

export interface ProfileFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: ProfileFrame, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

/** A .cpuprofile as its samples (leaf node, frame, µs), with a way up each sample's stack. */
export function readCpuProfile (file: string): {
  samples: Array<{ id: number, frame: ProfileFrame, us: number }>
  frameOf: (id: number) => ProfileFrame
  parentOf: (id: number) => number | undefined
} {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map(node => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id)
  const frameOf = (id: number): ProfileFrame => (byId.get(id) as ProfileNode).callFrame
  return {
    samples: profile.samples.map((id, i) => ({ id, frame: frameOf(id), us: profile.timeDeltas[i] ?? 0 })),
    frameOf,
    parentOf: id => parent.get(id)
  }
}

/** A path relative to the project when it is inside it ('' for native frames). */
export function projectPath (urlOrPath: string): string {
  const path = urlOrPath.replace(/^file:\/\//, '')
  return path.startsWith(ROOT) ? relative(ROOT, path) : path
}

export function frameLabel (f: ProfileFrame): string {
  const path = projectPath(f.url)
  return `${f.functionName === '' ? '(anonymous)' : f.functionName}${path === '' ? '' : ` ${path}:${f.lineNumber + 1}`}`
}

export function addTo (totals: Map<string, number>, key: string, us: number): void {
  totals.set(key, (totals.get(key) ?? 0) + us)
}

/** The `n` largest entries as "  12.3%     456 ms  what" lines. */
export function topShares (totals: Map<string, number>, total: number, n: number): string[] {
  return [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([what, us]) => `${fmt(100 * us / total).padStart(5)}%  ${fmt(us / 1000, 0).padStart(7)} ms  ${what}`)
}

const SOCKET_WRITES = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString'])

/**
 * Top frames by self time, and self time charged to the nearest package or
 * project file up the stack (so node:crypto work done for the SDK counts as the
 * SDK's). Idle time is left out; module loading at start-up is a line of its own.
 */
export function profileSummary (file: string, n = 15): string[] {
  const { samples, frameOf, parentOf } = readCpuProfile(file)
  const self = new Map<string, number>()
  const charged = new Map<string, number>()
  let total = 0
  for (const { id, frame: leaf, us: dt } of samples) {
    if (leaf.functionName === '(idle)') continue
    total += dt
    addTo(self, frameLabel(leaf), dt)
    const stack: string[] = []
    for (let cur: number | undefined = id; cur !== undefined; cur = parentOf(cur)) stack.push(projectPath(frameOf(cur).url))
    let owner: string | undefined
    if (stack.some(u => u.startsWith('node:internal/modules/'))) owner = 'start-up: loading modules'
    else if (projectPath(leaf.url) === '' && SOCKET_WRITES.has(leaf.functionName)) owner = 'socket writes (the syscall, incl. loopback TCP)'
    else {
      for (const u of stack) {
        const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)
        if (m !== null) { owner = m[1]; break }
        if (u !== '' && !u.startsWith('node:') && !u.startsWith('/')) { owner = u; break }
      }
      owner ??= stack.find(u => u.startsWith('node:')) ?? leaf.functionName
    }
    addTo(charged, owner, dt)
  }
  return [
    `non-idle: ${fmt(total / 1e6, 2)} s (wall-clock samples: time the process was preempted counts too)`,
    'top frames by self time:',
    ...topShares(self, total, n),
    'self time charged to the nearest package / project file on the stack:',
    ...topShares(charged, total, n)
  ]
}

// ---------- figures and the result ----------

export const fmt = (n: number, digits = 1): string => n.toFixed(digits)
export const fmtMiB = (bytes: number): string => `${fmt(bytes / MiB)} MiB`
export const mark = (ok: boolean): string => ok ? 'PASS' : 'MISS'

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** The "S3" row of presign.ts. */
export const describeS3 = (endpoint: string, external: boolean): string =>
  external ? `external ${endpoint} (S3_TEST_*)` : `s3rver in-process ${endpoint}`

/** The command that repeats this run, for the table; `envPrefix` adds variables that change the result. */
export function benchCommand (script: string, envPrefix = ''): string {
  const argv = process.argv.slice(2).join(' ')
  return `AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true ${envPrefix}npx tsx bench/${script}${argv === '' ? '' : ' ' + argv}`
}

/** A two-column Markdown table, blank line before and after; pipes in values are escaped unless already. */
export function metricTable (rows: Array<[string, string]>): string[] {
  return ['', '| Metric | Value |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v.replaceAll(/(?<!\\)\|/g, '\\|')} |`), '']
}
