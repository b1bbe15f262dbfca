/**
 * Start-up allocates in one burst (some 750 modules and every route schema
 * compiled), and V8 grows its young generation to the maximum for it: ~20 MiB
 * resident, nearly empty once the server listens. Only a memory-reducing
 * collection gives those pages back. Node 20's V8 runs one by itself some 16 s
 * into an idle period; Node 24's and 26's never do while the heap is idle (their
 * memory reducer keeps judging the allocation rate by start-up's), so an idle
 * server would hold them for good. One such collection, asked for once the
 * server listens, returns them (bench/startup.ts measures it); under load the
 * young generation grows back as far as the load needs. Node 20's V8 (11.3)
 * cannot be asked for one: its gc() runs a plain full collection, which left
 * 5-10 MiB more resident, not less, so it is not called there.
 *
 * gc() is reached the way jest's leak detector reaches it: exposed for one new
 * context only, never as a global that any dependency could call.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type GcFunction = (options: { type: 'major', execution: 'async', flavor: 'last-resort' }) => void

/** V8 12 (Node 22) and later take gc()'s `flavor: 'last-resort'`. */
const TAKES_LAST_RESORT_GC = Number(process.versions.v8.split('.')[0]) >= 12

export function releaseStartupMemory (): void {
  if (!TAKES_LAST_RESORT_GC) return
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as GcFunction
  setFlagsFromString('--no-expose-gc')
  // Async: V8 runs it as a task of its own, not inside this call.
  gc({ type: 'major', execution: 'async', flavor: 'last-resort' })
}
