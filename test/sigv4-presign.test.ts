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
import { createQueryPresigner } from '../src/sigv4-presign.js'
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

function oursUrl (c: Case): string {
  const host = c.origin.port === undefined ? c.origin.hostname : `${c.origin.hostname}:${c.origin.port}`
  return createQueryPresigner(c.region)({
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

t.test('property: identical to the SDK for arbitrary keys, credentials, regions, instants and origins', async t => {
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
  await fc.assert(fc.asyncProperty(arbitraryCase, async c => oursUrl(c) === await sdkUrl(c)), { numRuns: 1500 })
  t.pass('1500 generated cases identical')
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
