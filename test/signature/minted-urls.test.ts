/**
 * Presigned URLs minted by software we did not write stream through the proxy
 * when our key signed them: botocore (Debian python3-botocore), `aws s3
 * presign` (Debian awscli) and the AWS SDK for JavaScript v3's getSignedUrl,
 * each with and without response-* and versionId, against Swift, which
 * verifies every signature. Altered copies are refused before any outbound
 * connection (counted on undici's diagnostics channel).
 */
import t from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { randomBytes } from 'node:crypto'
import { externalS3Configured, putTwoVersions, startTestS3, type TestS3 } from '../helpers/s3.js'
import { buildTestApp } from '../helpers/app.js'
import { orgToken } from '../helpers/tokens.js'
import { proxyPath } from '../helpers/presign.js'
import { awsCliPresign, botocorePresign, sdkPresign, type ExtraParams, type Signer } from '../helpers/minting-tools.js'

if (!externalS3Configured()) {
  throw new Error('S3_TEST_ENDPOINT is not set: run `bash scripts/swift-s3.sh start` and export its output (see README)')
}

const auth = { authorization: `Bearer ${orgToken('org-1')}` }
const signerOf = (s3: TestS3): Signer => ({ endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials })

type Mint = (s3: TestS3, key: string, params?: ExtraParams) => Promise<string>
const tools: Array<[string, Mint, boolean]> = [
  ['botocore', async (s3, key, params = {}) => (await botocorePresign(signerOf(s3), [{ key, ...params }]))[0], true],
  ['aws s3 presign', async (s3, key) => await awsCliPresign(signerOf(s3), key), false],
  ['AWS SDK getSignedUrl', async (s3, key, params = {}) => await sdkPresign(signerOf(s3), key, params), true]
]

/** Outbound requests the app makes to `origin` while `fn` runs. */
async function outboundDuring (origin: string, fn: () => Promise<void>): Promise<number> {
  let count = 0
  const onCreate = (message: unknown): void => {
    const { request } = message as { request: { origin: string } }
    if (String(request.origin).startsWith(origin)) count++
  }
  subscribe('undici:request:create', onCreate)
  try {
    await fn()
  } finally {
    unsubscribe('undici:request:create', onCreate)
  }
  return count
}

t.test('URLs from every minting tool stream byte-equal; altered ones are refused with no outbound request', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const key = 'org-1/minted/Prüfplan v2 (final).pdf'
  const body = randomBytes(64 * 1024 + 3)
  await s3.put(key, body, 'application/pdf')

  for (const [tool, mint, extras] of tools) {
    const variants: Array<[string, ExtraParams]> = [['plain', {}]]
    if (extras) variants.push(['response-*', { filenameDisposition: 'attachment; filename="protocol.pdf"', contentType: 'application/pdf' }])
    for (const [label, params] of variants) {
      const url = await mint(s3, key, params)
      const where = `${tool}, ${label}`
      const direct = await fetch(url)
      t.equal(direct.status, 200, `${where}: Swift itself accepts the URL`)
      await direct.arrayBuffer()
      const res = await app.inject({ method: 'GET', url: proxyPath(url), headers: auth })
      t.equal(res.statusCode, 200, `${where}: the proxy streams it`)
      t.same(res.rawPayload, body, `${where}: byte-equal`)
      if (label === 'response-*') t.equal(res.headers['content-disposition'], 'attachment; filename="protocol.pdf"', `${where}: the signed download name is kept`)

      const parsed = new URL(url)
      const name = [...parsed.searchParams.keys()].find(n => !n.startsWith('X-Amz-')) ?? 'X-Amz-Expires'
      const altered = [
        ['a parameter added', `${url}&response-content-type=text%2Fhtml`],
        ['a parameter added', `${url}&versionId=1`],
        ['a parameter removed', url.replace(new RegExp(`[?&]${name}=[^&]*`), m => m.startsWith('?') ? '?' : '')],
        ['a parameter edited', url.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=7200')],
        ['a parameter edited', url.replace(/X-Amz-Date=(\d{8}T\d{4})(\d\d)Z/, (_, head: string, s: string) => `X-Amz-Date=${head}${String((Number(s) + 1) % 60).padStart(2, '0')}Z`)],
        ['the signature edited', url.replace(/X-Amz-Signature=(.)/, (_, c: string) => `X-Amz-Signature=${c === 'a' ? 'b' : 'a'}`)],
        ['another key', url.replace('/minted/', '/minted2/')]
      ]
      const outbound = await outboundDuring(s3.endpoint, async () => {
        for (const [what, variant] of altered) {
          const refused = await app.inject({ method: 'GET', url: proxyPath(variant), headers: auth })
          t.ok([403, 410, 422].includes(refused.statusCode), `${where}, ${what}: refused (${refused.statusCode})`)
        }
      })
      t.equal(outbound, 0, `${where}: no outbound request for any altered URL`)
    }
  }
})

