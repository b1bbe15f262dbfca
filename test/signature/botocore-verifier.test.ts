/**
 * Property: for random keys and random sets of signed GetObject parameters,
 * botocore's signer (Debian's python3-botocore) and the proxy's verifier agree
 * on every URL, and changing any character of any parameter breaks it. Pure:
 * no S3 is contacted; presigned-urls.test.ts downloads such URLs from Swift.
 */
import t from 'tap'
import fc from 'fast-check'
import { botocorePresign, botocoreSignatures, type BotocoreCase, type Signer } from '../helpers/minting-tools.js'
import { checkPresignedUrl, objectOriginOf } from '../../src/presigned-url.js'
import { createPresignedGets } from '../../src/presigned-get.js'

const signers: Signer[] = [
  { endpoint: 'http://127.0.0.1:18080', region: 'us-east-1', bucket: 'artos-files', forcePathStyle: true, credentials: { accessKeyId: 'test:tester', secretAccessKey: 'testing' } },
  { endpoint: 'https://s3.eu-west-1.amazonaws.com', region: 'eu-west-1', bucket: 'artos-files', forcePathStyle: false, credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', sessionToken: 'FwoGZXIvYXdzE+/tok=n' } }
]

function originOf (signer: Signer): ReturnType<typeof objectOriginOf> {
  const endpoint = new URL(signer.endpoint)
  return objectOriginOf(signer.forcePathStyle
    ? new URL(`${endpoint.origin}/${signer.bucket}`)
    : new URL(`${endpoint.protocol}//${signer.bucket}.${endpoint.host}/`))
}

const segment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }).filter(s => !s.includes('/') && s !== '.' && s !== '..' && !/[\u0000-\u001f\u007f-\u009f\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(s) && s.isWellFormed())
const text = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter(s => s.isWellFormed() && !/[\u0000-\u001f\u007f]/.test(s))
const arbitraryCase: fc.Arbitrary<BotocoreCase> = fc.record({
  key: fc.array(segment, { minLength: 1, maxLength: 3 }).map(parts => ['org-1', ...parts].join('/')),
  expiresIn: fc.integer({ min: 60, max: 604800 }),
  filenameDisposition: fc.option(text.map(name => `attachment; filename="${name.replace(/["\\]/g, '_')}"`), { nil: undefined, freq: 2 }),
  contentType: fc.option(fc.constantFrom('application/pdf', 'text/html; charset=utf-8', 'image/png'), { nil: undefined, freq: 2 }),
  cacheControl: fc.option(fc.constantFrom('no-cache', 'max-age=60'), { nil: undefined, freq: 2 }),
  contentLanguage: fc.option(text, { nil: undefined, freq: 2 }),
  versionId: fc.option(fc.stringMatching(/^[A-Za-z0-9._+=-]{1,40}$/), { nil: undefined, freq: 2 }),
  partNumber: fc.option(fc.integer({ min: 1, max: 10000 }), { nil: undefined, freq: 2 })
}, { requiredKeys: ['key', 'expiresIn'] })

const RUNS = 150

for (const signer of signers) {
  t.test(`botocore ${signer.forcePathStyle ? 'path-style' : 'virtual-hosted'} URLs verify, and no altered one does`, async t => {
    const cases = fc.sample(arbitraryCase, { numRuns: RUNS, seed: 20261130 })
    const urls = await botocorePresign(signer, cases)
    const origin = originOf(signer)
    const gets = createPresignedGets({ origin, signingRegion: signer.region, expiresIn: 3600 })
    const verdictOf = (raw: string): 'ok' | string => {
      const parsed = checkPresignedUrl(raw, origin, 'org-1', Date.now())
      if (!parsed.ok) return parsed.reason
      return gets.verify(parsed.url, signer.credentials) === undefined ? 'signature' : 'ok'
    }

    let mutations = 0
    const failures: string[] = []
    urls.forEach((raw, i) => {
      if (verdictOf(raw) !== 'ok') failures.push(`botocore URL not verified: ${JSON.stringify(cases[i])} → ${raw}`)
      const url = new URL(raw)
      const pairs = [...url.searchParams]
      pairs.forEach(([name, value], p) => {
        for (const part of ['name', 'value'] as const) {
          const original = [...(part === 'name' ? name : value)]
          if (original.length === 0) continue
          const at = (i * 31 + p * 7) % original.length
          original[at] = original[at] === 'Z' ? 'Y' : 'Z'
          const altered = original.join('')
          const mutated = pairs.map(([n, v], q) => q !== p ? [n, v] : part === 'name' ? [altered, v] : [n, altered])
          const rebuilt = `${url.origin}${url.pathname}?${mutated.map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`).join('&')}`
          mutations++
          if (verdictOf(rebuilt) === 'ok') failures.push(`altered ${part} of ${name} still verified: ${rebuilt}`)
        }
      })
      // Another key under the same signature, an added parameter, a removed one.
      const otherKey = raw.replace(url.pathname, `${url.pathname}x`)
      const added = `${raw}&response-content-type=text%2Fhtml`
      const removable = pairs.find(([n]) => !n.startsWith('X-Amz-'))
      const removed = removable === undefined ? undefined : raw.replace(`${encodeURIComponent(removable[0])}=`, 'X-Removed=')
      for (const variant of [otherKey, added, removed]) {
        if (variant === undefined) continue
        mutations++
        if (verdictOf(variant) === 'ok') failures.push(`variant verified: ${variant}`)
      }
    })
    t.same(failures.slice(0, 5), [], `${urls.length} botocore URLs verified; ${mutations} altered URLs all refused`)
    t.ok(urls.some(u => u.includes('response-content-disposition=')), 'the sample has download names')
    t.ok(urls.some(u => u.includes('versionId=')), 'the sample has versions')
    t.ok(urls.some(u => !/[?&](response-|versionId|partNumber)/.test(u)), 'the sample has URLs with no extra parameter')
  })
}

t.test('botocore computes the signatures our signer writes, with filename, disposition and versionId', async t => {
  const signer = signers[1]
  const gets = createPresignedGets({ origin: originOf(signer), signingRegion: signer.region, expiresIn: 3600 })
  const names = fc.sample(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).filter(s => s.isWellFormed() && !/[\u0000-\u001f\u007f-\u009f/\\]/.test(s)), { numRuns: 100, seed: 11 })
  const requests = names.map((filename, i) => ({
    key: `org-1/documents/${i}.pdf`,
    ...(i % 3 === 0 ? {} : { filename: i % 5 === 0 ? `quote"semi;colon\r\n${filename}` : filename }),
    ...(i % 2 === 0 ? { disposition: 'inline' as const } : {}),
    ...(i % 4 === 0 ? { versionId: `v${i}.3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY` } : {})
  }))
  const urls = requests.map(request => gets.sign(request, signer.credentials, Date.now()).url)
  const theirs = await botocoreSignatures(signer, urls)
  const mismatches = urls.filter((url, i) => new URL(url).searchParams.get('X-Amz-Signature') !== theirs[i])
  t.same(mismatches, [], `${urls.length} URLs: botocore computes the same signature`)
  t.ok(urls.filter(u => u.includes('response-content-disposition=')).length > 50 && urls.some(u => u.includes('versionId=')), 'the sample has names and versions')
})
