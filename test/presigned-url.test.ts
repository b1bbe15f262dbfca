import t from 'tap'
import fc from 'fast-check'
import { checkPresignedUrl, objectOriginOf, type ObjectOrigin, type UrlVerdict } from '../src/presigned-url.js'
import { checkKeyForOrg } from '../src/object-key.js'
import { encodeKeyPath } from '../plugins/s3.js'

const ORG = 'org-1'
/** Fixed clock: 2025-06-15T12:00:00Z. */
const NOW = Date.UTC(2025, 5, 15, 12, 0, 0)
const PATH_STYLE = objectOriginOf(new URL('http://127.0.0.1:9000/bucket'))
const VIRTUAL = objectOriginOf(new URL('https://bucket.s3.eu-west-1.amazonaws.com/'))
const ORIGINS: Array<[string, ObjectOrigin]> = [['path style', PATH_STYLE], ['virtual-hosted', VIRTUAL]]
const SIGNATURE = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90'
const CREDENTIAL = 'AKIAIOSFODNN7EXAMPLE/20250615/eu-west-1/s3/aws4_request'

/** X-Amz-Date for an instant, as SigV4 writes it: YYYYMMDDTHHMMSSZ. */
function amzDate (ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '')
}

type Params = Array<[string, string]>

/** The query our presigner writes, signed one minute before NOW, in the SDK's (sorted) order. */
function sigv4Params (overrides: { signedAt?: number, expires?: string } = {}): Params {
  return [
    ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
    ['X-Amz-Content-Sha256', 'UNSIGNED-PAYLOAD'],
    ['X-Amz-Credential', CREDENTIAL],
    ['X-Amz-Date', amzDate(overrides.signedAt ?? NOW - 60_000)],
    ['X-Amz-Expires', overrides.expires ?? '3600'],
    ['X-Amz-Signature', SIGNATURE],
    ['X-Amz-SignedHeaders', 'host']
  ]
}

function queryString (params: Params): string {
  return params.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&')
}

/** A well-formed presigned URL for `key`, built as plugins/s3.ts builds them. */
function genuine (origin: ObjectOrigin, key: string, params: Params = sigv4Params()): string {
  return `${origin.protocol}//${origin.authority}${origin.basePath}${encodeKeyPath(key)}?${queryString(params)}`
}

const Q = queryString(sigv4Params())

function reasonOf (verdict: UrlVerdict): 'ok' | 'invalid' | 'forbidden' | 'expired' {
  return verdict.ok ? 'ok' : verdict.reason
}

function check (raw: unknown, origin: ObjectOrigin = PATH_STYLE, now = NOW): UrlVerdict {
  return checkPresignedUrl(raw, origin, ORG, now)
}

t.test('origins are built as the S3 plugin builds them', async t => {
  t.same(PATH_STYLE, { protocol: 'http:', authority: '127.0.0.1:9000', basePath: '/bucket/' })
  t.same(VIRTUAL, { protocol: 'https:', authority: 'bucket.s3.eu-west-1.amazonaws.com', basePath: '/' })
  t.equal(amzDate(NOW), '20250615T120000Z')
  t.equal(genuine(PATH_STYLE, 'org-1/a b.txt'),
    'http://127.0.0.1:9000/bucket/org-1/a%20b.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD' +
    '&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20250615%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20250615T115900Z' +
    `&X-Amz-Expires=3600&X-Amz-Signature=${SIGNATURE}&X-Amz-SignedHeaders=host`)
})

t.test('accepted: genuine URLs, both origin styles', async t => {
  const keys = [
    'org-1/documents/protocol.pdf',
    'org-1/a',
    'org-1/with space/and more.txt',
    'org-1/ünïcødé/文件.pdf',
    'org-1/emoji 😀/ok',
    'org-1/plus+percent%question?hash#.txt',
    "org-1/!'()*~&=;:@,$[]",
    'org-1/"<>`{}^|',
    'org-1/%2e%2e', // literal "%2e%2e" in the key: S3 decodes once, so it is not a dot segment
    'org-1/%2F',
    'org-1/..dots-inside../file..txt',
    'org-1/.hidden',
    'org-1/...',
    'org-1/' + 'a'.repeat(1024 - 'org-1/'.length)
  ]
  for (const [style, origin] of ORIGINS) {
    for (const key of keys) {
      const raw = genuine(origin, key)
      const verdict = check(raw, origin)
      t.equal(reasonOf(verdict), 'ok', `${style}: ${JSON.stringify(key)}`)
      if (verdict.ok) t.equal(verdict.url.key, key, `${style}: key round-trips: ${JSON.stringify(key)}`)
    }
  }
})

t.test('accepted: the parsed URL', async t => {
  const signedAt = NOW - 5 * 60_000
  const params: Params = [...sigv4Params({ signedAt, expires: '900' }), ['X-Amz-Security-Token', 'FwoG/Zz+tok==']]
  const verdict = check(genuine(PATH_STYLE, 'org-1/a+b.txt', params))
  t.ok(verdict.ok)
  if (!verdict.ok) return
  t.same(verdict.url, {
    key: 'org-1/a+b.txt',
    query: [
      ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
      ['X-Amz-Content-Sha256', 'UNSIGNED-PAYLOAD'],
      ['X-Amz-Credential', CREDENTIAL],
      ['X-Amz-Date', amzDate(signedAt)],
      ['X-Amz-Expires', '900'],
      ['X-Amz-SignedHeaders', 'host'],
      ['X-Amz-Security-Token', 'FwoG/Zz+tok==']
    ],
    signature: SIGNATURE,
    amzDate: '20250615T115500Z',
    signedAt: new Date(signedAt),
    expiresIn: 900,
    credential: CREDENTIAL
  })
  t.notOk(verdict.url.query.some(([name]) => name === 'X-Amz-Signature'), 'query excludes X-Amz-Signature')
  t.type(verdict.url.expiresIn, 'number')
  t.ok(verdict.url.signedAt instanceof Date)

  // Parameters in another order keep that order; "+" in a path is a literal plus.
  const shuffled = sigv4Params().reverse()
  const other = check(genuine(VIRTUAL, 'org-1/x', shuffled), VIRTUAL)
  t.ok(other.ok)
  if (other.ok) t.same(other.url.query, shuffled.filter(([n]) => n !== 'X-Amz-Signature'), 'original order kept')
  const plus = check(`http://127.0.0.1:9000/bucket/org-1/a+b?${Q}`)
  t.ok(plus.ok && plus.url.key === 'org-1/a+b', '"+" in the path is not a space')
  // Optional parameters may be absent.
  const minimal = sigv4Params().filter(([n]) => n !== 'X-Amz-Content-Sha256')
  t.equal(reasonOf(check(genuine(PATH_STYLE, 'org-1/x', minimal))), 'ok', 'X-Amz-Content-Sha256 is optional')
  // Percent-encoded parameter names are the same names once decoded.
  t.equal(reasonOf(check(genuine(PATH_STYLE, 'org-1/x').replace('X-Amz-Date', 'X-Amz-%44ate'))), 'ok', 'encoded parameter name')
})

