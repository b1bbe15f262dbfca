import t from 'tap'
import fc from 'fast-check'
import { looksLikeJwt, redactUrl } from '../src/log-redaction.js'

// A real-shaped HS256 JWT and SigV4 parts (the values only need the shapes).
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEiLCJvcmdfaWQiOiJvcmctMSJ9.Z_QXGFgAQsQCvys3wwO5cp6VdCSGYXvSlYepjSVDDXE'
const SIGNATURE = 'c2af54b0fe7c5d13f0cc15a84852df22538abbbc8ebe8bdb0609af7216ad7ed2'
const CREDENTIAL = 'AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request'
const PRESIGNED = `https://b.s3.amazonaws.com/org-1/k.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=${encodeURIComponent(CREDENTIAL)}&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoGZXIvYXdzEJr%2F%2F%2Fsession%2Btoken%3D&X-Amz-Signature=${SIGNATURE}`
const once = encodeURIComponent
const twice = (s: string) => encodeURIComponent(encodeURIComponent(s))
const R = '[REDACTED]'

t.test('plain paths are kept as they are', async t => {
  for (const url of ['/health', '/ready', '/documentation/json', '/documentation/static/swagger-ui.css', '/api/v1/proxy/file', '/generate-presigned-url', '/', '', '//a//b/']) {
    t.equal(redactUrl(url), url, url)
  }
})

t.test('query values are never kept; plain names are', async t => {
  const table: Array<[string, string, string]> = [
    [`/api/v1/proxy/file?presigned_url=${once(PRESIGNED)}`, `/api/v1/proxy/file?presigned_url=${R}`, 'the proxy parameter'],
    [`/api/v1/proxy/file?presigned_url[]=${once(PRESIGNED)}`, `/api/v1/proxy/file?presigned_url[]=${R}`, 'array syntax (issue 14)'],
    [`/api/v1/proxy/file?presigned_url[0]=${once(PRESIGNED)}`, `/api/v1/proxy/file?presigned_url[0]=${R}`, 'indexed syntax (issue 14)'],
    [`/api/v1/proxy/file?url=${once(PRESIGNED)}`, `/api/v1/proxy/file?url=${R}`, 'another name (issue 14)'],
    [`/generate-presigned-url?token=${JWT}`, `/generate-presigned-url?token=${R}`, 'a JWT (issue 14)'],
    ['/x?a=1&b=harmless', `/x?a=${R}&b=${R}`, 'harmless values too'],
    ['/x?a.b=1&a[b][c]=2&TOKEN=3&Access_Token=4', `/x?a.b=${R}&a[b][c]=${R}&TOKEN=${R}&Access_Token=${R}`, 'nesting and sensitive names in any case'],
    ['/x?presigned%5Furl=1&presigned%5furl=2', `/x?presigned_url=${R}&presigned_url=${R}`, 'names are decoded once, any hex case'],
    ['/x?a=', '/x?a=', 'an empty value has nothing to hide'],
    ['/x?presigned_url', '/x?presigned_url', 'a plain name alone'],
    ['/x?', '/x?', 'an empty query'],
    ['/x?a&&b', '/x?a&&b', 'empty pairs'],
    [`/x?=${JWT}`, `/x?=${R}`, 'an empty name'],
    [`/x?a=1;token=${JWT}`, `/x?a=${R}`, '; is no separator for us: it stays in the value'],
    [`/x?token;${JWT}`, `/x?${R}`, 'a name with ; is not plain']
  ]
  for (const [url, expected, why] of table) t.equal(redactUrl(url), expected, why)
})

