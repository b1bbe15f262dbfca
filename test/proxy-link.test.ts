/**
 * Plain-link downloads (GET /api/v1/proxy/link): no token in any URL, and a
 * link grants exactly what its presigned URL grants: one object of our bucket,
 * until its expiry, counted against the organization of the key.
 */
import t from 'tap'
import Fastify from 'fastify'
import { randomBytes } from 'node:crypto'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, TEST_SECRET } from './helpers/tokens.js'
import { artosFiles } from '../src/app.js'
import { loadConfig, ConfigError } from '../src/config.js'

const BASE = 'https://files.example.com'
const auth = (org = 'org-1') => ({ authorization: `Bearer ${orgToken(org)}` })

interface Presigned { url: string, expiresAt: string, proxyUrl?: string }

t.test('off by default: no route, no proxyUrl', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  await s3.put('org-1/a.txt', 'a')
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(), payload: { key: 'org-1/a.txt' } })
  t.notOk('proxyUrl' in res.json(), 'no proxyUrl')
  const link = await app.inject({ method: 'GET', url: `/api/v1/proxy/link?presigned_url=${encodeURIComponent(res.json<Presigned>().url)}` })
  t.equal(link.statusCode, 404)
})

t.test('on: the presign response carries a link that streams the file with no Authorization header', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: BASE } })
  const body = randomBytes(200_000)
  await s3.put('org-1/docs/protocol.pdf', body, 'application/pdf')
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth(), host: 'evil.example', 'x-forwarded-host': 'evil.example' }, payload: { key: 'org-1/docs/protocol.pdf', filename: 'Protocol.pdf' } })
  t.equal(res.statusCode, 200)
  const { url, proxyUrl } = res.json<Presigned>()
  t.equal(proxyUrl, `${BASE}/api/v1/proxy/link?presigned_url=${encodeURIComponent(url)}`, 'built from PUBLIC_BASE_URL, never from Host or X-Forwarded-Host')
  t.notMatch(proxyUrl, /eyJ/, 'no JWT in the link')
  const path = (proxyUrl as string).slice(BASE.length)

  const download = await app.inject({ method: 'GET', url: path })
  t.equal(download.statusCode, 200, 'no Authorization header needed')
  t.same(download.rawPayload, body, 'byte-equal')
  t.equal(download.headers['content-disposition'], 'attachment; filename="Protocol.pdf"', 'the signed name')
  t.equal(download.headers['cache-control'], 'private, no-store')
  t.equal(download.headers['content-security-policy'], "default-src 'none'; sandbox")
  const head = await app.inject({ method: 'HEAD', url: path })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], String(body.length))
  const ranged = await app.inject({ method: 'GET', url: path, headers: { range: 'bytes=0-9' } })
  t.equal(ranged.statusCode, 206)
  t.same(ranged.rawPayload, body.subarray(0, 10))

  const batch = await app.inject({ method: 'POST', url: '/generate-presigned-urls', headers: auth(), payload: { items: [{ key: 'org-1/docs/protocol.pdf' }, { key: 'org-2/x' }] } })
  const results = batch.json<{ results: Array<Presigned & { error?: unknown }> }>().results
  t.equal(results[0].proxyUrl, `${BASE}/api/v1/proxy/link?presigned_url=${encodeURIComponent(results[0].url)}`, 'batch results carry links too')
  t.notOk('proxyUrl' in results[1], 'not for refused items')
})

