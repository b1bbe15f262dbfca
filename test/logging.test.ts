/**
 * A presigned URL is a credential: after a full presign + proxy round trip
 * (and a few refusals), no captured log line may contain the token, the
 * presigned_url parameter or any SigV4 credential part.
 */
import { connect } from 'node:net'
import t from 'tap'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken } from './helpers/tokens.js'
import { presignedUrlFor, proxyPath } from './helpers/presign.js'

t.test('no secrets in logs, at the most verbose level', async t => {
  const s3 = await startTestS3(t)
  const lines: string[] = []
  const app = await buildTestApp(t, s3, { logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const token = orgToken('org-1')
  const headers = { authorization: `Bearer ${token}`, cookie: 'session=cookie-secret', 'content-type': 'application/json' }
  await s3.put('org-1/secret-plans.pdf', 'plans')

  const presign = await fetch(`${address}/generate-presigned-url`, { method: 'POST', headers, body: JSON.stringify({ key: 'org-1/secret-plans.pdf' }) })
  t.equal(presign.status, 200)
  const { url } = await presign.json() as { url: string }
  const download = await fetch(`${address}${proxyPath(url)}`, { headers })
  t.equal(download.status, 200)
  t.equal(await download.text(), 'plans')
  // Refusals log too: a tampered URL, a foreign one, a bad token.
  const tampered = url.replace(/X-Amz-Signature=([0-9a-f]{4})/, (_, head: string) => `X-Amz-Signature=${head === '0000' ? 'ffff' : '0000'}`)
  t.equal((await fetch(`${address}${proxyPath(tampered)}`, { headers })).status, 410)
  t.equal((await fetch(`${address}${proxyPath(url.replace('127.0.0.1', 'localhost'))}`, { headers })).status, 403)
  t.equal((await fetch(`${address}${proxyPath(url)}`, { headers: { authorization: `Bearer ${token}x` } })).status, 401)
  // A URL given directly in the path of another route gets redacted as well.
  await fetch(`${address}/nowhere?${new URL(url).search.slice(1)}`, { headers })
  await app.close()

  const log = lines.join('')
  t.ok(lines.length >= 10, `captured ${lines.length} log lines`)
  t.match(log, /presigned_url=\[REDACTED\]/, 'the proxied request is logged, redacted')
  const parsed = new URL(url)
  const secrets = {
    token,
    'token signature': token.split('.')[2],
    cookie: 'cookie-secret',
    'X-Amz-Signature value': parsed.searchParams.get('X-Amz-Signature') as string,
    'X-Amz-Credential value': parsed.searchParams.get('X-Amz-Credential') as string,
    'encoded X-Amz-Credential': encodeURIComponent(parsed.searchParams.get('X-Amz-Credential') as string),
    'encoded presigned URL': encodeURIComponent(url).slice(0, 60)
  }
  for (const [name, secret] of Object.entries(secrets)) t.notOk(log.includes(secret), `no ${name} in logs`)
  t.notMatch(log, /"authorization"|bearer\s+ey/i, 'no Authorization header')
  t.notMatch(log, /X-Amz-Signature=(?!\[REDACTED\])/i)
  t.notMatch(log, /X-Amz-Credential=(?!\[REDACTED\])/i)
})

t.test('issue 14: secrets under other names, at the default level', async t => {
  const s3 = await startTestS3(t)
  const lines: string[] = []
  const app = await buildTestApp(t, s3, { logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  const token = orgToken('org-1')
  const auth = { authorization: `Bearer ${token}` }
  const url = await presignedUrlFor(app, 'org-1/a.pdf')
  const signature = new URL(url).searchParams.get('X-Amz-Signature') as string
  lines.length = 0

  for (const name of ['presigned_url[]', 'presigned_url[0]', 'url']) {
    const res = await app.inject({ url: `/api/v1/proxy/file?${name}=${encodeURIComponent(url)}`, headers: auth })
    t.equal(res.statusCode, 422, name)
    t.ok(lines.some(line => line.includes(`"url":"/api/v1/proxy/file?${name}=[REDACTED]"`)), `${name}: the request is logged, its value redacted`)
  }
  const presign = await app.inject({ method: 'POST', url: `/generate-presigned-url?token=${token}`, headers: auth, payload: { key: 'org-1/a.pdf' } })
  t.equal(presign.statusCode, 200)
  t.ok(lines.some(line => line.includes('"url":"/generate-presigned-url?token=[REDACTED]"')), 'the token parameter is logged redacted')
  // A name inside presigned_url is echoed by a 422 message only when it is one we know.
  const repeated = `${url}&${token}=1&${token}=2`
  const refused = await app.inject({ url: `/api/v1/proxy/file?presigned_url=${encodeURIComponent(repeated)}`, headers: auth })
  t.equal(refused.statusCode, 422)
  t.equal(refused.json().message, 'Missing or invalid presigned_url query parameter: presigned_url repeats a parameter')

  const log = lines.join('')
  t.notOk(log.includes(signature), 'no X-Amz-Signature')
  t.notOk(log.includes(token.split('.')[2]), 'no JWT signature')
  t.notOk(refused.body.includes(token.split('.')[2]), 'nor in the 422 body')
})

t.test('a request Node cannot parse is logged at trace without its raw bytes', async t => {
  const s3 = await startTestS3(t)
  const lines: string[] = []
  const app = await buildTestApp(t, s3, { logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  const address = new URL(await app.listen({ host: '127.0.0.1', port: 0 }))
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(address.port), address.hostname, () => {
      socket.end(`GET /health?token=${orgToken('org-1')} HTTP/1.1\r\nAuthorization: Bearer ${orgToken('org-1')}\r\nnot a header\r\n\r\n`)
    })
    let received = ''
    socket.on('data', chunk => { received += String(chunk) })
    socket.on('close', () => { resolve(received) })
    socket.on('error', reject)
  })
  t.match(answer, /^HTTP\/1\.1 400 /)
  const clientError = lines.find(line => line.includes('"msg":"client error"'))
  t.ok(clientError, 'the client error is logged')
  t.notMatch(clientError ?? '', /rawPacket/, 'without the raw request')
  t.match(clientError ?? '', /"code":"HPE_INVALID_HEADER_TOKEN"/, 'with what went wrong')
})
