/**
 * POST /generate-presigned-urls: up to 1,000 presign requests in one round
 * trip. Each item gets exactly what it would get alone (the same check, the
 * same signer); one bad item never fails the others. The rate limit counts
 * the batch as N presigns (plugins/rate-limit.ts).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponse, GeneratePresignedUrlsRequest, GeneratePresignedUrlsResponse, MAX_BATCH_ITEMS, ref, type PresignItem, type PresignItemResult } from '../src/schemas.js'
import { checkPresignRequest } from '../src/presign-request.js'
import { presignError, PresignFailedError } from '../src/errors.js'
import { proxyLinkFor } from '../src/proxy-link.js'
import { recordTouched, type TouchedObject } from '../src/touched-objects.js'
import type { PresignRoutesOptions } from './files.js'

/** A full batch of the longest keys, names and versions fits; Fastify's 1 MiB default would not. */
const BATCH_BODY_LIMIT = 3 * 1024 * 1024

const presignBatchRoutes: FastifyPluginAsyncTypebox<PresignRoutesOptions> = async (fastify, opts) => {
  const linkFor = opts.proxyLinkBase === undefined ? undefined : proxyLinkFor.bind(null, opts.proxyLinkBase)
  fastify.post('/generate-presigned-urls', {
    config: { artosOperation: 'presign.batch' },
    bodyLimit: BATCH_BODY_LIMIT,
    schema: {
      operationId: 'generatePresignedUrls',
      tags: ['Files'],
      summary: 'Generate Presigned URLs (batch)',
      description: `Presign up to ${MAX_BATCH_ITEMS.toLocaleString('en-US')} keys in one request. Results come back in request order, one per item: \`url\` and \`expiresAt\`, or \`error\` with the status that item would have got from \`POST /generate-presigned-url\` (400 invalid, 403 another organization). A batch of N counts as N presigns against the organization's rate limit and is refused whole (429) when it does not fit.`,
      body: ref(GeneratePresignedUrlsRequest),
      response: {
        200: { ...ref(GeneratePresignedUrlsResponse), description: 'One result per item, in request order' },
        400: errorResponse('Authentication failed, or a malformed body (including more than 1,000 items)'),
        401: errorResponse('Missing or invalid Bearer token'),
        413: errorResponse('Request body too large'),
        415: errorResponse('Request body is not application/json'),
        429: errorResponse('The batch does not fit in the organization\'s remaining presign budget; see Retry-After'),
        500: errorResponse('Failed to generate presigned URLs'),
        503: errorResponse('Token verification is temporarily unavailable (identity provider keys unreachable), or the audit log cannot record the grant (`ARTOS_AUDIT_UNAVAILABLE`: no URL is handed out)')
      }
    }
  }, async (request, reply) => {
    const { items } = request.body
    const allowed: PresignItem[] = []
    const verdicts = items.map(item => {
      const verdict = checkPresignRequest(item, request.organization)
      if (verdict.ok) allowed.push(item)
      return verdict
    })
    let signed
    try {
      signed = await fastify.s3.presignGetObjects(allowed)
    } catch (err) {
      request.log.error({ err }, 'presigning failed')
      throw new PresignFailedError()
    }
    let next = 0
    const touched: TouchedObject[] = []
    const results: PresignItemResult[] = items.map((item, i) => {
      const verdict = verdicts[i]
      if (!verdict.ok) {
        const { statusCode, code, message } = presignError(verdict)
        touched.push({ key: item.key, versionId: item.versionId, status: statusCode ?? 400, code })
        return { key: item.key, error: { statusCode: statusCode ?? 400, code, message } }
      }
      const { url, expiresAt } = signed[next++]
      touched.push({ key: item.key, versionId: item.versionId, status: 200, expiresAt })
      return { key: item.key, url, expiresAt: expiresAt.toISOString(), ...(linkFor === undefined ? {} : { proxyUrl: linkFor(url) }) }
    })
    recordTouched(request, touched)
    reply.header('cache-control', 'no-store')
    return { results }
  })
}

export default presignBatchRoutes