t.test('length limit is 8192 characters', async t => {
  const pad = (length: number): string => {
    const base = genuine(PATH_STYLE, 'org-1/x', [...sigv4Params(), ['X-Amz-Security-Token', '']])
    return base + 'a'.repeat(length - base.length)
  }
  t.equal(pad(8192).length, 8192)
  t.equal(reasonOf(check(pad(8192))), 'ok', 'exactly 8192')
  t.equal(reasonOf(check(pad(8193))), 'invalid', '8193')
  t.equal(reasonOf(check(pad(100_000))), 'invalid', '100000')
})

t.test('invalid (422)', async t => {
  const ok = genuine(PATH_STYLE, 'org-1/a.txt')
  const without = (name: string): string => genuine(PATH_STYLE, 'org-1/a.txt', sigv4Params().filter(([n]) => n !== name))
  const replacing = (name: string, value: string): string =>
    genuine(PATH_STYLE, 'org-1/a.txt', sigv4Params().map(([n, v]) => [n, n === name ? value : v]))
  const cases: Array<[unknown, string]> = [
    [undefined, 'undefined'],
    [null, 'null'],
    [[ok, ok], 'array of two strings'],
    [[ok], 'array of one string'],
    [42, 'number'],
    [{ href: ok }, 'object'],
    [new URL(ok), 'URL object'],
    ['', 'empty'],
    ['not a url', 'not a URL'],
    ['/bucket/org-1/a.txt?' + Q, 'relative URL'],
    ['http://', 'scheme only'],
    ['http://[::1/bucket/org-1/a.txt?' + Q, 'unterminated IPv6'],
    ['http://127.0.0.1:99999/bucket/org-1/a.txt?' + Q, 'port out of range'],
    [' ' + ok, 'leading space'],
    [ok + ' ', 'trailing space'],
    [ok.replace('a.txt', 'a b.txt'), 'raw space in path'],
    [ok.replace('127.0.0.1', '127.0.\t0.1'), 'tab in host'],
    [ok.replace('/bucket/', '/bu\ncket/'), 'newline in path'],
    [ok.replace('/org-1/', '/org-1/\r\n'), 'CRLF'],
    [ok + '\n', 'trailing newline'],
    [ok.replace('a.txt', 'a\u0000.txt'), 'NUL'],
    [ok.replace('a.txt', 'a\u007f.txt'), 'DEL'],
    [ok.replace('a.txt', 'é.txt'), 'raw non-ASCII in path'],
    [ok.replace('127.0.0.1', '127．0．0．1'), 'fullwidth dots in host'],
    [ok.replace('a.txt', 'a\u200b.txt'), 'zero-width space'],
    [ok.replace('SignedHeaders=host', 'SignedHeaders=hóst'), 'raw non-ASCII in query'],
    [ok + '#frag', 'fragment'],
    [ok + '#', 'empty fragment'],
    [ok.replace('?', '#?'), 'fragment before query'],
    [ok.replace('a.txt', 'a%23.txt') + '#', 'fragment after encoded #'],
    [ok.split('?')[0], 'no query at all'],
    [ok.split('?')[0] + '?', 'empty query'],
    ...['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature']
      .flatMap((name): Array<[string, string]> => [
        [without(name), `missing ${name}`],
        [replacing(name, ''), `empty ${name}`],
        [ok.replace(new RegExp(`${name}=[^&]*`), name), `${name} without "="`],
        [ok.replace(name, name.toLowerCase()), `${name} in lower case (so missing)`],
        [ok + `&${name}=${encodeURIComponent(sigv4Params().find(([n]) => n === name)![1])}`, `repeated ${name} (same value)`],
        [ok + `&${name}=x`, `repeated ${name} (other value)`]
      ]),
    [ok + '&X-Amz-%44ate=20250615T115900Z', 'repeated X-Amz-Date, second one percent-encoded'],
    [ok + '&X-Amz-Security-Token=a&X-Amz-Security-Token=b', 'repeated X-Amz-Security-Token'],
    [ok + '&x-id=GetObject&x-id=GetObject', 'repeated unknown parameter'],
    [replacing('X-Amz-Algorithm', 'AWS4-HMAC-SHA1'), 'algorithm SHA1'],
    [replacing('X-Amz-Algorithm', 'aws4-hmac-sha256'), 'algorithm in lower case'],
    [replacing('X-Amz-Algorithm', 'AWS4-ECDSA-P256-SHA256'), 'SigV4a algorithm'],
    [replacing('X-Amz-Algorithm', 'AWS4-HMAC-SHA256 '), 'algorithm with trailing space'],
    [replacing('X-Amz-Date', '2025-06-15T11:59:00Z'), 'ISO date'],
    [replacing('X-Amz-Date', '20250615T115900'), 'date without Z'],
    [replacing('X-Amz-Date', '20250615115900Z'), 'date without T'],
    [replacing('X-Amz-Date', '20250615T1159Z'), 'date without seconds'],
    [replacing('X-Amz-Date', '20250615'), 'date only'],
    [replacing('X-Amz-Date', '20250615t115900z'), 'date in lower case'],
    [replacing('X-Amz-Date', '1749988740'), 'epoch seconds'],
    [replacing('X-Amz-Date', '２0250615T115900Z'), 'non-ASCII digit'],
    [replacing('X-Amz-Date', ' 20250615T115900Z'), 'date with leading space'],
    [replacing('X-Amz-Expires', 'abc'), 'expires not a number'],
    [replacing('X-Amz-Expires', '3600s'), 'expires with unit'],
    [replacing('X-Amz-Expires', '-1'), 'negative expires'],
    [replacing('X-Amz-Expires', '1e3'), 'expires in exponent form'],
    [replacing('X-Amz-Expires', '3600.0'), 'fractional expires'],
    [replacing('X-Amz-Expires', '0x10'), 'hex expires'],
    [replacing('X-Amz-Expires', ' 3600'), 'expires with space'],
    [ok.replace('X-Amz-Expires=3600', 'X-Amz-Expires=+3600'), 'expires with "+" (a space in a query)'],
    [replacing('X-Amz-Expires', '1234567'), 'expires of 7 digits']
  ]
  for (const [raw, why] of cases) t.equal(reasonOf(check(raw)), 'invalid', why)
})

