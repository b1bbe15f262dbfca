/**
 * POST /generate-presigned-url's optional fields and POST
 * /generate-presigned-urls, against a real S3-compatible server.
 */
import t from 'tap'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken } from './helpers/tokens.js'

const auth = (org = 'org-1') => ({ authorization: `Bearer ${orgToken(org)}` })
const TODAY_PARAMS = ['X-Amz-Algorithm', 'X-Amz-Content-Sha256', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-Signature', 'X-Amz-SignedHeaders']

t.test('{key} alone: today\'s URL, plus the true expiresAt', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/a.txt', 'a')
  const before = Date.now()
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(), payload: { key: 'org-1/a.txt' } })
  t.equal(res.statusCode, 200)
  const body = res.json<{ url: string, expiresAt: string }>()
  t.same(Object.keys(body).sort(), ['expiresAt', 'url'])
  const url = new URL(body.url)
  t.same([...url.searchParams.keys()], TODAY_PARAMS, 'exactly today\'s parameters, in today\'s order')
  const date = url.searchParams.get('X-Amz-Date') as string
  const signedAt = Date.parse(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`)
  t.equal(body.expiresAt, new Date(signedAt + 3600_000).toISOString(), 'expiresAt = X-Amz-Date + X-Amz-Expires')
  t.match(body.expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/, 'ISO 8601 UTC')
  t.ok(Date.parse(body.expiresAt) > before + 3598_000 && Date.parse(body.expiresAt) <= Date.now() + 3600_000)
})

t.test('filename, disposition and versionId are signed into the URL', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const presign = async (payload: Record<string, unknown>) => await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(), payload })
  const cases: Array<[Record<string, unknown>, string | null, string | null]> = [
    [{ filename: 'Protocol v2.pdf' }, 'attachment; filename="Protocol v2.pdf"', null],
    [{ filename: 'Prüfplan "final"; v2.pdf', disposition: 'inline' }, 'inline; filename="Pr_fplan _final_; v2.pdf"; filename*=UTF-8\'\'Pr%C3%BCfplan%20%22final%22%3B%20v2.pdf', null],
    [{ disposition: 'inline' }, 'inline; filename="protocol.pdf"', null],
    [{ disposition: 'attachment' }, 'attachment; filename="protocol.pdf"', null],
    [{ versionId: '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY' }, null, '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY'],
    [{ filename: 'x.pdf', versionId: 'null' }, 'attachment; filename="x.pdf"', 'null']
  ]
  for (const [fields, disposition, versionId] of cases) {
    const res = await presign({ key: 'org-1/docs/protocol.pdf', ...fields })
    t.equal(res.statusCode, 200, JSON.stringify(fields))
    const url = new URL(res.json<{ url: string }>().url)
    t.equal(url.searchParams.get('response-content-disposition'), disposition, `${JSON.stringify(fields)}: disposition`)
    t.equal(url.searchParams.get('versionId'), versionId, `${JSON.stringify(fields)}: versionId`)
  }
  const refused: Array<[Record<string, unknown>, number, string]> = [
    [{ filename: 'a/b.pdf' }, 400, 'ARTOS_INVALID_FILENAME'],
    [{ filename: 'a\\b.pdf' }, 400, 'ARTOS_INVALID_FILENAME'],
    [{ filename: 'a\r\nb.pdf' }, 400, 'ARTOS_INVALID_FILENAME'],
    [{ filename: 'evil\u202efdp.exe' }, 400, 'ARTOS_INVALID_FILENAME'],
    [{ filename: 'ü'.repeat(128) }, 400, 'ARTOS_INVALID_FILENAME'],
    [{ filename: '' }, 400, 'FST_ERR_VALIDATION'],
    [{ filename: 42 }, 400, 'FST_ERR_VALIDATION'],
    [{ disposition: 'download' }, 400, 'FST_ERR_VALIDATION'],
    [{ versionId: 'a b' }, 400, 'ARTOS_INVALID_VERSION_ID'],
    [{ versionId: '' }, 400, 'FST_ERR_VALIDATION'],
    [{ expiresIn: 60 }, 400, 'FST_ERR_VALIDATION']
  ]
  for (const [fields, status, code] of refused) {
    const res = await presign({ key: 'org-1/docs/protocol.pdf', ...fields })
    t.equal(res.statusCode, status, JSON.stringify(fields))
    t.equal(res.json().code, code, `${JSON.stringify(fields)}: ${code}`)
  }
  t.equal((await presign({ key: 'org-2/x.pdf', filename: 'x.pdf' })).statusCode, 403, 'another organization, with a name')
})

t.test('a named URL downloads with that Content-Disposition', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/docs/protocol.pdf', '%PDF-1.4 test', 'application/pdf')
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(), payload: { key: 'org-1/docs/protocol.pdf', filename: 'Study protocol.pdf' } })
  const download = await fetch(res.json<{ url: string }>().url)
  t.equal(download.status, 200)
  t.equal(download.headers.get('content-disposition'), 'attachment; filename="Study protocol.pdf"')
  t.equal(await download.text(), '%PDF-1.4 test')
})

interface BatchResult { key: string, url?: string, expiresAt?: string, error?: { statusCode: number, code: string, message: string } }

t.test('batch: per-item results in order, one bad item never fails the others', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/a.txt', 'A')
  await s3.put('org-1/b.txt', 'B')
  const items = [
    { key: 'org-1/a.txt' },
    { key: 'org-2/secret.txt' },
    { key: 'org-1/../org-2/x' },
    { key: 'org-1/b.txt', filename: 'Bee.txt' },
    { key: 'org-1/a.txt' },
    { key: 'org-1/a.txt', filename: 'bad/name' },
    { key: 'org-1/b.txt', versionId: 'not a version' },
    { key: '' }
  ]
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-urls', headers: auth(), payload: { items } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const { results } = res.json<{ results: BatchResult[] }>()
  t.same(results.map(r => r.key), items.map(i => i.key), 'one result per item, in order')
  t.same(results.map(r => r.error?.statusCode ?? 200), [200, 403, 400, 200, 200, 400, 400, 400])
  t.same(results.map(r => r.error?.code ?? null), [null, 'ARTOS_FORBIDDEN_KEY', 'ARTOS_INVALID_KEY', null, null, 'ARTOS_INVALID_FILENAME', 'ARTOS_INVALID_VERSION_ID', 'ARTOS_INVALID_KEY'])
  // Each item gets exactly what it would get alone.
  for (const [i, item] of items.entries()) {
    const alone = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(), payload: item })
    if (alone.statusCode === 200) {
      t.ok(results[i].url !== undefined && results[i].expiresAt !== undefined, `item ${i}: url and expiresAt, as alone`)
    } else {
      t.same(results[i].error, { statusCode: alone.statusCode, code: alone.json().code, message: alone.json().message }, `item ${i}: the error it gets alone`)
    }
  }
  t.not(results[0].url, undefined)
  t.equal(await (await fetch(results[0].url as string)).text(), 'A', 'batch URL downloads')
  t.equal(await (await fetch(results[4].url as string)).text(), 'A', 'duplicate key gets its own working URL')
  const named = await fetch(results[3].url as string)
  t.equal(await named.text(), 'B')
  t.equal(named.headers.get('content-disposition'), 'attachment; filename="Bee.txt"')
})

t.test('batch: the whole request is refused as one item would be', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const post = async (payload: unknown, headers: Record<string, string> = { ...auth(), 'content-type': 'application/json' }) =>
    await app.inject({ method: 'POST', url: '/generate-presigned-urls', headers, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) })
  const thousand = Array.from({ length: 1000 }, (_, i) => ({ key: `org-1/file-${i}.pdf` }))
  const full = await post({ items: thousand })
  t.equal(full.statusCode, 200, '1,000 items')
  t.equal(full.json<{ results: BatchResult[] }>().results.filter(r => r.url !== undefined).length, 1000)
  t.equal((await post({ items: [...thousand, { key: 'org-1/one-more.pdf' }] })).statusCode, 400, '1,001 items')
  t.equal((await post({ items: [] })).statusCode, 400, 'no items')
  t.equal((await post({ items: 'org-1/a' })).statusCode, 400, 'items not an array')
  t.equal((await post({ items: [{ key: 'org-1/a', extra: 1 }] })).statusCode, 400, 'unknown item field')
  t.equal((await post({ keys: ['org-1/a'] })).statusCode, 400, 'unknown body field')
  t.equal((await post('{"items": [')).statusCode, 400, 'malformed JSON')
  t.equal((await post(JSON.stringify({ items: [{ key: 'org-1/a' }] }), { ...auth(), 'content-type': 'text/plain' })).statusCode, 415, 'not application/json')
  t.equal((await post({ items: [{ key: `org-1/${'x'.repeat(1000)}` }] }, { 'content-type': 'application/json' })).statusCode, 401, 'no token')
  const huge = await post({ items: Array.from({ length: 1000 }, () => ({ key: `org-1/${'x'.repeat(4000)}` })) })
  t.equal(huge.statusCode, 413, 'a body past the limit')
})

t.test('batch: N items count as N presigns; a batch that does not fit is refused whole and costs nothing', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { rateLimit: { presignPerMinute: 10, proxyPerMinute: 10 } })
  const batch = async (n: number) => await app.inject({ method: 'POST', url: '/generate-presigned-urls', headers: auth('org-9'), payload: { items: Array.from({ length: n }, (_, i) => ({ key: `org-9/${i}` })) } })
  const single = async () => await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth('org-9'), payload: { key: 'org-9/x' } })
  const first = await batch(6)
  t.equal(first.statusCode, 200, '6 of 10')
  t.equal(first.headers['x-ratelimit-remaining'], '4')
  const tooBig = await batch(5)
  t.equal(tooBig.statusCode, 429, '5 more do not fit in 4')
  t.ok(Number(tooBig.headers['retry-after']) > 0, 'Retry-After')
  t.equal(tooBig.json().code, 'ARTOS_RATE_LIMITED')
  t.equal((await batch(3)).statusCode, 200, 'the refused batch cost nothing: 3 of the 4 left fit')
  t.equal((await single()).statusCode, 200, 'a single presign draws on the same budget: the last one')
  t.equal((await single()).statusCode, 429, 'then the budget is spent')
  t.equal((await batch(1)).statusCode, 429, 'for batches too')
  const other = await app.inject({ method: 'POST', url: '/generate-presigned-urls', headers: auth('org-8'), payload: { items: [{ key: 'org-8/a' }] } })
  t.equal(other.statusCode, 200, 'another organization has its own budget')
})
