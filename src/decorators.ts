/**
 * Every name artos-files adds to a host's Fastify instance, requests and
 * replies, and the typed accessors that read them. The names are ours
 * (`artosFiles…`), and no global type is augmented: a host's own typing of
 * `request.user`, `FastifyJWT`, `authenticate`, `organization` or `s3`
 * compiles unchanged, and code reads what we verified through these functions.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TokenClaims } from './token-claims.js'
import type { FilesS3 } from '../plugins/s3.js'
import type { FilesUpstream } from '../plugins/upstream.js'
import type { FilesMetrics } from '../plugins/metrics.js'

/** What artos-files established about a request's caller. */
export interface ArtosFilesCaller {
  /** The caller's organization id (a safe path segment). */
  readonly organization: string
  /** The verified token's claims; undefined on plain links, where the presigned URL is the credential. */
  readonly claims: TokenClaims | undefined
}

/** `request.artosFiles`: the caller, once authenticated. */
export const CALLER = 'artosFiles'
/** `fastify.artosFilesS3` (plugins/s3.ts). */
export const S3 = 'artosFilesS3'
/** `fastify.artosFilesUpstream` (plugins/upstream.ts). */
export const UPSTREAM = 'artosFilesUpstream'
/** `fastify.artosFilesMetrics` (plugins/metrics.ts), when metrics are on. */
export const METRICS = 'artosFilesMetrics'
/** `fastify.artosFilesTracer` (plugins/tracing.ts), when tracing is on. */
export const TRACER = 'artosFilesTracer'
/** `fastify.artosFilesAuthenticate`: the onRequest hook of plugins/auth.ts. */
export const AUTHENTICATE = 'artosFilesAuthenticate'
/** What our own @fastify/jwt registration adds (its verifier must not write the host's `request.user`). */
export const JWT = {
  verify: 'artosFilesJwtVerify',
  decode: 'artosFilesJwtDecode',
  sign: 'artosFilesJwtSign',
  payload: 'artosFilesJwtPayload'
} as const

type Authenticate = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/** The organization artos-files verified for this request; undefined before authentication and outside our routes. */
export function organizationOf (request: FastifyRequest): string | undefined {
  return callerOf(request)?.organization
}

/** The claims of the token artos-files verified for this request; undefined when none was (or on a plain link). */
export function tokenClaimsOf (request: FastifyRequest): TokenClaims | undefined {
  return callerOf(request)?.claims
}

/** For code that runs only after authentication (our routes, rate limits): a missing organization is a wiring bug. */
export function requireOrganization (request: FastifyRequest): string {
  const organization = organizationOf(request)
  if (organization === undefined) throw new Error('artos-files: no verified organization on this request (a route outside the authenticated group?)')
  return organization
}

export function setCaller (request: FastifyRequest, caller: ArtosFilesCaller): void {
  (request as unknown as Record<string, unknown>)[CALLER] = caller
}

function callerOf (request: FastifyRequest): ArtosFilesCaller | undefined {
  return ((request as unknown as Record<string, unknown>)[CALLER] ?? undefined) as ArtosFilesCaller | undefined
}

/** The onRequest hook that verifies the bearer token, for hosts that compose authPlugin with their own routes. */
export function authenticateOf (fastify: FastifyInstance): Authenticate {
  return instanceDecorator<Authenticate>(fastify, AUTHENTICATE, 'authPlugin')
}

export function filesS3Of (fastify: FastifyInstance): FilesS3 {
  return instanceDecorator<FilesS3>(fastify, S3, 's3Plugin')
}

export function filesUpstreamOf (fastify: FastifyInstance): FilesUpstream {
  return instanceDecorator<FilesUpstream>(fastify, UPSTREAM, 'upstreamPlugin')
}

/** The Prometheus metrics of an instance registered with the `metrics` option. */
export function metricsOf (fastify: FastifyInstance): FilesMetrics {
  return instanceDecorator<FilesMetrics>(fastify, METRICS, 'artos-files with the metrics option')
}

function instanceDecorator<T> (fastify: FastifyInstance, name: string, plugin: string): T {
  const value = (fastify as unknown as Record<string, unknown>)[name]
  if (value === undefined) throw new Error(`artos-files: "${name}" is missing here; register ${plugin} in this context first`)
  return value as T
}

/**
 * Refuses, with what to change, names already taken where we are registered:
 * Fastify's own FST_ERR_DEC_ALREADY_PRESENT names neither us nor a remedy.
 */
export function claimNames (fastify: FastifyInstance, names: { instance?: readonly string[], request?: readonly string[], reply?: readonly string[] }): void {
  const taken = [
    ...(names.instance ?? []).filter(name => fastify.hasDecorator(name)).map(name => ['instance', name]),
    ...(names.request ?? []).filter(name => fastify.hasRequestDecorator(name)).map(name => ['request', name]),
    ...(names.reply ?? []).filter(name => fastify.hasReplyDecorator(name)).map(name => ['reply', name])
  ]
  const [kind, name] = taken[0] ?? []
  if (name === undefined) return
  throw new Error(`artos-files: the ${kind ?? ''} decorator "${name}" already exists where artos-files is registered (added by the host or another plugin), and artos-files needs that name; rename the other decorator, or register whatever adds it in a context that does not enclose artos-files`)
}
