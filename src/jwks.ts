/**
 * The identity provider's key set (JWKS), kept whole from each fetch.
 *
 * Key ids come from token headers, which anyone can write. So a fetch is
 * shared by everyone waiting for one, and at most one starts per interval.
 * An id that is in the last set verifies at once, whatever else is going on.
 * An id that is not waits for the next fetch that starts after it arrived
 * (instead of being refused while the interval runs), so a key the IdP has
 * just rotated in verifies on first use, even in a flood of made-up ids.
 */
import { createPublicKey } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidTokenError, TokenVerificationUnavailableError } from './errors.js'

/** The algorithms a JWKS key may verify (fast-jwt is pinned to the same list). */
export const JWKS_ALGORITHMS: readonly string[] = ['RS256', 'ES256']

/** A signature key of the set, as PEM (what fast-jwt takes). */
export interface PublicJwk {
  kid: string
  kty: 'RSA' | 'EC'
  crv?: string
  alg?: string
  pem: string
}

/** Keys by kid (a kid may name more than one key, e.g. one per algorithm). */
export type KeySet = ReadonlyMap<string, readonly PublicJwk[]>

/**
 * The usable signature keys of a JWKS document. Entries without a kid, meant
 * for encryption, of another key type, or with unreadable key material are
 * skipped; a document that is not a key set at all throws.
 */
export function parseKeySet (document: unknown): KeySet {
  const entries = (document as { keys?: unknown } | null)?.keys
  if (!Array.isArray(entries)) throw new TypeError('JWKS document has no "keys" array')
  const keys = new Map<string, PublicJwk[]>()
  for (const entry of entries as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue
    const { kid, kty, crv, alg, use } = entry as Record<string, unknown>
    if (typeof kid !== 'string' || (kty !== 'RSA' && kty !== 'EC')) continue
    if (use !== undefined && use !== 'sig') continue
    if (alg !== undefined && typeof alg !== 'string') continue
    let pem: string
    try {
      pem = createPublicKey({ key: entry as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ format: 'pem', type: 'spki' }).toString()
    } catch {
      continue
    }
    const key: PublicJwk = { kid, kty, pem, ...(typeof crv === 'string' ? { crv } : {}), ...(alg === undefined ? {} : { alg }) }
    keys.set(kid, [...(keys.get(kid) ?? []), key])
  }
  return keys
}

/** The key that verifies a token whose header says (kid, alg), if the set has one. */
export function selectKey (keys: KeySet, kid: string, alg: string): PublicJwk | undefined {
  return keys.get(kid)?.find(key => (key.alg === undefined || key.alg === alg) && fitsAlgorithm(key, alg))
}

function fitsAlgorithm (key: PublicJwk, alg: string): boolean {
  if (alg === 'RS256') return key.kty === 'RSA'
  if (alg === 'ES256') return key.kty === 'EC' && key.crv === 'P-256'
  return false
}

export interface JwksKeysOptions {
  /** Fetches the JWKS document; a rejection means the IdP is unreachable. */
  fetchDocument: () => Promise<unknown>
  /** Least time between the starts of two fetches. */
  minFetchIntervalMs: number
  /** A set older than this is fetched again before use. While the IdP is unreachable, it still serves its keys for as long again. */
  maxAgeMs: number
  now?: () => number
  sleep?: (ms: number) => Promise<void>
}

interface Fetch {
  /** Undefined until the request goes out (it may be waiting for the interval). */
  startedAt?: number
  done: Promise<void>
}

export class JwksKeys {
  private keys: KeySet = new Map()
  /** When the fetch that produced `keys` started. */
  private fetchedAt = -Infinity
  private lastStartedAt = -Infinity
  /** The most recently planned fetch: waiting for its turn, under way, or over. */
  private latest: Fetch | undefined
  private readonly now: () => number
  private readonly sleep: (ms: number) => Promise<void>

  constructor (private readonly options: JwksKeysOptions) {
    this.now = options.now ?? Date.now
    // Unref'd: a pending wait never holds a closing process open.
    this.sleep = options.sleep ?? (async ms => { await sleep(ms, undefined, { ref: false }) })
  }

  /** PEM of the key for (kid, alg); 401 when the IdP has no such key, 503 when it cannot be asked. */
  async publicKey (kid: string, alg: string): Promise<string> {
    const arrived = this.now()
    if (arrived - this.fetchedAt < this.options.maxAgeMs) {
      const key = selectKey(this.keys, kid, alg)
      if (key !== undefined) return key.pem
    }
    try {
      await this.fetchStartedFrom(arrived)
    } catch (err) {
      const key = this.now() - this.fetchedAt < 2 * this.options.maxAgeMs ? selectKey(this.keys, kid, alg) : undefined
      if (key !== undefined) return key.pem
      throw new TokenVerificationUnavailableError({ cause: err })
    }
    const key = selectKey(this.keys, kid, alg)
    if (key === undefined) throw new InvalidTokenError('Authorization token is invalid: unknown key id')
    return key.pem
  }

  /** A fetch that starts no earlier than `arrived`: the planned one if there is one, else a new one, after the interval. */
  private async fetchStartedFrom (arrived: number): Promise<void> {
    const latest = this.latest
    if (latest !== undefined && (latest.startedAt === undefined || latest.startedAt >= arrived)) return await latest.done
    const fetch: Fetch = { done: Promise.resolve() }
    this.latest = fetch
    fetch.done = this.fetchInTurn(fetch)
    // Every waiter awaits `done`; this only keeps a failure nobody waits for any more from being unhandled.
    fetch.done.catch(() => {})
    await fetch.done
  }

  private async fetchInTurn (fetch: Fetch): Promise<void> {
    for (let wait = this.lastStartedAt + this.options.minFetchIntervalMs - this.now(); wait > 0; wait = this.lastStartedAt + this.options.minFetchIntervalMs - this.now()) {
      await this.sleep(wait)
    }
    const startedAt = this.now()
    fetch.startedAt = startedAt
    this.lastStartedAt = startedAt
    const keys = parseKeySet(await this.options.fetchDocument())
    // Fetches may overlap when the IdP is slow: never replace a newer set with an older one.
    if (startedAt >= this.fetchedAt) {
      this.keys = keys
      this.fetchedAt = startedAt
    }
  }
}

/** GETs the JWKS document, refusing a non-2xx answer, within `timeoutMs`. */
export async function fetchJwksDocument (url: string, timeoutMs: number): Promise<unknown> {
  const response = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) })
  if (!response.ok) {
    await response.body?.cancel()
    throw new Error(`JWKS request answered ${response.status}`)
  }
  return await response.json()
}
