/**
 * `Content-Disposition: attachment` for a downloaded object (RFC 6266 with the
 * RFC 8187 `filename*` for non-ASCII names). Always "attachment": the proxy
 * serves other people's bytes from our origin and must never render them.
 */

const RFC5987_UNSAFE = /[^A-Za-z0-9!#$&+.^_`|~-]/g

export function contentDisposition (key: string): string {
  const name = key.slice(key.lastIndexOf('/') + 1)
  // The quoted fallback keeps printable ASCII only; quotes and backslashes would end or escape it.
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, '_')
  if (fallback === name) return `attachment; filename="${name}"`
  const encoded = Buffer.from(name, 'utf8').toString('latin1').replace(RFC5987_UNSAFE, c => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`
}
