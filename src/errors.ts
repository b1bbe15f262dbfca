/**
 * Named errors (via @fastify/error) for every failure we answer on purpose.
 * Their messages are public: they end up in response bodies.
 */
import createError from '@fastify/error'

export const InvalidKeyError = createError<[string]>('ARTOS_INVALID_KEY', 'Invalid key: %s', 400)
export const ForbiddenKeyError = createError<[string]>('ARTOS_FORBIDDEN_KEY', 'Forbidden: %s', 403)
/** The token verified but names no usable organization (the contract's 400). */
export const AuthenticationFailedError = createError('ARTOS_AUTHENTICATION_FAILED', 'Authentication failed', 400)
/** Any token we cannot accept; the cause is logged, the body stays generic. */
export const InvalidTokenError = createError<[string]>('ARTOS_INVALID_TOKEN', '%s', 401)
/** The identity provider's key set could not be fetched: not the caller's fault. */
export const TokenVerificationUnavailableError = createError('ARTOS_TOKEN_VERIFICATION_UNAVAILABLE', 'Token verification is temporarily unavailable', 503)
export const PresignFailedError = createError('ARTOS_PRESIGN_FAILED', 'Failed to generate presigned URL', 500)
