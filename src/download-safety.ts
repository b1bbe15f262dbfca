/**
 * How a proxied file is presented to the browser. The proxy serves other
 * people's bytes from our origin, so our rules win over whatever a signed URL
 * asks for: only passive types (PDF, raster images, plain text, audio, video)
 * may be shown inline; everything else (HTML, SVG, XML, JavaScript, unknown)
 * is always a download, and nothing is ever sniffed or allowed to run script.
 */
import { contentDisposition, parseContentDisposition } from './content-disposition.js'
import { checkFilename } from './presign-request.js'

const PASSIVE_TYPES = new Set(['application/pdf', 'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp', 'text/plain'])
const PASSIVE_FAMILIES = /^(audio|video)\/[a-z0-9][a-z0-9!#$&^_.+-]*$/

/** For a download: no script, no plugins, no subresources, whatever the bytes are. */
export const ATTACHMENT_CSP = "default-src 'none'; sandbox"
/**
 * For a passive type shown inline. Chromium's PDF viewer does not load in a
 * sandboxed document, so PDFs get no `sandbox`; `default-src 'none'` still
 * forbids script, and only the listed types are ever inline.
 */
export const INLINE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; object-src 'self'; style-src 'unsafe-inline'"

export function mediaTypeEssence (contentType: string): string {
  return contentType.split(';')[0].trim().toLowerCase()
}

export function isPassiveType (contentType: string): boolean {
  const essence = mediaTypeEssence(contentType)
  return PASSIVE_TYPES.has(essence) || PASSIVE_FAMILIES.test(essence)
}

export interface DownloadPresentation {
  contentType: string
  contentDisposition: string
  contentSecurityPolicy: string
}

/**
 * @param key the object's key (its last segment is the default name)
 * @param contentType what S3 answered with (a signed `response-content-type` already applied)
 * @param requested a signed `response-content-disposition`, if the URL carries one
 */
export function presentDownload (key: string, contentType: string | undefined, requested: string | undefined): DownloadPresentation {
  const type = contentType === undefined || contentType.trim() === '' ? 'application/octet-stream' : contentType
  const asked = requested === undefined ? undefined : parseContentDisposition(requested)
  const fallbackName = key.slice(key.lastIndexOf('/') + 1)
  const name = asked?.filename !== undefined && checkFilename(asked.filename).ok ? asked.filename : fallbackName
  const inline = asked?.type === 'inline' && isPassiveType(type)
  return {
    contentType: type,
    contentDisposition: contentDisposition(name, inline ? 'inline' : 'attachment'),
    contentSecurityPolicy: inline ? INLINE_CSP : ATTACHMENT_CSP
  }
}
