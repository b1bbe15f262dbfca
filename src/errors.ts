/**
 * Named errors (via @fastify/error) for every failure we answer on purpose.
 * Their messages are public: they end up in response bodies.
 */
import { createError, type FastifyError } from '@fastify/error'

export const InvalidKeyError = createError<[string]>('ARTOS_INVALID_KEY', 'Invalid key: %s', 400)
export const ForbiddenKeyError = createError<[string]>('ARTOS_FORBIDDEN_KEY', 'Forbidden: %s', 403)
export const InvalidFilenameError = createError<[string]>('ARTOS_INVALID_FILENAME', 'Invalid filename: %s', 400)
export const InvalidVersionIdError = createError<[string]>('ARTOS_INVALID_VERSION_ID', 'Invalid versionId: %s', 400)

/** The error a refused presign request is answered with (alone, or as a batch item). */
export function presignError (verdict: { reason: 'invalid' | 'forbidden', field: 'key' | 'filename' | 'versionId', message: string }): FastifyError {
  if (verdict.reason === 'forbidden') return new ForbiddenKeyError(verdict.message)
  if (verdict.field === 'filename') return new InvalidFilenameError(verdict.message)
  if (verdict.field === 'versionId') return new InvalidVersionIdError(verdict.message)
  return new InvalidKeyError(verdict.message)
}
/** The token verified but names no usable organization (the contract's 400). */
export const AuthenticationFailedError = createError('ARTOS_AUTHENTICATION_FAILED', 'Authentication failed', 400)
/** More than one Authorization header: which one counts would depend on who reads it (RFC 6750 §3.1: 400). */
export const RepeatedAuthorizationError = createError('ARTOS_REPEATED_AUTHORIZATION', 'Only one Authorization header is allowed', 400)
/** Our routes read JSON bodies only. */
export const UnsupportedMediaTypeError = createError('ARTOS_UNSUPPORTED_MEDIA_TYPE', 'Request body must be application/json', 415)
/** Any token we cannot accept; the cause is logged, the body stays generic. */
export const InvalidTokenError = createError<[string]>('ARTOS_INVALID_TOKEN', '%s', 401)
/** The identity provider's key set could not be fetched: not the caller's fault. */
export const TokenVerificationUnavailableError = createError('ARTOS_TOKEN_VERIFICATION_UNAVAILABLE', 'Token verification is temporarily unavailable', 503)
export const PresignFailedError = createError('ARTOS_PRESIGN_FAILED', 'Failed to generate presigned URL', 500)

// The proxy's answers, worded as the published contract words them.
export const InvalidPresignedUrlError = createError<[string]>('ARTOS_INVALID_PRESIGNED_URL', 'Missing or invalid presigned_url query parameter: %s', 422)
export const ForbiddenUrlError = createError('ARTOS_FORBIDDEN_URL', 'Forbidden: only S3 URLs are allowed', 403)
export const ExpiredUrlError = createError('ARTOS_EXPIRED_URL', 'Expired or invalid presigned URL', 410)
export const FileNotFoundError = createError('ARTOS_FILE_NOT_FOUND', 'File not found', 404)
export const UpstreamFailedError = createError('ARTOS_UPSTREAM_FAILED', 'Storage upstream failed', 502)
export const UpstreamTimeoutError = createError('ARTOS_UPSTREAM_TIMEOUT', 'Storage upstream timed out', 504)
export const RangeNotSatisfiableError = createError('ARTOS_RANGE_NOT_SATISFIABLE', 'Range not satisfiable', 416)
export const RateLimitedError = createError<[string]>('ARTOS_RATE_LIMITED', 'Too many requests for this organization; retry in %s', 429)
export const TooBusyError = createError('ARTOS_TOO_BUSY', 'Too many downloads in progress; retry shortly', 503)
/** One organization's downloads in progress, across every instance sharing Redis, are at its cap. */
export const OrganizationDownloadsLimitedError = createError('ARTOS_ORGANIZATION_DOWNLOADS_LIMITED', 'Too many downloads in progress for this organization; retry shortly', 429)
export const OverloadedError = createError('ARTOS_OVERLOADED', 'Service is overloaded; retry later', 503)
/** The client went away before the upstream answered; nobody reads this, it only keeps the logs honest. */
export const ClientClosedRequestError = createError('ARTOS_CLIENT_CLOSED_REQUEST', 'Client closed the request', 499)
export const NotReadyError = createError('ARTOS_NOT_READY', 'Not ready: storage credentials cannot be resolved', 503)
/** A presign that the audit file could not record is not handed out. */
export const AuditUnavailableError = createError('ARTOS_AUDIT_UNAVAILABLE', 'Access could not be recorded; retry later', 503)
