/**
 * Our own checks of token claims, beside the ones fast-jwt makes: whether a
 * token is addressed to us at all (read before its signature, so tokens of
 * other issuers cost no key lookup), and when it says it was issued.
 */

/** Claims of a verified token; only `exp` and the organization claim matter to us. */
export interface TokenClaims {
  [claim: string]: unknown
  sub?: string
  exp?: number
}

/**
 * Whether a payload, verified or not, names our issuer and, when we have one,
 * our audience. Exact strings, as fast-jwt compares them; fast-jwt still
 * checks both after the signature.
 */
export function addressedToUs (payload: unknown, issuer: string, audience: string | undefined): boolean {
  if (typeof payload !== 'object' || payload === null) return false
  const { iss, aud } = payload as Record<string, unknown>
  if (iss !== issuer) return false
  if (audience === undefined) return true
  return aud === audience || (Array.isArray(aud) && aud.includes(audience))
}

export type IssuedAtVerdict = 'ok' | 'not-a-number' | 'in-the-future'

/**
 * `iat` is optional (RFC 7519 §4.1.6), but when present it must be a number
 * of seconds no later than now plus the clock tolerance: a token from the
 * future is a forged or misissued one (fast-jwt only reads iat for maxAge).
 */
export function issuedAtVerdict (iat: unknown, nowMs: number, toleranceMs: number): IssuedAtVerdict {
  if (iat === undefined) return 'ok'
  // JSON has no NaN, but 1e400 parses to Infinity.
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return 'not-a-number'
  return iat * 1000 > nowMs + toleranceMs ? 'in-the-future' : 'ok'
}
