/**
 * The proxy's outbound side as one service per instance (`fastify.artosFilesUpstream`):
 * the undici agent with our timeouts, the cap on downloads in flight, the retry
 * of a GET on a dropped keep-alive connection, the deadline and transfer-rate
 * floor of every download, the per-organization download slots (in Redis when
 * configured, shared by every instance), and the classification of what went
 * wrong. Routes that stream objects (the bearer proxy, plain links) share it,
 * so there is one agent and one set of caps however many register.
 */
import fp from 'fastify-plugin'
import { lookup as dnsLookup } from 'node:dns'
import { ServerResponse } from 'node:http'
import type { LookupFunction } from 'node:net'
import type { Agent, Dispatcher } from 'undici'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger, FastifyError, FastifyInstance } from 'fastify'
import { recordCut } from '../src/download-cut.js'
import { ClientClosedRequestError, OrganizationDownloadsLimitedError, TooBusyError, UpstreamFailedError, UpstreamTimeoutError } from '../src/errors.js'
import { DEFAULT_PROXY_OPTIONS, definedOnly, type ProxyOptions } from '../src/options.js'
import { claimNames, UPSTREAM } from '../src/decorators.js'
import { connectAddressAllowed } from '../src/address-policy.js'
import { watchTransfer } from '../src/transfer-guard.js'
import { memorySlots, redisSlots, type DownloadSlots, type SlotLease } from '../src/download-slots.js'

export interface UpstreamPluginOptions extends ProxyOptions {
  /** redis:// or rediss://: per-organization slots are then shared by every instance using it. */
  redisUrl?: string | undefined
  /** Resolves the endpoint's name (default: dns.lookup, as net.connect would). Tests give a fake one. */
  lookup?: LookupFunction | undefined
}

/** How long a download's organization slot outlives its last renewal in Redis: how soon a crashed instance's come back. */
const SLOT_LEASE_MS = 30_000

/**
 * Internal: where tests put a DNS lookup function in the Files API options.
 * A symbol, so option validation ignores it and no host sets it by accident.
 */
export const kLookup = Symbol.for('artos-files.upstream.lookup')

export interface UpstreamFetchOptions {
  /** Headers for the storage endpoint; the caller has already chosen which are safe to forward. */
  headers: Record<string, string>
  /**
   * The response the object goes to: the download holds its slot until this
   * closes and ends when it does; its socket's progress is what the transfer
   * floor measures, and it is reset when the download is cut off.
   */
  client: ServerResponse
  log: FastifyBaseLogger
  /** Whose download this is: it takes one of that organization's `maxDownloadsPerOrg` slots. */
  organization?: string | undefined
}

/** Why an outbound exchange did not deliver. Only `timeout`, `refused-address` and `failed` are the storage side's fault. */
export type UpstreamFailure = 'client-closed' | 'timeout' | 'refused-address' | 'failed'

