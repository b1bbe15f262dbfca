/**
 * The batch body written as bytes (src/batch-response.ts) must be exactly the
 * object form through JSON.stringify, each URL the one the single-URL signer
 * makes for that item alone: for any keys, names, versions, refusals, proxy
 * links, credentials, instants and origins (one with '"' in its host).
 */
import t from 'tap'
import fc from 'fast-check'
import { batchResultsJson } from '../src/batch-response.js'
import { createPresignedGets } from '../src/presigned-get.js'
import { checkPresignRequest } from '../src/presign-request.js'
import { presignError } from '../src/errors.js'
import { proxyLinkFor } from '../src/proxy-link.js'
import type { ObjectOrigin } from '../src/presigned-url.js'
import type { PresignItem } from '../src/schemas.js'
import type { AwsCredentialIdentity } from '@aws-sdk/types'

const ORG = 'org-1'

function expected (items: PresignItem[], origin: ObjectOrigin, credentials: AwsCredentialIdentity, now: number, linkFor?: (url: string) => string): Buffer {
  const gets = createPresignedGets({ origin, signingRegion: 'eu-central-1', expiresIn: 3600 })
  const results = items.map(item => {
    const verdict = checkPresignRequest(item, ORG)
    if (!verdict.ok) {
      const { statusCode, code, message } = presignError(verdict)
      return { key: item.key, error: { statusCode: statusCode ?? 400, code, message } }
    }
    const { url, expiresAt } = gets.sign(item, credentials, now)
    return { key: item.key, url, expiresAt: expiresAt.toISOString(), proxyUrl: linkFor?.(url) }
  })
  return Buffer.from(JSON.stringify({ results }))
}

function actual (items: PresignItem[], origin: ObjectOrigin, credentials: AwsCredentialIdentity, now: number, linkFor?: (url: string) => string): Buffer {
  const gets = createPresignedGets({ origin, signingRegion: 'eu-central-1', expiresIn: 3600 })
  return batchResultsJson(items, items.map(item => checkPresignRequest(item, ORG)), gets.batch(credentials, now), linkFor)
}

const origins: ObjectOrigin[] = [
  { protocol: 'http:', authority: '127.0.0.1:9000', basePath: '/bucket/' },
  { protocol: 'https:', authority: 'my-bucket.s3.eu-central-1.amazonaws.com', basePath: '/' },
  { protocol: 'https:', authority: 'ho"st\\x.example', basePath: '/b/' }
]
const credentialsArb = fc.record({
  accessKeyId: fc.stringMatching(/^[A-Z0-9]{16,20}$/),
  secretAccessKey: fc.string({ minLength: 1, maxLength: 50 }),
  sessionToken: fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: undefined })
}, { requiredKeys: ['accessKeyId', 'secretAccessKey'] })
const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._~-]{1,20}$/),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
  fc.constantFrom('a"b', 'sp ace', 'ünï', '✓', '😀', 'x+y%z?q#h', '..', '', '\\', 'a\u202eb', 'a\u0000b')
)
const keyArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(segment, { minLength: 1, maxLength: 4 }).map(s => `${ORG}/${s.join('/')}`) },
  { weight: 1, arbitrary: fc.array(segment, { minLength: 1, maxLength: 3 }).map(s => s.join('/')) },
  { weight: 1, arbitrary: fc.constantFrom(`${ORG}/${'ü'.repeat(400)}`, `${ORG}/${'a'.repeat(1000)}`, 'org-2/x.pdf', ORG, `${ORG}/\ud800`) }
)
const itemArb: fc.Arbitrary<PresignItem> = fc.record({
  key: keyArb,
  filename: fc.option(fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom('Prüfplan "final"; v2.pdf', 'a/b.pdf')), { nil: undefined, freq: 4 }),
  disposition: fc.option(fc.constantFrom('inline' as const, 'attachment' as const), { nil: undefined, freq: 4 }),
  versionId: fc.option(fc.oneof(fc.stringMatching(/^[A-Za-z0-9._+=-]{1,32}$/), fc.constantFrom('null', 'a b')), { nil: undefined, freq: 4 })
}, { requiredKeys: ['key'] })

t.test('the bytes JSON.stringify writes for the object form, URLs as signed alone', async t => {
  fc.assert(fc.property(
    fc.array(itemArb, { maxLength: 40 }),
    fc.constantFrom(...origins),
    credentialsArb,
    fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2040, 0, 1) }),
    fc.boolean(),
    (items, origin, credentials, now, links) => {
      const linkFor = links ? proxyLinkFor.bind(null, 'https://api.example/api/v1/proxy/file') : undefined
      const want = expected(items, origin, credentials, now, linkFor)
      const got = actual(items, origin, credentials, now, linkFor)
      if (!got.equals(want)) throw new Error(`differs:\n${got.toString()}\n${want.toString()}`)
    }
  ), { numRuns: 1000 })
  t.pass('1,000 generated batches')
})

t.test('a full batch of plain keys, and one of long keys that outgrows the first buffer', async t => {
  const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' }
  const now = Date.UTC(2026, 10, 29, 3, 12, 4, 567)
  const plain = Array.from({ length: 1000 }, (_, i) => ({ key: `${ORG}/documents/2024/report-${i}.pdf` }))
  const long = Array.from({ length: 50 }, (_, i) => ({ key: `${ORG}/${'ü'.repeat(300)}-${'✓'.repeat(i)}` }))
  for (const [name, items] of [['plain', plain], ['long', long]] as const) {
    const got = actual(items, origins[0], credentials, now)
    t.ok(got.equals(expected(items, origins[0], credentials, now)), `${name}: same bytes`)
    t.equal(JSON.parse(got.toString()).results.length, items.length, `${name}: one result per item`)
  }
})