t.test('invalid (422): X-Amz-Date that matches the pattern but is no real instant', async t => {
  // These are "malformed X-Amz-Date" too. Each is chosen so that, if the
  // parser rolls it over (Date.UTC does), it lands inside the validity window.
  const cases: Array<[string, string]> = [
    ['20250615T115960Z', 'second 60 (would be 12:00:00)'],
    ['20250615T116000Z', 'minute 60 (would be 12:00:00)'],
    ['20250614T240000Z', 'hour 24 (would be 15 June 00:00, then expired)'],
    ['20250614T360000Z', 'hour 36 (would be 15 June 12:00)'],
    ['20250600T120000Z', 'day 0 (would be 31 May)'],
    ['20250532T120000Z', 'day 32 of May (would be 1 June)'],
    ['20251315T120000Z', 'month 13'],
    ['20250015T120000Z', 'month 0']
  ]
  for (const [date, why] of cases) {
    const params = sigv4Params().map(([n, v]): [string, string] => [n, n === 'X-Amz-Date' ? date : v])
    const verdict = check(genuine(PATH_STYLE, 'org-1/a.txt', params))
    t.equal(reasonOf(verdict), 'invalid', `${date}: ${why}` + (verdict.ok ? ` (accepted, signedAt ${verdict.url.signedAt.toISOString()})` : ''))
  }
})