export interface FilesUpstream {
  /** Downloads in progress on this instance (read by a gauge; capped by `maxConcurrentDownloads`). */
  readonly inFlight: number
  /**
   * GETs `url` for the download going to `client`. Throws only our named errors:
   * TooBusyError (503) when the instance is at its cap,
   * OrganizationDownloadsLimitedError (429) when the organization is at its own,
   * ClientClosedRequestError when the client left first, UpstreamTimeoutError
   * (504) or UpstreamFailedError (502).
   */
  fetch: (url: string, options: UpstreamFetchOptions) => Promise<Dispatcher.ResponseData>
  /**
   * The answer for an error met while relaying a body (one that failed before
   * its first byte reaches the route's error handler): errors of the outbound
   * exchange become ours, logged unless the client left; others come back as they are.
   */
  answerFor: (err: FastifyError, log: FastifyBaseLogger) => FastifyError
  /** True for an answer this service has logged already (at warn: the storage side's fault, not our bug). */
  reported: (answer: unknown) => boolean
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** Client aborts are not upstream failures: a counter of 502s must not grow when people close tabs. */
export function classifyFailure (err: unknown): UpstreamFailure {
  const code = (err as { code?: unknown } | undefined)?.code
  if (err instanceof ClientClosedRequestError || code === 'UND_ERR_ABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error | undefined)?.name === 'AbortError') return 'client-closed'
  if (err instanceof RefusedAddressError) return 'refused-address'
  return typeof code === 'string' && TIMEOUT_CODES.has(code) ? 'timeout' : 'failed'
}

/** Errors that come from the outbound exchange rather than from our own checks. */
function isOutbound (err: FastifyError): boolean {
  return err.code?.startsWith('UND_ERR_') === true || err.code === 'ERR_STREAM_PREMATURE_CLOSE'
}

/** The endpoint's name resolved to an address we never connect to (src/address-policy.ts). */
export class RefusedAddressError extends Error {
  readonly code = 'ERR_ARTOS_REFUSED_ADDRESS'
  constructor (readonly hostname: string, readonly addresses: string[]) {
    super(`${hostname} resolved to ${addresses.join(', ')}: link-local and metadata addresses are refused`)
  }
}

/**
 * Resolves like `lookup`, but fails the connection when any address is one the
 * policy refuses. Runs at connect time, for every new connection: what the name
 * resolved to when the app started proves nothing. net.connect does not look up
 * literal IPs, so an endpoint configured as one is connected to as it is.
 */
export function refusingLookup (lookup: LookupFunction): LookupFunction {
  return (hostname, options, callback) => {
    lookup(hostname, options, (err, address, family) => {
      if (err !== null) { callback(err, address, family); return }
      const addresses = Array.isArray(address) ? address.map(entry => entry.address) : [address]
      const refused = addresses.filter(candidate => !connectAddressAllowed(candidate))
      if (refused.length > 0) callback(new RefusedAddressError(hostname, refused), address, family)
      else callback(null, address, family)
    })
  }
}

/**
 * Node's name for a stream closed before its end. Fastify logs a relayed body
 * that fails with it at info, as the client abort it is; any other error
 * (undici's own RequestAbortedError included) would be a warning.
 */
function prematureClose (): Error {
  return Object.assign(new Error('Client closed the response before the end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
}

async function upstreamPlugin (fastify: FastifyInstance, options: UpstreamPluginOptions): Promise<void> {
  claimNames(fastify, { instance: [UPSTREAM] })
  const opts = { ...DEFAULT_PROXY_OPTIONS, ...definedOnly(options) }
  // undici is a large share of what start-up would load: the first download imports it.
  let outbound: Promise<{ agent: Agent, undiciRequest: typeof import('undici').request }> | undefined
  const connectOutbound = async (): Promise<{ agent: Agent, undiciRequest: typeof import('undici').request }> => await (outbound ??= import('undici').then(({ Agent, request }) => ({
    agent: new Agent({
      connect: { timeout: opts.connectTimeoutMs, lookup: refusingLookup(options.lookup ?? dnsLookup) },
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.idleTimeoutMs,
      // Redirects are never followed: undici 7 follows them only through a redirect
      // interceptor, which we do not add (its `request` ignores maxRedirections).
      maxRedirections: 0
    } as Agent.Options),
    undiciRequest: request
  })))
  fastify.addHook('onClose', async () => { if (outbound !== undefined) await (await outbound).agent.close() })
  const slots = opts.redisUrl === undefined ? memorySlots(opts.maxDownloadsPerOrg) : await sharedSlots(fastify, opts.redisUrl, opts.maxDownloadsPerOrg)
  let inFlight = 0
  const logged = new WeakSet<object>()

  const failure = (err: unknown, log: FastifyBaseLogger): FastifyError => {
    const kind = classifyFailure(err)
    if (kind === 'client-closed') return new ClientClosedRequestError()
    if (err instanceof RefusedAddressError) {
      log.warn({ hostname: err.hostname, addresses: err.addresses }, 'refused to connect: the storage endpoint resolved to a link-local or metadata address')
    } else {
      log.warn({ err }, 'storage upstream request failed')
    }
    const answer = kind === 'timeout' ? new UpstreamTimeoutError() : new UpstreamFailedError()
    logged.add(answer)
    return answer
  }

  const floor = { minBytesPerSecond: opts.minBytesPerSecond, windowMs: opts.transferWindowMs }

  /** The organization's slot; when the store cannot say, the download goes ahead (fail open, like the rate limit). */
  const slotFor = async (organization: string, log: FastifyBaseLogger): Promise<SlotLease | undefined> => {
    try {
      return await slots.acquire(organization)
    } catch (err) {
      log.warn({ err }, 'download slot store unavailable; download allowed')
      return { release () {} }
    }
  }

  const fetch = async (url: string, { headers, client, log, organization }: UpstreamFetchOptions): Promise<Dispatcher.ResponseData> => {
    if (inFlight >= opts.maxConcurrentDownloads) throw new TooBusyError()
    inFlight++
    const startedAt = performance.now()
    const abort = new AbortController()
    let lease: SlotLease | undefined
    let closed = false
    let response: Dispatcher.ResponseData | undefined
    let stopWatching = (): void => {}
    // Past the deadline or under the floor, both sides are let go: the client's
    // response here, the upstream by the close handler below, which frees the slot.
    const cut = (reason: 'deadline' | 'client-too-slow' | 'upstream-too-slow', detail: Record<string, number>): void => {
      log.warn({ reason, ...detail, elapsedMs: Math.round(performance.now() - startedAt) }, 'download cut off')
      recordCut(client, reason)
      // A reset, not a FIN after the queued bytes: the kernel drops what it still
      // holds for a client that stopped reading. Only over HTTP/1, where the socket
      // is this download's alone; only TCP sockets can (TLS ones throw).
      if (client instanceof ServerResponse) try { client.socket?.resetAndDestroy() } catch {}
      client.destroy()
    }
    const deadline = setTimeout(() => { cut('deadline', { deadlineMs: opts.downloadDeadlineMs }) }, opts.downloadDeadlineMs)
    deadline.unref()
    client.once('close', () => {
      closed = true
      inFlight--
      lease?.release()
      clearTimeout(deadline)
      stopWatching()
      if (client.writableFinished) return
      // The client left (or was let go): cancel the request, or drop the body being relayed.
      if (response === undefined) abort.abort(new ClientClosedRequestError())
      else response.body.destroy(prematureClose())
    })
    if (organization !== undefined) {
      lease = await slotFor(organization, log)
      if (lease === undefined) throw new OrganizationDownloadsLimitedError()
      // The client left while the slot was being taken.
      if (closed) { lease.release(); throw new ClientClosedRequestError() }
    }
    const { agent, undiciRequest } = await connectOutbound()
    for (let attempt = 1; ; attempt++) {
      try {
        response = await undiciRequest(url, { method: 'GET', headers, dispatcher: agent, signal: abort.signal })
        stopWatching = watchTransfer(client, floor, (side, bytesPerSecond) => {
          cut(side === 'client' ? 'client-too-slow' : 'upstream-too-slow', { bytesPerSecond, minBytesPerSecond: floor.minBytesPerSecond })
        })
        return response
      } catch (err) {
        if (abort.signal.aborted) throw new ClientClosedRequestError()
        // A pooled keep-alive connection the server closed as we reused it: a GET is safe to send once more.
        if (attempt === 1 && (err as { code?: string }).code === 'UND_ERR_SOCKET') continue
        throw failure(err, log)
      }
    }
  }

  fastify.decorate(UPSTREAM, {
    get inFlight () { return inFlight },
    fetch,
    answerFor: (err, log) => isOutbound(err) ? failure(err, log) : err,
    reported: answer => typeof answer === 'object' && answer !== null && logged.has(answer)
  } satisfies FilesUpstream)
}

/** Per-organization slots in Redis. Unreachable at startup: refuse to start, as the rate limit does. */
async function sharedSlots (fastify: FastifyInstance, url: string, cap: number): Promise<DownloadSlots> {
  // Imported only with a Redis URL, as plugins/rate-limit.ts does. Fail fast rather than queue: a slow Redis must not stall downloads.
  const { Redis: RedisClient } = await import('ioredis')
  const redis: Redis = new RedisClient(url, { maxRetriesPerRequest: 1, connectTimeout: 2_000, commandTimeout: 1_000, enableOfflineQueue: false, lazyConnect: true })
  // ioredis reports every failed reconnection; each refused command is logged where it matters (see slotFor).
  redis.on('error', err => { fastify.log.debug({ err }, 'download slot store connection error') })
  try {
    await redis.connect()
  } catch (err) {
    redis.disconnect() // stop ioredis from retrying in the background
    throw new Error(`artos-files: cannot reach Redis for download slots: ${(err as Error).message}`)
  }
  fastify.addHook('onClose', async () => {
    // quit() waits for pending replies (releases included); a lost connection can only be dropped.
    if (redis.status === 'ready') await redis.quit().catch(() => { redis.disconnect() })
    else redis.disconnect()
  })
  // A renewal or release that fails leaves a lease that expires on its own: worth a debug line, not a warning per download.
  return redisSlots(redis, { cap, leaseMs: SLOT_LEASE_MS, onBackgroundError: err => { fastify.log.debug({ err }, 'download slot renewal or release failed') } })
}

export default fp(upstreamPlugin, { name: 'artos-files-upstream', fastify: '5.x' })
