/**
 * Presign throughput benchmark (issue 7).
 *
 *   npx tsx bench/presign.ts [--duration 10] [--warmup 3] [--repeats 3] [--connections 50]
 *                            [--micro-ms 500] [--micro-repeats 7] [--no-scaling] [--cpu-prof] [--no-pin]
 *
 * Every figure is a ratio against a baseline measured in the same run:
 *
 * 1. HTTP, loopback, autocannon (programmatic, in this process), pipelining 1.
 *    Three servers, each alone in a child process (bench/presign-servers.ts):
 *      A  bare Fastify returning a constant {"url"} (the ceiling),
 *      N  the naive docs server: @fastify/jwt + getSignedUrl() per request,
 *      P  our POST /generate-presigned-url from buildApp (rate limits, docs, logs off).
 *    Same body and Bearer token for all. --repeats rounds of A, N, P, each a
 *    --warmup s warm-up then a --duration s measurement; medians of req/s, p50
 *    and p99. Goals: P/A >= 0.5, P/N >= 8.
 * 2. Presign cost: our presigner (createFilesS3().presignGetObject) vs a minimal
 *    hand-written SigV4 query presign (node:crypto, signing key cached), checked
 *    to produce the identical URL; interleaved batches, median ns/op. Goal <= 1.5x.
 * 3. Scaling: P with 2 cluster workers vs P with 1 process, both unpinned (the
 *    machine has 2 cores, the load generator needs one of them). No goal.
 *
 * With taskset and at least 2 CPUs, the servers of part 1 run on CPU 0 and this
 * process (autocannon, the in-process s3rver, the microbenchmark) on CPU 1.
 * Goals are reported as PASS/MISS, never as a failing exit code.
 */
import { createHash, createHmac } from 'node:crypto'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startTestS3, externalS3Configured } from '../test/helpers/s3.js'
import { signToken } from '../test/helpers/tokens.js'
import { createFilesS3 } from '../plugins/s3.js'
import {
  BENCH_DIR, Teardowns, allCpus, benchCommand, benchS3Json, cpuMeter, describeS3, findProfile, fmt, hostLoad,
  loadAutocannon, mark, median, newProfileDir, pinLoadGenerator, pinSelf, positive, profileSummary, projectPath,
  runBench, startServerChild, stderrLog, stopServerChild, type ServerChild
} from './lib.js'
import { fmtInt, measure as measureLoad, summarize, type Cannon, type Run, type Summary, type Target } from './http-load.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const KEY = 'org-1/documents/2024/quarterly-report.pdf'
const BODY = JSON.stringify({ key: KEY })

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
    'micro-ms': { type: 'string', default: '500' },
    'micro-repeats': { type: 'string', default: '7' },
    'no-scaling': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false }
  },
  strict: true
})
const duration = positive('duration', args.duration)
const warmup = positive('warmup', args.warmup)
const repeats = Math.round(positive('repeats', args.repeats))
const connections = Math.round(positive('connections', args.connections))
const microMs = positive('micro-ms', args['micro-ms'])
const microRepeats = Math.round(positive('micro-repeats', args['micro-repeats']))

const log = stderrLog('bench')
const teardowns = new Teardowns(log)
const pinning = pinLoadGenerator(args['no-pin'], 'yes (servers A, N, P: CPU 0; autocannon + in-process s3rver + microbenchmark: CPU 1)')
const CPUS = pinning.cpus
const ALL_CPUS = allCpus(CPUS)

let autocannon: Cannon
let token = ''
const target = (): Target => ({
  path: '/generate-presigned-url', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: BODY, connections
})
const measure = async (child: ServerChild): Promise<Run> => await measureLoad(autocannon, child, target(), { warmup, duration }, log)

// ---------- server children ----------
/** `cpus`: children inherit this process's affinity, so an unpinned child is given every CPU explicitly. */
async function startServer (name: string, argv: string[], env: Record<string, string>, cpus: string | undefined, profileDir?: string): Promise<ServerChild> {
  const child = await startServerChild({ name, script: join(BENCH_DIR, 'presign-servers.ts'), args: argv, env, cpus, profileDir })
  teardowns.teardown(async () => { await stopServerChild(child) })
  return child
}

