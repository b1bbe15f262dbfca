/**
 * Issue 14: whatever a client puts in a URL — a real presigned URL or a real
 * JWT as any parameter's value or name, nested, encoded once or twice, in any
 * hex case, between odd separators, in the path or the fragment, or as the
 * request id — no log line of the real app at trace level carries it, on any
 * route, and no error body echoes it. Most runs use inject; a few go over real
 * HTTP, which keeps what inject normalizes away (fragments, raw bytes).
 */
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, signToken } from './helpers/tokens.js'
import { presignedUrlFor } from './helpers/presign.js'

const INJECT_RUNS = 2000
const HTTP_RUNS = 100

interface Sent { method: 'GET' | 'HEAD' | 'POST', url: string, headers: Record<string, string>, body?: string }
interface Received { statusCode: number, body: string }

const once = encodeURIComponent
const lowerHex = (s: string): string => s.replace(/%[0-9A-F]{2}/g, m => m.toLowerCase())
const ENCODINGS: Record<string, (s: string) => string> = {
  raw: s => s,
  once,
  twice: s => once(once(s)),
  'once, lower-case hex': s => lowerHex(once(s)),
  'twice, lower-case hex': s => lowerHex(once(once(s))),
  form: s => new URLSearchParams({ x: s }).toString().slice(2)
}