t.test('a link grants nothing more than its presigned URL', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: BASE } })
  await s3.put('org-1/a.txt', 'a')
  await s3.put('org-1/b.txt', 'b')
  await s3.put('org-2/c.txt', 'c')
  const presign = async (key: string, org = 'org-1') => (await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(org), payload: { key } })).json<Presigned>().url
  const link = async (url: string, headers: Record<string, string> = {}) => await app.inject({ method: 'GET', url: `/api/v1/proxy/link?presigned_url=${encodeURIComponent(url)}`, headers })
  const url = await presign('org-1/a.txt')
  const cases: Array<[string, string, number]> = [
    ['another key under the same signature', url.replace('/org-1/a.txt', '/org-1/b.txt'), 410],
    ['another organization\'s key under the same signature', url.replace('/org-1/a.txt', '/org-2/c.txt'), 410],
    ['a longer life', url.replace('X-Amz-Expires=3600', 'X-Amz-Expires=604800'), 410],
    ['a tampered signature', url.replace(/X-Amz-Signature=(.)/, (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`), 410],
    ['another host', url.replace('127.0.0.1', 'localhost'), 403],
    ['a key with no organization segment', url.replace('/org-1/a.txt', '/a.txt'), 403],
    ['a key whose first segment is no organization id', url.replace('/org-1/a.txt', '/..%2Fx/a.txt'), 403],
    ['not a URL', 'hello', 422]
  ]
  for (const [what, variant, status] of cases) {
    const res = await link(variant)
    t.equal(res.statusCode, status, what)
    t.notMatch(res.body, /^a$|<\?xml/, `${what}: no file, no upstream XML`)
  }
  t.equal((await link('')).statusCode, 422, 'empty')
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/proxy/link' })).statusCode, 422, 'missing')
  t.equal((await link(url)).body, 'a', 'the genuine link works')
  t.equal((await link(url, auth('org-2'))).body, 'a', 'an Authorization header adds nothing and takes nothing away')
  t.equal((await link(await presign('org-2/c.txt', 'org-2'))).body, 'c', 'each organization\'s own links work')

  const shortLived = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: BASE }, expiresIn: 1 })
  const brief = (await shortLived.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(), payload: { key: 'org-1/a.txt' } })).json<Presigned>()
  await new Promise(resolve => setTimeout(resolve, 1100))
  t.equal((await shortLived.inject({ method: 'GET', url: (brief.proxyUrl as string).slice(BASE.length) })).statusCode, 410, 'an expired URL\'s link is expired too')
})

t.test('link downloads count against the key\'s organization, in the same budget as the proxy', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: BASE }, rateLimit: { presignPerMinute: 100, proxyPerMinute: 3 } })
  await s3.put('org-1/a.txt', 'a')
  await s3.put('org-2/a.txt', 'a')
  const presigned = async (org: string) => (await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth(org), payload: { key: `${org}/a.txt` } })).json<Presigned>()
  const one = await presigned('org-1')
  const two = await presigned('org-2')
  const viaLink = async (p: Presigned) => (await app.inject({ method: 'GET', url: (p.proxyUrl as string).slice(BASE.length) })).statusCode
  const viaProxy = async (p: Presigned, org: string) => (await app.inject({ method: 'GET', url: `/api/v1/proxy/file?presigned_url=${encodeURIComponent(p.url)}`, headers: auth(org) })).statusCode
  t.same([await viaLink(one), await viaProxy(one, 'org-1'), await viaLink(one)], [200, 200, 200], 'org-1: 3 of 3')
  const limited = await app.inject({ method: 'GET', url: (one.proxyUrl as string).slice(BASE.length) })
  t.equal(limited.statusCode, 429, 'org-1: the fourth download, by link, is refused')
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After')
  t.equal(await viaProxy(one, 'org-1'), 429, 'and by the proxy')
  t.equal(await viaLink(two), 200, 'org-2 has its own budget')
})

t.test('embedded under a prefix, links carry the prefix', async t => {
  const s3 = await startTestS3(t)
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  await host.register(artosFiles, { prefix: '/files', bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, jwt: { secret: TEST_SECRET }, proxyLinks: { publicBaseUrl: `${BASE}/` } })
  await s3.put('org-1/a.txt', 'a')
  const res = await host.inject({ method: 'POST', url: '/files/generate-presigned-url', headers: auth(), payload: { key: 'org-1/a.txt' } })
  const { proxyUrl } = res.json<Presigned>()
  t.match(proxyUrl, `${BASE}/files/api/v1/proxy/link?presigned_url=`)
  t.equal((await host.inject({ method: 'GET', url: (proxyUrl as string).slice(BASE.length) })).body, 'a')
})

t.test('configuration: PROXY_LINKS needs PUBLIC_BASE_URL', async t => {
  t.throws(() => loadConfig({ PROXY_LINKS: 'true' }), ConfigError)
  t.throws(() => loadConfig({ PROXY_LINKS: 'true', PUBLIC_BASE_URL: 'files.example.com' }), ConfigError, 'a URL, with its scheme')
  t.same(loadConfig({ PROXY_LINKS: 'true', PUBLIC_BASE_URL: BASE }).files.proxyLinks, { publicBaseUrl: BASE })
  t.equal(loadConfig({ PUBLIC_BASE_URL: BASE }).files.proxyLinks, undefined, 'off unless PROXY_LINKS=true')
})