/** Checks one response of a server: 200, a URL, and (N, P) that the URL downloads the object. */
async function check (child: ServerChild, expectBody: string | undefined): Promise<string> {
  const res = await fetch(`${child.address}/generate-presigned-url`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: BODY
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${child.name}: HTTP ${res.status} ${text.slice(0, 300)}`)
  const { url } = JSON.parse(text) as { url: string }
  if (typeof url !== 'string') throw new Error(`${child.name}: no url in ${text.slice(0, 300)}`)
  if (expectBody !== undefined) {
    const got = await fetch(url)
    const body = await got.text()
    if (got.status !== 200 || body !== expectBody) throw new Error(`${child.name}: the URL gives HTTP ${got.status}, ${body.length} bytes`)
  }
  return url
}

// ---------- the raw SigV4 baseline ----------
interface RawParams {
  origin: string
  basePath: string
  host: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  expiresIn: number
  /** e.g. 20240101T000000Z */
  amzDate: string
}

/**
 * The least work a SigV4 query presign of a GET can do: the per-date strings and
 * signing key computed once; per call the key's path encoding, the canonical
 * request, its SHA-256, the string to sign, one HMAC and the URL.
 */
function rawPresigner (o: RawParams): (key: string) => string {
  const shortDate = o.amzDate.slice(0, 8)
  const scope = `${shortDate}/${o.region}/s3/aws4_request`
  let signingKey = createHmac('sha256', `AWS4${o.secretAccessKey}`).update(shortDate).digest()
  for (const part of [o.region, 's3', 'aws4_request']) signingKey = createHmac('sha256', signingKey).update(part).digest()
  const query = 'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD' +
    `&X-Amz-Credential=${encodeURIComponent(`${o.accessKeyId}/${scope}`)}&X-Amz-Date=${o.amzDate}&X-Amz-Expires=${o.expiresIn}`
  const canonicalTail = `&X-Amz-SignedHeaders=host\nhost:${o.host}\n\nhost\nUNSIGNED-PAYLOAD`
  const stringToSignHead = `AWS4-HMAC-SHA256\n${o.amzDate}\n${scope}\n`
  return (key: string): string => {
    let encoded = encodeURIComponent(key).replaceAll('%2F', '/')
    if (/[!'()*]/.test(encoded)) encoded = encoded.replace(/[!'()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    const path = o.basePath + encoded
    const canonicalRequest = `GET\n${path}\n${query}${canonicalTail}`
    const hash = createHash('sha256').update(canonicalRequest).digest('hex')
    const signature = createHmac('sha256', signingKey).update(stringToSignHead + hash).digest('hex')
    return `${o.origin}${path}?${query}&X-Amz-Signature=${signature}&X-Amz-SignedHeaders=host`
  }
}

interface Micro { oursNs: number, rawNs: number, ratio: number, oursRuns: number[], rawRuns: number[], iterations: [number, number] }

async function microbenchmark (s3: Awaited<ReturnType<typeof startTestS3>>): Promise<Micro> {
  const files = await createFilesS3({
    bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials, expiresIn: 3600
  })
  try {
    const bucketUrl = files.bucketUrl
    const rawAt = (url: string): (key: string) => string => rawPresigner({
      origin: bucketUrl.origin,
      basePath: bucketUrl.pathname.endsWith('/') ? bucketUrl.pathname : `${bucketUrl.pathname}/`,
      host: bucketUrl.host,
      region: files.signingRegion,
      accessKeyId: s3.credentials.accessKeyId,
      secretAccessKey: s3.credentials.secretAccessKey,
      expiresIn: files.expiresIn,
      amzDate: new URL(url).searchParams.get('X-Amz-Date') as string
    })
    // The baseline must do the same job: a byte-identical URL for the same date.
    for (const key of [KEY, "org-1/a b/(x)!*'ü~.txt"]) {
      const ours = (await files.presignGetObject({ key })).url
      const mine = rawAt(ours)(key)
      if (mine !== ours) throw new Error(`raw SigV4 baseline disagrees with the presigner:\n  ${mine}\n  ${ours}`)
    }
    const raw = rawAt((await files.presignGetObject({ key: KEY })).url)

    let sink = 0
    const timeOurs = async (n: number): Promise<number> => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < n; i++) sink += (await files.presignGetObject({ key: KEY })).url.length
      return Number(process.hrtime.bigint() - t0) / n
    }
    const timeRaw = (n: number): number => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < n; i++) sink += raw(KEY).length
      return Number(process.hrtime.bigint() - t0) / n
    }
    // Warm-up (JIT), then size each batch to about --micro-ms.
    let oursNs = Infinity
    let rawNs = Infinity
    for (let i = 0; i < 3; i++) { oursNs = Math.min(oursNs, await timeOurs(5000)); rawNs = Math.min(rawNs, timeRaw(20000)) }
    const nOurs = Math.max(1000, Math.round(microMs * 1e6 / oursNs))
    const nRaw = Math.max(1000, Math.round(microMs * 1e6 / rawNs))
    const oursRuns: number[] = []
    const rawRuns: number[] = []
    for (let i = 0; i < microRepeats; i++) {
      // Alternate which goes first, so drift hits both alike.
      if (i % 2 === 0) { rawRuns.push(timeRaw(nRaw)); oursRuns.push(await timeOurs(nOurs)) } else { oursRuns.push(await timeOurs(nOurs)); rawRuns.push(timeRaw(nRaw)) }
    }
    if (sink === 0) log('unreachable')
    const ours = median(oursRuns)
    const rawMedian = median(rawRuns)
    log(`presign: ours ${fmt(ours, 0)} ns/op, raw SigV4 ${fmt(rawMedian, 0)} ns/op (${nOurs} / ${nRaw} per batch)`)
    return { oursNs: ours, rawNs: rawMedian, ratio: ours / rawMedian, oursRuns, rawRuns, iterations: [nOurs, nRaw] }
  } finally {
    files.client.destroy()
  }
}

// ---------- main ----------
async function main (): Promise<void> {
  const wallStart = performance.now()
  const loadStart = hostLoad()
  autocannon = await loadAutocannon<Cannon>()
  log(`pinning: ${pinning.label}`)
  const s3 = await startTestS3(teardowns)
  const s3Label = describeS3(s3.endpoint, externalS3Configured())
  log(`S3: ${s3Label}, bucket ${s3.bucket}`)
  const objectBody = 'presign benchmark object\n'
  await s3.put(KEY, objectBody, 'application/pdf')

  // 2. Microbenchmark first, while nothing else runs.
  const micro = await microbenchmark(s3)

  // 1. HTTP: A, N, P on CPU 0.
  token = signToken({ sub: 'bench', org_id: 'org-1' }, { expiresInSeconds: 6 * 3600 })
  const env = { BENCH_S3: benchS3Json(s3) }
  const profileDir = args['cpu-prof'] ? newProfileDir() : undefined
  const serverCpus = pinning.pinned ? '0' : pinning.canPin ? ALL_CPUS : undefined
  const P = await startServer('P', ['--variant', 'P'], env, serverCpus, profileDir)
  const N = await startServer('N', ['--variant', 'N'], env, serverCpus)
  // A answers with a real URL of P's, so the bytes on the wire are the same.
  const sampleUrl = await check(P, objectBody)
  await check(N, objectBody)
  const A = await startServer('A', ['--variant', 'A'], { ...env, BENCH_CONSTANT_URL: sampleUrl }, serverCpus)
  await check(A, undefined)
  log(`servers: A ${A.address} (pid ${A.pids.join(',')}), N ${N.address} (pid ${N.pids.join(',')}), P ${P.address} (pid ${P.pids.join(',')})`)

  const runs: Record<'A' | 'N' | 'P', Run[]> = { A: [], N: [], P: [] }
  const httpCpu = cpuMeter([A, N, P].flatMap(c => c.pids))
  for (let i = 0; i < repeats; i++) {
    log(`round ${i + 1}/${repeats}`)
    for (const child of [A, N, P]) runs[child.name as 'A' | 'N' | 'P'].push(await measure(child))
  }
  const foreignPct = httpCpu().others
  await stopServerChild(A)
  await stopServerChild(N)
  await stopServerChild(P)
  const hot: string[] = []
  // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's loader has its own).
  const profile = profileDir === undefined ? undefined : findProfile(profileDir, /\.0\.\d+\.cpuprofile$/, log)
  if (profile !== undefined) hot.push(`CPU profile of P: ${projectPath(profile)} (whole child lifetime)`, ...profileSummary(profile))
  const a = summarize(runs.A)
  const n = summarize(runs.N)
  const p = summarize(runs.P)

  // 3. Scaling: P with 1 process vs 2 cluster workers; everything on every CPU.
  let scaling: { p1: Summary, p2: Summary, foreignPct: number } | undefined
  if (!args['no-scaling']) {
    if (pinning.canPin) pinSelf(ALL_CPUS)
    const P1 = await startServer('P1', ['--variant', 'P'], env, pinning.canPin ? ALL_CPUS : undefined)
    const P2 = await startServer('P2', ['--variant', 'P', '--workers', '2'], env, pinning.canPin ? ALL_CPUS : undefined)
    await check(P1, objectBody)
    await check(P2, objectBody)
    log(`scaling (unpinned): P1 ${P1.address}, P2 ${P2.address} (pids ${P2.pids.join(',')}: primary, workers)`)
    const r1: Run[] = []
    const r2: Run[] = []
    const scalingCpu = cpuMeter([...P1.pids, ...P2.pids])
    for (let i = 0; i < repeats; i++) {
      log(`scaling round ${i + 1}/${repeats}`)
      r1.push(await measure(P1))
      r2.push(await measure(P2))
    }
    const scalingForeignPct = scalingCpu().others
    await stopServerChild(P1)
    await stopServerChild(P2)
    scaling = { p1: summarize(r1), p2: summarize(r2), foreignPct: scalingForeignPct }
  }
  await teardowns.run()

  // ---------- report ----------
  const serverRow = (name: string, s: Summary): string =>
    `| ${name} | ${fmtInt(s.rps)} | ${s.runs.map(fmtInt).join(', ')} | ${fmt(s.p50, 2)} | ${fmt(s.p99, 2)} | ${fmt(s.serverUs)} | ${fmt(s.loadgenPct, 0)}% |`
  const bound = (s: Summary): number => CPUS * 1e6 / (s.serverUs + s.loadgenUs)
  const pa = p.rps / a.rps
  const pn = p.rps / n.rps
  const out: string[] = [
    '',
    `POST /generate-presigned-url, ${connections} connections, pipelining 1, ${fmt(warmup, 0)} s warm-up + ${fmt(duration, 0)} s measured, ${repeats} rounds A,N,P interleaved; medians.`,
    '',
    '| Server | req/s | req/s per round | p50 ms | p99 ms | server CPU µs/req | autocannon CPU |',
    '|---|---|---|---|---|---|---|',
    serverRow('A bare Fastify, constant URL', a),
    serverRow('N naive: @fastify/jwt + getSignedUrl', n),
    serverRow('P ours: buildApp', p),
    ...(scaling === undefined
      ? []
      : [serverRow('P1 ours, 1 process, unpinned', scaling.p1), serverRow('P2 ours, 2 cluster workers, unpinned', scaling.p2)]),
    '',
    '| Figure | Value | Goal | Result |',
    '|---|---|---|---|',
    `| P/A req/s | ${fmt(pa, 3)} | ≥ 0.5 | ${mark(pa >= 0.5)} |`,
    `| P/N req/s | ${fmt(pn, 2)} | ≥ 8 | ${mark(pn >= 8)} |`,
    `| Presign cost ours/raw SigV4 | ${fmt(micro.ratio, 2)} (${fmt(micro.oursNs, 0)} vs ${fmt(micro.rawNs, 0)} ns/op; runs ours ${micro.oursRuns.map(x => fmt(x, 0)).join(', ')}; raw ${micro.rawRuns.map(x => fmt(x, 0)).join(', ')}) | ≤ 1.5 | ${mark(micro.ratio <= 1.5)} |`,
    ...(scaling === undefined
      ? []
      : [`| P2/P1 req/s (unpinned: servers and autocannon share ${CPUS} CPUs) | ${fmt(scaling.p2.rps / scaling.p1.rps, 2)}; P2 reaches ${fmt(100 * scaling.p2.rps / bound(scaling.p2), 0)}% of the ${CPUS}-CPU bound ${fmtInt(bound(scaling.p2))} req/s = ${CPUS} s ÷ (${fmt(scaling.p2.serverUs)} µs server + ${fmt(scaling.p2.loadgenUs)} µs autocannon) | none (see bench/README.md) | — |`]),
    `| P/A p50 latency | ${fmt(p.p50 / a.p50, 2)} | — | — |`,
    `| P/N p50 latency | ${fmt(p.p50 / n.p50, 3)} | — | — |`,
    `| Server CPU per request P/A, N/P | ${fmt(p.serverUs / a.serverUs, 2)}, ${fmt(n.serverUs / p.serverUs, 2)} | — | — |`,
    '',
    '| Context | Value |',
    '|---|---|',
    `| CPU pinning | ${pinning.label}${scaling === undefined ? '' : '; scaling rows P1/P2: unpinned'} |`,
    `| Node | ${process.version}, ${CPUS} CPUs |`,
    `| S3 | ${s3Label} (not contacted while presigning) |`,
    `| Request | \`POST /generate-presigned-url\`, body \`${BODY}\`, HS256 Bearer token (same for all) |`,
    `| Other processes' CPU during A/N/P rounds | ${fmt(foreignPct, 0)}% of one CPU${scaling === undefined ? '' : `; during P1/P2 rounds ${fmt(scaling.foreignPct, 0)}%`} (above a few %, figures are noisy) |`,
    `| Host load (1-min loadavg, start → end) | ${fmt(loadStart, 2)} → ${fmt(hostLoad(), 2)} |`,
    `| Wall time | ${fmt((performance.now() - wallStart) / 1000, 0)} s |`,
    `| Command | \`${benchCommand('presign.ts')}\` |`,
    ''
  ]
  if (a.loadgenPct >= 90) {
    out.splice(out.length - 1, 0, `| Note | autocannon used ${fmt(a.loadgenPct, 0)}% of its CPU during A: A may be load-generator-bound, so P/A may be optimistic; the CPU-per-request ratio P/A is not affected |`)
  }
  if (profileDir !== undefined) {
    out.splice(out.length - 1, 0, '| Note | P ran under --cpu-prof: the sampling profiler costs P a few % of its req/s; compare ratios from runs without it |')
  }
  if (hot.length > 0) out.push('```', ...hot, '```', '')
  process.stdout.write(out.join('\n'))
}

await runBench(main, teardowns, log, { stack: true })
