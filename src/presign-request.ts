/**
 * Whether a caller may presign a request: the key (src/object-key.ts), the
 * download name and the version. One check for the single and the batch
 * route, so an item of a batch gets exactly the answer it would get alone.
 */
import { checkKeyForOrg, type KeyVerdict } from './object-key.js'
import type { PresignItem } from './schemas.js'

export const MAX_FILENAME_BYTES = 255

// Controls, path separators, and the bidi controls that make a name display
// as something else ("invoice‮fdp.exe").
// eslint-disable-next-line no-control-regex
const FORBIDDEN_IN_FILENAME = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\]/
/** S3 version ids: base64-like text ("null" for objects written before versioning). */
const VERSION_ID = /^[A-Za-z0-9._+=-]{1,1024}$/

export function checkFilename (filename: string): KeyVerdict {
  if (filename === '' || filename === '.' || filename === '..') return invalid('filename must name a file')
  if (!filename.isWellFormed()) return invalid('filename must be valid Unicode')
  if (Buffer.byteLength(filename, 'utf8') > MAX_FILENAME_BYTES) return invalid(`filename must be at most ${MAX_FILENAME_BYTES} bytes of UTF-8`)
  if (FORBIDDEN_IN_FILENAME.test(filename)) return invalid('filename must not contain "/", "\\", control or bidirectional characters')
  return { ok: true }
}

export function checkVersionId (versionId: string): KeyVerdict {
  return VERSION_ID.test(versionId) ? { ok: true } : invalid('versionId is not an S3 version id')
}

export type PresignVerdict =
  | { ok: true }
  | { ok: false, reason: 'invalid' | 'forbidden', field: 'key' | 'filename' | 'versionId', message: string }

/** Malformed fields are 400 before a key of another organization is 403. */
export function checkPresignRequest (request: PresignItem, org: string): PresignVerdict {
  const key = checkKeyForOrg(request.key, org)
  if (!key.ok && key.reason === 'invalid') return { ...key, field: 'key' }
  if (request.filename !== undefined) {
    const filename = checkFilename(request.filename)
    if (!filename.ok) return { ...filename, field: 'filename' }
  }
  if (request.versionId !== undefined) {
    const version = checkVersionId(request.versionId)
    if (!version.ok) return { ...version, field: 'versionId' }
  }
  return key.ok ? key : { ...key, field: 'key' }
}

function invalid (message: string): KeyVerdict {
  return { ok: false, reason: 'invalid', message }
}
