/**
 * TypeBox schemas for the public contract. Their `$id`s are the component names
 * in openapi-v1.json, so @fastify/swagger publishes them under the same names.
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox'
import type { DispositionType } from './content-disposition.js'

const presignFields = {
  key: Type.String({
    description: 'S3 object key for the file (e.g., org-id/documents/protocol.pdf)'
  }),
  filename: Type.Optional(Type.String({
    minLength: 1,
    maxLength: 255,
    description: 'Name the browser saves the file under (at most 255 bytes of UTF-8; no "/", "\\", control or bidirectional characters). Signed into the URL as `response-content-disposition`.'
  })),
  disposition: Type.Optional(Type.Unsafe<DispositionType>({
    type: 'string',
    enum: ['attachment', 'inline'],
    description: '`attachment` (the default when `filename` is given) saves the file; `inline` asks the browser to show it.'
  })),
  versionId: Type.Optional(Type.String({
    minLength: 1,
    maxLength: 1024,
    description: 'Pins the URL to this version of the object.'
  }))
}

export const GeneratePresignedUrlRequest = Type.Object(presignFields, { $id: 'GeneratePresignedUrlRequest', additionalProperties: false })
export type GeneratePresignedUrlRequest = Static<typeof GeneratePresignedUrlRequest>
/** One presign request, alone or as an item of a batch. */
export type PresignItem = GeneratePresignedUrlRequest

const expiresAt = Type.String({
  format: 'date-time',
  description: 'The instant (ISO 8601, UTC) at which the URL stops working.'
})
const proxyUrl = Type.Optional(Type.String({
  description: 'Absolute link that streams the file through this API without an Authorization header (only when the server enables proxy links).'
}))

export const GeneratePresignedUrlResponse = Type.Object({
  url: Type.String({
    description: 'Presigned HTTPS URL for direct file download. Expires after 1 hour and requires no additional authentication.'
  }),
  expiresAt,
  proxyUrl
}, { $id: 'GeneratePresignedUrlResponse' })
export type GeneratePresignedUrlResponse = Static<typeof GeneratePresignedUrlResponse>

export const MAX_BATCH_ITEMS = 1000

export const GeneratePresignedUrlsRequest = Type.Object({
  items: Type.Array(Type.Object(presignFields, { additionalProperties: false }), {
    minItems: 1,
    maxItems: MAX_BATCH_ITEMS,
    description: 'Up to 1,000 presign requests, each as for `POST /generate-presigned-url`.'
  })
}, { $id: 'GeneratePresignedUrlsRequest', additionalProperties: false })
export type GeneratePresignedUrlsRequest = Static<typeof GeneratePresignedUrlsRequest>

export const PresignItemError = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  message: Type.String()
})

export const PresignItemResult = Type.Object({
  key: Type.String(),
  url: Type.Optional(Type.String()),
  expiresAt: Type.Optional(expiresAt),
  proxyUrl,
  error: Type.Optional(PresignItemError)
}, { description: 'Either `url` and `expiresAt`, or `error` with the status this item would have got alone.' })
export type PresignItemResult = Static<typeof PresignItemResult>

export const GeneratePresignedUrlsResponse = Type.Object({
  results: Type.Array(PresignItemResult, { description: 'One entry per item, in request order.' })
}, { $id: 'GeneratePresignedUrlsResponse' })
export type GeneratePresignedUrlsResponse = Static<typeof GeneratePresignedUrlsResponse>

/** Every error body: the Fastify convention, plus Fastify's machine-readable `code` when there is one. */
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String()),
  error: Type.String(),
  message: Type.String()
}, { $id: 'ErrorResponse' })
export type ErrorResponse = Static<typeof ErrorResponse>

/** A documented error response of a route: the shared error shape with its own description. */
export function errorResponse (description: string): TUnsafe<ErrorResponse> & { description: string } {
  return { ...ref(ErrorResponse), description }
}

export const HealthResponse = Type.Object({
  status: Type.Literal('ok')
})

export const sharedSchemas = [GeneratePresignedUrlRequest, GeneratePresignedUrlResponse, GeneratePresignedUrlsRequest, GeneratePresignedUrlsResponse, ErrorResponse]

/** A `$ref` to a shared schema that keeps the schema's static type. */
export function ref<T extends TSchema & { $id?: string }> (schema: T): TUnsafe<Static<T>> {
  if (schema.$id === undefined) throw new TypeError('only schemas with an $id can be referenced')
  return Type.Unsafe<Static<T>>({ $ref: `${schema.$id}#` })
}

export const ProxyFileQuery = Type.Object({
  presigned_url: Type.String({ description: 'Fully-qualified, URL-encoded S3 presigned URL to proxy' })
})
export type ProxyFileQuery = Static<typeof ProxyFileQuery>
