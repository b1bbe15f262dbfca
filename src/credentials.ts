/**
 * Credentials for signing URLs that must stay valid for their whole lifetime.
 * A presigned URL dies with the credentials that signed it, so temporary
 * credentials are refreshed early, and a URL is refused rather than handed out
 * if even fresh credentials would expire first.
 */
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types'

export type CredentialSource = AwsCredentialIdentity | AwsCredentialIdentityProvider

/** Don't hammer the credential source when it can only issue short-lived credentials. */
const MIN_FORCED_REFRESH_INTERVAL_MS = 30_000

export class CredentialsExpireTooSoonError extends Error {
  constructor (expiration: Date, requiredUntil: Date) {
    super(`credentials expire at ${expiration.toISOString()}, before a URL signed now would (${requiredUntil.toISOString()})`)
    this.name = 'CredentialsExpireTooSoonError'
  }
}

/**
 * Wraps a credential source so that every call returns credentials valid for at
 * least `lifetimeSeconds` more, or throws CredentialsExpireTooSoonError.
 */
export function credentialsOutlasting (source: CredentialSource, lifetimeSeconds: number, now: () => number = Date.now): AwsCredentialIdentityProvider {
  if (typeof source !== 'function') {
    const fixed = source
    return async () => {
      assertOutlasts(fixed, lifetimeSeconds, now())
      return fixed
    }
  }
  const provider = source
  let lastForcedRefresh = -Infinity
  return async () => {
    const current = await provider()
    if (outlasts(current, lifetimeSeconds, now())) return current
    if (now() - lastForcedRefresh < MIN_FORCED_REFRESH_INTERVAL_MS) {
      assertOutlasts(current, lifetimeSeconds, now())
      return current
    }
    lastForcedRefresh = now()
    // The SDK's default chain honours forceRefresh; plain providers ignore the argument.
    const refreshed = await (provider as (options?: { forceRefresh?: boolean }) => Promise<AwsCredentialIdentity>)({ forceRefresh: true })
    assertOutlasts(refreshed, lifetimeSeconds, now())
    return refreshed
  }
}

function outlasts (credentials: AwsCredentialIdentity, lifetimeSeconds: number, nowMs: number): boolean {
  return credentials.expiration === undefined || credentials.expiration.getTime() >= nowMs + lifetimeSeconds * 1000
}

function assertOutlasts (credentials: AwsCredentialIdentity, lifetimeSeconds: number, nowMs: number): void {
  if (!outlasts(credentials, lifetimeSeconds, nowMs)) {
    throw new CredentialsExpireTooSoonError(credentials.expiration as Date, new Date(nowMs + lifetimeSeconds * 1000))
  }
}