t.test('names that are not plain, or are secrets themselves, are replaced', async t => {
  const table: Array<[string, string, string]> = [
    [`/x?${JWT}`, `/x?${R}`, 'a JWT as a name'],
    [`/x?${JWT}=1`, `/x?${R}=${R}`, 'a JWT as a name, with a value'],
    [`/x?${SIGNATURE}`, `/x?${R}`, 'a signature as a name (64 characters)'],
    [`/x?a[${JWT}]=1`, `/x?${R}=${R}`, 'a JWT nested in a name'],
    [`/x?${once(PRESIGNED)}`, `/x?${R}`, 'an encoded presigned URL with no = at all'],
    [`/x?${twice(PRESIGNED)}`, `/x?${R}`, 'twice encoded'],
    [`/x?${once(PRESIGNED).replace(/%[0-9A-F]{2}/g, m => m.toLowerCase())}`, `/x?${R}`, 'lower-case hex'],
    ['/x?presigned%255Furl=1', `/x?${R}=${R}`, 'a twice-encoded name is not plain once decoded'],
    ['/x?a+b=1&a%20b=2', `/x?${R}=${R}&${R}=${R}`, '+ and %20'],
    ['/x?%E0%A4%A=1&%zz=2', `/x?${R}=${R}&${R}=${R}`, 'malformed encoding'],
    ['/x?caf%C3%A9=1', `/x?${R}=${R}`, 'non-ASCII'],
    [`/x?${'a'.repeat(32)}&${'a'.repeat(33)}`, `/x?${'a'.repeat(32)}&${R}`, 'at most 32 characters']
  ]
  for (const [url, expected, why] of table) t.equal(redactUrl(url), expected, why)
})

t.test('a presigned URL pasted raw: every parameter is split out, every value replaced', async t => {
  t.equal(redactUrl(`/x?${PRESIGNED}`),
    `/x?${R}=${R}&X-Amz-Credential=${R}&X-Amz-Date=${R}&X-Amz-Expires=${R}&X-Amz-SignedHeaders=${R}&X-Amz-Security-Token=${R}&X-Amz-Signature=${R}`)
  t.equal(redactUrl(PRESIGNED),
    `${R}//b.s3.amazonaws.com/org-1/k.pdf?X-Amz-Algorithm=${R}&X-Amz-Credential=${R}&X-Amz-Date=${R}&X-Amz-Expires=${R}&X-Amz-SignedHeaders=${R}&X-Amz-Security-Token=${R}&X-Amz-Signature=${R}`,
    'an absolute-form request target')
})

t.test('secrets in the path', async t => {
  const table: Array<[string, string, string]> = [
    [`/nowhere/${JWT}`, `/nowhere/${R}`, 'a JWT as a segment'],
    [`/nowhere/${JWT}/more`, `/nowhere/${R}/more`, 'only that segment goes'],
    [`/${SIGNATURE}`, `/${R}`, 'a signature'],
    [`/${once(PRESIGNED)}`, `/${R}`, 'an encoded presigned URL'],
    [`/${PRESIGNED}`, `/${R}//b.s3.amazonaws.com/org-1/k.pdf?X-Amz-Algorithm=${R}&X-Amz-Credential=${R}&X-Amz-Date=${R}&X-Amz-Expires=${R}&X-Amz-SignedHeaders=${R}&X-Amz-Security-Token=${R}&X-Amz-Signature=${R}`, 'a raw presigned URL: its ? starts the query'],
    [`/${CREDENTIAL}`, `/${R}`, 'a credential scope spelled out by plain segments'],
    [`/x/${CREDENTIAL.toUpperCase()}/y`, `/${R}`, 'in any case'],
    [`/${once(CREDENTIAL)}`, `/${R}`, 'a credential, encoded'],
    ['/a%2Db/%7e', '/a-b/~', 'plain once decoded'],
    ['/a%2Fb', `/${R}`, 'an encoded slash is not plain'],
    ['/a%252D', `/${R}`, 'twice encoded'],
    ['/a%zz/b%E0%A4%A', `/${R}/${R}`, 'malformed encoding'],
    ['/a;jsessionid=x/b+c', `/${R}/${R}`, '; = + are not plain'],
    [`/x#${JWT}`, `/x#${R}`, 'a fragment'],
    [`/x#f?token=${JWT}`, `/x#${R}`, 'a query after a fragment is part of it'],
    [`/x?a=1#${JWT}`, `/x?a=${R}#${R}`, 'a fragment after a query'],
    ['*', R, 'OPTIONS *']
  ]
  for (const [url, expected, why] of table) t.equal(redactUrl(url), expected, why)
})

