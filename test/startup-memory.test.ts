import t from 'tap'
import { runInNewContext } from 'node:vm'
import { releaseStartupMemory } from '../src/startup-memory.js'

t.test('releasing start-up memory leaves gc() exposed nowhere', async t => {
  releaseStartupMemory()
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'not on this context\'s global')
  t.equal(runInNewContext('typeof gc'), 'undefined', 'not on a context created afterwards')
  t.doesNotThrow(() => { releaseStartupMemory() }, 'a second call is harmless')
})
