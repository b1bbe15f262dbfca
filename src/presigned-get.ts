/**
 * The one owner of "a presigned GET of our bucket": signing a presign request
 * (key, download name, disposition, version) and verifying a parsed URL
 * (src/presigned-url.ts) over its whole query, whichever tool minted it. Both
 * compute SigV4 with src/sigv4-presign.ts; the S3 plugin only supplies the
 * origin, region and credentials.
 */
import { timingSafeEqual } from 'node:crypto'
import type { AwsCredentialIdentity } from '@aws-sdk/types'
import { createSigV4Query, encodeRfc3986, type PlainUrlSigner } from './sigv4-presign.js'
import { contentDisposition, type DispositionType } from './content-disposition.js'
import type { ObjectOrigin, PresignedGet } from './presigned-url.js'
import type { PresignItem } from './schemas.js'

const NOTHING_TO_ENCODE = /^[A-Za-z0-9\-._~/]*$/

/** RFC 3986 unreserved characters stay; everything else, `/` excepted, is percent-encoded as S3 expects. */
export function encodeKeyPath (key: string): string {
  // Most keys need no encoding at all; skip the split/encode/join for them.
  if (NOTHING_TO_ENCODE.test(key)) return key
  return key.split('/').map(encodeRfc3986).join('/')
}

export interface SignedGet {
  url: string
  /** The instant S3 stops accepting the URL: X-Amz-Date (whole seconds) + X-Amz-Expires. */
  expiresAt: Date
}

/** The URLs of one batch: one key, one signing instant, one expiry. */
export interface PresignBatch {
  expiresAt: Date
  /** A URL for an already-checked request, as PresignedGets.sign makes it. */
  sign: (request: PresignItem) => SignedGet
  /**
   * The same URL in pieces, for a request with no name, disposition or version
   * (isPlainRequest): `${origin}${encodeKeyPath(key)}${query}${signature(encodeKeyPath(key))}${tail}`.
   */
  plain: PlainUrlSigner
}

export interface PresignedGets {
  /** A URL for an already-checked request (see src/presign-request.ts). */
  sign: (request: PresignItem, credentials: AwsCredentialIdentity, now: number) => SignedGet
  /** Signing many requests with one key at one instant (see src/batch-response.ts). */
  batch: (credentials: AwsCredentialIdentity, now: number) => PresignBatch
  /**
   * Recomputes the signature of a parsed URL over its own canonical query with
   * our credentials. Returns the URL to fetch (rebuilt from exactly what was
   * verified) when it matches, else undefined.
   */
  verify: (url: PresignedGet, credentials: AwsCredentialIdentity) => string | undefined
}

export interface PresignedGetsOptions {
  origin: ObjectOrigin
  signingRegion: string
  expiresIn: number
}

/** A request whose URL has no parameters beyond SigV4's own. */
export function isPlainRequest (request: PresignItem): boolean {
  return request.filename === undefined && request.disposition === undefined && request.versionId === undefined
}

/** The `response-content-disposition` a request asks S3 to answer with, if any. */
export function requestedDisposition (request: PresignItem): string | undefined {
  if (request.filename === undefined && request.disposition === undefined) return undefined
  const type: DispositionType = request.disposition ?? 'attachment'
  return contentDisposition(request.filename ?? request.key.slice(request.key.lastIndexOf('/') + 1), type)
}

export function createPresignedGets ({ origin, signingRegion, expiresIn }: PresignedGetsOptions): PresignedGets {
  const sigv4 = createSigV4Query(signingRegion)
  const prefix = `${origin.protocol}//${origin.authority}`
  // The items of a batch share one instant; signing only reads it.
  let signedAt = new Date(NaN)

  function sign (request: PresignItem, credentials: AwsCredentialIdentity, now: number): SignedGet {
    // Extra parameters, canonical: encoded, and in code-point order (r < v).
    const disposition = requestedDisposition(request)
    let extra = disposition === undefined ? '' : `response-content-disposition=${encodeRfc3986(disposition)}`
    if (request.versionId !== undefined) extra += `${extra === '' ? '' : '&'}versionId=${encodeRfc3986(request.versionId)}`
    if (now !== signedAt.getTime()) signedAt = new Date(now)
    const url = sigv4.presign({
      protocol: origin.protocol,
      host: origin.authority,
      path: origin.basePath + encodeKeyPath(request.key),
      credentials,
      signedAt,
      expiresIn,
      extraQuery: extra
    })
    return { url, expiresAt: expiry(now) }
  }

  function expiry (now: number): Date {
    return new Date(Math.floor(now / 1000) * 1000 + expiresIn * 1000)
  }

  return {
    sign,

    batch (credentials, now) {
      const instant = new Date(now)
      return {
        expiresAt: expiry(now),
        sign: request => sign(request, credentials, now),
        plain: sigv4.plainUrls({ protocol: origin.protocol, host: origin.authority, basePath: origin.basePath, credentials, signedAt: instant, expiresIn })
      }
    },

    verify (url, credentials) {
      const day = url.amzDate.slice(0, 8)
      // Signed by another key, for another region or service: not ours to vouch for.
      if (url.credential !== `${credentials.accessKeyId}/${day}/${signingRegion}/s3/aws4_request`) return undefined
      const token = url.query.find(([name]) => name === 'X-Amz-Security-Token')?.[1]
      if (token !== credentials.sessionToken) return undefined

      // SigV4 sorts by encoded name (code points; names are unique, the parser refuses repeats).
      const canonicalQuery = url.query
        .map(([name, value]) => [encodeRfc3986(name), encodeRfc3986(value)])
        .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
        .map(([name, value]) => `${name}=${value}`)
        .join('&')
      const path = origin.basePath + encodeKeyPath(url.key)
      const expected = sigv4.signature({ host: origin.authority, path, canonicalQuery, amzDate: url.amzDate, secretAccessKey: credentials.secretAccessKey })
      const given = Buffer.from(url.signature)
      const ours = Buffer.from(expected)
      if (given.length !== ours.length || !timingSafeEqual(given, ours)) return undefined
      return `${prefix}${path}?${canonicalQuery}&X-Amz-Signature=${expected}`
    }
  }
}
