/**
 * GET|HEAD /api/v1/proxy/file: streams an object through us for clients that
 * cannot reach S3. Only URLs we signed, for the caller's organization, still
 * valid, are fetched; everything is decided before any outbound connection.
 */
import { Readable } from 'node:stream'
import { Agent, request as undiciRequest, type Dispatcher } from 'undici'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { errorResponse, ProxyFileQuery } from '../src/schemas.js'
import { checkPresignedUrl } from '../src/presigned-url.js'
import { DOWNLOAD_CSP, mediaTypeEssence, presentDownload } from '../src/download-safety.js'
import type { PresignedGet } from '../src/presigned-url.js'
import { errorHandler } from '../src/error-handler.js'
import {
  ClientClosedRequestError, ExpiredUrlError, FileNotFoundError, ForbiddenUrlError, InvalidPresignedUrlError, RangeNotSatisfiableError, TooBusyError, UpstreamFailedError, UpstreamTimeoutError
} from '../src/errors.js'
import type { ProxyOptions } from '../src/options.js'
import type { Operation } from '../src/operations.js'

export interface ProxyRoutesOptions {
  proxy: Required<ProxyOptions>
}

/** Client headers that S3 understands for a GET and that carry no credentials. */
const FORWARDED_REQUEST_HEADERS = ['range', 'if-range', 'if-none-match', 'if-modified-since'] as const
/** Upstream headers a client may see; never x-amz-*, never Set-Cookie. */
const PASSED_RESPONSE_HEADERS = ['content-length', 'content-range', 'etag', 'last-modified', 'accept-ranges'] as const
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

const proxyRoutes: FastifyPluginAsyncTypebox<ProxyRoutesOptions> = async (fastify, opts) => {
  const agent = new Agent({
    connectTimeout: opts.proxy.connectTimeoutMs,
    headersTimeout: opts.proxy.headersTimeoutMs,
    bodyTimeout: opts.proxy.idleTimeoutMs,
    // Redirects are never followed: undici only follows them through an interceptor we do not add.
    maxRedirections: 0
  } as Agent.Options)
  fastify.addHook('onClose', async () => { await agent.close() })
  let activeDownloads = 0

  const errorResponses = {
    400: errorResponse('Authentication failed'),
    401: errorResponse('Missing or invalid Bearer token'),
    403: errorResponse('Forbidden: only S3 URLs are allowed'),
    404: errorResponse('File not found'),
    410: errorResponse('Expired or invalid presigned URL'),
    422: errorResponse('Missing or invalid `presigned_url` query parameter'),
    429: errorResponse('Rate limit of the organization exceeded; see Retry-After'),
    500: errorResponse('Internal server error while proxying file'),
    502: errorResponse('The storage upstream failed or answered garbage'),
    503: errorResponse('Too many downloads in progress, or token verification temporarily unavailable; see Retry-After'),
    504: errorResponse('The storage upstream timed out')
  }
  const binary = (description: string) => ({ description, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } })
  const common = {
    config: { artosOperation: 'proxy.get' as Operation },
    // Fastify's schema errors are 400; the contract wants 422 for this parameter.
    attachValidation: true,
    // A body that fails before its first byte surfaces here instead of in the handler.
    errorHandler: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const fromUpstream = (error as { code?: string }).code?.startsWith('UND_ERR_') === true
      errorHandler(fromUpstream ? upstreamError(error, request) : error, request, reply)
    }
  }
  const description = 'Stream a file via backend using a presigned S3 URL. Useful when clients cannot access S3 directly (for example, VPN-restricted browsers). The URL is validated to allow only S3 hosts.'

  const proxyFile = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const query = request.query as Record<string, unknown>
    if (request.validationError !== undefined) throw new InvalidPresignedUrlError('give exactly one presigned_url')
    const verdict = checkPresignedUrl(query.presigned_url, fastify.s3.objectOrigin, request.organization, Date.now())
    if (!verdict.ok) {
      if (verdict.reason === 'invalid') throw new InvalidPresignedUrlError(verdict.message)
      throw verdict.reason === 'forbidden' ? new ForbiddenUrlError() : new ExpiredUrlError()
    }
    const upstreamUrl = await fastify.s3.verifyPresignedGet(verdict.url)
    if (upstreamUrl === undefined) throw new ExpiredUrlError()

    const isHead = request.method === 'HEAD'
    const headers: Record<string, string> = {}
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = request.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    if (isHead) {
      // Our URLs are signed for GET. A one-byte range gets the headers (and the
      // total size from Content-Range) without downloading the object.
      headers.range = 'bytes=0-0'
      delete headers['if-range']
    }

    if (activeDownloads >= opts.proxy.maxConcurrentDownloads) {
      void reply.header('retry-after', '1')
      throw new TooBusyError()
    }
    activeDownloads++
    const abort = new AbortController()
    reply.raw.once('close', () => {
      activeDownloads--
      if (!reply.raw.writableFinished) abort.abort()
    })
    let upstream: Dispatcher.ResponseData | undefined
    for (let attempt = 1; upstream === undefined; attempt++) {
      try {
        upstream = await undiciRequest(upstreamUrl, { method: 'GET', headers, dispatcher: agent, signal: abort.signal })
      } catch (err) {
        if (abort.signal.aborted) throw new ClientClosedRequestError()
        // A pooled keep-alive connection the server closed as we reused it: a GET is safe to send once more.
        if (attempt === 1 && (err as { code?: string }).code === 'UND_ERR_SOCKET') continue
        throw upstreamError(err, request)
      }
    }
    return await relay(upstream, verdict.url, isHead, reply)
  }

  fastify.get('/api/v1/proxy/file', {
    ...common,
    // HEAD is its own operation below: it must not download the body.
    exposeHeadRoute: false,
    schema: {
      operationId: 'proxyPresignedFile',
      tags: ['Files'],
      summary: 'Proxy Presigned File',
      description,
      querystring: ProxyFileQuery,
      response: {
        200: binary('File streamed successfully'),
        206: binary('Partial content (a Range request)'),
        304: { type: 'null', description: 'Not modified (a conditional request)' },
        ...errorResponses,
        416: errorResponse('Range not satisfiable')
      }
    }
  }, proxyFile)

  fastify.head('/api/v1/proxy/file', {
    ...common,
    // Documented as an operation of its own; @fastify/swagger names it "proxyPresignedFile-head".
    config: { artosOperation: 'proxy.head' as Operation, swagger: { exposeHeadRoute: true } },
    schema: {
      operationId: 'proxyPresignedFile',
      tags: ['Files'],
      summary: 'Proxy Presigned File (headers only)',
      description: 'The headers `GET /api/v1/proxy/file` would send (size, type, ETag, Last-Modified), without the body.',
      querystring: ProxyFileQuery,
      response: {
        200: { type: 'null', description: 'Headers of the file' },
        304: { type: 'null', description: 'Not modified (a conditional request)' },
        ...errorResponses
      }
    }
  }, proxyFile)
}

