/**
 * The audit trail: one event (src/audit-event.ts) per object a presign or a
 * download touched, refusals included, to the log stream (`"audit": true`,
 * msg "audit", level info) and, with `file`, appended to a JSON-lines file.
 *
 * Routes declare their operation (src/operations.ts) and record the objects
 * they touched (src/touched-objects.ts); this plugin reads both, so the routes
 * carry no audit logic. When each event is written:
 * - presigns: in onSend, before the answer leaves. A grant the file could not
 *   record is not handed out: the client gets a 503 instead of the URL.
 * - downloads: when the response ends (onResponse), or when the client leaves
 *   first (the response's 'close' before 'finish'), with the bytes sent so far.
 * - at shutdown: onClose waits for downloads in flight to end, then syncs and
 *   closes the file; if the process exits first (a second signal, the grace
 *   period over), downloads still in flight are written as aborted on 'exit'.
 */
import type { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { auditEvents, auditLine, type AuditEvent } from '../src/audit-event.js'
import { AuditFile } from '../src/audit-file.js'
import { AuditUnavailableError } from '../src/errors.js'
import { operationOf, type Operation } from '../src/operations.js'
import { TOUCHED_OBJECTS, touchedObjects } from '../src/touched-objects.js'
import { organizationOf, tokenClaimsOf } from '../src/decorators.js'
import { DEFAULT_AUDIT_OPTIONS, type AuditOptions } from '../src/options.js'
import { classifyFailure } from './upstream.js'
import { cutByUpstream } from '../src/download-cut.js'

/**
 * Set by buildApp when the service runs without a logger: the log stream's
 * events would be built for nobody (a batch makes 1,000). Not an option a host
 * sets: an embedded plugin logs to whatever logger its host has.
 */
export const kNoLogStream = Symbol.for('artos-files.audit.no-log-stream')

export type AuditPluginOptions = AuditOptions & { [kNoLogStream]?: boolean }

/** What this plugin knows of one request of an operation. */
interface AuditState {
  operation: Operation
  request: FastifyRequest
  reply: FastifyReply
  /** Bytes of the body handed to the connection (downloads). */
  bytes: number
  /** The error code of the answer, when it is a refusal. */
  code?: string
  /** The body failed upstream after the headers were sent: the response was cut by us, not by the client. */
  failed: boolean
  /** A presign's events are being written in onSend: the answer waits for them. */
  pending: boolean
  /** The client closed the connection while they were. */
  leftWhilePending: boolean
  /** The response's 'finish' was seen. */
  finished: boolean
  emitted: boolean
}

const STATE = Symbol('artos-files.audit')
type WithState = FastifyRequest & { [STATE]?: AuditState | null }

const isDownload = (operation: Operation): boolean => operation.startsWith('proxy.')

async function auditPlugin (fastify: FastifyInstance, options: AuditPluginOptions): Promise<void> {
  const opts = { ...DEFAULT_AUDIT_OPTIONS, ...options }
  const file = opts.file === undefined ? undefined : new AuditFile(opts.file, opts.fsync)
  const noLogStream = options[kNoLogStream] === true
  /** Downloads whose event is still to come. */
  const downloads = new Set<AuditState>()
  let drained: (() => void) | undefined

  fastify.decorateRequest(TOUCHED_OBJECTS, null)
  fastify.decorateRequest(STATE, null)

  function stateOf (request: FastifyRequest, reply: FastifyReply, operation: Operation): AuditState {
    const holder = request as WithState
    let state = holder[STATE]
    if (state === undefined || state === null) {
      state = { operation, request, reply, bytes: 0, failed: false, pending: false, leftWhilePending: false, finished: false, emitted: false }
      holder[STATE] = state
    }
    return state
  }

  function eventsOf (state: AuditState, aborted: boolean): AuditEvent[] {
    const { request, reply } = state
    return auditEvents({
      time: new Date(),
      requestId: request.id,
      operation: state.operation,
      method: request.method,
      // Nothing answered yet: nginx's "client closed request", or the upstream's timeout when we cut it.
      status: aborted && !reply.raw.headersSent ? (state.failed ? 504 : 499) : reply.statusCode,
      code: state.code,
      aborted: aborted && !state.failed,
      failed: state.failed,
      claims: tokenClaimsOf(request),
      organization: organizationOf(request),
      ip: request.ip,
      touched: touchedObjects(request),
      body: request.body,
      bytes: state.bytes,
      durationMs: reply.elapsedTime
    })
  }

  /** To the file (resolves once durable as configured), or nothing to wait for without one. */
  async function write (events: AuditEvent[]): Promise<void> {
    if (file === undefined) return
    await file.append(events.map(auditLine).join(''))
  }

  function log (state: AuditState, events: AuditEvent[]): void {
    if (noLogStream) return
    for (const event of events) state.request.log.info({ audit: true, event }, 'audit')
  }

  /** A batch makes 1,000 events: none are built when neither the file nor the log would take them. */
  function unread (state: AuditState): boolean {
    return file === undefined && (noLogStream || !logsInfo(state.request.log))
  }

  function finished (state: AuditState): void {
    state.emitted = true
    if (downloads.delete(state) && downloads.size === 0) drained?.()
  }

  /** A download's event (or a presign that never reached onSend): nobody waits for it. */
  function emit (state: AuditState, aborted: boolean): void {
    if (state.emitted || state.pending) return
    finished(state)
    // Cut off by the proxy for the upstream's sake: its failure, as a timeout before the headers would be.
    if (aborted && cutByUpstream(state.reply.raw)) {
      state.failed = true
      state.code = 'ARTOS_UPSTREAM_TIMEOUT'
    }
    if (unread(state)) return
    const events = eventsOf(state, aborted)
    write(events).catch((err: unknown) => { state.request.log.error({ err }, 'audit: could not write the audit log file') })
    log(state, events)
  }

  fastify.addHook('onRequest', (request, reply, done) => {
    const operation = operationOf(request)
    if (operation !== undefined) {
      const state = stateOf(request, reply, operation)
      if (isDownload(operation)) downloads.add(state)
      // After 'finish', onResponse has the event; a 'close' before it is a client that left.
      reply.raw.once('finish', () => { state.finished = true })
      reply.raw.once('close', () => {
        if (state.finished) return
        if (state.pending) state.leftWhilePending = true
        else emit(state, true)
      })
    }
    done()
  })

  fastify.addHook('onSend', async (request, reply, payload) => {
    const operation = operationOf(request)
    if (operation === undefined) return payload
    const state = stateOf(request, reply, operation)
    state.code = reply.statusCode >= 400 ? errorCode(payload) : undefined
    if (isDownload(operation)) {
      if (isStream(payload)) count(payload, state, reply)
      return payload
    }
    // The client left before the answer (recorded as aborted): nothing is handed out.
    if (state.emitted) return payload
    if (unread(state)) {
      finished(state)
      return payload
    }

    const events = eventsOf(state, false)
    state.pending = true
    try {
      await write(events)
    } catch (err) {
      request.log.error({ err }, 'audit: could not write the audit log file')
      // Not recorded, not granted. The 503 that replaces the answer comes back through here.
      if (events.some(event => event.outcome === 'ok')) {
        state.pending = false
        // A client that is gone gets no second pass through here to record it.
        if (state.leftWhilePending) emit(state, true)
        throw new AuditUnavailableError()
      }
    }
    state.pending = false
    finished(state)
    log(state, events)
    return payload
  })

  fastify.addHook('onResponse', (request, reply, done) => {
    const state = (request as WithState)[STATE]
    // Also run on a response 'error', where the body was not all handed over.
    if (state !== undefined && state !== null) emit(state, !reply.raw.writableEnded)
    done()
  })

  if (file === undefined) return
  // A forced exit (a second signal, the grace period over) skips onClose: what
  // is still in flight is written as aborted, synchronously, as the process ends.
  const onExit = (): void => {
    for (const state of [...downloads]) emit(state, true)
    try { file.closeSync() } catch {}
  }
  process.once('exit', onExit)
  fastify.addHook('onClose', async () => {
    if (downloads.size > 0) await new Promise<void>(resolve => { drained = resolve })
    process.off('exit', onExit)
    await file.close()
  })
}

/** pino knows its level; a logger that cannot say (Fastify's stand-in when logging is off, a host's own) is asked anyway. */
function logsInfo (log: FastifyBaseLogger): boolean {
  const { isLevelEnabled } = log as { isLevelEnabled?: (level: string) => boolean }
  return typeof isLevelEnabled !== 'function' || isLevelEnabled.call(log, 'info')
}

function isStream (payload: unknown): payload is Readable {
  return typeof (payload as Readable | null)?.pipe === 'function'
}

/** The body as the response reads it, counted: an aborted download shows how far it got. */
function count (payload: Readable, state: AuditState, reply: FastifyReply): void {
  // A 'data' listener added once Fastify pipes the body takes nothing from it (plugins/metrics.ts does the same).
  reply.raw.once('pipe', source => { source.on('data', (chunk: Buffer) => { state.bytes += chunk.length }) })
  // Before the response's 'close' that it causes; a client that left first was recorded already.
  payload.once('error', err => {
    const kind = classifyFailure(err)
    if (kind === 'client-closed') return
    state.failed = true
    // The codes src/errors.ts gives these failures when they happen before the headers.
    state.code = kind === 'timeout' ? 'ARTOS_UPSTREAM_TIMEOUT' : 'ARTOS_UPSTREAM_FAILED'
  })
}

/** The code of an error answer (src/error-handler.ts's shape), as the client got it. */
function errorCode (payload: unknown): string | undefined {
  if (typeof payload !== 'string') return undefined
  try {
    const code = (JSON.parse(payload) as { code?: unknown } | null)?.code
    return typeof code === 'string' ? code : undefined
  } catch {
    return undefined
  }
}

export default fp(auditPlugin, { name: 'artos-files-audit', fastify: '5.x' })
