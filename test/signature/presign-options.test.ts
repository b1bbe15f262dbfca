/**
 * Download names, inline disposition, versions and batches against Swift,
 * which verifies every signature: S3 itself answers with the
 * Content-Disposition we signed, and a pinned version's bytes.
 */
import t from 'tap'
import { externalS3Configured, putTwoVersions, startTestS3 } from '../helpers/s3.js'
import { buildTestApp } from '../helpers/app.js'
import { orgToken } from '../helpers/tokens.js'
import { contentDisposition } from '../../src/content-disposition.js'

if (!externalS3Configured()) {
  throw new Error('S3_TEST_ENDPOINT is not set: run `bash scripts/swift-s3.sh start` and export its output (see README)')
}

const auth = { authorization: `Bearer ${orgToken('org-1')}` }

t.test('filename and disposition: S3 answers with exactly the signed Content-Disposition', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/docs/protocol.pdf', '%PDF-1.4 protocol', 'application/pdf')
  const cases: Array<[string | undefined, 'attachment' | 'inline' | undefined]> = [
    ['Study protocol.pdf', undefined],
    ['Prüfplan – 報告書 ✓.pdf', undefined],
    ['quote"semi;colon\'s, 100%.pdf', 'attachment'],
    ['Study protocol.pdf', 'inline'],
    [undefined, 'inline']
  ]
  for (const [filename, disposition] of cases) {
    const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth, payload: { key: 'org-1/docs/protocol.pdf', ...(filename === undefined ? {} : { filename }), ...(disposition === undefined ? {} : { disposition }) } })
    t.equal(res.statusCode, 200)
    const download = await fetch(res.json<{ url: string }>().url)
    const where = `${String(filename)} ${String(disposition)}`
    t.equal(download.status, 200, `${where}: Swift accepts the signature`)
    t.equal(await download.text(), '%PDF-1.4 protocol')
    t.equal(download.headers.get('content-disposition'), contentDisposition(filename ?? 'protocol.pdf', disposition ?? 'attachment'), `${where}: exactly as asked`)
  }
})

t.test('versionId: the URL of an older version downloads that version, directly and through the proxy', async t => {
  const s3 = await startTestS3(t)
  const key = 'org-1/versioned/plan.txt'
  const older = await putTwoVersions(s3, key, 'draft', 'final')
  const app = await buildTestApp(t, s3)
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth, payload: { key, versionId: older, filename: 'plan (draft).txt' } })
  t.equal(res.statusCode, 200)
  const { url } = res.json<{ url: string }>()
  t.equal(await (await fetch(url)).text(), 'draft', 'the pinned version')
  const latest = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth, payload: { key } })
  t.equal(await (await fetch(latest.json<{ url: string }>().url)).text(), 'final', 'no version: the latest')
  const proxied = await app.inject({ method: 'GET', url: `/api/v1/proxy/file?presigned_url=${encodeURIComponent(url)}`, headers: auth })
  t.equal(proxied.statusCode, 200)
  t.equal(proxied.body, 'draft', 'through the proxy too')
  t.equal(proxied.headers['content-disposition'], contentDisposition('plan (draft).txt'), 'with the signed name')
})

t.test('every URL of a batch downloads', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const keys = Array.from({ length: 25 }, (_, i) => `org-1/batch/${i} – ü.txt`)
  for (const key of keys) await s3.put(key, `body of ${key}`)
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-urls', headers: auth, payload: { items: keys.map((key, i) => ({ key, ...(i % 2 === 0 ? { filename: `named ${i}.txt` } : {}) })) } })
  t.equal(res.statusCode, 200)
  const { results } = res.json<{ results: Array<{ key: string, url: string }> }>()
  for (const [i, result] of results.entries()) {
    const download = await fetch(result.url)
    t.equal(download.status, 200, result.key)
    t.equal(await download.text(), `body of ${keys[i]}`)
    if (i % 2 === 0) t.equal(download.headers.get('content-disposition'), contentDisposition(`named ${i}.txt`))
  }
})
