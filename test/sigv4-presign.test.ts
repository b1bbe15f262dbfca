/**
 * Our fast SigV4 query presigner must produce exactly the URL the AWS SDK's
 * S3RequestPresigner produces, for any key, credentials, region and instant.
 */
import t from 'tap'
import fc from 'fast-check'
import { S3RequestPresigner } from '@aws-sdk/s3-request-presigner'
import { HttpRequest } from '@smithy/protocol-http'
import { Hash } from '@smithy/hash-node'
import { formatUrl } from '@aws-sdk/util-format-url'
import { createHmac } from 'node:crypto'
import { createHmacSha256, createQueryPresigner, encodeRfc3986 } from '../src/sigv4-presign.js'
import { encodeKeyPath } from '../plugins/s3.js'

interface Case {
  key: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
  signedAt: Date
  expiresIn: number
  origin: { protocol: string, hostname: string, port?: number, basePath: string }
}

async function sdkUrl (c: Case): Promise<string> {
  const credentials = { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken }
  const presigner = new S3RequestPresigner({ credentials, region: c.region, sha256: Hash.bind(null, 'sha256'), service: 's3' })
  const host = c.origin.port === undefined ? c.origin.hostname : `${c.origin.hostname}:${c.origin.port}`
  const request = new HttpRequest({ protocol: c.origin.protocol, hostname: c.origin.hostname, port: c.origin.port, method: 'GET', path: c.origin.basePath + encodeKeyPath(c.key), headers: { host } })
  return formatUrl(await presigner.presign(request, { expiresIn: c.expiresIn, signingDate: c.signedAt, signingRegion: c.region }))
}

/** Our URL for a case, from a fresh presigner unless one is given (to exercise its caches). */
function oursUrl (c: Case, presign = createQueryPresigner(c.region)): string {
  const host = c.origin.port === undefined ? c.origin.hostname : `${c.origin.hostname}:${c.origin.port}`
  return presign({
    protocol: c.origin.protocol,
    host,
    path: c.origin.basePath + encodeKeyPath(c.key),
    credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken },
    signedAt: c.signedAt,
    expiresIn: c.expiresIn
  })
}

const origins = [
  { protocol: 'http:', hostname: '127.0.0.1', port: 9000, basePath: '/bucket/' },
  { protocol: 'https:', hostname: 'my-bucket.s3.eu-west-1.amazonaws.com', basePath: '/' },
  { protocol: 'https:', hostname: 'acct.r2.cloudflarestorage.com', basePath: '/base/path/bucket/' }
]

t.test('known cases match the SDK byte for byte', async t => {
  const base = { region: 'us-east-1', accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', signedAt: new Date('2026-11-29T03:12:04Z'), expiresIn: 3600, origin: origins[0] }
  const keys = ['org-1/documents/protocol.pdf', 'org-1/with space/ünïcødé ✓.txt', "org-1/x+y%z?q#h !$&'()*,;=@:~.txt"]
  for (const key of keys) {
    t.equal(oursUrl({ ...base, key }), await sdkUrl({ ...base, key }), key)
    t.equal(oursUrl({ ...base, key, sessionToken: 'FwoGZXIvYXdzE+/token==' }), await sdkUrl({ ...base, key, sessionToken: 'FwoGZXIvYXdzE+/token==' }), `${key} with a session token`)
  }
})

const segment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter(s => !s.includes('/') && s !== '.' && s !== '..')
const arbitraryCase = fc.record({
    key: fc.array(segment, { minLength: 1, maxLength: 4 }).map(parts => ['org-1', ...parts].join('/')),
    region: fc.constantFrom('us-east-1', 'eu-west-1', 'ap-southeast-2', 'auto'),
    accessKeyId: fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567:test'.split('')), minLength: 3, maxLength: 24 }),
    secretAccessKey: fc.string({ minLength: 1, maxLength: 48 }),
    sessionToken: fc.option(fc.string({ minLength: 1, maxLength: 64 }), { nil: undefined }),
    signedAt: fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true }),
    expiresIn: fc.integer({ min: 1, max: 604800 }),
  origin: fc.constantFrom(...origins)
})

t.test('property: identical to the SDK for arbitrary keys, credentials, regions, instants and origins', async t => {
  await fc.assert(fc.asyncProperty(arbitraryCase, async c => oursUrl(c) === await sdkUrl(c)), { numRuns: 1500 })
  t.pass('1500 generated cases identical')
})

