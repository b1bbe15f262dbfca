/**
 * Closed-loop HTTP load on one server child with autocannon (in this process,
 * pipelining 1): responses/s, exact latencies, and the CPU the server and this
 * process spent per response. Shared by presign.ts and presign-batch.ts.
 *
 * Imports node: built-ins and lib.ts only; autocannon itself is loaded lazily
 * (loadAutocannon) and handed in.
 */
import { fmt, median, ownCpuSeconds, serverCpuSeconds, type Log, type ServerChild } from './lib.js'

// ---------- autocannon, typed as far as it is used ----------
interface CannonResult {
  requests: { total: number }
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  statusCodeStats: Record<string, { count: number }>
}
interface CannonInstance extends PromiseLike<CannonResult> {
  on: (event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void) => void
}
export type Cannon = (opts: Record<string, unknown>) => CannonInstance

/** One POST, the same for every request of a run. */
export interface Target {
  path: string
  headers: Record<string, string>
  body: string
  connections: number
}

export interface Run {
  /** Responses per second. */
  rps: number
  p50: number
  p99: number
  /** Server CPU (all its processes) per response, µs. */
  serverUs: number
  /** This process's CPU (autocannon) as % of one CPU. */
  loadgenPct: number
  /** This process's CPU (autocannon) per response, µs. */
  loadgenUs: number
}

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]
}

export const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US')

/** `seconds` of load; any non-2xx, socket error or timeout stops the run. */
export async function load (cannon: Cannon, child: ServerChild, target: Target, seconds: number, record: boolean): Promise<Run> {
  let latencies = new Float64Array(1 << 16)
  let n = 0
  const cpu0 = serverCpuSeconds(child)
  const own0 = ownCpuSeconds()
  const t0 = performance.now()
  const instance = cannon({
    url: `${child.address}${target.path}`,
    method: 'POST',
    headers: target.headers,
    body: target.body,
    connections: target.connections,
    pipelining: 1,
    duration: seconds
  })
  if (record) {
    // autocannon's own histogram keeps whole milliseconds; these are exact.
    instance.on('response', (_client, _status, _bytes, ms) => {
      if (n === latencies.length) { const grown = new Float64Array(n * 2); grown.set(latencies); latencies = grown }
      latencies[n++] = ms
    })
  }
  const result = await instance
  const wall = (performance.now() - t0) / 1000
  const serverCpu = serverCpuSeconds(child) - cpu0
  const loadgenCpu = ownCpuSeconds() - own0
  const bad = result.non2xx + result.errors + result.timeouts
  if (bad > 0) {
    throw new Error(`${child.name}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts ` +
      `of ${result.requests.total} (status codes: ${JSON.stringify(result.statusCodeStats)})`)
  }
  const sorted = latencies.subarray(0, n).sort()
  return {
    rps: result.requests.total / result.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    serverUs: 1e6 * serverCpu / Math.max(1, result.requests.total),
    loadgenPct: 100 * loadgenCpu / wall,
    loadgenUs: 1e6 * loadgenCpu / Math.max(1, result.requests.total)
  }
}

export interface Phases { warmup: number, duration: number }

/** A warm-up, then one recorded run, logged in one line. */
export async function measure (cannon: Cannon, child: ServerChild, target: Target, phases: Phases, log: Log): Promise<Run> {
  await load(cannon, child, target, phases.warmup, false)
  const run = await load(cannon, child, target, phases.duration, true)
  log(`${child.name.padEnd(3)} ${fmtInt(run.rps).padStart(7)} req/s  p50 ${fmt(run.p50, 2)} ms  p99 ${fmt(run.p99, 2)} ms  ` +
    `server ${fmt(run.serverUs)} µs CPU/req  autocannon ${fmt(run.loadgenPct, 0)}% CPU`)
  return run
}

export interface Summary extends Run {
  /** Responses per second of each round. */
  runs: number[]
  /** Server CPU µs per response of each round. */
  serverRuns: number[]
}

/** The median of each figure over the rounds. */
export function summarize (runs: Run[]): Summary {
  const mid = (f: (r: Run) => number): number => median(runs.map(f))
  return {
    rps: mid(r => r.rps),
    p50: mid(r => r.p50),
    p99: mid(r => r.p99),
    serverUs: mid(r => r.serverUs),
    loadgenPct: mid(r => r.loadgenPct),
    loadgenUs: mid(r => r.loadgenUs),
    runs: runs.map(r => r.rps),
    serverRuns: runs.map(r => r.serverUs)
  }
}
