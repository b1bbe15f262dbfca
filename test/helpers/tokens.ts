/** Real, signed JWTs for tests (fast-jwt, the library @fastify/jwt verifies with). */
import { createSigner } from 'fast-jwt'
import { generateKeyPairSync } from 'node:crypto'

export const TEST_SECRET = 'test-secret-that-is-at-least-32-characters-long'

export interface SignOptions {
  key?: string
  algorithm?: 'HS256' | 'HS384' | 'RS256' | 'ES256' | 'none'
  expiresInSeconds?: number | null
  notBeforeSeconds?: number
  kid?: string
}

export function signToken (claims: Record<string, unknown>, opts: SignOptions = {}): string {
  const algorithm = opts.algorithm ?? 'HS256'
  const sign = createSigner({
    key: algorithm === 'none' ? undefined : (opts.key ?? TEST_SECRET),
    algorithm,
    ...(opts.expiresInSeconds === null ? {} : { expiresIn: (opts.expiresInSeconds ?? 300) * 1000 }),
    ...(opts.notBeforeSeconds === undefined ? {} : { notBefore: opts.notBeforeSeconds * 1000 }),
    ...(opts.kid === undefined ? {} : { kid: opts.kid })
  })
  return sign(claims)
}

export function orgToken (org: string, opts: SignOptions = {}): string {
  return signToken({ sub: 'user-1', org_id: org }, opts)
}

export function rsaKeyPair (): { publicKey: string, privateKey: string } {
  return generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
}

export function ecKeyPair (): { publicKey: string, privateKey: string } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
}
