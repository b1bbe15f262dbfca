/**
 * `Content-Disposition` (RFC 6266) written and read: an ASCII `filename`
 * fallback, plus the RFC 8187 `filename*` when the name is not plain ASCII.
 * Writing always quotes and escapes, so no name can break out of the value.
 */

export type DispositionType = 'attachment' | 'inline'

const RFC5987_UNSAFE = /[^A-Za-z0-9!#$&+.^_`|~-]/g

export function contentDisposition (name: string, type: DispositionType = 'attachment'): string {
  // The quoted fallback keeps printable ASCII only; quotes and backslashes would end or escape it.
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, '_')
  if (fallback === name) return `${type}; filename="${name}"`
  const encoded = Buffer.from(name, 'utf8').toString('latin1').replace(RFC5987_UNSAFE, c => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
  return `${type}; filename="${fallback}"; filename*=UTF-8''${encoded}`
}

export interface ParsedDisposition {
  /** Anything but a plain "inline" reads as "attachment", the safe choice. */
  type: DispositionType
  filename?: string
}

/**
 * Reads a disposition another party wrote (a signed `response-content-disposition`).
 * Lenient, because the result is only a request: the caller decides what is sent.
 */
export function parseContentDisposition (value: string): ParsedDisposition {
  const [head, ...rest] = splitParameters(value)
  const type: DispositionType = head.trim().toLowerCase() === 'inline' ? 'inline' : 'attachment'
  let plain: string | undefined
  let extended: string | undefined
  for (const parameter of rest) {
    const eq = parameter.indexOf('=')
    if (eq === -1) continue
    const name = parameter.slice(0, eq).trim().toLowerCase()
    const raw = parameter.slice(eq + 1).trim()
    if (name === 'filename*') extended = decodeExtended(raw)
    else if (name === 'filename') plain = unquote(raw)
  }
  const filename = extended ?? plain
  return filename === undefined || filename === '' ? { type } : { type, filename }
}

/** Splits on ";" outside quoted strings. */
function splitParameters (value: string): string[] {
  const parts: string[] = []
  let current = ''
  let quoted = false
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (quoted && c === '\\' && i + 1 < value.length) {
      current += c + value[++i]
      continue
    }
    if (c === '"') quoted = !quoted
    if (c === ';' && !quoted) {
      parts.push(current)
      current = ''
    } else {
      current += c
    }
  }
  parts.push(current)
  return parts
}

function unquote (raw: string): string {
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) return raw.slice(1, -1).replace(/\\(.)/g, '$1')
  return raw
}

/** RFC 8187 `charset'language'value`; only UTF-8 (and its ASCII subset) is understood. */
function decodeExtended (raw: string): string | undefined {
  const match = /^([A-Za-z0-9!#$%&+^_`{}~-]+)'[^']*'(.*)$/.exec(raw)
  if (match === null || !/^(utf-8|us-ascii)$/i.test(match[1])) return undefined
  try {
    return decodeURIComponent(match[2])
  } catch {
    return undefined
  }
}
