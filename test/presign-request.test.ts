/**
 * The presign request check (key, download name, version) and the headers it
 * turns into: tables for every rule, properties for what must always hold.
 */
import t from 'tap'
import fc from 'fast-check'
import { checkFilename, checkPresignRequest, checkVersionId, MAX_FILENAME_BYTES } from '../src/presign-request.js'
import { contentDisposition, parseContentDisposition } from '../src/content-disposition.js'
import { requestedDisposition } from '../src/presigned-get.js'
import { presentDownload } from '../src/download-safety.js'

const reasonOf = (verdict: { ok: boolean, reason?: string }): string => verdict.ok ? 'ok' : verdict.reason as string

t.test('filenames', async t => {
  const accepted = ['protocol.pdf', 'Prüfplan (final) v2.pdf', '報告書.pdf', 'a', 'quote"semi;colon.pdf', "it's 100% done.txt", '😀.png', 'x'.repeat(MAX_FILENAME_BYTES), 'ü'.repeat(MAX_FILENAME_BYTES / 2 | 0), '.hidden', '...']
  for (const name of accepted) t.equal(reasonOf(checkFilename(name)), 'ok', JSON.stringify(name))
  const refused = ['', '.', '..', 'a/b.pdf', 'a\\b.pdf', 'line\r\nbreak.pdf', 'nul\u0000.pdf', 'tab\t.pdf', 'del\u007f.pdf', 'c1\u0085.pdf', 'invoice\u202efdp.exe', 'isolate\u2066x\u2069.pdf', 'mark\u200f.pdf', 'x'.repeat(MAX_FILENAME_BYTES + 1), 'ü'.repeat(128), 'lone\ud800surrogate']
  for (const name of refused) t.equal(reasonOf(checkFilename(name)), 'invalid', JSON.stringify(name))
})

t.test('version ids', async t => {
  for (const id of ['null', '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nrjfkd', '1796082035.33165', 'a_b-c=', 'v'.repeat(1024)]) t.equal(reasonOf(checkVersionId(id)), 'ok', id)
  for (const id of ['', ' ', 'a b', 'a/b', 'a&b', 'a?b', 'a#b', 'v'.repeat(1025), 'ü', 'a\nb']) t.equal(reasonOf(checkVersionId(id)), 'invalid', JSON.stringify(id))
})

t.test('a request: invalid fields are 400 before another organization is 403', async t => {
  t.same(checkPresignRequest({ key: 'org-1/a.pdf' }, 'org-1'), { ok: true })
  t.match(checkPresignRequest({ key: 'org-2/a.pdf' }, 'org-1'), { ok: false, reason: 'forbidden', field: 'key' })
  t.match(checkPresignRequest({ key: 'org-2/a.pdf', filename: 'a/b' }, 'org-1'), { ok: false, reason: 'invalid', field: 'filename' })
  t.match(checkPresignRequest({ key: 'org-2/a.pdf', versionId: 'a b' }, 'org-1'), { ok: false, reason: 'invalid', field: 'versionId' })
  t.match(checkPresignRequest({ key: '../x', filename: 'a/b' }, 'org-1'), { ok: false, reason: 'invalid', field: 'key' })
  t.match(checkPresignRequest({ key: 'org-1/a.pdf', filename: 'ok.pdf', versionId: 'bad id' }, 'org-1'), { ok: false, field: 'versionId' })
})

t.test('Content-Disposition: quotes, semicolons, CRLF and Unicode never break out of the value', async t => {
  t.equal(contentDisposition('protocol.pdf'), 'attachment; filename="protocol.pdf"')
  t.equal(contentDisposition('protocol.pdf', 'inline'), 'inline; filename="protocol.pdf"')
  t.equal(contentDisposition('a"b;c.pdf'), 'attachment; filename="a_b;c.pdf"; filename*=UTF-8\'\'a%22b%3Bc.pdf')
  t.equal(contentDisposition('Prüfplan.pdf'), 'attachment; filename="Pr_fplan.pdf"; filename*=UTF-8\'\'Pr%C3%BCfplan.pdf')
  t.equal(contentDisposition('a\r\nSet-Cookie: x=1'), 'attachment; filename="a__Set-Cookie: x=1"; filename*=UTF-8\'\'a%0D%0ASet-Cookie%3A%20x%3D1')
  const name = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }).filter(s => s.isWellFormed())
  fc.assert(fc.property(name, fc.constantFrom('attachment' as const, 'inline' as const), (filename, type) => {
    const header = contentDisposition(filename, type)
    // One header line of visible ASCII; the quoted fallback has no quote or backslash inside.
    if (!/^[\x20-\x7e]+$/.test(header)) return false
    const quoted = /^(attachment|inline); filename="([^"\\]*)"(; filename\*=UTF-8''[A-Za-z0-9!#$&+.^_`|~%-]+)?$/.exec(header)
    if (quoted === null || quoted[1] !== type) return false
    // What a reader takes from it is exactly the name.
    const parsed = parseContentDisposition(header)
    return parsed.type === type && parsed.filename === filename
  }), { numRuns: 3000 })
  t.pass('3000 generated names: one safe header line that reads back as the name')
})

