/**
 * POST /generate-presigned-url. Registered in the authenticated group (see
 * src/app.ts): the token's organization decides which keys a caller may presign.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponse, GeneratePresignedUrlRequest, GeneratePresignedUrlResponse, ref } from '../src/schemas.js'
import { checkPresignRequest } from '../src/presign-request.js'
import { presignError, PresignFailedError } from '../src/errors.js'
import { proxyLinkFor } from '../src/proxy-link.js'
import { recordTouched } from '../src/touched-objects.js'
import { filesS3Of, requireOrganization } from '../src/decorators.js'
import { BEARER_SECURITY, declareBearerScheme } from '../src/openapi-security.js'
import { tracerOf } from '../plugins/tracing.js'

export interface PresignRoutesOptions {
  /** Absolute URL of the plain-link route, when links are enabled (src/proxy-link.ts). */
  proxyLinkBase?: string | undefined
}

const filesRoutes: FastifyPluginAsyncTypebox<PresignRoutesOptions> = async (fastify, opts) => {
  const linkFor = opts.proxyLinkBase === undefined ? undefined : proxyLinkFor.bind(null, opts.proxyLinkBase)
  const s3 = filesS3Of(fastify)
  const traced = tracerOf(fastify)
  fastify.post('/generate-presigned-url', {
    config: { artosOperation: 'presign', swaggerTransform: declareBearerScheme },
    schema: {
      operationId: 'generatePresignedUrl',
      tags: ['Files'],
      summary: 'Generate Presigned URL',
      description: 'Generate a time-limited presigned S3 URL from an S3 object key. The returned URL expires after **1 hour** and can be used directly for download without an auth header.\n\nUse this endpoint when another API returns a raw S3 key. If your client cannot access S3 directly, pass the returned URL to `GET /api/v1/proxy/file` as the `presigned_url` query param.',
      security: BEARER_SECURITY,
      body: ref(GeneratePresignedUrlRequest),
      response: {
        200: { ...ref(GeneratePresignedUrlResponse), description: 'Presigned URL generated successfully' },
        400: errorResponse('Authentication failed, or an invalid request body, key, filename or versionId'),
        401: errorResponse('Missing or invalid Bearer token'),
        403: errorResponse('The key is outside the organization of the token'),
        413: errorResponse('Request body too large'),
        415: errorResponse('Request body is not application/json'),
        429: errorResponse('Rate limit of the organization exceeded; see Retry-After'),
        500: errorResponse('Failed to generate presigned URL'),
        503: errorResponse('Token verification is temporarily unavailable (identity provider keys unreachable), or the audit log cannot record the grant (`ARTOS_AUDIT_UNAVAILABLE`: no URL is handed out)')
      }
    }
  }, async (request, reply) => {
    const { key, versionId } = request.body
    recordTouched(request, [{ key, versionId }])
    const verdict = checkPresignRequest(request.body, requireOrganization(request))
    if (!verdict.ok) throw presignError(verdict)
    let signed
    try {
      signed = await traced.span('artos.presign.sign', { attributes: { 'artos.operation': 'presign', 'artos.presign.items': 1 } }, async () => await s3.presignGetObject(request.body))
    } catch (err) {
      request.log.error({ err }, 'presigning failed')
      throw new PresignFailedError()
    }
    reply.header('cache-control', 'no-store')
    const { url, expiresAt } = signed
    recordTouched(request, [{ key, versionId, expiresAt }])
    return { url, expiresAt: expiresAt.toISOString(), ...(linkFor === undefined ? {} : { proxyUrl: linkFor(url) }) }
  })
}

export default filesRoutes
