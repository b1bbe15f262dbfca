/**
 * POST /generate-presigned-url end to end: real JWTs, a real S3-compatible
 * server over loopback, URLs downloaded with plain fetch.
 */
import t from 'tap'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, signToken } from './helpers/tokens.js'

const SIGV4_PARAMS = new Set([
  'X-Amz-Algorithm', 'X-Amz-Content-Sha256', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Security-Token'
])

t.test('presigned URLs download exactly the object, for ordinary and awkward keys', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const keys = [
    'org-1/documents/protocol.pdf',
    'org-1/with spaces/file name.txt',
    'org-1/ünïcødé/文件 ✓.txt',
    'org-1/plus+percent%25question?hash#.bin',
    'org-1/100% sure & (really) *starred* !bang \'quote\'.txt',
    'org-1/tilde~under_score.dash-.txt'
  ]
  for (const [i, key] of keys.entries()) {
    const body = Buffer.from(`object ${i}: ${key}\n`.repeat(3 + i))
    await s3.put(key, body)
    const res = await app.inject({
      method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key }
    })
    t.equal(res.statusCode, 200, `200 for ${key}`)
    t.equal(res.headers['cache-control'], 'no-store')
    const { url } = res.json<{ url: string }>()
    const parsed = new URL(url)
    t.equal(parsed.searchParams.get('X-Amz-Expires'), '3600')
    t.equal(parsed.searchParams.get('X-Amz-SignedHeaders'), 'host')
    t.equal(parsed.searchParams.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256')
    t.same([...parsed.searchParams.keys()].filter(name => !SIGV4_PARAMS.has(name)), [], 'only SigV4 parameters (no x-id, no checksum mode)')
    t.equal(`${parsed.protocol}//${parsed.host}`, s3.endpoint, 'our configured endpoint')
    const download = await fetch(url)
    t.equal(download.status, 200, `download of ${key}`)
    t.same(Buffer.from(await download.arrayBuffer()), body, `same bytes for ${key}`)
  }
})

t.test('an expired URL is refused by the S3 server', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { expiresIn: 1 })
  await s3.put('org-1/short-lived.txt', 'soon gone')
  const res = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/short-lived.txt' }
  })
  const { url } = res.json<{ url: string }>()
  t.equal(new URL(url).searchParams.get('X-Amz-Expires'), '1')
  await new Promise(resolve => setTimeout(resolve, 2500))
  const download = await fetch(url)
  t.equal(download.status, 403)
  await download.arrayBuffer()
})

t.test('request validation and error shape', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const auth = { authorization: `Bearer ${orgToken('org-1')}` }
  const cases: Array<{ name: string, payload?: string, contentType?: string, status: number, message?: RegExp }> = [
    { name: 'unknown field', payload: JSON.stringify({ key: 'org-1/a', extra: 1 }), status: 400, message: /additional properties/ },
    { name: 'missing key', payload: '{}', status: 400, message: /key/ },
    { name: 'key not a string', payload: JSON.stringify({ key: 42 }), status: 400, message: /string/ },
    { name: 'key null', payload: JSON.stringify({ key: null }), status: 400 },
    { name: 'body is an array', payload: JSON.stringify([{ key: 'org-1/a' }]), status: 400 },
    { name: 'invalid JSON', payload: '{"key":', status: 400 },
    { name: 'empty body', payload: '', status: 400 },
    { name: 'wrong content type', payload: 'key=org-1/a', contentType: 'application/x-www-form-urlencoded', status: 415 },
    { name: 'traversal key', payload: JSON.stringify({ key: 'org-1/../org-2/a' }), status: 400, message: /Invalid key/ },
    { name: 'org prefix only', payload: JSON.stringify({ key: 'org-1/' }), status: 400, message: /Invalid key/ },
    { name: 'other org', payload: JSON.stringify({ key: 'org-2/secret.pdf' }), status: 403, message: /Forbidden/ },
    { name: 'case-different org', payload: JSON.stringify({ key: 'ORG-1/a.pdf' }), status: 403 },
    { name: 'oversize key', payload: JSON.stringify({ key: `org-1/${'a'.repeat(1100)}` }), status: 400, message: /1024/ }
  ]
  for (const c of cases) {
    const res = await app.inject({
      method: 'POST', url: '/generate-presigned-url', payload: c.payload, headers: { ...auth, 'content-type': c.contentType ?? 'application/json' }
    })
    t.equal(res.statusCode, c.status, `${c.name}: status`)
    const body = res.json()
    t.same(Object.keys(body).filter(k => k !== 'code').sort(), ['error', 'message', 'statusCode'], `${c.name}: error shape`)
    t.equal(body.statusCode, c.status, `${c.name}: statusCode in body`)
    if (c.message !== undefined) t.match(body.message, c.message, `${c.name}: message`)
    t.notOk(res.headers['cache-control'] === 'no-store' && res.statusCode !== 200, `${c.name}: no URL in an error`)
  }
})

t.test('a signing failure is a 500 with a fixed message; the cause is logged, not returned', async t => {
  const s3 = await startTestS3(t)
  const logs: string[] = []
  const app = await buildTestApp(t, s3, {
    credentials: async () => { throw new Error('instance metadata unreachable: secret-detail-123') },
    logger: { level: 'info', stream: { write: (line: string) => { logs.push(line) } } }
  })
  const res = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.pdf' }
  })
  t.equal(res.statusCode, 500)
  t.same(res.json(), { statusCode: 500, code: 'ARTOS_PRESIGN_FAILED', error: 'Internal Server Error', message: 'Failed to generate presigned URL' })
  t.notMatch(res.body, /secret-detail-123/)
  t.ok(logs.some(line => line.includes('secret-detail-123')), 'cause is logged')
})

t.test('credentials that expire before the URL would are refused, not used', async t => {
  const s3 = await startTestS3(t)
  const soon = new Date(Date.now() + 10 * 60_000)
  let calls = 0
  const app = await buildTestApp(t, s3, {
    credentials: async () => { calls++; return { ...s3.credentials, sessionToken: 'token', expiration: soon } }
  })
  const res = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.pdf' }
  })
  t.equal(res.statusCode, 500)
  t.equal(res.json().message, 'Failed to generate presigned URL')
  t.ok(calls >= 2, 'a refresh was attempted before giving up')
})

t.test('temporary credentials put their session token in the URL', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, {
    credentials: { ...s3.credentials, sessionToken: 'session-token-value' }
  })
  const res = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/a.pdf' }
  })
  t.equal(res.statusCode, 200)
  t.equal(new URL(res.json().url).searchParams.get('X-Amz-Security-Token'), 'session-token-value')
})

t.test('the organization claim name is configurable', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { orgClaim: 'https://artos.ai/org' })
  const good = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${signToken({ 'https://artos.ai/org': 'org-9' })}` }, payload: { key: 'org-9/a.pdf' }
  })
  t.equal(good.statusCode, 200)
  const defaultClaimOnly = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-9')}` }, payload: { key: 'org-9/a.pdf' }
  })
  t.equal(defaultClaimOnly.statusCode, 400)
  t.equal(defaultClaimOnly.json().message, 'Authentication failed')
})

t.test('health needs no token', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
})