t.test('forbidden (403)', async t => {
  const ok = `http://127.0.0.1:9000/bucket/org-1/a.txt?${Q}`
  const vok = `https://bucket.s3.eu-west-1.amazonaws.com/org-1/a.txt?${Q}`
  const cases: Array<[string, ObjectOrigin, string]> = [
    // scheme
    [ok.replace('http:', 'https:'), PATH_STYLE, 'https instead of http'],
    [vok.replace('https:', 'http:'), VIRTUAL, 'http instead of https'],
    [ok.replace('http:', 'ftp:'), PATH_STYLE, 'ftp'],
    [`file:///bucket/org-1/a.txt?${Q}`, PATH_STYLE, 'file'],
    [ok.replace('http:', 'ws:'), PATH_STYLE, 'ws'],
    [ok.replace('http://', 'http:'), PATH_STYLE, 'http: without slashes (WHATWG would accept it)'],
    [ok.replace('http://', 'http:/'), PATH_STYLE, 'http:/ one slash'],
    [ok.replace('http://', 'http:///'), PATH_STYLE, 'http:/// three slashes'],
    [ok.replace('http://', 'http:\\\\'), PATH_STYLE, 'http:\\\\ backslashes'],
    [ok.replace('http://', 'http:/\\'), PATH_STYLE, 'http:/\\'],
    // host and port
    [ok.replace('127.0.0.1', '127.0.0.2'), PATH_STYLE, 'other host'],
    [ok.replace('127.0.0.1', 'localhost'), PATH_STYLE, 'localhost'],
    [ok.replace(':9000', ':9001'), PATH_STYLE, 'other port'],
    [ok.replace(':9000', ''), PATH_STYLE, 'no port'],
    [ok.replace(':9000', ':09000'), PATH_STYLE, 'port with leading zero (WHATWG would normalize)'],
    [ok.replace('127.0.0.1:9000', '127.0.0.1.evil.com:9000'), PATH_STYLE, 'host that starts with ours'],
    [ok.replace('127.0.0.1:9000', 'evil.127.0.0.1.nip.io:9000'), PATH_STYLE, 'host that contains ours'],
    [ok.replace('127.0.0.1:9000', 'evil.com/127.0.0.1:9000'), PATH_STYLE, 'ours as a path'],
    [`http://evil.com/?u=http://127.0.0.1:9000/bucket/org-1/a.txt&${Q}`, PATH_STYLE, 'ours in the query'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket.s3.eu-west-1.amazonaws.com.evil.com'), VIRTUAL, 'suffix'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'evilbucket.s3.eu-west-1.amazonaws.com'), VIRTUAL, 'other bucket, virtual-hosted'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'x.bucket.s3.eu-west-1.amazonaws.com'), VIRTUAL, 'subdomain of ours'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket.s3.eu-west-1.amazonaws.com.'), VIRTUAL, 'trailing dot'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket.s3.us-east-1.amazonaws.com'), VIRTUAL, 'other region'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket.s3.eu-west-1.amazonaws.com:443'), VIRTUAL, 'explicit default port :443'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket.s3.eu-west-1.amazonaws.com:'), VIRTUAL, 'empty port'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket.s3.eu-west-1.amazonaws.com:8443'), VIRTUAL, 'other port'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'bucket%2Es3.eu-west-1.amazonaws.com'), VIRTUAL, 'percent-encoded host'],
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'xn--bucket-9ua.s3.eu-west-1.amazonaws.com'), VIRTUAL, 'punycode lookalike'],
    // userinfo
    [ok.replace('127.0.0.1:9000', 'user@127.0.0.1:9000'), PATH_STYLE, 'user@host'],
    [ok.replace('127.0.0.1:9000', 'user:pw@127.0.0.1:9000'), PATH_STYLE, 'user:pw@host'],
    [ok.replace('127.0.0.1:9000', '@127.0.0.1:9000'), PATH_STYLE, 'empty userinfo'],
    [ok.replace('127.0.0.1:9000', '127.0.0.1:9000@evil.com'), PATH_STYLE, 'host@evil'],
    [ok.replace('127.0.0.1:9000', '127.0.0.1:9000@evil.com:9000'), PATH_STYLE, 'host@evil:port'],
    [ok.replace('127.0.0.1:9000', '127.0.0.1:9000\\@evil.com'), PATH_STYLE, 'host\\@evil'],
    [vok.replace('bucket.s3', 'bucket.s3.eu-west-1.amazonaws.com@evil.s3'), VIRTUAL, 'virtual host@evil'],
    // numeric IP forms WHATWG normalizes to 127.0.0.1
    [ok.replace('127.0.0.1', '0x7f.0.0.1'), PATH_STYLE, 'hex octet'],
    [ok.replace('127.0.0.1', '0x7f000001'), PATH_STYLE, 'hex number'],
    [ok.replace('127.0.0.1', '2130706433'), PATH_STYLE, 'decimal number'],
    [ok.replace('127.0.0.1', '0177.0.0.1'), PATH_STYLE, 'octal octet'],
    [ok.replace('127.0.0.1', '127.1'), PATH_STYLE, 'short form'],
    [ok.replace('127.0.0.1', '127.0.1'), PATH_STYLE, 'three-part form'],
    [ok.replace('127.0.0.1', '127.0.0.1.'), PATH_STYLE, 'trailing dot'],
    [ok.replace('127.0.0.1', '[::ffff:127.0.0.1]'), PATH_STYLE, 'IPv4-mapped IPv6'],
    [ok.replace('127.0.0.1', '[::ffff:7f00:1]'), PATH_STYLE, 'IPv4-mapped IPv6, hex'],
    [ok.replace('127.0.0.1', '[::1]'), PATH_STYLE, 'IPv6 loopback'],
    [ok.replace('127.0.0.1', '%31%32%37.0.0.1'), PATH_STYLE, 'percent-encoded IP'],
    // bucket (path style) and org
    [ok.replace('/bucket/', '/other/'), PATH_STYLE, 'other bucket'],
    [ok.replace('/bucket/', '/bucket2/'), PATH_STYLE, 'bucket with suffix'],
    [ok.replace('/bucket/', '/Bucket/'), PATH_STYLE, 'bucket in other case'],
    [ok.replace('/bucket/', '/%62ucket/'), PATH_STYLE, 'percent-encoded bucket'],
    [ok.replace('/bucket/', '/x/bucket/'), PATH_STYLE, 'bucket below another segment'],
    [ok.replace('/bucket/', '/bucket'), PATH_STYLE, 'bucket glued to the key'],
    [ok.replace('/bucket/', '//bucket/'), PATH_STYLE, 'double slash before bucket'],
    [ok.replace('/bucket/', '/bucket//'), PATH_STYLE, 'double slash after bucket'],
    [ok.replace('/bucket/org-1/a.txt', ''), PATH_STYLE, 'no path'],
    [ok.replace('/bucket/org-1/a.txt', '/'), PATH_STYLE, 'root path'],
    [ok.replace('/org-1/a.txt', ''), PATH_STYLE, 'bucket without slash'],
    [ok.replace('/org-1/a.txt', '/'), PATH_STYLE, 'bucket root'],
    [vok.replace('/org-1/', '/bucket/org-1/'), VIRTUAL, 'bucket prefix on virtual-hosted'],
    [ok.replace('org-1/a.txt', 'org-2/a.txt'), PATH_STYLE, 'key of another org'],
    [vok.replace('org-1/a.txt', 'org-2/a.txt'), VIRTUAL, 'key of another org, virtual-hosted'],
    [ok.replace('org-1/a.txt', 'org-10/a.txt'), PATH_STYLE, 'org with suffix'],
    [ok.replace('org-1/a.txt', 'ORG-1/a.txt'), PATH_STYLE, 'org in upper case'],
    [ok.replace('org-1/a.txt', 'org-1'), PATH_STYLE, 'only the org'],
    [ok.replace('org-1/a.txt', 'org-1/'), PATH_STYLE, 'org with trailing slash'],
    [ok.replace('org-1/a.txt', 'org-1%2F'), PATH_STYLE, 'org with encoded trailing slash'],
    [ok.replace('org-1/a.txt', 'org-1//a.txt'), PATH_STYLE, 'empty segment'],
    [ok.replace('org-1/a.txt', 'org-1/a.txt/'), PATH_STYLE, 'trailing slash'],
    // dot segments, raw and percent-encoded
    [ok.replace('org-1/a.txt', 'org-1/../org-2/x'), PATH_STYLE, 'raw ..'],
    [ok.replace('org-1/a.txt', 'org-1/%2e%2e/org-2/x'), PATH_STYLE, '%2e%2e'],
    [ok.replace('org-1/a.txt', 'org-1/%2E%2e/org-2/x'), PATH_STYLE, '%2E%2e'],
    [ok.replace('org-1/a.txt', 'org-1/%2E%2E/org-2/x'), PATH_STYLE, '%2E%2E'],
    [ok.replace('org-1/a.txt', 'org-1/.%2e/org-2/x'), PATH_STYLE, '.%2e'],
    [ok.replace('org-1/a.txt', 'org-1/%2e./org-2/x'), PATH_STYLE, '%2e.'],
    [ok.replace('org-1/a.txt', 'org-1/./a.txt'), PATH_STYLE, '/./'],
    [ok.replace('org-1/a.txt', 'org-1/%2e/a.txt'), PATH_STYLE, '/%2e/'],
    [ok.replace('org-1/a.txt', 'org-1/a.txt/.'), PATH_STYLE, 'trailing /.'],
    [ok.replace('org-1/a.txt', 'org-1/a.txt/..'), PATH_STYLE, 'trailing /..'],
    [ok.replace('/bucket/org-1/a.txt', '/bucket/./org-1/a.txt'), PATH_STYLE, '/./ before the key (WHATWG would drop it)'],
    [ok.replace('/bucket/org-1/a.txt', '/other/../bucket/org-1/a.txt'), PATH_STYLE, 'other bucket then .. (WHATWG would resolve to ours)'],
    [ok.replace('/bucket/org-1/a.txt', '/bucket/org-2/../org-1/a.txt'), PATH_STYLE, 'other org then .. back to ours'],
    [vok.replace('/org-1/a.txt', '/org-1/../org-2/x'), VIRTUAL, 'raw .. virtual-hosted'],
    [vok.replace('/org-1/a.txt', '/../org-1/a.txt'), VIRTUAL, 'leading .. virtual-hosted'],
    [ok.replace('org-1/a.txt', 'org-1/%252e%252e/..'), PATH_STYLE, 'double-encoded then raw ..'],
    // backslashes, raw and encoded
    [ok.replace('org-1/a.txt', 'org-1\\..\\org-2/x'), PATH_STYLE, 'raw backslash traversal'],
    [ok.replace('org-1/a.txt', 'org-1/a\\b.txt'), PATH_STYLE, 'raw backslash'],
    [ok.replace('/bucket/', '\\bucket/'), PATH_STYLE, 'backslash as first path character'],
    [ok.replace('/bucket/', '/bucket\\'), PATH_STYLE, 'backslash after bucket'],
    [ok.replace('org-1/a.txt', 'org-1/a%5Cb.txt'), PATH_STYLE, 'encoded backslash'],
    [ok.replace('org-1/a.txt', 'org-1/..%5C..%5Corg-2/x'), PATH_STYLE, 'encoded backslash traversal'],
    // encoded slashes that would escape the org once decoded
    [ok.replace('org-1/a.txt', 'org-1%2F..%2Forg-2/x'), PATH_STYLE, 'org-1%2F..%2Forg-2/x'],
    [ok.replace('org-1/a.txt', 'org-1%2f%2e%2e%2forg-2%2fx'), PATH_STYLE, 'fully encoded traversal'],
    [ok.replace('org-1/a.txt', 'org-1/a%2F..%2F..%2Forg-2%2Fx'), PATH_STYLE, 'encoded traversal deeper down'],
    [ok.replace('org-1/a.txt', 'org-2%2F..%2Forg-1/x'), PATH_STYLE, 'other org then encoded .. back'],
    [ok.replace('org-1/a.txt', '%2Forg-1/a.txt'), PATH_STYLE, 'encoded leading slash'],
    [ok.replace('org-1/a.txt', 'org-1%2F%2Fa.txt'), PATH_STYLE, 'encoded empty segment'],
    // malformed percent-encoding and keys that decode to bad characters
    [ok.replace('a.txt', 'a%zz.txt'), PATH_STYLE, '%zz'],
    [ok.replace('a.txt', 'a%.txt'), PATH_STYLE, 'lone %'],
    [ok.replace('a.txt', 'a.txt%'), PATH_STYLE, 'trailing %'],
    [ok.replace('a.txt', 'a.txt%4'), PATH_STYLE, 'truncated escape'],
    [ok.replace('a.txt', 'a%C3.txt'), PATH_STYLE, 'truncated UTF-8'],
    [ok.replace('a.txt', 'a%C3%28.txt'), PATH_STYLE, 'invalid UTF-8'],
    [ok.replace('a.txt', 'a%C0%AF.txt'), PATH_STYLE, 'overlong "/"'],
    [ok.replace('a.txt', 'a%ED%A0%80.txt'), PATH_STYLE, 'encoded surrogate'],
    [ok.replace('a.txt', 'a%FF.txt'), PATH_STYLE, '%FF'],
    [ok.replace('a.txt', 'a%00.txt'), PATH_STYLE, 'encoded NUL'],
    [ok.replace('a.txt', 'a%0A.txt'), PATH_STYLE, 'encoded newline'],
    [ok.replace('a.txt', 'a%7F.txt'), PATH_STYLE, 'encoded DEL'],
    [ok.replace('a.txt', 'a%C2%85.txt'), PATH_STYLE, 'encoded C1 control'],
    [ok.replace('a.txt', 'a%E2%80%AE.txt'), PATH_STYLE, 'encoded bidi override'],
    [ok.replace('org-1/a.txt', `org-1/${'a'.repeat(1025 - 6)}`), PATH_STYLE, 'key over 1024 bytes']
  ]
  for (const [raw, origin, why] of cases) {
    const verdict = check(raw, origin)
    t.equal(reasonOf(verdict), 'forbidden', why + (verdict.ok ? ` (accepted as key ${JSON.stringify(verdict.url.key)})` : ''))
  }
})

