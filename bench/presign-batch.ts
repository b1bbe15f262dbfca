/**
 * Batch presign benchmark (issue 13).
 *
 *   npx tsx bench/presign-batch.ts [--items 1000] [--duration 10] [--warmup 2] [--repeats 3] [--connections 4]
 *                                  [--micro-rounds 5] [--no-micro] [--cpu-prof] [--no-pin]
 *
 * POST /generate-presigned-urls with one body of --items keys and one Bearer
 * token for both servers, each alone in a child process (bench/presign-servers.ts):
 *   B  ours: buildApp (rate limits, docs, logs off),
 *   L  the naive server: @fastify/jwt, then `await getSignedUrl(...)` per item.
 * autocannon in this process, pipelining 1, a few connections (each request is
 * ~50 KB up and ~0.4 MB down). --repeats rounds, B and L interleaved, each a
 * --warmup s warm-up then a --duration s measurement; medians. Server CPU per
 * batch comes from /proc. Goals: B under 25 ms of server CPU per batch of 1,000;
 * URLs/s B/L >= 100.
 *
 * Before that, in this process: the CPU one URL of the batch costs to sign with
 * getSignedUrl, with ours, and at the hash floor (bench/signing-cost.ts), which
 * bounds the ratio any Node server can reach.
 *
 * With taskset and at least 2 CPUs, the servers run on CPU 0 and this process
 * (autocannon, the in-process s3rver) on CPU 1. Goals are reported as PASS/MISS,
 * never as a failing exit code.
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startTestS3, externalS3Configured } from '../test/helpers/s3.js'
import { signToken } from '../test/helpers/tokens.js'
import {
  BENCH_DIR, Teardowns, allCpus, benchCommand, benchS3Json, cpuMeter, describeS3, findProfile, fmt, hostLoad, loadAutocannon,
  mark, newProfileDir, pinLoadGenerator, positive, profileSummary, projectPath, runBench, startServerChild,
  stderrLog, stopServerChild, type ServerChild
} from './lib.js'
import { fmtInt, measure, summarize, type Cannon, type Run, type Summary, type Target } from './http-load.js'
import { signingCost, type SigningCost } from './signing-cost.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const { values: args } = parseArgs({
  options: {
    items: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    connections: { type: 'string', default: '4' },
    'micro-rounds': { type: 'string', default: '5' },
    'no-micro': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false }
  },
  strict: true
})
const items = Math.round(positive('items', args.items))
const phases = { duration: positive('duration', args.duration), warmup: positive('warmup', args.warmup) }
const repeats = Math.round(positive('repeats', args.repeats))
const connections = Math.round(positive('connections', args.connections))
const microRounds = Math.round(positive('micro-rounds', args['micro-rounds']))

const GOAL_CPU_MS = 25
const GOAL_RATIO = 100
/** Fewer batches of L in a measured round than this, and B/L is not reported as met or missed. */
const MIN_BATCHES = 10

const log = stderrLog('bench')
const teardowns = new Teardowns(log)
const pinning = pinLoadGenerator(args['no-pin'], 'yes (servers B, L: CPU 0; autocannon + in-process s3rver + signing costs: CPU 1)')

// Keys as a document store names them; all in the caller's organization, none needs encoding.
const keys = Array.from({ length: items }, (_, i) => `org-1/documents/2024/report-${String(i).padStart(4, '0')}.pdf`)
const BODY = JSON.stringify({ items: keys.map(key => ({ key })) })

interface BatchResult { key: string, url?: string, expiresAt?: string, error?: unknown }

