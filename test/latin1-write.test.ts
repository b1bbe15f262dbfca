/**
 * writeLatin1 (src/latin1-write.ts) must do exactly what buf.write(text, offset, 'latin1') does.
 */
import t from 'tap'
import fc from 'fast-check'
import { writeLatin1 } from '../src/latin1-write.js'

t.test('the same bytes and count as buf.write(…, \'latin1\'), up to the end of the buffer', async t => {
  fc.assert(fc.property(
    fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map(c => String.fromCharCode(c)), maxLength: 80 }),
    fc.integer({ min: 0, max: 64 }),
    fc.integer({ min: 0, max: 100 }),
    (text, offset, extra) => {
      const size = offset + extra
      const ours = Buffer.alloc(size, 0xaa)
      const theirs = Buffer.alloc(size, 0xaa)
      const written = writeLatin1(ours, text, offset)
      if (written !== theirs.write(text, offset, 'latin1') || !ours.equals(theirs)) throw new Error(`differs for ${JSON.stringify(text)} at ${offset} of ${size}`)
    }
  ), { numRuns: 2000 })
  t.equal(writeLatin1(Buffer.alloc(4), 'abcdef', 1), 3, 'stops at the end of the buffer')
})
