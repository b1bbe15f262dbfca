/**
 * GET|HEAD /api/v1/proxy/file: streams an object through us for clients that
 * cannot reach S3. Only URLs we signed, for the caller's organization, still
 * valid, are fetched; everything is decided before any outbound connection.
 */
import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { errorResponse, ProxyFileQuery } from '../src/schemas.js'
import { checkPresignedUrl, keyOrganization } from '../src/presigned-url.js'
import { PROXY_LINK_PATH } from '../src/proxy-link.js'
import { DOWNLOAD_CSP, mediaTypeEssence, presentDownload } from '../src/download-safety.js'
import type { PresignedGet } from '../src/presigned-url.js'
import { errorHandler, errorResponseFor } from '../src/error-handler.js'
import {
  ExpiredUrlError, FileNotFoundError, ForbiddenUrlError, InvalidPresignedUrlError, OrganizationDownloadsLimitedError, RangeNotSatisfiableError, TooBusyError, UpstreamFailedError
} from '../src/errors.js'
import { operationOf, type Operation } from '../src/operations.js'
import { recordTouched } from '../src/touched-objects.js'
import { filesS3Of, filesUpstreamOf, requireOrganization, setCaller } from '../src/decorators.js'
import { BEARER_SECURITY, declareBearerScheme } from '../src/openapi-security.js'
import { tracerOf } from '../plugins/tracing.js'

/**
 * `bearer`: GET|HEAD /api/v1/proxy/file, in the authenticated group.
 * `link`: GET|HEAD /api/v1/proxy/link, with no token at all: the presigned URL
 * is the credential, so a link grants exactly what that URL grants (one object,
 * until its expiry) and its organization is the key's first segment.
 * Both need plugins/s3.ts and plugins/upstream.ts registered.
 */
export interface ProxyRoutesOptions {
  mode?: 'bearer' | 'link' | undefined
}

/** Client headers that S3 understands for a GET and that carry no credentials. */
const FORWARDED_REQUEST_HEADERS = ['range', 'if-range', 'if-none-match', 'if-modified-since'] as const
/** Upstream headers a client may see; never x-amz-*, never Set-Cookie. */
const PASSED_RESPONSE_HEADERS = ['content-length', 'content-range', 'etag', 'last-modified', 'accept-ranges'] as const

const MODES = {
  bearer: {
    path: '/api/v1/proxy/file',
    operationId: 'proxyPresignedFile',
    operations: { get: 'proxy.get', head: 'proxy.head' },
    summary: 'Proxy Presigned File',
    description: 'Stream a file via backend using a presigned S3 URL. Useful when clients cannot access S3 directly (for example, VPN-restricted browsers). The URL is validated to allow only S3 hosts.'
  },
  link: {
    path: PROXY_LINK_PATH,
    operationId: 'proxyPresignedLink',
    operations: { get: 'proxy.link', head: 'proxy.link' },
    summary: 'Proxy Presigned File (plain link)',
    description: 'The same stream as `GET /api/v1/proxy/file`, without an Authorization header, for `<a href download>`, a new tab or an `<iframe>`: the browser streams the file to disk. The presigned URL is the credential: the link grants exactly what it grants (one object of our bucket, until its expiry), and counts against the organization of the object\'s key. Served only when the server enables proxy links; `proxyUrl` in a presign response is such a link.'
  }
} as const satisfies Record<string, { operations: Record<'get' | 'head', Operation> } & Record<string, unknown>>

