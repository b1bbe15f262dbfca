/**
 * The proxy's outbound side as one service per instance (`fastify.filesUpstream`):
 * the undici agent with our timeouts, the cap on downloads in flight, the retry
 * of a GET on a dropped keep-alive connection, and the classification of what
 * went wrong. Routes that stream objects (the proxy today, plain links later)
 * share it, so there is one agent and one cap however many register.
 */
import fp from 'fastify-plugin'
import type { ServerResponse } from 'node:http'
import type { Agent, Dispatcher } from 'undici'
import type { FastifyBaseLogger, FastifyError, FastifyInstance } from 'fastify'
import { ClientClosedRequestError, TooBusyError, UpstreamFailedError, UpstreamTimeoutError } from '../src/errors.js'
import { DEFAULT_PROXY_OPTIONS, type ProxyOptions } from '../src/options.js'

export type UpstreamPluginOptions = ProxyOptions

export interface UpstreamFetchOptions {
  /** Headers for the storage endpoint; the caller has already chosen which are safe to forward. */
  headers: Record<string, string>
  /** The response the object goes to: the download holds its slot until this closes, and ends when it does. */
  client: ServerResponse
  log: FastifyBaseLogger
}

/** Why an outbound exchange did not deliver. Only `timeout` and `failed` are the storage upstream's fault. */
export type UpstreamFailure = 'client-closed' | 'timeout' | 'failed'

export interface FilesUpstream {
  /** Downloads in progress on this instance (read by a gauge; capped by `maxConcurrentDownloads`). */
  readonly inFlight: number
  /**
   * GETs `url` for the download going to `client`. Throws only our named errors:
   * TooBusyError (503) when the instance is at its cap, ClientClosedRequestError
   * when the client left first, UpstreamTimeoutError (504) or UpstreamFailedError (502).
   */
  fetch: (url: string, options: UpstreamFetchOptions) => Promise<Dispatcher.ResponseData>
  /** The answer for an error of an outbound exchange (e.g. a body that failed before its first byte), logged unless the client left. */
  failure: (err: unknown, log: FastifyBaseLogger) => FastifyError
}

declare module 'fastify' {
  interface FastifyInstance {
    filesUpstream: FilesUpstream
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** Client aborts are not upstream failures: a counter of 502s must not grow when people close tabs. */
export function classifyFailure (err: unknown): UpstreamFailure {
  const code = (err as { code?: unknown } | undefined)?.code
  if (err instanceof ClientClosedRequestError || code === 'UND_ERR_ABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error | undefined)?.name === 'AbortError') return 'client-closed'
  return typeof code === 'string' && TIMEOUT_CODES.has(code) ? 'timeout' : 'failed'
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
  const opts = { ...DEFAULT_PROXY_OPTIONS, ...options }
  // undici is a seventh of the code the service would load at start-up: the first download imports it.
  let undici: Promise<{ agent: Agent, undiciRequest: typeof import('undici').request }> | undefined
  const outbound = async () => await (undici ??= import('undici').then(({ Agent, request }) => ({
    agent: new Agent({
      connectTimeout: opts.connectTimeoutMs,
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.idleTimeoutMs,
      // Redirects are never followed: undici 7 follows them only through a redirect
      // interceptor, which we do not add (its `request` ignores maxRedirections).
      maxRedirections: 0
    } as Agent.Options),
    undiciRequest: request
  })))
  fastify.addHook('onClose', async () => { if (undici !== undefined) await (await undici).agent.close() })
  let inFlight = 0

  const failure = (err: unknown, log: FastifyBaseLogger): FastifyError => {
    const kind = classifyFailure(err)
    if (kind === 'client-closed') return new ClientClosedRequestError()
    log.warn({ err }, 'storage upstream request failed')
    return kind === 'timeout' ? new UpstreamTimeoutError() : new UpstreamFailedError()
  }

  const fetch = async (url: string, { headers, client, log }: UpstreamFetchOptions): Promise<Dispatcher.ResponseData> => {
    if (inFlight >= opts.maxConcurrentDownloads) throw new TooBusyError()
    inFlight++
    const abort = new AbortController()
    let response: Dispatcher.ResponseData | undefined
    client.once('close', () => {
      inFlight--
      if (client.writableFinished) return
      // The client left: cancel the request, or drop the body being relayed.
      if (response === undefined) abort.abort(new ClientClosedRequestError())
      else response.body.destroy(prematureClose())
    })
    const { agent, undiciRequest } = await outbound()
    for (let attempt = 1; ; attempt++) {
      try {
        response = await undiciRequest(url, { method: 'GET', headers, dispatcher: agent, signal: abort.signal })
        return response
      } catch (err) {
        if (abort.signal.aborted) throw new ClientClosedRequestError()
        // A pooled keep-alive connection the server closed as we reused it: a GET is safe to send once more.
        if (attempt === 1 && (err as { code?: string }).code === 'UND_ERR_SOCKET') continue
        throw failure(err, log)
      }
    }
  }

  fastify.decorate('filesUpstream', {
    get inFlight () { return inFlight },
    fetch,
    failure
  } satisfies FilesUpstream)
}

export default fp(upstreamPlugin, { name: 'artos-files-upstream', fastify: '5.x' })
