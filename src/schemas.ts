/**
 * TypeBox schemas for the public contract. Their `$id`s are the component names
 * in openapi-v1.json, so @fastify/swagger publishes them under the same names.
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox'

export const GeneratePresignedUrlRequest = Type.Object({
  key: Type.String({
    description: 'S3 object key for the file (e.g., org-id/documents/protocol.pdf)'
  })
}, { $id: 'GeneratePresignedUrlRequest', additionalProperties: false })
export type GeneratePresignedUrlRequest = Static<typeof GeneratePresignedUrlRequest>

export const GeneratePresignedUrlResponse = Type.Object({
  url: Type.String({
    description: 'Presigned HTTPS URL for direct file download. Expires after 1 hour and requires no additional authentication.'
  })
}, { $id: 'GeneratePresignedUrlResponse' })
export type GeneratePresignedUrlResponse = Static<typeof GeneratePresignedUrlResponse>

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

export const sharedSchemas = [GeneratePresignedUrlRequest, GeneratePresignedUrlResponse, ErrorResponse]

/** A `$ref` to a shared schema that keeps the schema's static type. */
export function ref<T extends TSchema & { $id?: string }> (schema: T): TUnsafe<Static<T>> {
  if (schema.$id === undefined) throw new TypeError('only schemas with an $id can be referenced')
  return Type.Unsafe<Static<T>>({ $ref: `${schema.$id}#` })
}

export const ProxyFileQuery = Type.Object({
  presigned_url: Type.String({ description: 'Fully-qualified, URL-encoded S3 presigned URL to proxy' })
})
export type ProxyFileQuery = Static<typeof ProxyFileQuery>
