/**
 * POST /generate-presigned-urls: up to 1,000 presign requests in one round
 * trip. Each item gets exactly what it would get alone (the same check, the
 * same signer); one bad item never fails the others. The rate limit counts
 * the batch as N presigns (plugins/rate-limit.ts).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponse, GeneratePresignedUrlsRequest, GeneratePresignedUrlsResponse, MAX_BATCH_ITEMS, ref, type PresignItem } from '../src/schemas.js'
import { checkPresignRequest, type PresignVerdict } from '../src/presign-request.js'
import { batchResultsJson } from '../src/batch-response.js'
import { presignError, PresignFailedError } from '../src/errors.js'
import { proxyLinkFor } from '../src/proxy-link.js'
import { recordTouched, type TouchedObject } from '../src/touched-objects.js'
import type { PresignRoutesOptions } from './files.js'
import { filesS3Of, requireOrganization } from '../src/decorators.js'
import { BEARER_SECURITY, declareBearerScheme } from '../src/openapi-security.js'
import { tracerOf } from '../plugins/tracing.js'
import { recordPresignOutcomes } from '../src/operations.js'

/** As the contract writes it; toLocaleString would load ICU's locale data (~5 MiB resident) at start-up for this. */
const BATCH_ITEMS_TEXT = String(MAX_BATCH_ITEMS).replace(/\B(?=(\d{3})+$)/g, ',')

/** A full batch of the longest keys, names and versions fits; Fastify's 1 MiB default would not. */
const BATCH_BODY_LIMIT = 3 * 1024 * 1024

const presignBatchRoutes: FastifyPluginAsyncTypebox<PresignRoutesOptions> = async (fastify, opts) => {
  const linkFor = opts.proxyLinkBase === undefined ? undefined : proxyLinkFor.bind(null, opts.proxyLinkBase)
  const s3 = filesS3Of(fastify)
  const traced = tracerOf(fastify)
  fastify.post('/generate-presigned-urls', {
    config: { artosOperation: 'presign.batch', swaggerTransform: declareBearerScheme },
    bodyLimit: BATCH_BODY_LIMIT,
    schema: {
      operationId: 'generatePresignedUrls',
      tags: ['Files'],
      summary: 'Generate Presigned URLs (batch)',
      description: `Presign up to ${BATCH_ITEMS_TEXT} keys in one request. Results come back in request order, one per item: \`url\` and \`expiresAt\`, or \`error\` with the status that item would have got from \`POST /generate-presigned-url\` (400 invalid, 403 another organization). A batch of N counts as N presigns against the organization's rate limit and is refused whole (429) when it does not fit.`,
      security: BEARER_SECURITY,
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
    const organization = requireOrganization(request)
    let allowed = 0
    let forbidden = 0
    const verdicts = items.map(item => {
      const verdict = checkPresignRequest(item, organization)
      if (verdict.ok) allowed++
      else if (verdict.reason === 'forbidden') forbidden++
      return verdict
    })
    const refused = items.length - allowed
    recordPresignOutcomes(request, { ok: allowed, forbidden, invalid: refused - forbidden })
    let expiresAt: Date
    let body: Buffer
    try {
      // The URLs are signed as the body is written (src/batch-response.ts).
      ({ expiresAt, body } = await traced.span('artos.presign.sign', { attributes: { 'artos.operation': 'presign.batch', 'artos.presign.items': allowed } }, async () => {
        const batch = await s3.presignBatch()
        return { expiresAt: batch.expiresAt, body: batchResultsJson(items, verdicts, batch, linkFor) }
      }))
    } catch (err) {
      request.log.error({ err }, 'presigning failed')
      recordPresignOutcomes(request, { failed: allowed, forbidden, invalid: refused - forbidden })
      throw new PresignFailedError()
    }
    recordTouched(request, touchedItems(items, verdicts, expiresAt))
    reply.header('cache-control', 'no-store')
    // Bytes with a JSON content type are sent as they are; the schema above still documents
    // them (the type provider knows the body only in its object form).
    return await reply.type('application/json; charset=utf-8').send(body as unknown as GeneratePresignedUrlsResponse)
  })
}

/** Each item's key, version and what it got, for the audit trail (plugins/audit.ts). */
function touchedItems (items: PresignItem[], verdicts: PresignVerdict[], expiresAt: Date): TouchedObject[] {
  // A handful of distinct refusals: their status and code are worked out once each.
  const refusals = new Map<string, { status: number, code: string }>()
  return items.map(({ key, versionId }, i) => {
    const verdict = verdicts[i]
    if (verdict.ok) return { key, versionId, status: 200, expiresAt }
    const kind = `${verdict.reason}/${verdict.field}`
    let refusal = refusals.get(kind)
    if (refusal === undefined) {
      const { statusCode, code } = presignError(verdict)
      refusal = { status: statusCode ?? 400, code }
      refusals.set(kind, refusal)
    }
    return { key, versionId, ...refusal }
  })
}

export default presignBatchRoutes
