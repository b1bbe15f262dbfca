/**
 * Presigned URLs and tokens are credentials. Fastify logs `req.url` with its
 * query string, so every URL we log goes through `redactUrl` first.
 */

/** Query parameters whose values are secrets (compared case-insensitively). */
const SECRET_PARAMS = new Set(['presigned_url', 'x-amz-signature', 'x-amz-credential', 'x-amz-security-token'])

export function redactUrl (url: string): string {
  const queryStart = url.indexOf('?')
  if (queryStart === -1) return url
  const hashStart = url.indexOf('#', queryStart)
  const query = url.slice(queryStart + 1, hashStart === -1 ? undefined : hashStart)
  const redacted = query.split('&').map(pair => {
    const eq = pair.indexOf('=')
    const rawName = eq === -1 ? pair : pair.slice(0, eq)
    let name: string
    try { name = decodeURIComponent(rawName.replaceAll('+', ' ')) } catch { name = rawName }
    return SECRET_PARAMS.has(name.toLowerCase()) ? `${rawName}=[REDACTED]` : pair
  }).join('&')
  return `${url.slice(0, queryStart)}?${redacted}`
}

/** pino serializers for Fastify's request log lines: method, redacted URL, and nothing from the headers. */
export const logSerializers = {
  req (request: { method: string, url: string, id?: string, ip?: string }) {
    return { method: request.method, url: redactUrl(request.url), id: request.id, remoteAddress: request.ip }
  }
}