t.test('lookalikes the WHATWG parser rejects outright are invalid (422), not forbidden', async t => {
  const ok = `http://127.0.0.1:9000/bucket/org-1/a.txt?${Q}`
  const cases: Array<[string, string]> = [
    [ok.replace('127.0.0.1', 'evil127.0.0.1'), 'host that ends with ours (last label numeric, not an IPv4)'],
    [ok.replace('127.0.0.1', '1127.0.0.1'), 'IPv4 octet out of range'],
    [ok.replace(':9000', ':9000:'), 'trailing colon after port'],
    [ok.replace('http:', 'file:'), 'file: URL with a port'],
    [ok.replace('127.0.0.1:9000', 'evil.com?127.0.0.1:9000'), 'ours in the query, so the SigV4 names are mangled']
  ]
  for (const [raw, why] of cases) t.equal(reasonOf(check(raw)), 'invalid', why)
})

t.test('what case and encoding variations do (documented behaviour)', async t => {
  const vok = `https://bucket.s3.eu-west-1.amazonaws.com/org-1/a.txt?${Q}`
  const ok = `http://127.0.0.1:9000/bucket/org-1/a.txt?${Q}`
  const accepted: Array<[string, ObjectOrigin, string, string]> = [
    // The host is compared case-insensitively, as WHATWG lower-cases it.
    [vok.replace('bucket.s3.eu-west-1.amazonaws.com', 'BUCKET.S3.EU-WEST-1.AMAZONAWS.COM'), VIRTUAL, 'upper-case host', 'org-1/a.txt'],
    [vok.replace('bucket.s3.eu-west-1', 'Bucket.S3.Eu-West-1'), VIRTUAL, 'mixed-case host', 'org-1/a.txt'],
    [vok.replace('https:', 'HTTPS:'), VIRTUAL, 'upper-case scheme', 'org-1/a.txt'],
    [ok.replace('http:', 'HtTp:'), PATH_STYLE, 'mixed-case scheme', 'org-1/a.txt'],
    // Percent-encoding in the key is decoded once, as S3 does: the key, not the
    // raw text, is what gets re-signed and fetched.
    [ok.replace('org-1/a.txt', '%6Frg-1/a.txt'), PATH_STYLE, 'encoded org letter', 'org-1/a.txt'],
    [ok.replace('org-1/a.txt', 'org-1%2Fa.txt'), PATH_STYLE, 'encoded slash inside the org', 'org-1/a.txt'],
    [ok.replace('org-1/a.txt', 'org-1/a%2Fb'), PATH_STYLE, 'encoded slash deeper down', 'org-1/a/b'],
    [ok.replace('org-1/a.txt', 'org-1/%252e%252e'), PATH_STYLE, 'double-encoded dots are a literal key', 'org-1/%2e%2e'],
    [ok.replace('org-1/a.txt', 'org-1/a%2e%2etxt'), PATH_STYLE, 'encoded dots inside a segment', 'org-1/a..txt'],
    [ok.replace('org-1/a.txt', 'org-1/%2e%2e%2e'), PATH_STYLE, 'three encoded dots are not a dot segment', 'org-1/...'],
    [ok.replace('org-1/a.txt', 'org-1/a;b=c'), PATH_STYLE, 'matrix-style parameters are part of the key', 'org-1/a;b=c'],
    [ok.replace('org-1/a.txt', 'org-1/a"b'), PATH_STYLE, 'raw " is taken literally', 'org-1/a"b']
  ]
  for (const [raw, origin, why, key] of accepted) {
    const verdict = check(raw, origin)
    t.equal(reasonOf(verdict), 'ok', why)
    if (verdict.ok) t.equal(verdict.url.key, key, `${why}: key`)
  }
  // A backslash in the query is not looked at here (the path is): signature
  // verification in plugins/s3.ts compares every parameter value.
  t.equal(reasonOf(check(ok.replace('X-Amz-Credential=', 'X-Amz-Credential=a\\'))), 'ok', 'backslash in a query value')
})

