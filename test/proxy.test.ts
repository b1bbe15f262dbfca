/**
 * GET/HEAD /api/v1/proxy/file against a real S3-compatible server over
 * loopback (s3rver here; Swift or real S3 in `npm run test:s3`).
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'

const auth = (org = 'org-1') => ({ authorization: `Bearer ${orgToken(org)}` })

t.test('streams the object with its metadata and safe headers', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const body = randomBytes(3 * 1024 * 1024 + 17)
  await s3.put('org-1/reports/q3.pdf', body, 'application/pdf')
  const url = await presignedUrlFor(app, 'org-1/reports/q3.pdf')

  const res = await fetch(`${address}${proxyPath(url)}`, { headers: auth() })
  t.equal(res.status, 200)
  t.same(Buffer.from(await res.arrayBuffer()), body, 'byte-equal')
  t.equal(res.headers.get('content-length'), String(body.length))
  t.equal(res.headers.get('content-type'), 'application/pdf')
  t.equal(res.headers.get('content-disposition'), 'attachment; filename="q3.pdf"')
  t.equal(res.headers.get('x-content-type-options'), 'nosniff')
  t.equal(res.headers.get('cache-control'), 'private, no-store')
  t.ok(res.headers.get('etag'), 'ETag passed through')
  t.ok(res.headers.get('last-modified'), 'Last-Modified passed through')
  t.same([...res.headers.keys()].filter(name => name.startsWith('x-amz-')), [], 'no x-amz-* headers')
})

t.test('Range requests: first bytes, middle, suffix, unsatisfiable', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const body = randomBytes(1000)
  await s3.put('org-1/data.bin', body)
  const path = proxyPath(await presignedUrlFor(app, 'org-1/data.bin'))
  const cases: Array<[string, number, number]> = [['bytes=0-9', 0, 10], ['bytes=100-199', 100, 200], ['bytes=990-', 990, 1000]]
  // s3rver answers suffix ranges wrongly (bytes=-10 → the first 11 bytes); Swift and S3 get them right.
  if (s3.verifiesSignatures) cases.push(['bytes=-10', 990, 1000])
  else t.comment('suffix range checked only against Swift/S3 (npm run test:s3): s3rver mis-serves it')
  for (const [range, start, end] of cases) {
    const res = await app.inject({ method: 'GET', url: path, headers: { ...auth(), range } })
    t.equal(res.statusCode, 206, range)
    t.equal(res.headers['content-range'], `bytes ${start}-${end - 1}/1000`, `${range}: Content-Range`)
    t.same(res.rawPayload, body.subarray(start, end), `${range}: bytes`)
  }
  const res = await app.inject({ method: 'GET', url: path, headers: { ...auth(), range: 'bytes=5000-6000' } })
  t.equal(res.statusCode, 416)
  t.equal(res.json().statusCode, 416)
  t.notMatch(res.body, /<\?xml|<Error>/)
})

t.test('HEAD answers headers only; conditional GET answers 304', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const body = randomBytes(5000)
  await s3.put('org-1/doc.txt', body, 'text/plain')
  await s3.put('org-1/empty.txt', Buffer.alloc(0), 'text/plain')
  const path = proxyPath(await presignedUrlFor(app, 'org-1/doc.txt'))

  const head = await app.inject({ method: 'HEAD', url: path, headers: auth() })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], '5000')
  t.equal(head.headers['content-type'], 'text/plain')
  t.equal(head.headers['content-range'], undefined)
  t.equal(head.rawPayload.length, 0)
  const etag = head.headers.etag as string
  t.ok(etag)

  const emptyHead = await app.inject({ method: 'HEAD', url: proxyPath(await presignedUrlFor(app, 'org-1/empty.txt')), headers: auth() })
  t.equal(emptyHead.statusCode, 200)
  t.equal(emptyHead.headers['content-length'], '0')

  const notModified = await app.inject({ method: 'GET', url: path, headers: { ...auth(), 'if-none-match': etag } })
  t.equal(notModified.statusCode, 304)
  t.equal(notModified.rawPayload.length, 0)

  const changed = await app.inject({ method: 'GET', url: path, headers: { ...auth(), 'if-none-match': '"something-else"' } })
  t.equal(changed.statusCode, 200)
  t.same(changed.rawPayload, body)
})

t.test('file names: Unicode and quotes in Content-Disposition', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const cases: Array<[string, string]> = [
    ['org-1/протокол 2024.pdf', 'attachment; filename="________ 2024.pdf"; filename*=UTF-8\'\'%D0%BF%D1%80%D0%BE%D1%82%D0%BE%D0%BA%D0%BE%D0%BB%202024.pdf'],
    ['org-1/say "hi".txt', 'attachment; filename="say _hi_.txt"; filename*=UTF-8\'\'say%20%22hi%22.txt'],
    ['org-1/100%+plus.txt', 'attachment; filename="100_+plus.txt"; filename*=UTF-8\'\'100%25+plus.txt']
  ]
  for (const [key, expected] of cases) {
    await s3.put(key, 'x')
    const res = await app.inject({ method: 'GET', url: proxyPath(await presignedUrlFor(app, key)), headers: auth() })
    t.equal(res.statusCode, 200, key)
    t.equal(res.headers['content-disposition'], expected, key)
    t.equal(res.body, 'x')
  }
})

t.test('refusals: 422 for a bad parameter, 403 for foreign URLs, 410 for expired or forged ones, 404 for a missing object', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/a.txt', 'a')
  await s3.put('org-2/b.txt', 'b')
  const own = await presignedUrlFor(app, 'org-1/a.txt')
  const otherOrgs = await presignedUrlFor(app, 'org-2/b.txt')
  const missing = await presignedUrlFor(app, 'org-1/missing.txt')
  const tampered = own.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === 'a' ? 'b' : 'a'}`)
  const cases: Array<[string, string, number]> = [
    ['no parameter', '/api/v1/proxy/file', 422],
    ['empty parameter', '/api/v1/proxy/file?presigned_url=', 422],
    ['repeated parameter', `${proxyPath(own)}&presigned_url=${encodeURIComponent(own)}`, 422],
    ['not a URL', '/api/v1/proxy/file?presigned_url=not%20a%20url', 422],
    ['not presigned', `/api/v1/proxy/file?presigned_url=${encodeURIComponent(own.split('?')[0])}`, 422],
    ['another org\'s valid URL', proxyPath(otherOrgs), 403],
    ['tampered signature', proxyPath(tampered), 410],
    ['missing object', proxyPath(missing), 404]
  ]
  for (const [name, url, status] of cases) {
    const res = await app.inject({ method: 'GET', url, headers: auth() })
    t.equal(res.statusCode, status, name)
    t.equal(res.json().statusCode, status, `${name}: JSON error`)
    t.notMatch(res.body, /<\?xml|<Error>|StringToSign|X-Amz-Signature/, `${name}: nothing from upstream or the URL reflected`)
  }
  t.equal((await app.inject({ method: 'GET', url: proxyPath(own) })).statusCode, 401, 'a token is required')
  t.equal((await app.inject({ method: 'GET', url: proxyPath(own), headers: { authorization: 'Bearer x' } })).statusCode, 401)
})

t.test('an expired URL is 410', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { expiresIn: 1 })
  await s3.put('org-1/a.txt', 'a')
  const url = await presignedUrlFor(app, 'org-1/a.txt')
  await new Promise(resolve => setTimeout(resolve, 1500))
  const res = await app.inject({ method: 'GET', url: proxyPath(url), headers: auth() })
  t.equal(res.statusCode, 410)
  t.equal(res.json().message, 'Expired or invalid presigned URL')
})
