/**
 * What a browser does with what the proxy and our URLs serve, in Debian's
 * headless Chromium: a PDF asked for inline opens in the PDF viewer; HTML and
 * SVG never run script on our origin, whatever the signed URL asks; a URL
 * presigned with a filename is saved under that name.
 */
import t from 'tap'
import { mkdir, readFile } from 'node:fs/promises'
import { launchChromium } from '../helpers/swagger-ui.js'
import { startTestS3 } from '../helpers/s3.js'
import { buildTestApp } from '../helpers/app.js'
import { orgToken } from '../helpers/tokens.js'
import { proxyPath } from '../helpers/presign.js'
import { onePagePdf } from '../helpers/pdf.js'
import { botocorePresign } from '../helpers/minting-tools.js'

const launch = launchChromium

t.test('inline PDF opens in the viewer; HTML and SVG never run script', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const signer = { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials }
  await s3.put('org-1/protocol.pdf', onePagePdf(), 'application/pdf')
  await s3.put('org-1/page.html', '<!doctype html><script>document.title = "PWNED"; top.postMessage("PWNED", "*")</script>', 'text/html')
  await s3.put('org-1/image.svg', '<svg xmlns="http://www.w3.org/2000/svg"><script>document.title = "PWNED"; top.postMessage("PWNED", "*")</script></svg>', 'image/svg+xml')
  const [inlinePdf, inlineHtml, htmlAsPdf, inlineSvg] = await botocorePresign(signer, [
    { key: 'org-1/protocol.pdf', filenameDisposition: 'inline; filename="protocol.pdf"' },
    { key: 'org-1/page.html', filenameDisposition: 'inline' },
    { key: 'org-1/page.html', filenameDisposition: 'inline', contentType: 'application/pdf' },
    { key: 'org-1/image.svg', filenameDisposition: 'inline' }
  ])

  const browser = await launch(t)
  const context = await browser.newContext({ acceptDownloads: true, extraHTTPHeaders: { authorization: `Bearer ${orgToken('org-1')}` } })
  const page = await context.newPage()

  await mkdir(new URL('../../artifacts/', import.meta.url), { recursive: true })
  await page.goto(`${address}${proxyPath(inlinePdf)}`)
  // Page scripts are strings: this project's TypeScript has no DOM types.
  const viewer = await page.evaluate('document.contentType')
  t.equal(viewer, 'application/pdf', 'the PDF opens in Chromium\'s viewer, not as a download')
  await page.waitForTimeout(1000)
  await page.screenshot({ path: new URL('../../artifacts/inline-pdf.png', import.meta.url).pathname })

  const cases = [['HTML asked inline', inlineHtml, true], ['SVG asked inline', inlineSvg, true], ['HTML signed as application/pdf', htmlAsPdf, false]] as const
  for (const [what, url, isDownload] of cases) {
    // Top-level navigation: never a rendered page. Active types download; HTML
    // bytes labelled PDF go to the PDF viewer (nosniff), which runs no script.
    const downloaded = isDownload ? page.waitForEvent('download', { timeout: 10_000 }) : undefined
    await page.goto(`${address}${proxyPath(url)}`).catch(() => {})
    if (downloaded !== undefined) t.ok(await downloaded, `${what}: navigating to it downloads it`)
    else t.equal(await page.evaluate('document.contentType'), 'application/pdf', `${what}: a PDF document (the viewer), not HTML`)
    t.not(await page.title(), 'PWNED', `${what}: no script ran at the top level`)
    // Framed by a page of our own origin: nothing runs either.
    await page.goto(`${address}/documentation/`)
    await page.evaluate("window.seen = []; window.addEventListener('message', e => { window.seen.push(e.data) })")
    await page.evaluate(`new Promise(resolve => {
      const frame = document.createElement('iframe')
      frame.src = ${JSON.stringify(`${address}${proxyPath(url)}`)}
      frame.onload = resolve
      document.body.append(frame)
      setTimeout(resolve, 3000)
    })`)
    const seen = await page.evaluate('window.seen')
    t.same(seen, [], `${what}: framed on our origin, no script ran`)
    t.not(await page.title(), 'PWNED', `${what}: the page title is untouched`)
  }
})

t.test('a URL presigned with a filename is saved under that name', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const contents = onePagePdf('named')
  await s3.put('org-1/docs/3f9a2c.pdf', contents, 'application/pdf')
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/docs/3f9a2c.pdf', filename: 'Study protocol – v2.pdf' } })
  const { url } = res.json<{ url: string }>()
  const browser = await launch(t)
  const page = await browser.newPage({ acceptDownloads: true })
  await page.setContent(`<a id="file" href="${url.replaceAll('&', '&amp;').replaceAll('"', '&quot;')}">download</a>`)
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#file')])
  t.equal(download.suggestedFilename(), 'Study protocol – v2.pdf', 'saved under the requested name')
  t.same(await readFile(await download.path()), contents, 'the bytes')
})

t.test('a plain proxy link in <a href download> saves the file; the page\'s script never touches the body', async t => {
  const s3 = await startTestS3(t)
  // Links are built from the public base URL, so the port is chosen first.
  const probe = await buildTestApp(t, s3)
  const port = Number(new URL(await probe.listen({ host: '127.0.0.1', port: 0 })).port)
  await probe.close()
  const base = `http://127.0.0.1:${port}`
  const app = await buildTestApp(t, s3, { proxyLinks: { publicBaseUrl: base } })
  await app.listen({ host: '127.0.0.1', port })
  const contents = onePagePdf('linked')
  await s3.put('org-1/docs/91c2.pdf', contents, 'application/pdf')
  const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken('org-1')}` }, payload: { key: 'org-1/docs/91c2.pdf', filename: 'Clinical protocol.pdf' } })
  const { proxyUrl } = res.json<{ proxyUrl: string }>()
  t.match(proxyUrl, `${base}/api/v1/proxy/link?presigned_url=`)

  const browser = await launch(t)
  const page = await browser.newPage({ acceptDownloads: true })
  const scripted: string[] = []
  page.on('request', request => {
    if (request.url().includes('/api/v1/proxy/') && ['fetch', 'xhr'].includes(request.resourceType())) scripted.push(request.url())
  })
  await page.goto(`${base}/documentation/`)
  await page.evaluate(`(() => {
    const a = document.createElement('a')
    a.id = 'file'
    a.href = ${JSON.stringify(proxyUrl)}
    a.download = ''
    a.textContent = 'Download'
    document.body.prepend(a)
  })()`)
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#file')])
  t.equal(download.suggestedFilename(), 'Clinical protocol.pdf', 'saved under the signed name')
  t.same(await readFile(await download.path()), contents, 'byte-equal')
  t.same(scripted, [], 'no fetch or XHR read the file: the browser streamed it to disk')
})