const proxyRoutes: FastifyPluginAsyncTypebox<ProxyRoutesOptions> = async (fastify, opts) => {
  const mode = MODES[opts.mode ?? 'bearer']
  const isLink = opts.mode === 'link'
  const s3 = filesS3Of(fastify)
  const filesUpstream = filesUpstreamOf(fastify)
  // Bearer operations say so in any OpenAPI document they end up in (ours or a host's); links need no token.
  const security = isLink ? [] : BEARER_SECURITY
  const swaggerTransform = isLink ? undefined : declareBearerScheme
  const traced = tracerOf(fastify)
  // The storage endpoint (never the URL: its query is the credential).
  const upstreamServer = { 'server.address': s3.bucketUrl.hostname, 'server.port': Number(s3.bucketUrl.port || (s3.bucketUrl.protocol === 'https:' ? 443 : 80)) }
  const errorResponses = {
    ...(isLink ? {} : { 400: errorResponse('Authentication failed'), 401: errorResponse('Missing or invalid Bearer token') }),
    403: errorResponse('Forbidden: only S3 URLs are allowed'),
    404: errorResponse('File not found'),
    410: errorResponse('Expired or invalid presigned URL'),
    422: errorResponse('Missing or invalid `presigned_url` query parameter'),
    429: errorResponse('Rate limit of the organization exceeded, or too many of its downloads in progress; see Retry-After'),
    500: errorResponse('Internal server error while proxying file'),
    502: errorResponse('The storage upstream failed or answered garbage'),
    503: errorResponse(isLink ? 'Too many downloads in progress; see Retry-After' : 'Too many downloads in progress, or token verification temporarily unavailable; see Retry-After'),
    504: errorResponse('The storage upstream timed out')
  }
  const binary = (description: string) => ({ description, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } })
  const common = {
    // Fastify's schema errors are 400; the contract wants 422 for this parameter.
    attachValidation: true,
    // A body that fails before its first byte surfaces here instead of in the handler.
    errorHandler: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      // A refused download may try again shortly.
      if (error instanceof TooBusyError) void reply.header('retry-after', '1')
      if (error instanceof OrganizationDownloadsLimitedError) void reply.header('retry-after', '5')
      const answer = filesUpstream.answerFor(error, request.log)
      // The upstream service has logged its failures already, at warn: a storage failure is not our bug.
      if (filesUpstream.reported(answer)) void reply.code(answer.statusCode ?? 502).send(errorResponseFor(answer))
      else errorHandler(answer, request, reply)
    },
    // A link's organization is its key's: known before rate limits and slots are counted.
    ...(isLink ? { preValidation: organizationFromLink } : {})
  }

  function check (request: FastifyRequest, organization: string | ((key: string) => string | undefined)): PresignedGet {
    if (request.validationError !== undefined) throw new InvalidPresignedUrlError('give exactly one presigned_url')
    const verdict = checkPresignedUrl((request.query as Record<string, unknown>).presigned_url, s3.objectOrigin, organization, Date.now())
    // The object asked for, refused or not, once the URL names one in our bucket (for the audit trail).
    const key = verdict.ok ? verdict.url.key : verdict.key
    if (key !== undefined) recordTouched(request, [{ key, versionId: verdict.ok ? versionIdOf(verdict.url) : undefined }])
    if (verdict.ok) return verdict.url
    if (verdict.reason === 'invalid') throw new InvalidPresignedUrlError(verdict.message)
    throw verdict.reason === 'forbidden' ? new ForbiddenUrlError() : new ExpiredUrlError()
  }

  async function organizationFromLink (request: FastifyRequest): Promise<void> {
    const { key } = check(request, keyOrganization)
    setCaller(request, { organization: key.slice(0, key.indexOf('/')), claims: undefined })
  }

  const proxyFile = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const signed = check(request, requireOrganization(request))
    const upstreamUrl = await s3.verifyPresignedGet(signed)
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

    const attributes = { 'artos.operation': operationOf(request) ?? mode.operations.get, 'http.request.method': 'GET', ...upstreamServer }
    const upstream = await traced.span('artos.upstream.fetch', { kind: 'client', attributes }, async annotate => {
      const response = await filesUpstream.fetch(upstreamUrl, { headers, client: reply.raw, log: request.log, organization: requireOrganization(request) })
      annotate({ 'http.response.status_code': response.statusCode })
      return response
    })
    return await relay(upstream, signed, isHead, reply)
  }

  fastify.get(mode.path, {
    ...common,
    config: { artosOperation: mode.operations.get, swaggerTransform },
    // HEAD is its own operation below: it must not download the body.
    exposeHeadRoute: false,
    schema: {
      operationId: mode.operationId,
      tags: ['Files'],
      summary: mode.summary,
      description: mode.description,
      querystring: ProxyFileQuery,
      security,
      response: {
        200: binary('File streamed successfully'),
        206: binary('Partial content (a Range request)'),
        304: { type: 'null', description: 'Not modified (a conditional request)' },
        ...errorResponses,
        416: errorResponse('Range not satisfiable')
      }
    }
  }, proxyFile)

  fastify.head(mode.path, {
    ...common,
    // Documented as an operation of its own; @fastify/swagger names it "<operationId>-head".
    config: { artosOperation: mode.operations.head, swagger: { exposeHeadRoute: true }, swaggerTransform },
    schema: {
      operationId: mode.operationId,
      tags: ['Files'],
      summary: `${mode.summary} (headers only)`,
      description: `The headers \`GET ${mode.path}\` would send (size, type, ETag, Last-Modified), without the body.`,
      querystring: ProxyFileQuery,
      security,
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

function versionIdOf (signed: PresignedGet): string | undefined {
  return signed.query.find(([name]) => name === 'versionId')?.[1]
}

function header (upstream: Dispatcher.ResponseData, name: string): string | undefined {
  const value = upstream.headers[name]
  return Array.isArray(value) ? value[0] : value
}

export default proxyRoutes