t.test('very long URLs are cut to 20 parts and a count', async t => {
  const query = Array.from({ length: 1000 }, (_, i) => `p${i}=${JWT}`).join('&')
  const expected = Array.from({ length: 20 }, (_, i) => `p${i}=${R}`).join('&') + '&[980 more]'
  t.equal(redactUrl(`/x?${query}`), `/x?${expected}`)
  const path = Array.from({ length: 30 }, (_, i) => `s${i}`).join('/')
  t.equal(redactUrl(`/${path}`), `/${Array.from({ length: 19 }, (_, i) => `s${i}`).join('/')}/[11 more]`)
  const huge = `/x?a=${'%41'.repeat(200_000)}&${'b'.repeat(100_000)}`
  t.equal(redactUrl(huge), `/x?a=${R}&${R}`)
})

t.test('looksLikeJwt, for request ids', async t => {
  t.ok(looksLikeJwt(JWT))
  t.ok(looksLikeJwt('eyJhbGciOiJub25lIn0.e30.'), 'even unsigned')
  for (const id of ['b38d9ec1-b12f-4429-baa2-1b27ade2e9d3', 'req-1', 'eyJ', 'a.b.c', 'trace:123.456']) t.notOk(looksLikeJwt(id), id)
})

// The output is made only of plain tokens (≤ 32 characters of [A-Za-z0-9._~[\]-])
// and markers, joined by / ? & = #. So no string longer than 32 characters that
// has none of those separators (a SigV4 signature, a JWT, its signature segment)
// can appear in it, whatever the input was.
const TOKEN = String.raw`(?:[A-Za-z0-9._~[\]-]{1,32}|\[REDACTED\])?`
const MORE = String.raw`\[\d+ more\]`
const GRAMMAR = new RegExp(String.raw`^(?:\/\[REDACTED\]|${TOKEN}(?:\/${TOKEN})*(?:\/${MORE})?)` +
  String.raw`(?:\?${TOKEN}(?:=(?:\[REDACTED\])?)?(?:&${TOKEN}(?:=(?:\[REDACTED\])?)?)*(?:&${MORE})?)?(?:#\[REDACTED\])?$`)

t.test('property: any input comes out in the grammar of plain tokens and markers', async t => {
  const unit = fc.oneof(
    fc.constantFrom('/', '?', '&', '=', '#', ';', '+', '%', '[', ']', '.', '~', '-', '_', ' ', '%2F', '%25', '%3D', '%zz', 'é', 'eyJ'),
    fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
    fc.constantFrom(JWT, SIGNATURE, CREDENTIAL, PRESIGNED, once(PRESIGNED), twice(PRESIGNED))
  )
  fc.assert(fc.property(fc.array(unit, { maxLength: 30 }), parts => {
    const out = redactUrl(parts.join(''))
    return GRAMMAR.test(out)
  }), { numRuns: 3000 })
  t.pass('3000 generated URLs fit the grammar')
})

t.test('property: a secret placed anywhere, encoded any way, never survives', async t => {
  const secrets = [JWT, JWT.split('.')[2], SIGNATURE, CREDENTIAL, 'FwoGZXIvYXdzEJr///session+token=']
  const encoding = fc.constantFrom(
    (s: string) => s, once, twice,
    (s: string) => once(s).replace(/%[0-9A-F]{2}/g, m => m.toLowerCase())
  )
  const filler = fc.string({ unit: fc.constantFrom('a', 'b', '1', '.', '-', '_', '[', ']', '/', '&', '=', ';'), maxLength: 12 })
  fc.assert(fc.property(fc.constantFrom(...secrets, PRESIGNED), encoding, filler, filler, fc.constantFrom('/', '/x?', '/x?a=', '/x?a=1&', '/x#', '/x?a['), (secret, encode, before, after, prefix) => {
    const out = redactUrl(`${prefix}${before}${encode(secret)}${after}`).toLowerCase()
    return secrets.every(s => ![s, once(s), twice(s)].some(form => out.includes(form.toLowerCase())))
  }), { numRuns: 3000 })
  t.pass('3000 placements checked')
})
