/**
 * The audit trail's record: who was given access to which object, when, and
 * how it ended. Pure: plugins/audit.ts gathers the facts of a request and
 * writes what this returns. An event is built field by field from those facts,
 * never from a URL, a query or a header, so no presigned URL, signature or
 * token can end up in one.
 */
import type { Operation } from './operations.js'
import type { TouchedObject } from './touched-objects.js'

export type AuditOutcome =
  | 'ok' | 'invalid' | 'unauthenticated' | 'forbidden' | 'not-found' | 'expired'
  | 'rate-limited' | 'unavailable' | 'failed' | 'aborted'

export interface AuditEvent {
  /** When the event was recorded (ISO 8601, UTC): the response for presigns, the end of the transfer for downloads. */
  time: string
  requestId: string
  operation: Operation
  method: string
  outcome: AuditOutcome
  /** The HTTP status this object got (an item of a batch: the status it would have got alone); 499 when the client left before any. */
  status: number
  /** The error code answered (`ARTOS_…`, or the framework's), on refusals. */
  code?: string
  /** The verified token's `sub` claim; absent without an authenticated caller (plain links, 401, 400 without an organization). */
  subject?: string
  organization?: string
  ip?: string
  key?: string
  /** The key was longer than MAX_TEXT and is cut (only refused keys can be). */
  keyTruncated?: true
  versionId?: string
  /** Position of the item in a batch. */
  item?: number
  /** Size of a batch refused whole (one event for all its items). */
  items?: number
  /** Presign: when the URL handed out stops working. */
  expiresAt?: string
  /** Download: bytes of the body handed to the connection (0 when none was sent). */
  bytes?: number
  /** Download: from the request's arrival to the end of the transfer. */
  durationMs?: number
}

/** What plugins/audit.ts knows about a request when it ends. */
export interface AuditFacts {
  time: Date
  requestId: string
  operation: Operation
  method: string
  status: number
  code?: string
  /** The client closed the connection before the response ended. */
  aborted: boolean
  /** The response was cut short on our side (the storage upstream failed mid-body). */
  failed?: boolean
  /** The verified token's claims, when there is one. */
  claims?: unknown
  organization?: string
  ip?: string
  /** As the route recorded them (src/touched-objects.ts); undefined when no handler ran. */
  touched?: TouchedObject[]
  /** The parsed request body: a refusal before the handler still names the key (or batch size) it asked for. */
  body?: unknown
  bytes?: number
  durationMs?: number
}

/** Longest text kept from a request (keys are at most 1024 bytes; a longer one was refused). */
export const MAX_TEXT = 1024

export function outcomeOf (status: number, code?: string): AuditOutcome {
  if (status < 400) return 'ok'
  if (status === 401 || code === 'ARTOS_AUTHENTICATION_FAILED') return 'unauthenticated'
  switch (status) {
    case 403: return 'forbidden'
    case 404: return 'not-found'
    case 410: return 'expired'
    case 429: return 'rate-limited'
    case 499: return 'aborted'
    case 503: return 'unavailable'
  }
  return status < 500 ? 'invalid' : 'failed'
}

const isDownload = (operation: Operation): boolean => operation.startsWith('proxy.')

/** One event per object the request touched: one per item of a batch it answered, else exactly one. */
export function auditEvents (facts: AuditFacts): AuditEvent[] {
  const subject = (facts.claims as { sub?: unknown } | undefined)?.sub
  const base = (status: number, code: string | undefined): AuditEvent => ({
    time: facts.time.toISOString(),
    requestId: facts.requestId,
    operation: facts.operation,
    method: facts.method,
    outcome: facts.failed === true ? 'failed' : facts.aborted ? 'aborted' : outcomeOf(status, code),
    status,
    ...(code === undefined ? {} : { code: cut(code) }),
    ...(typeof subject === 'string' ? { subject: cut(subject) } : {}),
    ...(facts.organization === undefined || facts.organization === '' ? {} : { organization: facts.organization }),
    ...(facts.ip === undefined ? {} : { ip: facts.ip })
  })

  if (facts.operation === 'presign.batch') {
    if (facts.status === 200 && !facts.aborted && facts.touched !== undefined && facts.touched.length > 0) {
      return facts.touched.map((object, item) => {
        const event = base(object.status ?? facts.status, object.code)
        return { ...event, ...keyFields(object), item, ...expiry(event, object) }
      })
    }
    // Refused whole (or failed): nothing was granted, and one event says so.
    const items = (facts.body as { items?: unknown } | undefined)?.items
    return [{ ...base(facts.status, facts.code), ...(Array.isArray(items) ? { items: items.length } : {}) }]
  }

  const object = facts.touched?.[0] ?? bodyObject(facts.body)
  const event = base(facts.status, facts.code)
  const download = isDownload(facts.operation) ? { bytes: facts.bytes ?? 0, durationMs: Math.round(facts.durationMs ?? 0) } : {}
  return [{ ...event, ...(object === undefined ? {} : { ...keyFields(object), ...expiry(event, object) }), ...download }]
}

function keyFields (object: TouchedObject): Pick<AuditEvent, 'key' | 'keyTruncated' | 'versionId'> {
  const key = typeof object.key === 'string' ? object.key : undefined
  return {
    ...(key === undefined ? {} : { key: cut(key) }),
    ...(key !== undefined && key.length > MAX_TEXT ? { keyTruncated: true } : {}),
    ...(typeof object.versionId === 'string' ? { versionId: cut(object.versionId) } : {})
  }
}

function expiry (event: AuditEvent, object: TouchedObject): Pick<AuditEvent, 'expiresAt'> {
  return event.outcome === 'ok' && object.expiresAt !== undefined ? { expiresAt: object.expiresAt.toISOString() } : {}
}

/** A single presign refused before its handler ran (400 schema, 429) still names the key it asked for. */
function bodyObject (body: unknown): TouchedObject | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const { key, versionId } = body as { key?: unknown, versionId?: unknown }
  if (typeof key !== 'string') return undefined
  return { key, ...(typeof versionId === 'string' ? { versionId } : {}) }
}

function cut (text: string): string {
  return text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text
}

/**
 * JSON.stringify escapes quotes, backslashes and C0 controls, so a value can
 * never end a string or a line. It leaves NEL, LINE SEPARATOR and PARAGRAPH
 * SEPARATOR raw, which some line splitters (Python's str.splitlines, editors)
 * break on: escaped here. Raw, they can only occur inside JSON strings, so the
 * escaped text parses to the same value.
 */
export function escapeLineSeparators (json: string): string {
  return json.replace(/[\u0085\u2028\u2029]/g, char => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** One event as one line of JSON (the audit file's format). */
export function auditLine (event: AuditEvent): string {
  return `${escapeLineSeparators(JSON.stringify(event))}\n`
}