async function relay (upstream: Dispatcher.ResponseData, signed: PresignedGet, isHead: boolean, reply: FastifyReply): Promise<FastifyReply> {
  const { statusCode } = upstream
  const ok = statusCode === 200 || statusCode === 206 || statusCode === 304 || (isHead && statusCode === 416)
  if (!ok) {
    // Never relay S3's error XML: it names our key id and string-to-sign.
    discard(upstream)
    if (statusCode === 403) throw new ExpiredUrlError()
    if (statusCode === 404) throw new FileNotFoundError()
    if (statusCode === 416) {
      const range = header(upstream, 'content-range')
      if (range !== undefined) void reply.header('content-range', range)
      throw new RangeNotSatisfiableError()
    }
    throw new UpstreamFailedError()
  }

  for (const name of PASSED_RESPONSE_HEADERS) {
    const value = header(upstream, name)
    if (value !== undefined) void reply.header(name, value)
  }
  // S3 has applied any signed response-content-type; a signed disposition is only a wish.
  const requested = signed.query.find(([name]) => name === 'response-content-disposition')?.[1]
  const presentation = presentDownload(signed.key, header(upstream, 'content-type'), requested)
  void reply
    .header('cache-control', 'private, no-store')
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', DOWNLOAD_CSP)
    .header('content-disposition', presentation.contentDisposition)

  if (statusCode === 304) {
    discard(upstream)
    reply.removeHeader('content-length')
    return await reply.code(304).send()
  }
  void reply.header('content-type', presentation.contentType)

  if (isHead) {
    discard(upstream)
    // 206 "bytes 0-0/N" → N; 416 "bytes */0" → an empty object; 200 → the server ignored our range.
    const total = /\/(\d+)$/.exec(header(upstream, 'content-range') ?? '')?.[1]
    if (statusCode !== 200) {
      reply.removeHeader('content-range')
      void reply.header('content-length', total ?? '0')
    }
    return await reply.code(200).send()
  }
  // A multi-range answer is one multipart/byteranges body with no Content-Range: relay it as S3 sent it.
  const multipart = mediaTypeEssence(presentation.contentType) === 'multipart/byteranges'
  if (statusCode === 206 && header(upstream, 'content-range') === undefined && !multipart) {
    discard(upstream)
    throw new UpstreamFailedError()
  }
  return await reply.code(statusCode).send(upstream.body as Readable)
}

/** Drops a body we will not relay; destroying it mid-stream may emit an error nobody else listens for. */
function discard (upstream: Dispatcher.ResponseData): void {
  upstream.body.on('error', () => {})
  upstream.body.destroy()
}

function header (upstream: Dispatcher.ResponseData, name: string): string | undefined {
  const value = upstream.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** Outbound failures are the upstream's fault: 504 for timeouts, 502 for everything else. */
function upstreamError (err: unknown, request: FastifyRequest): FastifyError {
  const code = (err as { code?: string }).code
  request.log.warn({ err }, 'storage upstream request failed')
  return code !== undefined && TIMEOUT_CODES.has(code) ? new UpstreamTimeoutError() : new UpstreamFailedError()
}

export default proxyRoutes
