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

/** What every event of one request shares, worked out once: a batch writes up to 1,000 of them. */
interface RequestFields {
  time: string
  subject?: string
  organization?: string
}

/** One event per object the request touched: one per item of a batch it answered, else exactly one. */
export function auditEvents (facts: AuditFacts): AuditEvent[] {
  const subject = (facts.claims as { sub?: unknown } | undefined)?.sub
  const shared: RequestFields = {
    time: facts.time.toISOString(),
    subject: typeof subject === 'string' ? cut(subject) : undefined,
    organization: facts.organization === undefined || facts.organization === '' ? undefined : facts.organization
  }

  if (facts.operation === 'presign.batch') {
    if (facts.status === 200 && !facts.aborted && facts.touched !== undefined && facts.touched.length > 0) {
      // A batch is signed at one instant: its items share one expiry to format.
      let expiry: Date | undefined
      let expiresAt = ''
      return facts.touched.map((object, item) => {
        const event = baseEvent(facts, shared, object.status ?? facts.status, object.code)
        addKeyFields(event, object)
        event.item = item
        if (event.outcome === 'ok' && object.expiresAt !== undefined) {
          if (object.expiresAt !== expiry) {
            expiry = object.expiresAt
            expiresAt = expiry.toISOString()
          }
          event.expiresAt = expiresAt
        }
        return event
      })
    }
    // Refused whole (or failed): nothing was granted, and one event says so.
    const event = baseEvent(facts, shared, facts.status, facts.code)
    const items = (facts.body as { items?: unknown } | undefined)?.items
    if (Array.isArray(items)) event.items = items.length
    return [event]
  }

  const object = facts.touched?.[0] ?? bodyObject(facts.body)
  const event = baseEvent(facts, shared, facts.status, facts.code)
  if (object !== undefined) {
    addKeyFields(event, object)
    if (event.outcome === 'ok' && object.expiresAt !== undefined) event.expiresAt = object.expiresAt.toISOString()
  }
  if (isDownload(facts.operation)) {
    event.bytes = facts.bytes ?? 0
    event.durationMs = Math.round(facts.durationMs ?? 0)
  }
  return [event]
}

/**
 * The fields every event leads with, in the order every line shows them.
 * Optional fields are assigned only when present (never as undefined), so an
 * event holds exactly what its JSON line does.
 */
function baseEvent (facts: AuditFacts, shared: RequestFields, status: number, code: string | undefined): AuditEvent {
  const event: AuditEvent = {
    time: shared.time,
    requestId: facts.requestId,
    operation: facts.operation,
    method: facts.method,
    outcome: facts.failed === true ? 'failed' : facts.aborted ? 'aborted' : outcomeOf(status, code),
    status
  }
  if (code !== undefined) event.code = cut(code)
  if (shared.subject !== undefined) event.subject = shared.subject
  if (shared.organization !== undefined) event.organization = shared.organization
  if (facts.ip !== undefined) event.ip = facts.ip
  return event
}

function addKeyFields (event: AuditEvent, object: TouchedObject): void {
  if (typeof object.key === 'string') {
    event.key = cut(object.key)
    if (object.key.length > MAX_TEXT) event.keyTruncated = true
  }
  if (typeof object.versionId === 'string') event.versionId = cut(object.versionId)
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