t.test('property: no credential reaches a log line or an error body, whatever the URL', async t => {
  const s3 = await startTestS3(t)
  await s3.put('org-1/a.pdf', 'plans')
  const lines: string[] = []
  const app = await buildTestApp(t, s3, { logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  const address = new URL(await app.listen({ host: '127.0.0.1', port: 0 }))

  // Real credentials: a URL from our presign endpoint, one from the AWS SDK
  // with a session token, and signed JWTs.
  const token = orgToken('org-1')
  const otherToken = signToken({ sub: 'someone-else', org_id: 'org-2', scope: 'admin' }, { expiresInSeconds: 3600 })
  // Short enough (≤ 128 characters) to pass for a request id by its characters alone.
  const shortToken = signToken({}, { expiresInSeconds: null })
  t.ok(shortToken.length <= 128, `a ${shortToken.length}-character JWT`)
  const ours = new URL(await presignedUrlFor(app, 'org-1/a.pdf'))
  const sessionToken = randomBytes(200).toString('base64') // base64 with / + and = padding, like STS's
  const sdkClient = new S3Client({
    endpoint: s3.endpoint, region: s3.region, forcePathStyle: true,
    credentials: { accessKeyId: 'ASIAPROPERTYTEST0001', secretAccessKey: 'property-test-secret', sessionToken }
  })
  t.teardown(() => { sdkClient.destroy() })
  const sdk = new URL(await getSignedUrl(sdkClient, new GetObjectCommand({ Bucket: s3.bucket, Key: 'org-1/a.pdf' }), { expiresIn: 900 }))
  t.equal(sdk.searchParams.get('X-Amz-Security-Token'), sessionToken, 'the SDK URL carries the session token')

  const param = (url: URL, name: string): string => {
    const value = url.searchParams.get(name)
    if (value === null || value === '') throw new Error(`no ${name} in ${url.origin}`)
    return value
  }
  const secrets: Record<string, string> = {
    'our X-Amz-Signature': param(ours, 'X-Amz-Signature'),
    'our X-Amz-Credential': param(ours, 'X-Amz-Credential'),
    'SDK X-Amz-Signature': param(sdk, 'X-Amz-Signature'),
    'SDK X-Amz-Credential': param(sdk, 'X-Amz-Credential'),
    'SDK X-Amz-Security-Token': sessionToken,
    JWT: token,
    'JWT signature': token.split('.')[2],
    'other JWT': otherToken,
    'other JWT signature': otherToken.split('.')[2],
    'short JWT': shortToken
  }
  // Every form a log could carry them in; compared without regard to case.
  const forms = Object.entries(secrets).flatMap(([name, secret]) =>
    Object.entries(ENCODINGS).map(([encoding, encode]) => [`${name} (${encoding})`, encode(secret).toLowerCase()] as const))
  const leaksIn = (text: string): string[] => {
    const lower = text.toLowerCase()
    return forms.filter(([, form]) => lower.includes(form)).map(([name]) => name)
  }
  const found = new Set(leaksIn(`${ours.href} ${sdk.href} ${token} ${otherToken} ${shortToken}`).map(name => name.replace(/ \(.*\)$/, '')))
  t.same([...found].sort(), Object.keys(secrets).sort(), 'the scanner finds each of them where it is')

  // What a client may paste.
  const carriers = [
    ours.href, sdk.href, token, otherToken, shortToken, secrets['JWT signature'], secrets['our X-Amz-Signature'],
    secrets['SDK X-Amz-Credential'], sessionToken, `X-Amz-Signature=${secrets['SDK X-Amz-Signature']}`, `Bearer ${token}`
  ]
  const secret = fc.tuple(fc.constantFrom(...carriers), fc.constantFrom(...Object.keys(ENCODINGS)))
    .map(([carrier, encoding]) => ENCODINGS[encoding](carrier))
  const anyCase = (word: string) => fc.array(fc.boolean(), { minLength: word.length, maxLength: word.length })
    .map(upper => [...word].map((c, i) => upper[i] ? c.toUpperCase() : c.toLowerCase()).join(''))
  const sensitiveName = fc.constantFrom(
    'presigned_url', 'url', 'token', 'access_token', 'id_token', 'signature', 'sig', 'key', 'secret', 'password', 'auth',
    'authorization', 'credential', 'credentials', 'X-Amz-Signature', 'X-Amz-Credential', 'X-Amz-Security-Token'
  ).chain(anyCase)
  const randomName = fc.string({ unit: fc.constantFrom(...'abcXYZ019_-.~[]%+;:@!$*()'), minLength: 1, maxLength: 12 })
  const name = fc.tuple(fc.oneof(sensitiveName, randomName), fc.constantFrom('', '[]', '[0]', '.b', '[b][c]'))
    .chain(([base, nesting]) => fc.constantFrom(base + nesting, once(base + nesting), once(once(base + nesting))))
  const harmless = fc.constantFrom('', '1', 'abc', '%zz', '%E0%A4%A', 'a+b', 'a%20b', 'x;y')
  const pair = fc.oneof(
    fc.tuple(name, secret).map(([n, s]) => `${n}=${s}`), // a secret as a value
    fc.tuple(secret, fc.option(harmless)).map(([s, v]) => v === null ? s : `${s}=${v}`), // as a name
    fc.tuple(name, secret).map(([n, s]) => `${n}[${s}]=1`), // nested in a name
    fc.tuple(name, harmless).map(([n, v]) => `${n}=${v}`),
    // The proxy's own parameter, so some requests get past validation (200, 403, 410).
    fc.constantFrom(ours.href, sdk.href, ours.href.replace('127.0.0.1', 'localhost')).map(url => `presigned_url=${once(url)}`),
    harmless
  )
  const query = fc.tuple(
    fc.array(fc.tuple(pair, fc.constantFrom('&', ';', '&&', '&;')), { minLength: 1, maxLength: 6 }),
    fc.oneof({ weight: 5, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 40 }) }) // very long ones too
  ).map(([pairs, repeat]) => Array(repeat).fill(pairs.map(([p, sep]) => p + sep).join('')).join(''))
  // A secret as a segment, maybe after one Fastify cannot decode (a 400 of its own).
  const pathSecret = fc.tuple(fc.constantFrom('', '', '/%zz', '/%E0%A4%A', '/a;b'), fc.option(secret.map(s => `/${s}`), { nil: '' }))
    .map(([odd, s]) => odd + s)
  const route = fc.oneof(
    fc.constant({ method: 'GET' as const, path: '/api/v1/proxy/file' }),
    fc.constant({ method: 'HEAD' as const, path: '/api/v1/proxy/file' }),
    fc.constant({ method: 'POST' as const, path: '/generate-presigned-url' }),
    fc.constant({ method: 'GET' as const, path: '/health' }),
    fc.constant({ method: 'GET' as const, path: '/documentation/json' }),
    pathSecret.map(s => ({ method: 'GET' as const, path: `/nowhere${s}` })),
    pathSecret.map(s => ({ method: 'GET' as const, path: `/documentation/static${s}` }))
  )
  const request = (withFragment: boolean) => fc.record({
    route,
    query: fc.option(query, { nil: undefined }),
    fragment: withFragment ? fc.option(secret, { nil: undefined }) : fc.constant(undefined),
    bearer: fc.constantFrom(token, otherToken, `${token}x`),
    requestId: fc.option(fc.constantFrom(token, shortToken, 'req-1'), { nil: undefined })
  }).map(({ route, query, fragment, bearer, requestId }): Sent => ({
    method: route.method,
    url: route.path + (query === undefined ? '' : `?${query}`) + (fragment === undefined ? '' : `#${fragment}`),
    headers: {
      authorization: `Bearer ${bearer}`,
      ...(requestId === undefined ? {} : { 'x-request-id': requestId }),
      ...(route.method === 'POST' ? { 'content-type': 'application/json' } : {})
    },
    ...(route.method === 'POST' ? { body: JSON.stringify({ key: 'org-1/a.pdf' }) } : {})
  }))

  const check = async (sent: Sent, send: (sent: Sent) => Promise<Received>): Promise<void> => {
    const first = lines.length
    const received = await send(sent)
    const logged = lines.slice(first).join('')
    const problems: string[] = []
    if (received.statusCode === 500) problems.push('a 500')
    if (logged === '') problems.push('no log line at all')
    const logLeaks = leaksIn(logged)
    if (logLeaks.length > 0) problems.push(`in the log: ${logLeaks.join(', ')}\n${logged}`)
    if (received.statusCode >= 400) {
      const bodyLeaks = leaksIn(received.body)
      if (bodyLeaks.length > 0) problems.push(`in the ${received.statusCode} body: ${bodyLeaks.join(', ')}\n${received.body}`)
    }
    if (problems.length > 0) throw new Error(`${sent.method} ${sent.url.slice(0, 300)}: ${problems.join('; ')}`)
  }
  const inject = async (sent: Sent): Promise<Received> => {
    const res = await app.inject({ method: sent.method, url: sent.url, headers: sent.headers, ...(sent.body === undefined ? {} : { payload: sent.body }) })
    return { statusCode: res.statusCode, body: res.body }
  }
  // node:http sends the target as written, fragments and all (a raw space cannot be sent: inject makes it %20 too).
  const overHttp = async (sent: Sent): Promise<Received> => await new Promise((resolve, reject) => {
    const req = httpRequest({ host: address.hostname, port: address.port, method: sent.method, path: sent.url.replaceAll(' ', '%20'), headers: sent.headers, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => { resolve({ statusCode: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }) })
      res.on('error', reject)
    })
    // Fastify answers a request line or headers it cannot take (431, 400) on the raw socket, with a
    // body even to a HEAD, which node:http then fails to parse: the request was still made and logged.
    req.on('error', (err: Error & { code?: string }) => {
      if (err.code?.startsWith('HPE_') === true) resolve({ statusCode: 0, body: '' })
      else reject(err)
    })
    req.end(sent.body)
  })

  const started = Date.now()
  await fc.assert(fc.asyncProperty(request(false), async sent => { await check(sent, inject) }), { numRuns: INJECT_RUNS })
  await fc.assert(fc.asyncProperty(request(true), async sent => { await check(sent, overHttp) }), { numRuns: HTTP_RUNS })
  t.pass(`${INJECT_RUNS} injected and ${HTTP_RUNS} HTTP requests, no credential logged or echoed (${Date.now() - started} ms)`)
  // Lines written after a response reached the client (request completed) are in here too.
  await app.close()
  t.same(leaksIn(lines.join('')), [], `none in all ${lines.length} lines either`)
  t.ok(lines.some(line => line.includes('=[REDACTED]')), 'values were logged redacted, not dropped')
})
