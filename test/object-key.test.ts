import t from 'tap'
import fc from 'fast-check'
import { checkKeyForOrg, checkKeySyntax, isSafeOrgId, MAX_KEY_BYTES } from '../src/object-key.js'

const ORG = 'org-1'

t.test('keys the org may presign', async t => {
  const allowed = [
    'org-1/documents/protocol.pdf',
    'org-1/a',
    'org-1/with space/and more.txt',
    'org-1/ünïcødé/文件.pdf',
    'org-1/plus+percent%question?hash#.txt',
    'org-1/..dots-inside../file..txt',
    'org-1/.hidden',
    'org-1/' + 'a'.repeat(MAX_KEY_BYTES - 'org-1/'.length)
  ]
  for (const key of allowed) t.same(checkKeyForOrg(key, ORG), { ok: true }, key)
})

t.test('malformed keys are invalid (400)', async t => {
  const cases: Array<[string, string]> = [
    ['', 'empty'],
    ['/org-1/a', 'leading slash'],
    ['org-1//a', 'empty segment'],
    ['org-1/a/', 'trailing slash'],
    ['org-1/', 'only the org prefix'],
    ['org-1', 'the org itself'],
    ['org-1/./a', 'dot segment'],
    ['org-1/../org-2/a', 'dot-dot segment'],
    ['org-1/a/..', 'trailing dot-dot'],
    ['org-1\\a', 'backslash'],
    ['org-1/a\\..\\b', 'backslash traversal'],
    ['org-1/a\u0000b', 'NUL'],
    ['org-1/a\nb', 'newline'],
    ['org-1/a\u007fb', 'DEL'],
    ['org-1/a\u0085b', 'C1 control'],
    ['org-1/a\u202eb', 'bidi override'],
    ['org-1/a\u2066b', 'bidi isolate'],
    ['org-1/a\u200fb', 'right-to-left mark'],
    ['org-1/\ud800', 'lone surrogate'],
    ['org-1/' + 'a'.repeat(MAX_KEY_BYTES), 'over 1024 bytes'],
    ['org-1/' + 'é'.repeat(510), 'over 1024 UTF-8 bytes though under 1024 characters']
  ]
  for (const [key, why] of cases) {
    const verdict = checkKeyForOrg(key, ORG)
    t.equal(verdict.ok, false, why)
    if (!verdict.ok) t.equal(verdict.reason, 'invalid', why)
  }
})

t.test('well-formed keys of another org are forbidden (403)', async t => {
  const cases = ['org-2/a.pdf', 'ORG-1/a.pdf', 'org-10/a.pdf', 'org-1x/a', 'org/a', ' org-1/a', 'org-1 /a', 'org-１/a']
  for (const key of cases) {
    const verdict = checkKeyForOrg(key, ORG)
    t.same(verdict.ok ? 'ok' : verdict.reason, 'forbidden', JSON.stringify(key))
  }
})

t.test('organization ids', async t => {
  for (const org of ['acme', 'org-1', 'a', 'A_b.c-9', '0f8fad5b-d9cb-469f-a165-70867728950e']) t.ok(isSafeOrgId(org), org)
  for (const org of ['', '.', '..', '.hidden', '-x', 'a/b', 'a b', 'a\\b', 'ü', 'a'.repeat(129), 42, null, ['acme'], { id: 'acme' }]) {
    t.notOk(isSafeOrgId(org), JSON.stringify(org))
  }
})

// Property-based: whatever the input, an accepted key is always below "<org>/" and free of traversal.
const keyChars = fc.constantFrom('a', 'Z', '0', '/', '.', '\\', ' ', '-', '%', '+', '?', '#', 'é', '\u0000', '\u202e', '\ud800', 'o', 'r', 'g', '1')
const keyLike = fc.oneof(
  fc.string({ unit: keyChars, maxLength: 40 }),
  fc.string({ unit: keyChars, maxLength: 40 }).map(rest => `${ORG}/${rest}`),
  fc.string({ unit: 'binary', maxLength: 40 }).map(rest => `${ORG}/${rest}`),
  fc.string({ unit: 'grapheme', maxLength: 1200 }).map(rest => `${ORG}/${rest}`)
)

t.test('property: accepted keys stay inside the org and contain no traversal', async t => {
  fc.assert(fc.property(keyLike, key => {
    const verdict = checkKeyForOrg(key, ORG)
    if (!verdict.ok) return true
    const segments = key.split('/')
    return key.startsWith(`${ORG}/`) &&
      segments.length >= 2 &&
      segments.every(s => s !== '' && s !== '.' && s !== '..') &&
      !key.includes('\\') &&
      key.isWellFormed() &&
      Buffer.byteLength(key) <= MAX_KEY_BYTES &&
      !/\p{Cc}/u.test(key)
  }), { numRuns: 5000 })
  t.pass('5000 generated keys checked')
})

t.test('property: syntax verdicts do not depend on the org', async t => {
  fc.assert(fc.property(keyLike, fc.constantFrom('org-1', 'acme', 'x'), (key, org) => {
    const syntax = checkKeySyntax(key)
    const verdict = checkKeyForOrg(key, org)
    // A syntactically bad key is always "invalid", never "forbidden" or "ok".
    return syntax.ok || (!verdict.ok && verdict.reason === 'invalid')
  }), { numRuns: 3000 })
  t.pass('3000 generated keys checked')
})

t.test('property: a valid key of one org is forbidden to every other org', async t => {
  const segment = fc.string({ unit: fc.constantFrom('a', 'b', '1', '-', '_', 'é', ' '), minLength: 1, maxLength: 8 })
  fc.assert(fc.property(segment, segment, fc.array(segment, { minLength: 1, maxLength: 4 }), (orgA, orgB, rest) => {
    fc.pre(isSafeOrgId(orgA) && isSafeOrgId(orgB) && orgA !== orgB)
    const key = [orgA, ...rest].join('/')
    const own = checkKeyForOrg(key, orgA)
    const other = checkKeyForOrg(key, orgB)
    return own.ok && !other.ok && other.reason === 'forbidden'
  }), { numRuns: 2000 })
  t.pass('2000 generated key/org pairs checked')
})
