/**
 * What the audit trail costs a presign (the fsync decision in README "Audit trail").
 *
 *   npx tsx bench/audit.ts [--duration 5] [--rounds 3] [--connections 1,32]
 *
 * The artos-files plugin in a bare Fastify (no under-pressure: a saturated
 * loop would shed load and count 503s), POST /generate-presigned-url under
 * autocannon in this same process, in four settings interleaved round by
 * round: audit off; events to a logger that is off; the audit file without
 * fsync; the audit file with fsync (group commit). Medians of the rounds:
 * 2xx per second, p50 and p99 latency. In-process, so the figures compare the
 * settings with one another; they are not the service's capacity.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { artosFiles } from '../src/app.js'
import type { FilesOptions } from '../src/options.js'
import { startTestS3 } from '../test/helpers/s3.js'
import { orgToken, TEST_SECRET } from '../test/helpers/tokens.js'
import { hostLoad, loadAutocannon, median, positive, runBench, stderrLog, Teardowns } from './lib.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

interface CannonResult { '2xx': number, non2xx: number, errors: number, latency: { p50: number, p99: number } }
type Cannon = (opts: Record<string, unknown>) => PromiseLike<CannonResult>

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '1,32' }
  },
  strict: true
})
const duration = positive('duration', args.duration)
const rounds = positive('rounds', args.rounds)
const connectionCounts = args.connections.split(',').map(value => positive('connections', value))

const log = stderrLog('audit-bench')
const teardowns = new Teardowns(log)

await runBench(async () => {
  const autocannon = await loadAutocannon<Cannon>()
  const s3 = await startTestS3(teardowns)
  const dir = await mkdtemp(join(tmpdir(), 'artos-audit-bench-'))
  teardowns.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const settings: Array<[string, FilesOptions['audit']]> = [
    ['audit off', false],
    ['events, logger off', {}],
    ['file, no fsync', { file: join(dir, 'nofsync.jsonl'), fsync: false }],
    ['file, fsync', { file: join(dir, 'fsync.jsonl'), fsync: true }]
  ]
  const headers = { authorization: `Bearer ${orgToken('org-1')}`, 'content-type': 'application/json' }
  const body = JSON.stringify({ key: 'org-1/documents/2024/quarterly-report.pdf' })
  log(`load average before: ${hostLoad().toFixed(2)}`)

  for (const connections of connectionCounts) {
    const results = new Map<string, CannonResult[]>()
    for (let round = 0; round < rounds; round++) {
      for (const [name, audit] of settings) {
        const app = Fastify()
        await app.register(artosFiles, {
          bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials,
          jwt: { secret: TEST_SECRET }, rateLimit: false, audit
        })
        const address = await app.listen({ host: '127.0.0.1', port: 0 })
        const result = await autocannon({ url: `${address}/generate-presigned-url`, method: 'POST', headers, body, connections, duration })
        await app.close()
        if (result.non2xx > 0 || result.errors > 0) log(`${name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
        results.set(name, [...(results.get(name) ?? []), result])
      }
    }
    console.log(`\n${connections} connection(s), ${duration} s x ${rounds} rounds (medians)`)
    console.log('| setting | presigns/s | p50 ms | p99 ms |')
    console.log('|---|---|---|---|')
    for (const [name, runs] of results) {
      const rate = median(runs.map(run => run['2xx'] / duration))
      console.log(`| ${name} | ${Math.round(rate)} | ${median(runs.map(run => run.latency.p50))} | ${median(runs.map(run => run.latency.p99))} |`)
    }
  }
  log(`load average after: ${hostLoad().toFixed(2)}`)
  await teardowns.run()
}, teardowns, log, { exit: true })
