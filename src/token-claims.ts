/**
 * Our own checks of token claims, beside the ones fast-jwt makes: whether a
 * token is addressed to us at all (read before its signature, so tokens of
 * other issuers cost no key lookup).
 */

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
