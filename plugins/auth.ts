/**
 * Authentication: verifies the Bearer JWT with @fastify/jwt and resolves the
 * caller's organization. Algorithms are pinned to the configured key type, so a
 * token can never choose how it is verified (no `none`, no HS/RS confusion).
 */
import { createPublicKey } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt, { type FastifyJWTOptions, type VerifyOptions } from '@fastify/jwt'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { JwtOptions } from '../src/options.js'
import { isSafeOrgId } from '../src/object-key.js'
import { AuthenticationFailedError, InvalidTokenError, TokenVerificationUnavailableError } from '../src/errors.js'
import { refuseRepeatedAuthorization } from '../src/repeated-authorization.js'
import { fetchJwksDocument, JwksKeys, JWKS_ALGORITHMS } from '../src/jwks.js'
import { addressedToUs, issuedAtVerdict, type TokenClaims } from '../src/token-claims.js'
import { AUTHENTICATE, CALLER, claimNames, JWT, setCaller } from '../src/decorators.js'

export type { TokenClaims } from '../src/token-claims.js'

export interface AuthPluginOptions {
  /** How tokens are verified; omit to reuse a @fastify/jwt the host registered. */
  jwt?: JwtOptions | undefined
  /** Claim that carries the organization id. */
  orgClaim: string
}

/** Tolerated clock skew between us and the token issuer. */
const CLOCK_TOLERANCE_MS = 30_000
/** A key set older than this is fetched again, so a key the IdP drops stops verifying within this time. */
const JWKS_TTL_MS = 10 * 60_000
/** Key ids not in the key set trigger at most one key-set fetch per second. */
const JWKS_FETCH_INTERVAL_MS = 1_000
const JWKS_FETCH_TIMEOUT_MS = 5_000

// Not exported: its @fastify/jwt return type would bring @fastify/jwt's global typings (request.user, jwtVerify) into every host.
function jwtRegistrationOptions (jwt: JwtOptions): FastifyJWTOptions {
  const issuer = jwt.issuer
  const verify: Partial<VerifyOptions> = {
    // fast-jwt checks aud/iss only when present, so configured ones are also required.
    requiredClaims: ['exp', ...(jwt.audience === undefined ? [] : ['aud']), ...(issuer === undefined ? [] : ['iss'])],
    clockTolerance: CLOCK_TOLERANCE_MS,
    // Verified tokens are cached (bounded, and never beyond their exp) so a
    // client reusing its token pays one signature check, not one per request.
    cache: 10_000,
    ...(jwt.audience === undefined ? {} : { allowedAud: jwt.audience }),
    ...(issuer === undefined ? {} : { allowedIss: issuer })
  }
  if ('secret' in jwt) {
    return { secret: jwt.secret, verify: { ...verify, algorithms: ['HS256'] } }
  }
  if ('publicKey' in jwt) {
    return { secret: { public: jwt.publicKey }, verify: { ...verify, algorithms: [algorithmForPublicKey(jwt.publicKey)] } }
  }
  const { jwksUrl, audience } = jwt
  const keys = new JwksKeys({
    fetchDocument: async () => await fetchJwksDocument(jwksUrl, JWKS_FETCH_TIMEOUT_MS),
    minFetchIntervalMs: JWKS_FETCH_INTERVAL_MS,
    maxAgeMs: JWKS_TTL_MS
  })
  return {
    secret: async (_request: FastifyRequest, token: { header: { kid?: unknown, alg?: unknown }, payload: unknown }) => {
      // Read before the signature, so tokens meant for someone else never reach the key set.
      if (!addressedToUs(token.payload, jwt.issuer, audience)) throw new InvalidTokenError('Authorization token is invalid: not issued for this service')
      const { kid, alg } = token.header
      if (typeof kid !== 'string' || typeof alg !== 'string') throw new InvalidTokenError('Authorization token is invalid: no key id')
      if (!JWKS_ALGORITHMS.includes(alg)) throw new InvalidTokenError('Authorization token is invalid: algorithm not accepted')
      return await keys.publicKey(kid, alg)
    },
    // The key callback needs the token header (kid, alg), not just its payload.
    decode: { complete: true },
    verify: { ...verify, algorithms: [...JWKS_ALGORITHMS] }
  } as FastifyJWTOptions
}

/** The one algorithm a PEM public key can verify with. */
export function algorithmForPublicKey (pem: string): 'RS256' | 'ES256' | 'ES384' {
  const key = createPublicKey(pem)
  if (key.asymmetricKeyType === 'rsa') return 'RS256'
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve === 'prime256v1') return 'ES256'
    if (curve === 'secp384r1') return 'ES384'
  }
  throw new TypeError(`JWT public key must be RSA or EC P-256/P-384, got ${key.asymmetricKeyType ?? 'unknown'}`)
}

/**
 * Our own @fastify/jwt lives in a namespace, so it coexists with a host's
 * registration and with other artos-files instances beside ours, under names
 * of ours: its verifier writes `request.artosFilesJwtPayload`, never the host's `request.user`.
 */
function jwtNamespace (fastify: FastifyInstance): string {
  const taken = (fastify as unknown as { jwt?: Record<string, unknown> }).jwt
  let namespace = 'artosFiles'
  for (let i = 2; taken?.[namespace] !== undefined; i++) namespace = `artosFiles${i}`
  return namespace
}