/** One batch: 200, one URL per key in order, and the first and last URL download their object. */
async function check (child: ServerChild, authorization: string, objectBody: string): Promise<void> {
  const res = await fetch(`${child.address}/generate-presigned-urls`, {
    method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: BODY
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${child.name}: HTTP ${res.status} ${text.slice(0, 300)}`)
  const { results } = JSON.parse(text) as { results: BatchResult[] }
  const wrong = results.findIndex((r, i) => r.key !== keys[i] || typeof r.url !== 'string' || typeof r.expiresAt !== 'string')
  if (results.length !== items || wrong !== -1) {
    throw new Error(`${child.name}: ${results.length} results for ${items} keys; first wrong: ${JSON.stringify(results[wrong])}`)
  }
  for (const i of [0, items - 1]) {
    const got = await fetch(results[i].url as string)
    const body = await got.text()
    if (got.status !== 200 || body !== objectBody) throw new Error(`${child.name}: URL ${i} gives HTTP ${got.status}, ${body.length} bytes`)
  }
}

const us = (ns: number, digits = 2): string => fmt(ns / 1000, digits)

function signingRows (c: SigningCost): string[] {
  return [
    `| Signing one URL, in process (CPU): getSignedUrl / ours / hash floor (3 one-shot SHA-256) | ${us(c.sdkNs, 1)} / ${us(c.oursNs)} / ${us(c.floorNs)} µs ` +
      `(runs ${c.runs.sdk.map(x => us(x, 0)).join(', ')} / ${c.runs.ours.map(x => us(x)).join(', ')} / ${c.runs.floor.map(x => us(x)).join(', ')}) | — | — |`,
    `| Bound on B/L if all but signing were free: getSignedUrl ÷ ours, ÷ hash floor | ${fmt(c.sdkNs / c.oursNs, 0)}, ${fmt(c.sdkNs / c.floorNs, 0)} | — | — |`
  ]
}

async function main (): Promise<void> {
  const wallStart = performance.now()
  const loadStart = hostLoad()
  const autocannon = await loadAutocannon<Cannon>()
  log(`pinning: ${pinning.label}`)
  const s3 = await startTestS3(teardowns)
  const s3Label = describeS3(s3.endpoint, externalS3Configured())
  log(`S3: ${s3Label}, bucket ${s3.bucket}`)
  const objectBody = 'presign batch benchmark object\n'
  for (const key of new Set([keys[0], keys[items - 1]])) await s3.put(key, objectBody, 'application/pdf')

  // First, while nothing else runs.
  const signing = args['no-micro'] ? undefined : await signingCost(s3, keys, microRounds)
  if (signing !== undefined) log(`signing per URL: getSignedUrl ${fmt(signing.sdkNs / 1000, 1)} µs, ours ${fmt(signing.oursNs / 1000, 2)} µs, hash floor ${fmt(signing.floorNs / 1000, 2)} µs`)

  const authorization = `Bearer ${signToken({ sub: 'bench', org_id: 'org-1' }, { expiresInSeconds: 6 * 3600 })}`
  const target: Target = { path: '/generate-presigned-urls', headers: { authorization, 'content-type': 'application/json' }, body: BODY, connections }
  const env = { BENCH_S3: benchS3Json(s3) }
  const profileDir = args['cpu-prof'] ? newProfileDir() : undefined
  // Children inherit this process's affinity, so an unpinned child is given every CPU explicitly.
  const cpus = pinning.pinned ? '0' : pinning.canPin ? allCpus(pinning.cpus) : undefined
  const start = async (name: 'B' | 'L', dir?: string): Promise<ServerChild> => {
    const child = await startServerChild({ name, script: join(BENCH_DIR, 'presign-servers.ts'), args: ['--variant', name], env, cpus, profileDir: dir })
    teardowns.teardown(async () => { await stopServerChild(child) })
    await check(child, authorization, objectBody)
    return child
  }
  const B = await start('B', profileDir)
  const L = await start('L')
  log(`servers: B ${B.address} (pid ${B.pid}), L ${L.address} (pid ${L.pid}); ${fmtInt(BODY.length)} bytes per request body`)

  const runs: Record<'B' | 'L', Run[]> = { B: [], L: [] }
  const meter = cpuMeter([B.pid, L.pid])
  for (let i = 0; i < repeats; i++) {
    log(`round ${i + 1}/${repeats}`)
    // Alternate which goes first, so drift on the host hits both alike.
    for (const child of i % 2 === 0 ? [B, L] : [L, B]) runs[child.name as 'B' | 'L'].push(await measure(autocannon, child, target, phases, log))
  }
  const foreignPct = meter().others
  await stopServerChild(B)
  await stopServerChild(L)
  // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's loader has its own).
  const profile = profileDir === undefined ? undefined : findProfile(profileDir, /\.0\.\d+\.cpuprofile$/, log)
  await teardowns.run()

  // ---------- report ----------
  const b = summarize(runs.B)
  const l = summarize(runs.L)
  const ratio = b.rps / l.rps
  // A round with a handful of L's batches (or none) makes B/L meaningless, not a PASS.
  const fewest = Math.min(...runs.L.map(r => r.rps * phases.duration))
  const ratioResult = fewest < MIN_BATCHES ? 'n/a (too few L batches)' : mark(ratio >= GOAL_RATIO)
  const roundRatios = runs.B.map((r, i) => r.rps / runs.L[i].rps)
  const ms = (us: number): string => fmt(us / 1000, 2)
  const row = (name: string, s: Summary): string =>
    `| ${name} | ${fmt(s.rps, 1)} | ${s.runs.map(x => fmt(x, 1)).join(', ')} | ${fmtInt(s.rps * items)} | ${fmt(s.p50, 1)} | ${fmt(s.p99, 1)} | ` +
    `${ms(s.serverUs)} (${s.serverRuns.map(ms).join(', ')}) | ${fmt(s.loadgenPct, 0)}% |`
  const out: string[] = [
    '',
    `POST /generate-presigned-urls, ${fmtInt(items)} keys per batch, ${connections} connections, pipelining 1, ${fmt(phases.warmup, 0)} s warm-up + ` +
      `${fmt(phases.duration, 0)} s measured, ${repeats} rounds B,L interleaved; medians (per round).`,
    '',
    '| Server | batches/s | per round | URLs/s | p50 ms | p99 ms | server CPU ms/batch (per round) | autocannon CPU |',
    '|---|---|---|---|---|---|---|---|',
    row('B ours: buildApp', b),
    row('L naive: @fastify/jwt + a getSignedUrl loop', l),
    '',
    '| Figure | Value | Goal | Result |',
    '|---|---|---|---|',
    `| B server CPU per batch of ${fmtInt(items)} | ${ms(b.serverUs)} ms (${fmt(b.serverUs / items, 2)} µs per URL) | < ${GOAL_CPU_MS} ms | ${mark(b.serverUs / 1000 < GOAL_CPU_MS)} |`,
    `| URLs/s B/L | ${fmt(ratio, 1)} (per round ${roundRatios.map(x => fmt(x, 1)).join(', ')}) | ≥ ${GOAL_RATIO} | ${ratioResult} |`,
    `| Server CPU per batch L/B | ${fmt(l.serverUs / b.serverUs, 1)} (L ${fmt(l.serverUs / items, 1)} µs per URL) | — | — |`,
    `| B p50 latency / L p50 | ${fmt(b.p50 / l.p50, 3)} | — | — |`,
    ...(signing === undefined ? [] : signingRows(signing)),
    '',
    '| Context | Value |',
    '|---|---|',
    `| CPU pinning | ${pinning.label} |`,
    `| Node | ${process.version}, ${pinning.cpus} CPUs |`,
    `| S3 | ${s3Label} (not contacted while presigning) |`,
    `| Request | \`POST /generate-presigned-urls\`, ${fmtInt(BODY.length)} bytes: \`{"items": [{"key": "${keys[0]}"}, …]}\`, HS256 Bearer token (same for both) |`,
    `| Other processes' CPU during the rounds | ${fmt(foreignPct, 0)}% of one CPU (above a few %, figures are noisy) |`,
    `| Host load (1-min loadavg, start → end) | ${fmt(loadStart, 2)} → ${fmt(hostLoad(), 2)} |`,
    `| Wall time | ${fmt((performance.now() - wallStart) / 1000, 0)} s |`,
    `| Command | \`${benchCommand('presign-batch.ts')}\` |`,
    ''
  ]
  if (fewest < MIN_BATCHES) {
    out.splice(out.length - 1, 0, `| Note | a round of L answered only ${fmt(fewest, 0)} batches: too few for a figure (L's first batches are slow, and more connections make each slower); use a longer --duration or fewer --connections |`)
  }
  if (b.loadgenPct >= 90) {
    out.splice(out.length - 1, 0, `| Note | autocannon used ${fmt(b.loadgenPct, 0)}% of its CPU during B: B may be load-generator-bound, so B/L may be pessimistic; CPU per batch is not affected |`)
  }
  if (profile !== undefined) {
    out.splice(out.length - 1, 0, '| Note | B ran under --cpu-prof: the sampling profiler costs B a few % of its throughput; compare ratios from runs without it |')
    out.push('```', `CPU profile of B: ${projectPath(profile)} (whole child lifetime)`, ...profileSummary(profile), '```', '')
  }
  process.stdout.write(out.join('\n'))
}

await runBench(main, teardowns, log, { stack: true })
