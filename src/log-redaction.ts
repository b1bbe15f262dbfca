/**
 * Presigned URLs and tokens are credentials, and a client can paste one
 * anywhere in a URL: as any parameter's value, as a parameter's name, as a path
 * segment, percent-encoded any number of times. Recognizing every shape of
 * secret is a losing game, so `redactUrl` keeps only what is plainly harmless:
 *
 * - query values are never kept: `name=[REDACTED]` (an empty value stays empty);
 * - a parameter name or path segment is kept only when, percent-decoded once, it
 *   is 1-32 characters of [A-Za-z0-9._~-] (names may also use `[` `]`), else it
 *   becomes [REDACTED]. No credential fits: a SigV4 signature is 64 hex digits,
 *   a credential scope has slashes, a session token is hundreds of characters,
 *   a signed JWT's signature segment alone is at least 43;
 * - a path naming a SigV4 scope (`…/aws4_request`) is not kept at all, since its
 *   plain segments would spell the credential out;
 * - the fragment is never kept; past 20 segments or parameters, only a count.
 */

export const REDACTED = '[REDACTED]'

const PLAIN_SEGMENT = /^[A-Za-z0-9._~-]{1,32}$/
const PLAIN_NAME = /^[A-Za-z0-9._~[\]-]{1,32}$/
/** Longer than any plain text percent-encoded: not worth decoding. */
const MAX_ENCODED_LENGTH = 32 * 3
const MAX_PARTS = 20

function plainOrRedacted (raw: string, plain: RegExp): string {
  if (raw === '') return ''
  if (raw.length > MAX_ENCODED_LENGTH) return REDACTED
  let decoded: string
  try { decoded = decodeURIComponent(raw) } catch { return REDACTED }
  return plain.test(decoded) ? decoded : REDACTED
}

function withCount (kept: string[], total: number, separator: string): string {
  return kept.join(separator) + (total > kept.length ? `${separator}[${total - kept.length} more]` : '')
}

function redactPath (path: string): string {
  const segments = path.split('/')
  const kept = segments.slice(0, MAX_PARTS).map(segment => plainOrRedacted(segment, PLAIN_SEGMENT))
  if (kept.some(segment => segment.toLowerCase().includes('aws4_request'))) return `/${REDACTED}`
  return withCount(kept, segments.length, '/')
}

function redactQuery (query: string): string {
  const pairs = query.split('&')
  const kept = pairs.slice(0, MAX_PARTS).map(pair => {
    const eq = pair.indexOf('=')
    if (eq === -1) return plainOrRedacted(pair, PLAIN_NAME)
    return `${plainOrRedacted(pair.slice(0, eq), PLAIN_NAME)}=${eq === pair.length - 1 ? '' : REDACTED}`
  })
  return withCount(kept, pairs.length, '&')
}

/** The URL as it may be logged or echoed: see the rules above. */
export function redactUrl (url: string): string {
  const end = url.search(/[?#]/)
  if (end === -1) return redactPath(url)
  const hash = url.indexOf('#', end)
  let redacted = redactPath(url.slice(0, end))
  if (url[end] === '?') redacted += `?${redactQuery(url.slice(end + 1, hash === -1 ? undefined : hash))}`
  if (hash !== -1) redacted += `#${REDACTED}`
  return redacted
}

/** pino serializers for Fastify's request log lines: method, redacted URL, and nothing from the headers. */
export const logSerializers = {
  req (request: { method: string, url: string, id?: string, ip?: string }) {
    return { method: request.method, url: redactUrl(request.url), id: request.id, remoteAddress: request.ip }
  }
}

/**
 * pino `redact` option: Node's HTTP parse errors carry the raw request bytes
 * (request line and Authorization header included) as `rawPacket`, and Fastify
 * logs them at trace level as "client error".
 */
export const logRedact = { paths: ['err.rawPacket'], remove: true }

/** A JWT: base64url JSON (`{"` is `eyJ`), then two more dot-separated segments. */
const JWT_SHAPE = /eyJ[\w-]*\.[\w-]*\./

/** For identifiers logged as they are (request ids): false when one looks like a token. */
export function looksLikeJwt (text: string): boolean {
  return JWT_SHAPE.test(text)
}
