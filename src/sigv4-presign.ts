/**
 * SigV4 query presigning for S3 GETs, and nothing else. The SDK's presigner
 * (S3RequestPresigner) costs ~6× the HMAC work itself per call: it re-derives
 * its signing-key cache key with an HMAC, wraps every hash, and formats the URL
 * generically. This does only the required work: one SHA-256 of the canonical
 * request and one HMAC with a signing key cached per day and secret.
 * test/sigv4-presign.test.ts proves it byte-identical to the SDK's output, the
 * proxy re-verifies every URL with the SDK's presigner, and test/signature
 * proves the URLs against a SigV4-verifying server.
 */
import { createHash, createHmac } from 'node:crypto'
import type { AwsCredentialIdentity } from '@aws-sdk/types'

export interface QueryPresignRequest {
  /** "http:" or "https:" */
  protocol: string
  /** host[:port] exactly as it will be sent */
  host: string
  /** the URI-encoded path, as S3 canonicalizes it (see encodeKeyPath) */
  path: string
  credentials: AwsCredentialIdentity
  signedAt: Date
  expiresIn: number
}

/** RFC 3986 encoding, as SigV4 requires for query names and values. */
export function encodeRfc3986 (value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** 20261129T031204Z */
export function amzDate (date: Date): string {
  return date.toISOString().replace(/[-:]|\.\d{3}/g, '')
}

export function createQueryPresigner (region: string, service = 's3') {
  let cachedSigningKey: { day: string, secret: string, key: Buffer } | undefined
  let cachedDate: { ms: number, text: string } | undefined

  function signingKey (day: string, secret: string): Buffer {
    if (cachedSigningKey?.day === day && cachedSigningKey.secret === secret) return cachedSigningKey.key
    const dateKey = createHmac('sha256', `AWS4${secret}`).update(day).digest()
    const regionKey = createHmac('sha256', dateKey).update(region).digest()
    const serviceKey = createHmac('sha256', regionKey).update(service).digest()
    const key = createHmac('sha256', serviceKey).update('aws4_request').digest()
    cachedSigningKey = { day, secret, key }
    return key
  }

  function formatDate (date: Date): string {
    const ms = Math.floor(date.getTime() / 1000) * 1000
    if (cachedDate?.ms !== ms) cachedDate = { ms, text: amzDate(date) }
    return cachedDate.text
  }

  return function presign ({ protocol, host, path, credentials, signedAt, expiresIn }: QueryPresignRequest): string {
    const date = formatDate(signedAt)
    const day = date.slice(0, 8)
    const scope = `${day}/${region}/${service}/aws4_request`
    // Parameter names are fixed, so this is already the code-point order SigV4 requires.
    const token = credentials.sessionToken === undefined ? '' : `&X-Amz-Security-Token=${encodeRfc3986(credentials.sessionToken)}`
    const head = `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=${encodeRfc3986(`${credentials.accessKeyId}/${scope}`)}&X-Amz-Date=${date}&X-Amz-Expires=${expiresIn}${token}`
    const canonicalRequest = `GET\n${path}\n${head}&X-Amz-SignedHeaders=host\nhost:${host}\n\nhost\nUNSIGNED-PAYLOAD`
    const stringToSign = `AWS4-HMAC-SHA256\n${date}\n${scope}\n${createHash('sha256').update(canonicalRequest).digest('hex')}`
    const signature = createHmac('sha256', signingKey(day, credentials.secretAccessKey)).update(stringToSign).digest('hex')
    return `${protocol}//${host}${path}?${head}&X-Amz-Signature=${signature}&X-Amz-SignedHeaders=host`
  }
}
