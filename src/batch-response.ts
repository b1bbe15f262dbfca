/**
 * The 200 body of POST /generate-presigned-urls (GeneratePresignedUrlsResponse),
 * written as bytes. Why by hand: for a batch of 1,000 the body and its URLs were
 * a third of the server's CPU as JS strings (each ~460-byte item concatenated,
 * flattened, then UTF-8-copied into a Buffer; fast-json-stringify, before that,
 * also scanned every URL for characters to escape). Here an item with no name,
 * disposition or version is copied into one Buffer from byte pieces shared by
 * the whole batch plus its key, and signed from bytes (PresignBatch.plain): no
 * per-URL string but the signature's hex. Other items, and every item when the
 * server hands out proxy links, are built as strings as before.
 *
 * The bytes are those JSON.stringify would write for the object form
 * (test/batch-response.test.ts). A URL of ours needs no escaping past its
 * origin: the key's path and the query are RFC 3986-encoded or hex.
 */
import type { PresignBatch } from './presigned-get.js'
import { encodeKeyPath, isPlainRequest } from './presigned-get.js'
import type { PresignVerdict } from './presign-request.js'
import type { PresignItem } from './schemas.js'
import { presignError } from './errors.js'
import { writeLatin1 } from './latin1-write.js'

const QUOTE = 0x22
const FIRST_KEY = Buffer.from('{"key":', 'latin1')
const NEXT_KEY = Buffer.from(',{"key":', 'latin1')

export function batchResultsJson (items: PresignItem[], verdicts: PresignVerdict[], batch: PresignBatch, linkFor: ((url: string) => string) | undefined): Buffer {
  const { plain } = batch
  // One instant per batch: one expiry to format.
  const expiresAt = batch.expiresAt.toISOString()
  const urlHead = Buffer.from(`,"url":"${jsonChars(plain.origin)}`, 'utf8')
  const query = Buffer.from(plain.query, 'utf8')
  const urlTail = Buffer.from(`${plain.tail}","expiresAt":"${expiresAt}"}`, 'utf8')
  const plainBytes = urlHead.length + query.length + 64 + urlTail.length
  // A handful of distinct refusals: each error body is written once.
  const refusals = new Map<string, string>()

  let out = Buffer.allocUnsafe(64 + items.length * (plainBytes + 128))
  let at = out.write('{"results":[', 0, 'latin1')
  function room (bytes: number): void {
    if (at + bytes <= out.length) return
    const grown = Buffer.allocUnsafe(Math.max(2 * out.length, at + bytes))
    out.copy(grown, 0, 0, at)
    out = grown
  }

  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    const verdict = verdicts[i]
    const comma = i === 0 ? '' : ','
    if (verdict.ok && linkFor === undefined && isPlainRequest(item)) {
      const path = encodeKeyPath(item.key)
      // The same string back means every character is unreserved: the key is its own JSON.
      const key = path === item.key ? undefined : JSON.stringify(item.key)
      room(12 + (key === undefined ? path.length + 2 : 3 * key.length) + path.length + plainBytes)
      const head = i === 0 ? FIRST_KEY : NEXT_KEY
      out.set(head, at)
      at += head.length
      if (key === undefined) {
        out[at++] = QUOTE
        at += writeLatin1(out, path, at)
        out[at++] = QUOTE
        out.set(urlHead, at)
        // Copying bytes within the buffer costs a third of writing the string again.
        out.copyWithin(at + urlHead.length, at - path.length - 1, at - 1)
        at += urlHead.length + path.length
      } else {
        at += out.write(key, at, 'utf8')
        out.set(urlHead, at)
        at += urlHead.length
        at += writeLatin1(out, path, at)
      }
      out.set(query, at)
      at += query.length
      at += writeLatin1(out, plain.signature(path), at)
      out.set(urlTail, at)
      at += urlTail.length
      continue
    }
    const key = JSON.stringify(item.key)
    let json
    if (verdict.ok) {
      const { url } = batch.sign(item)
      const proxyUrl = linkFor === undefined ? '' : `,"proxyUrl":${JSON.stringify(linkFor(url))}`
      json = `${comma}{"key":${key},"url":"${jsonChars(url)}","expiresAt":"${expiresAt}"${proxyUrl}}`
    } else {
      const refusal = `${verdict.reason}/${verdict.field}/${verdict.message}`
      let error = refusals.get(refusal)
      if (error === undefined) {
        const { statusCode, code, message } = presignError(verdict)
        error = JSON.stringify({ statusCode: statusCode ?? 400, code, message })
        refusals.set(refusal, error)
      }
      json = `${comma}{"key":${key},"error":${error}}`
    }
    room(3 * json.length)
    at += out.write(json, at, 'utf8')
  }
  room(2)
  at += out.write(']}', at, 'latin1')
  return out.subarray(0, at)
}

/** A URL's characters as a JSON string's content: escaped only when it holds '"' or '\\' (hosts may; see above). */
function jsonChars (url: string): string {
  return url.includes('"') || url.includes('\\') ? JSON.stringify(url).slice(1, -1) : url
}