t.test('expired (410)', async t => {
  const at = (signedAt: number, expires = '3600', now = NOW): UrlVerdict =>
    check(genuine(PATH_STYLE, 'org-1/a.txt', sigv4Params({ signedAt, expires })), PATH_STYLE, now)
  const withParams = (extra: Params): string => genuine(PATH_STYLE, 'org-1/a.txt', [...sigv4Params(), ...extra])
  const signedHeaders = (value: string): string =>
    genuine(PATH_STYLE, 'org-1/a.txt', sigv4Params().map(([n, v]) => [n, n === 'X-Amz-SignedHeaders' ? value : v]))

  // Lifetime boundaries.
  t.equal(reasonOf(at(NOW - 3600_000)), 'expired', 'exactly at signedAt + expires')
  t.equal(reasonOf(at(NOW - 3601_000)), 'expired', 'one second after')
  t.equal(reasonOf(at(NOW - 3599_000)), 'ok', 'one second before')
  t.equal(reasonOf(at(NOW - 3600_000, '3600', NOW - 1)), 'ok', 'one millisecond before')
  t.equal(reasonOf(at(NOW - 86_400_000)), 'expired', 'a day ago')
  t.equal(reasonOf(at(Date.UTC(2000, 0, 1))), 'expired', 'year 2000')
  t.equal(reasonOf(at(NOW)), 'ok', 'signed now')
  // Clock skew.
  t.equal(reasonOf(at(NOW + 15 * 60_000)), 'ok', 'signed exactly 15 minutes ahead')
  t.equal(reasonOf(at(NOW + 15 * 60_000 + 1000)), 'expired', 'signed 15 minutes and 1 second ahead')
  t.equal(reasonOf(at(NOW + 86_400_000)), 'expired', 'signed a day ahead')
  t.equal(reasonOf(at(Date.UTC(9999, 11, 31, 23, 59, 59))), 'expired', 'year 9999')
  // X-Amz-Expires range 1..604800.
  t.equal(reasonOf(at(NOW - 1000, '0')), 'expired', 'expires 0')
  t.equal(reasonOf(at(NOW - 1000, '000000')), 'expired', 'expires 000000')
  t.equal(reasonOf(at(NOW - 1000, '604801')), 'expired', 'expires 604801')
  t.equal(reasonOf(at(NOW - 1000, '999999')), 'expired', 'expires 999999')
  t.equal(reasonOf(at(NOW - 1000, '604800')), 'ok', 'expires 604800')
  t.equal(reasonOf(at(NOW - 604_799_000, '604800')), 'ok', 'seven days minus one second old')
  t.equal(reasonOf(at(NOW - 604_800_000, '604800')), 'expired', 'seven days old')
  t.equal(reasonOf(at(NOW, '1')), 'ok', 'expires 1, signed this second')
  t.equal(reasonOf(at(NOW - 1000, '1')), 'expired', 'expires 1, signed a second ago')
  t.equal(reasonOf(at(NOW, '000001')), 'ok', 'leading zeros')

  // Parameters of a presigned GetObject pass here; the signature must cover them (plugins/s3.ts).
  const getObject: Params[] = [
    [['x-id', 'GetObject']],
    [['x-amz-checksum-mode', 'ENABLED']],
    [['response-content-type', 'text/html']],
    [['response-content-disposition', 'attachment; filename="a.txt"']],
    [['response-cache-control', 'no-cache']],
    [['response-content-encoding', 'identity']],
    [['response-content-language', 'en']],
    [['response-expires', 'Thu, 01 Dec 1994 16:00:00 GMT']],
    [['versionId', '3']],
    [['partNumber', '1']],
    [['x-id', 'GetObject'], ['versionId', 'null'], ['response-content-type', 'application/pdf']]
  ]
  for (const extra of getObject) t.equal(reasonOf(check(withParams(extra))), 'ok', `GetObject parameter ${JSON.stringify(extra[0][0])}`)
  // Values that would make the GET mean something else.
  t.equal(reasonOf(check(withParams([['x-id', 'PutObject']]))), 'expired', 'x-id of another operation')
  t.equal(reasonOf(check(genuine(PATH_STYLE, 'org-1/a.txt', sigv4Params().map(([n, v]) => [n, n === 'X-Amz-Content-Sha256' ? 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' : v])))), 'expired', 'a payload hash instead of UNSIGNED-PAYLOAD')

  // Anything else turns the GET into another operation, or was never written by a signer.
  const unknown: Params[] = [
    [['acl', '']],
    [['tagging', '']],
    [['torrent', '']],
    [['attributes', '']],
    [['uploadId', 'x']],
    [['legal-hold', '']],
    [['retention', '']],
    [['X-Amz-User-Agent', 'x']],
    [['X-Id', 'GetObject']],
    [['VersionId', '3']],
    [['Response-Content-Type', 'text/plain']],
    [['x-amz-security-token', 'lower-case name']],
    [['X-Amz-Signature2', 'x']],
    [['', 'empty name']],
    [['X-Amz-Expires ', '3600']]
  ]
  for (const extra of unknown) t.equal(reasonOf(check(withParams(extra))), 'expired', `unknown parameter ${JSON.stringify(extra[0][0])}`)
  t.equal(reasonOf(check(genuine(PATH_STYLE, 'org-1/a.txt') + '&x-id')), 'expired', 'unknown parameter without value')
  t.equal(reasonOf(check(genuine(PATH_STYLE, 'org-1/a.txt') + '&&')), 'ok', 'empty query pieces are no parameters')

  for (const value of ['host;x-amz-content-sha256', 'host;range', 'Host', 'HOST', 'x-amz-date', 'host ', ' host', 'host;', ';host', 'host;host']) {
    t.equal(reasonOf(check(signedHeaders(value))), 'expired', `X-Amz-SignedHeaders=${JSON.stringify(value)}`)
  }
})

t.test('precedence between reasons', async t => {
  const evil = `http://evil.com/bucket/org-1/a.txt?${Q}`
  t.equal(reasonOf(check(evil + '#x')), 'invalid', 'fragment beats wrong host')
  t.equal(reasonOf(check(evil.replace('X-Amz-Signature', 'X-Amz-Nope'))), 'invalid', 'not SigV4 beats wrong host')
  t.equal(reasonOf(check(evil + '&x-id=GetObject')), 'forbidden', 'wrong host beats unknown parameter')
  t.equal(reasonOf(check(evil.replace(/X-Amz-Date=\w+/, 'X-Amz-Date=bad'))), 'forbidden', 'wrong host beats malformed date')
  const ok = genuine(PATH_STYLE, 'org-1/a.txt')
  t.equal(reasonOf(check(ok.replace(/X-Amz-Date=\w+/, 'X-Amz-Date=bad') + '&x-id=1')), 'expired', 'unknown parameter beats malformed date')
})

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const DOT_SEGMENT = (segment: string): boolean => ['.', '..'].includes(segment.replace(/%2e/gi, '.'))

/** Everything an accepted URL must satisfy, whoever built it. */
function acceptedIsSafe (raw: string, origin: ObjectOrigin, verdict: UrlVerdict): boolean {
  if (!verdict.ok) return true
  const url = new URL(raw)
  const rawPath = raw.slice(raw.indexOf('://') + 3).replace(/^[^/]*/, '').split('?')[0]
  const { key } = verdict.url
  return url.protocol === origin.protocol &&
    url.host === origin.authority &&
    url.username === '' && url.password === '' && url.hash === '' &&
    url.pathname.startsWith(origin.basePath) &&
    // What WHATWG (and so any HTTP client) would fetch names the same key.
    decodeURIComponent(url.pathname.slice(origin.basePath.length)) === key &&
    key.startsWith(`${ORG}/`) &&
    checkKeyForOrg(key, ORG).ok &&
    !key.split('/').some(s => s === '.' || s === '..') &&
    !raw.includes('#') &&
    !rawPath.includes('\\') &&
    !rawPath.split('/').some(DOT_SEGMENT) &&
    !url.pathname.split('/').some(DOT_SEGMENT)
}

const URLISH = [
  'http://', 'https://', 'HTTP://', 'http:', 'http:/', 'http:\\\\', 'https:///', 'ftp://', 'file://', '//',
  '127.0.0.1', '127.0.0.1:9000', '127.0.0.2', '127.0.0.1.evil.com', 'evil.com', '0x7f.0.0.1', '2130706433', '127.1',
  '[::ffff:127.0.0.1]', '[::1]', 'localhost', 'bucket.s3.eu-west-1.amazonaws.com', 'BUCKET.S3.EU-WEST-1.AMAZONAWS.COM',
  'bucket.s3.eu-west-1.amazonaws.com.evil.com', 's3.eu-west-1.amazonaws.com',
  '@', ':', ':9000', ':443', ':80', '/', '/', '/', '\\', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '%25', '%', '%zz',
  '?', '?', '#', '&', '&', '=', '+', ' ', '\t', 'é', 'bucket', 'bucket/', 'org-1', 'org-1/', 'org-2', 'org-10', 'a.txt', 'x',
  'X-Amz-Algorithm=AWS4-HMAC-SHA256', 'X-Amz-Credential=AKIA%2F20250615%2Feu-west-1%2Fs3%2Faws4_request',
  `X-Amz-Date=${amzDate(NOW - 60_000)}`, 'X-Amz-Date=', 'X-Amz-Expires=3600', 'X-Amz-Expires=0', 'X-Amz-SignedHeaders=host',
  `X-Amz-Signature=${SIGNATURE}`, 'X-Amz-Content-Sha256=UNSIGNED-PAYLOAD', 'x-id=GetObject', 'X-Amz-Signature', 'X-Amz-Date'
]
const urlishFragment = fc.constantFrom(...URLISH)
const REQUIRED_QUERY = `?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA&X-Amz-Date=${amzDate(NOW - 60_000)}` +
  `&X-Amz-Expires=3600&X-Amz-Signature=${SIGNATURE}&X-Amz-SignedHeaders=host`

/** Candidates for one origin: noise, URL-ish concatenations, structured attempts, and genuine URLs with noise inserted. */
function candidates (origin: ObjectOrigin): fc.Arbitrary<string> {
  const prefix = `${origin.protocol}//${origin.authority}${origin.basePath}`
  const insertInto = (base: string) => fc.array(fc.tuple(fc.nat(), fc.oneof(urlishFragment, fc.string({ unit: 'binary', maxLength: 3 }))), { minLength: 1, maxLength: 3 })
    .map(inserts => inserts.reduce((s, [at, piece]) => { const i = at % (s.length + 1); return s.slice(0, i) + piece + s.slice(i) }, base))
  const pathPieces = fc.array(fc.oneof(urlishFragment, fc.constantFrom('org-1', 'a', '/', '%2F', '%2e', '..', '.')), { maxLength: 8 }).map(p => p.join(''))
  return fc.oneof(
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.string({ unit: 'grapheme', maxLength: 200 }),
    fc.array(urlishFragment, { maxLength: 25 }).map(p => p.join('')),
    // scheme + authority + path built from fragments + a full SigV4 query
    fc.tuple(fc.array(urlishFragment, { maxLength: 6 }), pathPieces)
      .map(([authority, path]) => `${authority.join('')}/${path}${REQUIRED_QUERY}`),
    fc.tuple(fc.constantFrom(origin.protocol + '//', origin.protocol.toUpperCase() + '//'), fc.array(urlishFragment, { maxLength: 4 }), pathPieces)
      .map(([scheme, authority, path]) => `${scheme}${origin.authority}${authority.join('')}${origin.basePath}${path}${REQUIRED_QUERY}`),
    pathPieces.map(path => `${prefix}${path}${REQUIRED_QUERY}`),
    pathPieces.map(path => `${prefix}${ORG}/${path}${REQUIRED_QUERY}`),
    insertInto(genuine(origin, `${ORG}/dir/file.txt`)),
    insertInto(`${prefix}${ORG}/a${REQUIRED_QUERY}`)
  )
}

t.test('property: every accepted string is an S3 URL of ours, inside the org, without traversal', async t => {
  for (const [style, origin] of ORIGINS) {
    let accepted = 0
    let runs = 0
    fc.assert(fc.property(candidates(origin), raw => {
      runs++
      const verdict = check(raw, origin)
      if (verdict.ok) accepted++
      return acceptedIsSafe(raw, origin, verdict)
    }), { numRuns: 20_000 })
    t.ok(accepted > 500, `${style}: ${accepted} of ${runs} generated strings accepted (property not vacuous)`)
  }
})

t.test('property: arbitrary non-strings and noise never crash and are never accepted', async t => {
  fc.assert(fc.property(fc.anything(), value => {
    const verdict = check(value)
    return !verdict.ok && ['invalid', 'forbidden', 'expired'].includes(verdict.reason)
  }), { numRuns: 3000 })
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), raw => !check(raw).ok && !check(raw, VIRTUAL).ok), { numRuns: 5000 })
  t.pass('8000 generated values checked')
})

// A valid key segment: no "/", not "." or "..", nothing checkKeySyntax forbids.
const segmentChars = fc.constantFrom('a', 'Z', '0', ' ', '+', '%', '?', '#', '&', '=', '!', "'", '(', ')', '*', '~', '.', ':', '@',
  ';', ',', '"', '<', '>', '`', '{', '}', '^', '|', '[', ']', '$', 'é', '文', '😀', '\u00a0', '\ufeff', '%2e', '%2F', '%25')
const segment = fc.oneof(
  fc.string({ unit: segmentChars, minLength: 1, maxLength: 10 }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 10 })
).filter(s => !s.includes('/') && s !== '.' && s !== '..')
const validKey = fc.array(segment, { minLength: 1, maxLength: 5 })
  .map(segments => `${ORG}/${segments.join('/')}`)
  .filter(key => checkKeyForOrg(key, ORG).ok)

t.test('property: round trip of genuine URLs for valid keys', async t => {
  for (const [style, origin] of ORIGINS) {
    fc.assert(fc.property(validKey, fc.integer({ min: 0, max: 3599 }), (key, age) => {
      const verdict = check(genuine(origin, key, sigv4Params({ signedAt: NOW - age * 1000 })), origin)
      return verdict.ok && verdict.url.key === key && verdict.url.signedAt.getTime() === NOW - age * 1000
    }), { numRuns: 5000 })
    t.pass(`${style}: 5000 generated keys round-trip`)
  }
})

type Mutation = { name: string, apply: (raw: string) => string, noOp: boolean }

function mutations (origin: ObjectOrigin): fc.Arbitrary<Mutation> {
  const start = origin.protocol.length + 2
  const authority = origin.authority
  const replaceAuthority = (raw: string, by: string): string => raw.slice(0, start) + by + raw.slice(start + authority.length)
  const hostChar = fc.tuple(fc.nat({ max: authority.length - 1 }),
    fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-_@/\\?%[]~!$&\'()*+,;='.split('')))
    .map(([i, c]): Mutation => ({
      name: `host[${i}]=${c}`,
      apply: raw => replaceAuthority(raw, authority.slice(0, i) + c + authority.slice(i + 1)),
      noOp: c.toLowerCase() === authority[i]
    }))
  const userinfo = fc.constantFrom('@evil.com', '@evil.com:9000', '@', '\\@evil.com', '.evil.com', 'evil.com').map((s): Mutation => ({
    name: `append ${s}`, apply: raw => replaceAuthority(raw, authority + s), noOp: false
  }))
  const prefixUser = fc.constantFrom('evil@', 'user:pw@', '@', 'evil.com/', 'evil.com@', 'x.').map((s): Mutation => ({
    name: `prepend ${s}`, apply: raw => replaceAuthority(raw, s + authority), noOp: false
  }))
  const [hostname] = authority.split(':')
  const port = fc.oneof(fc.integer({ min: 0, max: 65535 }).map(String), fc.constantFrom('', '0', '09000', '443', '80', '9000', '99999'))
    .map((p): Mutation => ({
      name: `port ${p}`,
      apply: raw => replaceAuthority(raw, `${hostname}:${p}`),
      noOp: `${hostname}:${p}` === authority
    }))
  const dropPort = fc.constant<Mutation>({ name: 'drop port', apply: raw => replaceAuthority(raw, hostname), noOp: hostname === authority })
  const scheme = fc.constantFrom('http:', 'https:', 'ftp:', 'ws:', 'wss:', 'file:', 'HTTP:', 'HTTPS:', 'Http:', 'httpx:', 'http:/', '')
    .map((s): Mutation => ({
      name: `scheme ${s}`,
      apply: raw => s + raw.slice(origin.protocol.length),
      noOp: s.toLowerCase() === origin.protocol
    }))
  const dotSegment = fc.tuple(fc.nat(), fc.constantFrom('/../', '/./', '/%2e%2e/', '/%2E./', '/.%2e/', '/%2e/', '/org-2/../', '\\..\\', '\\'))
    .map(([n, piece]): Mutation => ({
      name: `insert ${piece}`,
      apply: raw => {
        const pathStart = start + authority.length
        const path = raw.slice(pathStart).split('?')[0]
        const slashes = [...path].flatMap((c, i) => c === '/' ? [i] : [])
        const at = pathStart + slashes[n % slashes.length]
        return raw.slice(0, at) + piece + raw.slice(at + 1)
      },
      noOp: false
    }))
  const bucket = fc.constantFrom('/other/', '/bucket2/', '/x/bucket/', '/', '/Bucket/', '/bucket/', '//', '/%62ucket/', '/bucket/bucket/')
    .map((b): Mutation => ({
      name: `base path ${b}`,
      apply: raw => raw.slice(0, start + authority.length) + b + raw.slice(start + authority.length + origin.basePath.length),
      noOp: b === origin.basePath
    }))
  const upper = fc.constant<Mutation>({ name: 'upper-case host', apply: raw => replaceAuthority(raw, authority.toUpperCase()), noOp: true })
  return fc.oneof(hostChar, userinfo, prefixUser, port, dropPort, scheme, dotSegment, bucket, upper)
}

t.test('property: mutating scheme, host, port or path of a genuine URL is never accepted', async t => {
  for (const [style, origin] of ORIGINS) {
    let noOps = 0
    fc.assert(fc.property(validKey, mutations(origin), (key, mutation) => {
      const raw = mutation.apply(genuine(origin, key))
      const verdict = check(raw, origin)
      if (mutation.noOp) {
        noOps++
        return verdict.ok && verdict.url.key === key
      }
      return !verdict.ok
    }), { numRuns: 10_000 })
    t.ok(noOps > 0, `${style}: 10000 mutations checked, ${noOps} of them no-ops (accepted with the same key)`)
  }
})

t.test('property: verdicts on genuine URLs depend only on time as documented', async t => {
  fc.assert(fc.property(
    validKey,
    fc.integer({ min: -2 * 86_400, max: 2 * 86_400 }),
    fc.integer({ min: 0, max: 700_000 }),
    (key, offsetSeconds, expires) => {
      const signedAt = NOW + offsetSeconds * 1000
      const verdict = check(genuine(PATH_STYLE, key, sigv4Params({ signedAt, expires: String(expires) })))
      const expected = expires < 1 || expires > 604_800 || signedAt - NOW > 15 * 60_000 || NOW >= signedAt + expires * 1000
        ? 'expired'
        : 'ok'
      return reasonOf(verdict) === expected
    }), { numRuns: 5000 })
  t.pass('5000 generated lifetimes checked')
})

t.test('refusals name the key (for the audit trail) only once the URL names an object in our bucket', async t => {
  const keyOf = (verdict: UrlVerdict): string | undefined => verdict.ok ? verdict.url.key : verdict.key
  const expiredUrl = genuine(PATH_STYLE, 'org-1/a.txt', sigv4Params({ signedAt: NOW - 86_400_000 }))
  const cases: Array<[string, string, string, string | undefined]> = [
    ['another organization', genuine(PATH_STYLE, 'org-2/a.txt'), 'forbidden', 'org-2/a.txt'],
    ['a control character in the key', genuine(PATH_STYLE, 'org-1/a\n{"audit":true}'), 'forbidden', 'org-1/a\n{"audit":true}'],
    ['expired', expiredUrl, 'expired', 'org-1/a.txt'],
    ['an unknown parameter', `${genuine(PATH_STYLE, 'org-1/a.txt')}&acl=`, 'expired', 'org-1/a.txt'],
    ['a malformed date', genuine(PATH_STYLE, 'org-1/a.txt').replace(/X-Amz-Date=\d+/, 'X-Amz-Date=2025'), 'invalid', 'org-1/a.txt'],
    ['another host', genuine(PATH_STYLE, 'org-1/a.txt').replace('127.0.0.1:9000', 'evil.example'), 'forbidden', undefined],
    ['another bucket', genuine(PATH_STYLE, 'org-1/a.txt').replace('/bucket/', '/other/'), 'forbidden', undefined],
    ['a dot segment', genuine(PATH_STYLE, 'org-1/a.txt').replace('/org-1/', '/org-1/../'), 'forbidden', undefined],
    ['a bad escape', genuine(PATH_STYLE, 'org-1/a.txt').replace('a.txt', '%E0%A4%A.txt'), 'forbidden', undefined],
    ['not a SigV4 URL', 'http://127.0.0.1:9000/bucket/org-1/a.txt', 'invalid', undefined]
  ]
  for (const [why, raw, reason, key] of cases) {
    const verdict = check(raw)
    t.equal(reasonOf(verdict), reason, why)
    t.equal(keyOf(verdict), key, `${why}: key`)
  }
})

t.test('property: a refusal\'s key is the decoded path of a URL of our origin and bucket', async t => {
  const segment = fc.string({ unit: 'binary', minLength: 1, maxLength: 20 })
  fc.assert(fc.property(fc.constantFrom('org-1', 'org-2'), fc.array(segment, { minLength: 1, maxLength: 3 }), fc.constantFrom(...ORIGINS), fc.boolean(), (org, segments, [, origin], foreignHost) => {
    const key = `${org}/${segments.join('/')}`
    if (!key.isWellFormed()) return true
    let raw = genuine(origin, key)
    if (foreignHost) raw = raw.replace(origin.authority, 'evil.example')
    const verdict = check(raw, origin)
    if (verdict.ok) return !foreignHost && verdict.url.key === key
    if (verdict.key === undefined) return true
    return !foreignHost && verdict.key === key
  }), { numRuns: 2000 })
  t.pass('2000 runs')
})
