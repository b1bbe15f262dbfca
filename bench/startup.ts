/**
 * Start-up of the service: time from spawning the process to the first 200 from
 * GET /health, the CPU that took, and resident memory once the server is idle.
 *
 *   npx tsx bench/startup.ts [--runs 7] [--idle-ms 2000] [--settle-ms 0] [--variants start,npm,dev,glibc,local]
 *                            [--baseline <git ref>] [--node <binary>] [--breakdown] [--no-build]
 *
 * Variants, measured in interleaved rounds (one run of each per round, so load from
 * elsewhere on the host falls on all of them alike):
 *   start     node dist/src/server.js, the process `npm start` leaves running (built first by this script)
 *   npm       `npm start --ignore-scripts`: the same with npm as its parent, as a terminal runs it
 *   dev       `npm run dev`'s tsx watch src/server.ts: tsx, and a node child with the TypeScript loader
 *   glibc     node dist/src/server.js without npm start's MALLOC_TRIM_THRESHOLD_ (what that setting costs at idle)
 *   local     node dist/src/server.js with nothing configured: embedded s3rver and dev secret (a fresh clone)
 *   baseline  --baseline <ref>'s compiled server, built from `git archive` in a scratch directory
 * Every variant except local runs with a production configuration (NODE_ENV=production,
 * bucket, endpoint, static credentials, JWT secret); nothing contacts S3 while starting.
 * "Server RSS" is the process serving HTTP; "tree RSS" adds its parents (npm, tsx).
 * --breakdown adds two probed runs of `start`: V8's heap spaces, and the modules loaded.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { cpuSeconds, fmt, hostLoad, mark, median, MiB, positive, ROOT, runBench, SERVICE_MALLOC_ENV, stderrLog, Teardowns, vmBytes } from './lib.js'

const log = stderrLog('startup')
const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    'idle-ms': { type: 'string', default: '2000' },
    'settle-ms': { type: 'string', default: '0' },
    variants: { type: 'string', default: 'start,npm,dev,glibc,local' },
    baseline: { type: 'string' },
    node: { type: 'string', default: process.execPath },
    breakdown: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false }
  }
})
const RUNS = positive('runs', args.runs)
const IDLE_MS = positive('idle-ms', args['idle-ms'])
const SETTLE_MS = Number(args['settle-ms'])
const NODE = args.node
const READY_GOAL_MS = 600
const RSS_GOAL_MIB = 100

interface Variant {
  name: string
  label: string
  command: (port: number) => { file: string, argv: string[], env: Record<string, string> }
}

/** A production configuration that never makes the server contact S3 while it starts. */
const PRODUCTION_ENV = {
  NODE_ENV: 'production',
  S3_BUCKET: 'bench-bucket',
  S3_REGION: 'us-east-1',
  S3_ENDPOINT: 'http://127.0.0.1:9',
  S3_FORCE_PATH_STYLE: 'true',
  AWS_ACCESS_KEY_ID: 'bench-access-key',
  AWS_SECRET_ACCESS_KEY: 'bench-secret-key',
  JWT_SECRET: 'bench-secret-bench-secret-bench-secret-0123'
}

const teardowns = new Teardowns(log)
const nodeEnv = { PATH: `${dirname(NODE)}:${process.env.PATH ?? ''}`, ...SERVICE_MALLOC_ENV }

