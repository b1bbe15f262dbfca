/**
 * The audit event's shape (src/audit-event.ts): outcomes from statuses, one
 * event per object, and a line format no key can forge or split.
 */
import t from 'tap'
import fc from 'fast-check'
import { auditEvents, auditLine, escapeLineSeparators, MAX_TEXT, outcomeOf, type AuditEvent, type AuditFacts } from '../src/audit-event.js'

const TIME = new Date('2026-03-01T12:00:00.000Z')
const EXPIRES = new Date('2026-03-01T13:00:00.000Z')

function facts (overrides: Partial<AuditFacts>): AuditFacts {
  return { time: TIME, requestId: 'req-1', operation: 'presign', method: 'POST', status: 200, aborted: false, ...overrides }
}

t.test('outcome of every status the API answers', async t => {
  const table: Array<[number, string | undefined, string]> = [
    [200, undefined, 'ok'], [206, undefined, 'ok'], [304, undefined, 'ok'],
    [400, 'ARTOS_INVALID_KEY', 'invalid'], [400, 'ARTOS_AUTHENTICATION_FAILED', 'unauthenticated'],
    [401, 'ARTOS_INVALID_TOKEN', 'unauthenticated'], [403, 'ARTOS_FORBIDDEN_KEY', 'forbidden'],
    [404, 'ARTOS_FILE_NOT_FOUND', 'not-found'], [410, 'ARTOS_EXPIRED_URL', 'expired'],
    [413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'invalid'], [415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'invalid'],
    [416, 'ARTOS_RANGE_NOT_SATISFIABLE', 'invalid'], [422, 'ARTOS_INVALID_PRESIGNED_URL', 'invalid'],
    [429, 'ARTOS_RATE_LIMITED', 'rate-limited'], [499, 'ARTOS_CLIENT_CLOSED_REQUEST', 'aborted'],
    [500, 'ARTOS_PRESIGN_FAILED', 'failed'], [502, 'ARTOS_UPSTREAM_FAILED', 'failed'],
    [503, 'ARTOS_TOO_BUSY', 'unavailable'], [503, 'ARTOS_AUDIT_UNAVAILABLE', 'unavailable'], [504, 'ARTOS_UPSTREAM_TIMEOUT', 'failed']
  ]
  for (const [status, code, outcome] of table) t.equal(outcomeOf(status, code), outcome, `${status} ${code ?? ''}`)
})

t.test('a granted presign: who, which key and version, until when', async t => {
  const [event, ...rest] = auditEvents(facts({
    claims: { sub: 'user-1', org_id: 'org-1', exp: 1 },
    organization: 'org-1',
    ip: '10.0.0.1',
    touched: [{ key: 'org-1/a.pdf', versionId: 'v1', expiresAt: EXPIRES }]
  }))
  t.same(rest, [])
  t.strictSame(event, {
    time: '2026-03-01T12:00:00.000Z',
    requestId: 'req-1',
    operation: 'presign',
    method: 'POST',
    outcome: 'ok',
    status: 200,
    subject: 'user-1',
    organization: 'org-1',
    ip: '10.0.0.1',
    key: 'org-1/a.pdf',
    versionId: 'v1',
    expiresAt: '2026-03-01T13:00:00.000Z'
  })
  t.same(Object.keys(event).slice(0, 6), ['time', 'requestId', 'operation', 'method', 'outcome', 'status'], 'the same fields lead every line')
})

t.test('a refused presign names the key but no expiry; only a string sub is a subject', async t => {
  const [event] = auditEvents(facts({ status: 403, code: 'ARTOS_FORBIDDEN_KEY', claims: { sub: 42 }, organization: 'org-1', touched: [{ key: 'org-2/a', expiresAt: EXPIRES }] }))
  t.equal(event.outcome, 'forbidden')
  t.equal(event.code, 'ARTOS_FORBIDDEN_KEY')
  t.equal(event.key, 'org-2/a')
  t.notOk('expiresAt' in event)
  t.notOk('subject' in event)
})

t.test('refused before the handler: the body\'s key when it has one, else no key', async t => {
  t.equal(auditEvents(facts({ status: 429, code: 'ARTOS_RATE_LIMITED', body: { key: 'org-1/a', versionId: 'v9' } }))[0].key, 'org-1/a')
  t.equal(auditEvents(facts({ status: 429, body: { key: 'org-1/a', versionId: 'v9' } }))[0].versionId, 'v9')
  for (const body of [undefined, null, 'text', { key: 7 }, { items: [] }]) {
    const [event] = auditEvents(facts({ status: 401, body }))
    t.notOk('key' in event, JSON.stringify(body))
    t.equal(event.outcome, 'unauthenticated')
  }
  const [unauthenticated] = auditEvents(facts({ status: 401, organization: '' }))
  t.notOk('organization' in unauthenticated, 'no organization before one is verified')
})