t.test('property: one presigner signing a sequence of different cases stays identical to the SDK (no stale cache)', async t => {
  const sameRegion = fc.array(arbitraryCase.map(c => ({ ...c, region: 'eu-west-1' })), { minLength: 2, maxLength: 8 })
  await fc.assert(fc.asyncProperty(sameRegion, async cases => {
    const presign = createQueryPresigner('eu-west-1')
    for (const c of cases) {
      if (oursUrl(c, presign) !== await sdkUrl(c)) return false
    }
    return true
  }), { numRuns: 200 })
  t.pass('200 generated sequences identical')
})

t.test('property: our HMAC-SHA256 equals node:crypto createHmac, call after call', async t => {
  const bytes = fc.uint8Array({ minLength: 0, maxLength: 200 }).map(a => Buffer.from(a))
  const message = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 400 }))
  fc.assert(fc.property(bytes, fc.array(message, { minLength: 1, maxLength: 6 }), (key, messages) => {
    const ours = createHmacSha256(key)
    return messages.every(m => {
      const expected = createHmac('sha256', key).update(m, 'utf8').digest()
      return ours.hex(m) === expected.toString('hex') && ours.digest(m).equals(expected)
    })
  }), { numRuns: 2000 })
  // RFC 4231 test case 2 ("Jefe"), and a key longer than the block (test case 6).
  t.equal(createHmacSha256(Buffer.from('Jefe')).hex('what do ya want for nothing?'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')
  t.equal(createHmacSha256(Buffer.alloc(131, 0xaa)).hex('Test Using Larger Than Block-Size Key - Hash Key First'), '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54')
  // Messages longer than the preallocated scratch buffer, then a short one again.
  const reused = createHmacSha256(Buffer.from('k'))
  for (const m of ['é'.repeat(700), 'x'.repeat(5000), 'short']) {
    t.equal(reused.hex(m), createHmac('sha256', 'k').update(m).digest('hex'), `${m.length} characters`)
  }
})

t.test('property: encodeKeyPath keeps "/" and RFC 3986-encodes every segment, with or without its fast path', async t => {
  const unreserved = fc.string({ unit: fc.constantFrom(...'AZaz09-._~/'.split('')), maxLength: 40 })
  const anything = fc.string({ unit: 'grapheme', maxLength: 40 })
  fc.assert(fc.property(fc.oneof(unreserved, anything), key => encodeKeyPath(key) === key.split('/').map(encodeRfc3986).join('/')), { numRuns: 3000 })
  t.equal(encodeKeyPath('org-1/a b/ü+%.pdf'), 'org-1/a%20b/%C3%BC%2B%25.pdf')
  t.equal(encodeKeyPath("org-1/it's(1)*!.txt"), 'org-1/it%27s%281%29%2A%21.txt')
})

t.test('the signing key is reused only for the same day and secret', async t => {
  const presign = createQueryPresigner('us-east-1')
  const request = { protocol: 'http:', host: 'h:1', path: '/b/org-1/a', expiresIn: 60 }
  const day1 = new Date('2026-11-29T23:59:59Z')
  const day2 = new Date('2026-11-30T00:00:00Z')
  const a = { accessKeyId: 'A', secretAccessKey: 'one' }
  const b = { accessKeyId: 'A', secretAccessKey: 'two' }
  const cases: Case[] = [
    { key: 'org-1/a', region: 'us-east-1', ...a, signedAt: day1, expiresIn: 60, origin: { protocol: 'http:', hostname: 'h', port: 1, basePath: '/b/' } },
    { key: 'org-1/a', region: 'us-east-1', ...a, signedAt: day2, expiresIn: 60, origin: { protocol: 'http:', hostname: 'h', port: 1, basePath: '/b/' } },
    { key: 'org-1/a', region: 'us-east-1', ...b, signedAt: day2, expiresIn: 60, origin: { protocol: 'http:', hostname: 'h', port: 1, basePath: '/b/' } },
    { key: 'org-1/a', region: 'us-east-1', ...a, signedAt: day2, expiresIn: 60, origin: { protocol: 'http:', hostname: 'h', port: 1, basePath: '/b/' } }
  ]
  for (const c of cases) {
    t.equal(presign({ ...request, credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey }, signedAt: c.signedAt }), await sdkUrl(c), `${c.secretAccessKey} on ${c.signedAt.toISOString()}`)
  }
})