async function authPlugin (fastify: FastifyInstance, opts: AuthPluginOptions): Promise<void> {
  claimNames(fastify, { instance: [AUTHENTICATE], request: [CALLER] })
  let verifierName = 'jwtVerify'
  if (opts.jwt !== undefined) {
    claimNames(fastify, { request: [JWT.verify, JWT.decode, JWT.payload], reply: [JWT.sign] })
    await fastify.register(fastifyJwt, {
      ...jwtRegistrationOptions(opts.jwt),
      namespace: jwtNamespace(fastify),
      jwtVerify: JWT.verify,
      jwtDecode: JWT.decode,
      jwtSign: JWT.sign,
      decoratorName: JWT.payload
    })
    // @fastify/jwt declares it only when the host has no @fastify/jwt of its own.
    if (!fastify.hasRequestDecorator(JWT.payload)) fastify.decorateRequest(JWT.payload, null)
    verifierName = JWT.verify
  } else if (!fastify.hasRequestDecorator('jwtVerify')) {
    throw new Error('artos-files: "useHostJwt" is set but the host has not registered @fastify/jwt before this plugin')
  }
  const { orgClaim } = opts

  // On every route registered after us (health included), before any token is
  // read or looked up in the memory below, which keys on one header's value.
  fastify.addHook('onRequest', refuseRepeatedAuthorization)
  fastify.decorateRequest(CALLER, null)
  // Only tokens we verify ourselves are remembered: a host's @fastify/jwt may
  // run its own checks (e.g. a revocation list) on every request.
  const verified = opts.jwt === undefined ? undefined : new VerifiedTokens()
  fastify.decorate(AUTHENTICATE, async function authenticate (request: FastifyRequest, reply: FastifyReply) {
    const authorization = request.headers.authorization
    const known = verified?.get(authorization)
    if (known !== undefined) {
      setCaller(request, { organization: known.organization, claims: known.claims })
      return
    }
    let claims: TokenClaims
    try {
      // What the verifier resolves with: our payload, or whatever the host's @fastify/jwt makes of its user.
      const verifiedClaims = await (request as unknown as Record<string, () => Promise<unknown>>)[verifierName]()
      if (typeof verifiedClaims !== 'object' || verifiedClaims === null) throw new InvalidTokenError('Authorization token is invalid')
      claims = verifiedClaims as TokenClaims
      // Ours and the host's verification alike: fast-jwt reads iat only for maxAge.
      refuseIssuedInTheFuture(claims)
    } catch (err) {
      throw toAuthError(err, request, reply)
    }
    const organization = claims[orgClaim]
    if (!isSafeOrgId(organization)) {
      request.log.info({ orgClaim }, 'token verified but carries no usable organization claim')
      throw new AuthenticationFailedError()
    }
    setCaller(request, { organization, claims })
    verified?.remember(authorization, claims, organization)
  })
}

function refuseIssuedInTheFuture (claims: TokenClaims): void {
  const verdict = issuedAtVerdict(claims.iat, Date.now(), CLOCK_TOLERANCE_MS)
  if (verdict === 'not-a-number') throw new InvalidTokenError('Authorization token is invalid: iat is not a number')
  if (verdict === 'in-the-future') throw new InvalidTokenError('Authorization token is not yet valid: issued in the future')
}

/** How long a verified token is trusted without re-verification (never beyond its exp). */
export const VERIFIED_TOKEN_TTL_MS = 5 * 60_000
export const VERIFIED_TOKEN_LIMIT = 10_000

/**
 * Tokens that verified, by their exact Authorization header. Clients reuse a
 * token for many requests; this skips @fastify/jwt's per-request decoding and
 * option merging for them. Bounded, oldest evicted first.
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, { claims: TokenClaims, organization: string, until: number }>()

  constructor (private readonly now: () => number = Date.now) {}

  get (authorization: string | undefined): { claims: TokenClaims, organization: string } | undefined {
    if (authorization === undefined) return undefined
    const entry = this.entries.get(authorization)
    if (entry === undefined) return undefined
    if (entry.until <= this.now()) {
      this.entries.delete(authorization)
      return undefined
    }
    return entry
  }

  remember (authorization: string | undefined, claims: TokenClaims, organization: string): void {
    if (authorization === undefined || typeof claims.exp !== 'number') return
    if (this.entries.size >= VERIFIED_TOKEN_LIMIT) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(authorization, { claims, organization, until: Math.min(claims.exp * 1000, this.now() + VERIFIED_TOKEN_TTL_MS) })
  }
}

/** Every verification failure becomes a 401 (or 503 when the key set is unreachable), never a 500. */
function toAuthError (err: unknown, request: FastifyRequest, reply: FastifyReply): Error {
  if (err instanceof TokenVerificationUnavailableError) return unavailable(err, request.log)
  const { code, message } = err as { code?: string, message?: string }
  request.log.info({ code, reason: message }, 'bearer token rejected')
  const noToken = code === 'FST_JWT_NO_AUTHORIZATION_IN_HEADER'
  // RFC 6750 §3: no error code when the request carried no token at all.
  reply.header('www-authenticate', noToken ? 'Bearer realm="artos-files"' : 'Bearer realm="artos-files", error="invalid_token"')
  if (code?.startsWith('FST_JWT_') === true && message !== undefined) return new InvalidTokenError(message)
  if (code === 'FAST_JWT_INACTIVE') return new InvalidTokenError('Authorization token is not yet valid')
  if (err instanceof InvalidTokenError) return err
  return new InvalidTokenError('Authorization token is invalid')
}

function unavailable (err: Error, log: FastifyBaseLogger): Error {
  log.error({ err: err.cause ?? err }, 'could not fetch the JWKS to verify a token')
  return err
}

export default fp(authPlugin, { name: 'artos-files-auth', fastify: '5.x' })