function variants (baselineServer: string | undefined, dataDir: string): Variant[] {
  const all: Variant[] = [
    { name: 'start', label: '`npm start`\'s process: node dist/src/server.js', command: () => ({ file: NODE, argv: ['dist/src/server.js'], env: { ...PRODUCTION_ENV, ...nodeEnv } }) },
    { name: 'npm', label: '`npm start --ignore-scripts` (npm → node)', command: () => ({ file: 'npm', argv: ['start', '--ignore-scripts', '--silent'], env: { ...PRODUCTION_ENV, ...nodeEnv } }) },
    { name: 'dev', label: '`npm run dev`\'s tsx watch src/server.ts (tsx → node)', command: () => ({ file: NODE, argv: [join(ROOT, 'node_modules/tsx/dist/cli.mjs'), 'watch', 'src/server.ts'], env: { ...PRODUCTION_ENV, ...nodeEnv } }) },
    { name: 'glibc', label: 'node dist/src/server.js with glibc\'s malloc defaults (no MALLOC_TRIM_THRESHOLD_)', command: () => ({ file: NODE, argv: ['dist/src/server.js'], env: { ...PRODUCTION_ENV, PATH: nodeEnv.PATH } }) },
    { name: 'local', label: 'node dist/src/server.js, nothing configured (embedded s3rver)', command: () => ({ file: NODE, argv: ['dist/src/server.js'], env: { DATA_DIR: dataDir, ...nodeEnv } }) }
  ]
  const chosen = args.variants.split(',').map(name => {
    const variant = all.find(v => v.name === name)
    if (variant === undefined) throw new Error(`--variants: unknown variant ${name} (start, npm, dev, glibc, local)`)
    return variant
  })
  if (baselineServer !== undefined) {
    chosen.push({ name: 'baseline', label: `${args.baseline ?? ''}: node ${relative(ROOT, baselineServer)}`, command: () => ({ file: NODE, argv: [baselineServer], env: { ...PRODUCTION_ENV, ...nodeEnv } }) })
  }
  return chosen
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

async function healthStatus (port: number): Promise<number | undefined> {
  return await new Promise(resolve => {
    const req = request({ host: '127.0.0.1', port, path: '/health', agent: false }, res => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', () => { resolve(undefined) })
    req.end()
  })
}

/** pid → parent pid for every process (Linux /proc). */
function parents (): Map<number, number> {
  const map = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      map.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  return map
}

/** The process and its descendants, parents first. */
function tree (root: number): number[] {
  const ppid = parents()
  const pids = [root]
  for (let i = 0; i < pids.length; i++) {
    for (const [pid, parent] of ppid) if (parent === pids[i]) pids.push(pid)
  }
  return pids
}

const sum = (pids: number[], read: (pid: number) => number): number =>
  pids.reduce((total, pid) => { try { return total + read(pid) } catch { return total } }, 0)

interface Sample { readyMs: number, cpuMs: number, serverRss: number, treeRss: number, settledRss?: number, processes: number, probe?: string }

async function measure (variant: Variant, nodeArgs: string[] = []): Promise<Sample> {
  const port = await freePort()
  const { file, argv, env } = variant.command(port)
  const started = performance.now()
  // glibc's malloc settings come from the variant alone.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MALLOC_')))
  const child: ChildProcess = spawn(file, file === NODE ? [...nodeArgs, ...argv] : argv, {
    cwd: ROOT,
    env: { ...inherited, ...env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own, so one signal stops the whole tree.
    detached: true
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    try { process.kill(-(child.pid as number), 'SIGTERM') } catch {}
    const timer = setTimeout(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} }, 10_000)
    await exited
    clearTimeout(timer)
  }
  teardowns.teardown(stop)
  let output = ''
  let probe: string | undefined
  child.stdout?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
  createInterface({ input: child.stderr as Readable }).on('line', line => {
    if (line.startsWith('STARTUP-PROBE ')) probe = line.slice('STARTUP-PROBE '.length)
    else output = (output + line + '\n').slice(-4000)
  })
  let exited = false
  child.once('exit', () => { exited = true })

  while (await healthStatus(port) !== 200) {
    if (exited) throw new Error(`${variant.name} exited before answering /health:\n${output}`)
    if (performance.now() - started > 60_000) throw new Error(`${variant.name}: no 200 from /health within 60 s:\n${output}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  const readyMs = performance.now() - started
  const pids = tree(child.pid as number)
  const cpuMs = sum(pids, cpuSeconds) * 1000
  await new Promise(resolve => setTimeout(resolve, IDLE_MS))
  // The server is the process at the end of the chain (npm → node, tsx → node).
  const server = pids[pids.length - 1]
  const sample: Sample = { readyMs, cpuMs, serverRss: vmBytes(server, 'VmRSS'), treeRss: sum(pids, pid => vmBytes(pid, 'VmRSS')), processes: pids.length }
  if (SETTLE_MS > IDLE_MS) {
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS - IDLE_MS))
    sample.settledRss = vmBytes(server, 'VmRSS')
  }
  while (probe === undefined && nodeArgs.length > 0 && !exited) await new Promise(resolve => setTimeout(resolve, 50))
  sample.probe = probe
  await stop()
  return sample
}

/** Builds `ref`'s server with the current node_modules, in a scratch directory inside the repository (so packages resolve). */
function buildBaseline (ref: string): string {
  const dir = mkdtempSync(join(ROOT, '.startup-baseline-'))
  teardowns.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const archive = execFileSync('git', ['archive', ref, 'src', 'plugins', 'routes', 'tsconfig.json', 'tsconfig.build.json'], { cwd: ROOT, maxBuffer: 64 * MiB })
  execFileSync('tar', ['-x', '-C', dir], { input: archive })
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.build.json')], { cwd: dir, stdio: 'inherit' })
  return join(dir, 'dist/src/server.js')
}

// ---------- --breakdown probes (they cost memory themselves, so they are not in the timed runs) ----------

/** Reports V8's heap spaces and the process's anonymous and file-backed RSS at idle. */
const HEAP_PROBE = `
import v8 from 'node:v8'
import { readFileSync } from 'node:fs'
setTimeout(() => {
  const status = readFileSync('/proc/self/status', 'utf8')
  const kB = name => Number(new RegExp('^' + name + ':\\\\s+(\\\\d+)', 'm').exec(status)[1]) * 1024
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().filter(s => s.space_size > 0).map(s => [s.space_name, { physical: s.physical_space_size, used: s.space_used_size }]))
  process.stderr.write('STARTUP-PROBE ' + JSON.stringify({ rss: kB('VmRSS'), anon: kB('RssAnon'), file: kB('RssFile'), spaces, memory: process.memoryUsage() }) + '\\n')
}, ${IDLE_MS}).unref()
`

/** Lists every module file loaded: ES modules through a load hook, CommonJS through Module#_compile. */
const MODULE_HOOKS = `
let port
export function initialize (data) { port = data.port }
export async function load (url, context, next) {
  const result = await next(url, context)
  if (url.startsWith('file:')) port.postMessage(url)
  return result
}
`
const MODULE_PROBE = `
import Module, { register } from 'node:module'
import { MessageChannel } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
const files = new Set()
const { port1, port2 } = new MessageChannel()
port1.on('message', url => { files.add(fileURLToPath(url)) })
port1.unref()
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(MODULE_HOOKS)}), { data: { port: port2 }, transferList: [port2] })
const compile = Module.prototype._compile
Module.prototype._compile = function (content, filename) { files.add(filename); return compile.call(this, content, filename) }
setTimeout(() => { process.stderr.write('STARTUP-PROBE ' + JSON.stringify([...files]) + '\\n') }, ${IDLE_MS}).unref()
`
const probeArgs = (source: string): string[] => ['--import', `data:text/javascript,${encodeURIComponent(source)}`]

interface HeapProbe { rss: number, anon: number, file: number, spaces: Record<string, { physical: number, used: number }>, memory: NodeJS.MemoryUsage }

function packageOf (file: string): string {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(file)
  return match?.[1] ?? `(ours) ${relative(ROOT, file).split('/').slice(0, 2).join('/')}`
}

function breakdownTables (heap: HeapProbe, files: string[]): string[] {
  const mib = (bytes: number): string => fmt(bytes / MiB)
  const space = (name: string): { physical: number, used: number } => heap.spaces[name] ?? { physical: 0, used: 0 }
  const heapPhysical = Object.values(heap.spaces).reduce((total, s) => total + s.physical, 0)
  const youngAndOld = space('new_space').physical + space('old_space').physical
  const lines = [
    '', '| Resident memory of `start` at idle (one probed run) | MiB |', '|---|---|',
    `| file-backed (the node binary and shared libraries, the pages it touched) | ${mib(heap.file)} |`,
    `| anonymous | ${mib(heap.anon)} |`,
    `| … V8 young generation (new space): physical / in use | ${mib(space('new_space').physical)} / ${mib(space('new_space').used)} |`,
    `| … V8 old space: physical / in use | ${mib(space('old_space').physical)} / ${mib(space('old_space').used)} |`,
    `| … V8 other spaces (code, large objects, trusted) | ${mib(heapPhysical - youngAndOld)} |`,
    `| … outside the V8 heap (malloc: buffers, compiler zones, libuv, OpenSSL) | ${mib(heap.anon - heapPhysical)} |`,
    ''
  ]
  const byPackage = new Map<string, { files: number, bytes: number }>()
  let bytes = 0
  for (const file of files) {
    let size = 0
    try { size = statSync(file).size } catch {}
    bytes += size
    const entry = byPackage.get(packageOf(file)) ?? { files: 0, bytes: 0 }
    entry.files++
    entry.bytes += size
    byPackage.set(packageOf(file), entry)
  }
  lines.push(`Modules loaded by the time it is idle: ${files.length} files, ${fmt(bytes / MiB, 2)} MiB of JavaScript. Largest packages:`, '',
    '| Package | files | KiB |', '|---|---|---|',
    ...[...byPackage].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 15).map(([name, p]) => `| ${name} | ${p.files} | ${fmt(p.bytes / 1024, 0)} |`), '')
  return lines
}

// ---------- the run ----------

async function main (): Promise<void> {
  if (args['no-build'] !== true) {
    log('npm run build')
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit', env: { ...process.env, PATH: nodeEnv.PATH } })
  }
  const baselineServer = args.baseline === undefined ? undefined : buildBaseline(args.baseline)
  const dataDir = mkdtempSync(join(tmpdir(), 'artos-startup-'))
  teardowns.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
  const chosen = variants(baselineServer, dataDir)
  const nodeVersion = execFileSync(NODE, ['--version']).toString().trim()
  const loadBefore = hostLoad()

  const samples = new Map<string, Sample[]>(chosen.map(v => [v.name, []]))
  // One warm-up round fills the page cache, unmeasured.
  for (const variant of chosen) await measure(variant)
  for (let round = 1; round <= RUNS; round++) {
    for (const variant of chosen) {
      const sample = await measure(variant)
      samples.get(variant.name)?.push(sample)
      log(`round ${round}/${RUNS} ${variant.name}: ${fmt(sample.readyMs, 0)} ms to /health, ${fmt(sample.cpuMs, 0)} ms CPU, server ${fmt(sample.serverRss / MiB)} MiB, tree ${fmt(sample.treeRss / MiB)} MiB (${sample.processes} processes)`)
    }
  }

  const settled = SETTLE_MS > IDLE_MS
  const out = [
    `Node ${nodeVersion}; ${RUNS} interleaved rounds after one warm-up round; RSS read ${IDLE_MS} ms after the first 200${settled ? ` and again ${SETTLE_MS} ms after it` : ''}; 1-minute load average ${fmt(loadBefore, 2)} before, ${fmt(hostLoad(), 2)} after.`,
    '',
    `| Variant | first /health 200, ms: median (min–max) | CPU to ready, ms | server RSS, MiB: median (min–max) | tree RSS, MiB | ${settled ? `server RSS at ${SETTLE_MS} ms, MiB | ` : ''}processes |`,
    `|---|---|---|---|---|${settled ? '---|' : ''}---|`
  ]
  for (const variant of chosen) {
    const s = samples.get(variant.name) ?? []
    const col = (pick: (x: Sample) => number, scale = 1, digits = 0): string => fmt(median(s.map(pick)) / scale, digits)
    const range = (pick: (x: Sample) => number, scale = 1, digits = 0): string => `${fmt(Math.min(...s.map(pick)) / scale, digits)}–${fmt(Math.max(...s.map(pick)) / scale, digits)}`
    out.push(`| ${variant.label} | ${col(x => x.readyMs)} (${range(x => x.readyMs)}) | ${col(x => x.cpuMs)} | ${col(x => x.serverRss, MiB, 1)} (${range(x => x.serverRss, MiB, 1)}) | ${col(x => x.treeRss, MiB, 1)} | ${settled ? `${col(x => x.settledRss ?? 0, MiB, 1)} | ` : ''}${col(x => x.processes)} |`)
  }
  const start = samples.get('start')
  if (start !== undefined) {
    const ready = median(start.map(x => x.readyMs))
    const rss = median(start.map(x => x.serverRss)) / MiB
    out.push('', '| Goal (`start`) | Value | |', '|---|---|---|',
      `| first /health 200 ≤ ${READY_GOAL_MS} ms after the process starts | ${fmt(ready, 0)} ms | ${mark(ready <= READY_GOAL_MS)} |`,
      `| server RSS ≤ ${RSS_GOAL_MIB} MiB, ${IDLE_MS} ms after start-up | ${fmt(rss)} MiB | ${mark(rss <= RSS_GOAL_MIB)} |`)
    if (settled) {
      const settledRss = median(start.map(x => x.settledRss ?? 0)) / MiB
      out.push(`| server RSS ≤ ${RSS_GOAL_MIB} MiB, ${SETTLE_MS} ms after start-up | ${fmt(settledRss)} MiB | ${mark(settledRss <= RSS_GOAL_MIB)} |`)
    }
    const base = samples.get('baseline')
    if (base !== undefined) {
      out.push(`| start / baseline: time to ready, CPU to ready, server RSS | ${fmt(ready / median(base.map(x => x.readyMs)), 2)}, ${fmt(median(start.map(x => x.cpuMs)) / median(base.map(x => x.cpuMs)), 2)}, ${fmt(rss / (median(base.map(x => x.serverRss)) / MiB), 2)} | |`)
    }
  }

  if (args.breakdown === true) {
    const startVariant = variants(undefined, dataDir).find(v => v.name === 'start') as Variant
    log('breakdown: heap probe')
    const heap = JSON.parse((await measure(startVariant, probeArgs(HEAP_PROBE))).probe ?? 'null') as HeapProbe
    log('breakdown: module probe')
    const files = JSON.parse((await measure(startVariant, probeArgs(MODULE_PROBE))).probe ?? '[]') as string[]
    out.push(...breakdownTables(heap, files))
  }
  process.stdout.write(out.join('\n') + '\n')
  await teardowns.run()
}

await runBench(main, teardowns, log, { exit: true })