t.test('versionId: every tool\'s URL for an older version streams that version', async t => {
  const s3 = await startTestS3(t)
  const key = 'org-1/versioned/protocol.txt'
  const older = await putTwoVersions(s3, key, 'version one', 'version two')
  const app = await buildTestApp(t, s3)
  t.ok(older, `Swift versions the bucket (${String(older)})`)
  for (const [tool, mint, extras] of tools) {
    if (!extras) continue
    const url = await mint(s3, key, { versionId: older })
    const res = await app.inject({ method: 'GET', url: proxyPath(url), headers: auth })
    t.equal(res.statusCode, 200, `${tool}`)
    t.equal(res.body, 'version one', `${tool}: the older version's bytes`)
  }
})

t.test('a multi-range request is relayed as Swift answers it, never a 502, never an error log line', async t => {
  const s3 = await startTestS3(t)
  const lines: string[] = []
  const app = await buildTestApp(t, s3, { logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
  const body = Buffer.from('0123456789abcdefghij')
  await s3.put('org-1/ranges.bin', body)
  const url = await sdkPresign(signerOf(s3), 'org-1/ranges.bin')
  const res = await app.inject({ method: 'GET', url: proxyPath(url), headers: { ...auth, range: 'bytes=0-1,5-6' } })
  t.ok(res.statusCode === 206 || res.statusCode === 200, `status ${res.statusCode}`)
  if (res.statusCode === 206) {
    t.match(res.headers['content-type'], /^multipart\/byteranges;\s*boundary=/, 'multipart/byteranges with its boundary')
    t.match(res.body, /01[\s\S]*56/, 'both parts in the body')
  } else {
    t.same(res.rawPayload, body, 'or the whole object')
  }
  const errors = lines.map(line => JSON.parse(line) as { level: number }).filter(line => line.level >= 50)
  t.same(errors, [], 'no error-level log line')
})

t.test('a signed response-content-type cannot make the proxy render active content', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/page.html', '<script>alert(1)</script>', 'text/html')
  await s3.put('org-1/report.pdf', '%PDF-1.4', 'application/pdf')
  const cases: Array<[string, ExtraParams, string]> = [
    ['org-1/page.html', { filenameDisposition: 'inline' }, 'attachment; filename="page.html"'],
    ['org-1/report.pdf', { filenameDisposition: 'inline; filename="x.pdf"', contentType: 'text/html' }, 'attachment; filename="x.pdf"'],
    ['org-1/report.pdf', { filenameDisposition: 'inline', contentType: 'image/svg+xml' }, 'attachment; filename="report.pdf"'],
    ['org-1/report.pdf', { filenameDisposition: 'inline; filename="r.pdf"' }, 'inline; filename="r.pdf"'],
    ['org-1/report.pdf', { filenameDisposition: 'attachment; filename="../../etc/passwd"' }, 'attachment; filename="report.pdf"']
  ]
  for (const [key, params, disposition] of cases) {
    const url = (await botocorePresign(signerOf(s3), [{ key, ...params }]))[0]
    const res = await app.inject({ method: 'GET', url: proxyPath(url), headers: auth })
    const where = `${key} ${JSON.stringify(params)}`
    t.equal(res.statusCode, 200, where)
    t.equal(res.headers['content-disposition'], disposition, `${where}: ${disposition}`)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${where}: nosniff`)
    t.equal(res.headers['content-security-policy'], "default-src 'none'; sandbox", `${where}: sandboxed, no script`)
  }
})
