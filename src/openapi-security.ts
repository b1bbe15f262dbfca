/**
 * How our bearer operations say they need a token, in our own OpenAPI document
 * and in a host's: each declares `security: [{ bearerAuth: [] }]`, and as
 * @fastify/swagger builds a document it gains the `bearerAuth` scheme when it
 * has none, so "Authorize" in the host's Swagger UI sends the token to them
 * without the host configuring anything.
 */
import type { FastifySchema } from 'fastify'

/** The contract's security scheme (openapi-v1.json). */
export const bearerAuthScheme = {
  type: 'http' as const,
  scheme: 'bearer',
  bearerFormat: 'JWT',
  description: 'Bearer token authentication. Token provides organization-scoped access.'
}

export const BEARER_SECURITY = [{ bearerAuth: [] as string[] }]

/** What @fastify/swagger hands a route's `swaggerTransform` as it builds an OpenAPI 3 (or Swagger 2) document. */
interface DocumentBuild {
  schema: FastifySchema
  url: string
  openapiObject?: { components?: { securitySchemes?: Record<string, unknown> } }
}

/**
 * A route-level `swaggerTransform` (@fastify/swagger): leaves the route as it
 * is and adds our scheme to the document being built unless it has a
 * `bearerAuth` of its own (a host's is kept, so its tokens reach us under useHostJwt).
 */
export function declareBearerScheme ({ schema, url, openapiObject }: DocumentBuild): { schema: FastifySchema, url: string } {
  const components = openapiObject?.components
  if (openapiObject !== undefined && components?.securitySchemes?.bearerAuth === undefined) {
    // New objects: the options object the host gave @fastify/swagger stays as it was.
    openapiObject.components = { ...components, securitySchemes: { ...components?.securitySchemes, bearerAuth: bearerAuthScheme } }
  }
  return { schema, url }
}
