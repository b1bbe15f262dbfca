/**
 * s3rver alone in a process of its own, for bench/proxy-throughput.ts: a real
 * S3 is another machine, so "direct" must not mean S3 and client sharing one
 * event loop, and S3's CPU must not be charged to the client.
 *
 * Output: one JSON line on stdout, {"address": "http://127.0.0.1:N", "pids": [N]},
 * once listening. Removes its files and exits on SIGTERM/SIGINT or when stdin
 * closes (the parent died).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'
import { announceListening, exitOnStop, onParentGone } from './lib.js'

const directory = await mkdtemp(join(tmpdir(), 'artos-bench-s3rver-'))
const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true })
const { port } = await server.run().catch(async (err: unknown) => {
  await rm(directory, { recursive: true, force: true })
  throw err
})

const stop = exitOnStop(async () => {
  await server.close().catch(() => {})
  await rm(directory, { recursive: true, force: true })
})
onParentGone(() => { void stop() })
announceListening(`http://127.0.0.1:${port}`)