t.test('parsing a disposition someone else signed', async t => {
  t.same(parseContentDisposition('inline'), { type: 'inline' })
  t.same(parseContentDisposition('INLINE; filename=x.pdf'), { type: 'inline', filename: 'x.pdf' })
  t.same(parseContentDisposition('attachment; filename="a;b\\"c.pdf"'), { type: 'attachment', filename: 'a;b"c.pdf' })
  t.same(parseContentDisposition("attachment; filename=\"fallback.pdf\"; filename*=utf-8''%E5%A0%B1%E5%91%8A.pdf"), { type: 'attachment', filename: '報告.pdf' })
  t.same(parseContentDisposition("attachment; filename*=iso-8859-1''%E4.pdf"), { type: 'attachment' }, 'charsets other than UTF-8 are not guessed')
  t.same(parseContentDisposition("attachment; filename*=UTF-8''%E4%ZZ.pdf; filename=b.pdf"), { type: 'attachment', filename: 'b.pdf' }, 'broken filename* falls back')
  t.same(parseContentDisposition('form-data; name=x'), { type: 'attachment' }, 'unknown types read as attachment')
  t.same(parseContentDisposition(''), { type: 'attachment' })
})

t.test('what a presign request signs as response-content-disposition', async t => {
  t.equal(requestedDisposition({ key: 'org-1/a/protocol.pdf' }), undefined, 'nothing asked, nothing signed')
  t.equal(requestedDisposition({ key: 'org-1/a/protocol.pdf', filename: 'Plan.pdf' }), 'attachment; filename="Plan.pdf"', 'attachment is the default with a name')
  t.equal(requestedDisposition({ key: 'org-1/a/protocol.pdf', disposition: 'inline' }), 'inline; filename="protocol.pdf"', 'inline alone keeps the key\'s name')
  t.equal(requestedDisposition({ key: 'org-1/a/protocol.pdf', filename: 'Plan.pdf', disposition: 'inline' }), 'inline; filename="Plan.pdf"')
})

t.test('how the proxy presents a download: our rules win over the signed URL', async t => {
  const cases: Array<[string | undefined, string | undefined, string]> = [
    ['application/pdf', undefined, 'attachment; filename="q3.pdf"'],
    ['application/pdf', 'inline', 'inline; filename="q3.pdf"'],
    ['application/PDF; x=1', 'inline; filename="r.pdf"', 'inline; filename="r.pdf"'],
    ['image/png', 'inline', 'inline; filename="q3.pdf"'],
    ['text/plain; charset=utf-8', 'inline', 'inline; filename="q3.pdf"'],
    ['video/mp4', 'inline', 'inline; filename="q3.pdf"'],
    ['audio/mpeg', 'inline', 'inline; filename="q3.pdf"'],
    ['text/html', 'inline', 'attachment; filename="q3.pdf"'],
    ['image/svg+xml', 'inline', 'attachment; filename="q3.pdf"'],
    ['application/xhtml+xml', 'inline', 'attachment; filename="q3.pdf"'],
    ['text/xml', 'inline', 'attachment; filename="q3.pdf"'],
    ['application/javascript', 'inline', 'attachment; filename="q3.pdf"'],
    ['application/octet-stream', 'inline', 'attachment; filename="q3.pdf"'],
    [undefined, 'inline', 'attachment; filename="q3.pdf"'],
    ['video/../../text/html', 'inline', 'attachment; filename="q3.pdf"'],
    ['application/pdf', 'attachment; filename="../../etc/passwd"', 'attachment; filename="q3.pdf"'],
    ['application/pdf', 'attachment; filename="evil\u202efdp.exe"', 'attachment; filename="q3.pdf"']
  ]
  for (const [type, requested, disposition] of cases) {
    const shown = presentDownload('org-1/reports/q3.pdf', type, requested)
    t.equal(shown.contentDisposition, disposition, `${String(type)} + ${String(requested)}`)
  }
  t.equal(presentDownload('org-1/a', undefined, undefined).contentType, 'application/octet-stream')
})
