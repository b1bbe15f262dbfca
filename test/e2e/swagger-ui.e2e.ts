/**
 * Swagger UI as a person uses it, in a real headless Chromium: Authorize with
 * a bearer token, "Try it out" on both operations, and check that the URL the
 * UI shows downloads the file and that the proxy operation streams it.
 * Needs Debian's chromium (/usr/bin/chromium or CHROMIUM_PATH); run with
 * `npm run test:e2e`. Screenshots go to artifacts/ (git-ignored).
 */
import t from 'tap'
import { mkdir, readFile } from 'node:fs/promises'
import { startTestS3 } from '../helpers/s3.js'
import { buildTestApp } from '../helpers/app.js'
import { orgToken } from '../helpers/tokens.js'
import { authorize, launchChromium, tryItOut } from '../helpers/swagger-ui.js'

const ARTIFACTS = new URL('../../artifacts/', import.meta.url)

t.test('Swagger UI: Authorize, then Try it out on every operation', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const key = 'org-1/documents/protocol.pdf'
  const contents = Buffer.from('%PDF-1.4 pretend protocol\n')
  await s3.put(key, contents, 'application/pdf')

  const browser = await launchChromium(t)
  const page = await browser.newPage({ viewport: { width: 1280, height: 2000 }, acceptDownloads: true })
  const external: string[] = []
  page.on('request', request => {
    const url = new URL(request.url())
    if (url.origin !== address && url.protocol !== 'data:' && url.protocol !== 'blob:') external.push(request.url())
  })
  await mkdir(ARTIFACTS, { recursive: true })

  await page.goto(`${address}/documentation/`)
  await page.waitForSelector('#operations-Files-generatePresignedUrl')
  await authorize(page, orgToken('org-1'))

  const presign = await tryItOut(page, '#operations-Files-generatePresignedUrl', async operation => {
    await operation.locator('textarea.body-param__text').fill(JSON.stringify({ key }))
  })
  t.equal(presign.status, '200', 'presign answered 200 in the UI')
  const shown = await presign.operation.locator('.live-responses-table .response-col_description pre').first().innerText()
  const { url } = JSON.parse(shown) as { url: string }
  t.match(url, /X-Amz-Expires=3600/)
  await page.screenshot({ path: new URL('swagger-ui-presign.png', ARTIFACTS).pathname, fullPage: true })
  const download = await fetch(url)
  t.equal(download.status, 200, 'the URL from the UI downloads without an auth header')
  t.same(Buffer.from(await download.arrayBuffer()), contents, 'the right bytes')

  const proxy = await tryItOut(page, '#operations-Files-proxyPresignedFile', async operation => {
    await operation.locator('tr[data-param-name="presigned_url"] input').fill(url)
  })
  t.equal(proxy.status, '200', 'the proxy answered 200 in the UI')
  const link = proxy.operation.locator('.live-responses-table a[download]').first()
  await link.waitFor({ timeout: 10_000 })
  t.equal(await link.getAttribute('download'), 'protocol.pdf', 'offered as a download named after the key')
  const [saved] = await Promise.all([page.waitForEvent('download'), link.click()])
  t.equal(saved.suggestedFilename(), 'protocol.pdf')
  t.same(await readFile(await saved.path()), contents, 'the file the browser saved is the file')
  await page.screenshot({ path: new URL('swagger-ui-proxy.png', ARTIFACTS).pathname, fullPage: true })

  const batch = await tryItOut(page, '#operations-Files-generatePresignedUrls', async operation => {
    await operation.locator('textarea.body-param__text').fill(JSON.stringify({ items: [{ key, filename: 'Protocol (final).pdf' }, { key: 'org-2/not-mine.pdf' }] }))
  })
  t.equal(batch.status, '200', 'the batch answered 200 in the UI')
  const batchShown = await batch.operation.locator('.live-responses-table .response-col_description pre').first().innerText()
  const { results } = JSON.parse(batchShown) as { results: Array<{ key: string, url?: string, error?: { statusCode: number } }> }
  t.same(results.map(r => r.error?.statusCode ?? 200), [200, 403], 'one result per item, in order')
  const named = await fetch(results[0].url as string)
  t.equal(named.headers.get('content-disposition'), 'attachment; filename="Protocol (final).pdf"', 'the batch URL from the UI carries the download name')
  t.same(Buffer.from(await named.arrayBuffer()), contents)
  await page.screenshot({ path: new URL('swagger-ui-batch.png', ARTIFACTS).pathname, fullPage: true })

  t.same(external, [], 'the page loaded nothing from the internet')
})
