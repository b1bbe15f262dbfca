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

/**
 * Every proxied response: no script, no plugins, no subresources, whatever the
 * bytes are. Chromium's PDF viewer still renders an inline PDF under it
 * (test/e2e/downloads.e2e.ts).
 */
export const DOWNLOAD_CSP = "default-src 'none'; sandbox"

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
    contentDisposition: contentDisposition(name, inline ? 'inline' : 'attachment')
  }
}