t.test('a batch: one event per item, each with its own status; refused whole: one event with the size', async t => {
  const events = auditEvents(facts({
    operation: 'presign.batch',
    organization: 'org-1',
    touched: [
      { key: 'org-1/a', status: 200, expiresAt: EXPIRES },
      { key: 'org-2/b', status: 403, code: 'ARTOS_FORBIDDEN_KEY' },
      { key: 'org-1//c', versionId: 'v', status: 400, code: 'ARTOS_INVALID_KEY' }
    ]
  }))
  t.same(events.map(e => [e.item, e.key, e.outcome, e.status, e.code, e.expiresAt]), [
    [0, 'org-1/a', 'ok', 200, undefined, EXPIRES.toISOString()],
    [1, 'org-2/b', 'forbidden', 403, 'ARTOS_FORBIDDEN_KEY', undefined],
    [2, 'org-1//c', 'invalid', 400, 'ARTOS_INVALID_KEY', undefined]
  ])
  t.equal(events[2].versionId, 'v')
  for (const event of events) t.notOk('items' in event)

  const refused = auditEvents(facts({ operation: 'presign.batch', status: 429, code: 'ARTOS_RATE_LIMITED', body: { items: [{ key: 'org-1/a' }, { key: 'org-1/b' }] } }))
  t.equal(refused.length, 1, 'one event, not one per item')
  t.equal(refused[0].items, 2)
  t.equal(refused[0].outcome, 'rate-limited')
  t.notOk('key' in refused[0])
  t.notOk('item' in refused[0])
  const failed = auditEvents(facts({ operation: 'presign.batch', status: 500, code: 'ARTOS_PRESIGN_FAILED', touched: [{ key: 'org-1/a', status: 200, expiresAt: EXPIRES }] }))
  t.same(failed.map(e => [e.outcome, e.key, e.expiresAt]), [['failed', undefined, undefined]], 'a batch that failed granted nothing')
})

t.test('downloads: bytes and duration, always; aborted whatever the status', async t => {
  const [ok] = auditEvents(facts({ operation: 'proxy.get', method: 'GET', status: 206, touched: [{ key: 'org-1/a', versionId: 'v2' }], bytes: 10, durationMs: 12.6 }))
  t.same([ok.outcome, ok.bytes, ok.durationMs, ok.versionId], ['ok', 10, 13, 'v2'])
  const [refused] = auditEvents(facts({ operation: 'proxy.get', method: 'GET', status: 422, code: 'ARTOS_INVALID_PRESIGNED_URL' }))
  t.same([refused.outcome, refused.bytes, refused.durationMs, 'key' in refused], ['invalid', 0, 0, false])
  const [aborted] = auditEvents(facts({ operation: 'proxy.link', method: 'GET', status: 200, aborted: true, touched: [{ key: 'org-1/a' }], bytes: 5 }))
  t.same([aborted.outcome, aborted.status, aborted.bytes], ['aborted', 200, 5])
  const [cut] = auditEvents(facts({ operation: 'proxy.get', method: 'GET', status: 200, failed: true, code: 'ARTOS_UPSTREAM_FAILED', bytes: 65536 }))
  t.same([cut.outcome, cut.status, cut.code, cut.bytes], ['failed', 200, 'ARTOS_UPSTREAM_FAILED', 65536], 'cut short by the upstream, not the client')
  const [head] = auditEvents(facts({ operation: 'proxy.head', method: 'HEAD', status: 200 }))
  t.equal(head.bytes, 0)
  const [presign] = auditEvents(facts({ bytes: 5, durationMs: 3 }))
  t.notOk('bytes' in presign || 'durationMs' in presign, 'presigns carry no transfer figures')
})

t.test('text from requests is bounded', async t => {
  const key = `org-1/${'k'.repeat(5000)}`
  const [event] = auditEvents(facts({ status: 400, touched: [{ key, versionId: 'v'.repeat(5000) }], claims: { sub: 's'.repeat(5000) } }))
  t.equal(event.key?.length, MAX_TEXT)
  t.equal(event.keyTruncated, true)
  t.equal(event.versionId?.length, MAX_TEXT)
  t.equal(event.subject?.length, MAX_TEXT)
  const [exact] = auditEvents(facts({ touched: [{ key: 'k'.repeat(MAX_TEXT) }] }))
  t.notOk('keyTruncated' in exact)
})

t.test('escapeLineSeparators: only NEL, LS and PS change, and the JSON means the same', async t => {
  const value = { k: 'a\u0085b\u2028c\u2029d"\n\r\\e' }
  const escaped = escapeLineSeparators(JSON.stringify(value))
  t.notMatch(escaped, /[\u0085\u2028\u2029]/)
  t.same(JSON.parse(escaped), value)
  t.equal(escapeLineSeparators('{"k":"plain é ✓"}'), '{"k":"plain é ✓"}')
})

// Every character a line splitter might break on: \n, \r, VT, FF, FS/GS/RS, NEL, LS, PS.
const BREAKS = /[\n\r\v\f\u001c-\u001e\u0085\u2028\u2029]/
const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.constantFrom('\n', '\r\n', '"', '\\', '\u2028', '\u2029', '\u0085', '\ud800', '"}\n{"audit":true,"outcome":"ok","key":"', '","outcome":"ok'),
  fc.array(fc.constantFrom('org-1/', '\n', '\r', '"', '\u2028', '{"audit":true}', '\\u2028', 'x'), { maxLength: 12 }).map(parts => parts.join(''))
)

t.test('property: any key, subject or version gives exactly one line that parses back to the same event', async t => {
  fc.assert(fc.property(hostile, hostile, hostile, fc.boolean(), (key, sub, versionId, batch) => {
    const events = auditEvents(facts({
      operation: batch ? 'presign.batch' : 'proxy.get',
      claims: { sub },
      touched: [{ key, versionId, status: 200, expiresAt: EXPIRES }]
    }))
    for (const event of events) {
      const line = auditLine(event)
      if (!line.endsWith('\n') || BREAKS.test(line.slice(0, -1))) return false
      const parsed = JSON.parse(line) as AuditEvent
      // No field added, none lost, none changed: the key cannot smuggle an "outcome" or a second event.
      if (JSON.stringify(Object.keys(parsed)) !== JSON.stringify(Object.keys(event))) return false
      if (parsed.key !== event.key || parsed.subject !== event.subject || parsed.versionId !== event.versionId || parsed.outcome !== 'ok') return false
      // Well-formed text: a lone surrogate is escaped, not written as invalid UTF-8.
      if (!line.isWellFormed()) return false
    }
    return events.length === 1
  }), { numRuns: 2000 })
  t.pass('2000 runs')
})
