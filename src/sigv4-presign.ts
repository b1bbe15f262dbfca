/**
 * SigV4 query presigning for S3 GETs, and nothing else. The SDK's presigner
 * (S3RequestPresigner) costs ~6× the HMAC work itself per call: it re-derives
 * its signing-key cache key with an HMAC, wraps every hash, and formats the URL
 * generically. This does only the required work: one SHA-256 of the canonical
 * request and one HMAC with a signing key cached per day and secret.
 *
 * Both use node:crypto's one-shot `hash()`. createHash/createHmac allocate a
 * native object per call whose setup and garbage collection cost more than the
 * hashing itself: in a server under load they added ~14 µs of CPU per request
 * (bench/presign.ts), the one-shot form ~1 µs. HMAC (RFC 2104) over one-shot
 * SHA-256 is test/sigv4-presign.test.ts's property-tested against createHmac.
 *
 * test/sigv4-presign.test.ts proves the URLs byte-identical to the SDK's
 * output, the proxy re-verifies every URL with the SDK's presigner, and
 * test/signature proves the URLs against a SigV4-verifying server.
 */
import { hash } from 'node:crypto'
import type { AwsCredentialIdentity } from '@aws-sdk/types'
import { writeLatin1 } from './latin1-write.js'

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
  /**
   * Further signed parameters, already canonical: RFC 3986-encoded, sorted, and
   * joined with "&". Every name must sort after "X-Amz-SignedHeaders" (lower-case
   * names such as `response-*` and `versionId` do).
   */
  extraQuery?: string
}

/**
 * Every URL one origin, one key and one second share when it has no further
 * parameters, in pieces: `${origin}${encodedKey}${query}${signature(encodedKey)}${tail}`.
 * A batch writer (src/batch-response.ts) copies the pieces as bytes and signs
 * from bytes, so no URL, canonical request or string to sign is ever a JS string.
 */
export interface PlainUrlSigner {
  /** `${protocol}//${host}${basePath}` */
  origin: string
  /** `?X-Amz-Algorithm=…&X-Amz-Signature=` */
  query: string
  /** `&X-Amz-SignedHeaders=host` */
  tail: string
  /**
   * The 64 hex digits of the signature. `encodedKey` as encodeKeyPath returns
   * it (ASCII only). Reuses scratch buffers: synchronous, not reentrant.
   */
  signature: (encodedKey: string) => string
}

export interface PlainUrlRequest {
  protocol: string
  host: string
  /** the origin's base path, already canonical ("/" or "/bucket/") */
  basePath: string
  credentials: AwsCredentialIdentity
  signedAt: Date
  expiresIn: number
}

export interface QuerySignatureInput {
  /** host[:port] as signed in the `host` header */
  host: string
  path: string
  /** the whole canonical query, X-Amz-Signature excluded */
  canonicalQuery: string
  /** X-Amz-Date, YYYYMMDDTHHMMSSZ */
  amzDate: string
  secretAccessKey: string
}

/** RFC 3986 encoding, as SigV4 requires for query names and values. */
export function encodeRfc3986 (value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** 20261129T031204Z */
export function amzDate (date: Date): string {
  return date.toISOString().replace(/[-:]|\.\d{3}/g, '')
}

const SHA256_BLOCK_BYTES = 64
const SHA256_BYTES = 32

/** RFC 2104: the key's inner (ipad) and outer (opad) blocks, into the first 64 bytes of each buffer. */
function writeHmacPads (key: Buffer, inner: Buffer, outer: Buffer): void {
  const block = key.length > SHA256_BLOCK_BYTES ? hash('sha256', key, 'buffer') : key
  for (let i = 0; i < SHA256_BLOCK_BYTES; i++) {
    const k = i < block.length ? block[i] : 0
    inner[i] = k ^ 0x36
    outer[i] = k ^ 0x5c
  }
}

export interface HmacSha256 {
  hex: (message: string) => string
  digest: (message: string) => Buffer
}

/**
 * HMAC-SHA256 (RFC 2104) with a fixed key, over one-shot SHA-256. The padded
 * key blocks are computed once; each call reuses two scratch buffers, so it is
 * synchronous and not reentrant by design.
 *
 * The inner digest travels as a 'binary' (latin1) string (one byte per character) into the
 * outer block: a Buffer result costs an allocation that took longer than the
 * hash (~0.4 µs). The view of the inner block is kept for the last message
 * length: a signer's strings to sign all have one length.
 */
export function createHmacSha256 (key: Buffer): HmacSha256 {
  let inner = Buffer.alloc(SHA256_BLOCK_BYTES + 256)
  const outer = Buffer.alloc(SHA256_BLOCK_BYTES + SHA256_BYTES)
  writeHmacPads(key, inner, outer)
  let view = inner.subarray(0, SHA256_BLOCK_BYTES)
  function outerBlock (message: string): Buffer {
    // write() stops short of a full buffer; up to 3 bytes short, the message may not have fitted.
    let length = inner.write(message, SHA256_BLOCK_BYTES, 'utf8')
    if (length > inner.length - SHA256_BLOCK_BYTES - 4) {
      length = Buffer.byteLength(message, 'utf8')
      if (SHA256_BLOCK_BYTES + length + 4 > inner.length) {
        const grown = Buffer.alloc(SHA256_BLOCK_BYTES + length + 4)
        inner.copy(grown, 0, 0, SHA256_BLOCK_BYTES)
        inner = grown
        view = inner.subarray(0, SHA256_BLOCK_BYTES)
      }
      inner.write(message, SHA256_BLOCK_BYTES, 'utf8')
    }
    if (view.length !== SHA256_BLOCK_BYTES + length) view = inner.subarray(0, SHA256_BLOCK_BYTES + length)
    outer.write(hash('sha256', view, 'binary'), SHA256_BLOCK_BYTES, 'binary')
    return outer
  }
  return {
    hex: message => hash('sha256', outerBlock(message), 'hex'),
    digest: message => hash('sha256', outerBlock(message), 'buffer')
  }
}

function hmacSha256 (key: Buffer | string, message: string): Buffer {
  return createHmacSha256(typeof key === 'string' ? Buffer.from(key, 'utf8') : key).digest(message)
}

/** The one place that computes SigV4 for a GET signed in its query (signing and verifying). */
export function createSigV4Query (region: string, service = 's3') {
  let cachedSigner: { day: string, secret: string, key: Buffer, sign: (stringToSign: string) => string } | undefined
  // What every URL signed in one second with one key shares (a batch signs hundreds):
  // built once, so each URL costs only its own path and parameters, one SHA-256 and one HMAC.
  let shared: {
    second: number
    accessKeyId: string
    secretAccessKey: string
    sessionToken: string | undefined
    expiresIn: number
    /** X-Amz-Algorithm … X-Amz-Expires [X-Amz-Security-Token]: every parameter before X-Amz-Signature */
    head: string
    stringToSignHead: string
    signingKey: Buffer
    sign: (stringToSign: string) => string
  } | undefined

  function signer (day: string, secret: string): NonNullable<typeof cachedSigner> {
    if (cachedSigner?.day === day && cachedSigner.secret === secret) return cachedSigner
    const dateKey = hmacSha256(`AWS4${secret}`, day)
    const regionKey = hmacSha256(dateKey, region)
    const serviceKey = hmacSha256(regionKey, service)
    const key = hmacSha256(serviceKey, 'aws4_request')
    cachedSigner = { day, secret, key, sign: createHmacSha256(key).hex }
    return cachedSigner
  }

  function sharedFor (signedAt: Date, { accessKeyId, secretAccessKey, sessionToken }: AwsCredentialIdentity, expiresIn: number): NonNullable<typeof shared> {
    const second = Math.floor(signedAt.getTime() / 1000)
    if (shared?.second === second && shared.accessKeyId === accessKeyId && shared.secretAccessKey === secretAccessKey &&
      shared.sessionToken === sessionToken && shared.expiresIn === expiresIn) return shared
    const date = amzDate(signedAt)
    const day = date.slice(0, 8)
    const scope = `${day}/${region}/${service}/aws4_request`
    // Parameter names are fixed, so this is already the code-point order SigV4 requires.
    const token = sessionToken === undefined ? '' : `&X-Amz-Security-Token=${encodeRfc3986(sessionToken)}`
    const head = `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=${encodeRfc3986(`${accessKeyId}/${scope}`)}&X-Amz-Date=${date}&X-Amz-Expires=${expiresIn}${token}`
    const { key, sign } = signer(day, secretAccessKey)
    shared = { second, accessKeyId, secretAccessKey, sessionToken, expiresIn, head, stringToSignHead: `AWS4-HMAC-SHA256\n${date}\n${scope}\n`, signingKey: key, sign }
    return shared
  }

  function canonicalRequest (host: string, path: string, canonicalQuery: string): string {
    return `GET\n${path}\n${canonicalQuery}\nhost:${host}\n\nhost\nUNSIGNED-PAYLOAD`
  }

  function signature ({ host, path, canonicalQuery, amzDate, secretAccessKey }: QuerySignatureInput): string {
    const day = amzDate.slice(0, 8)
    const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${day}/${region}/${service}/aws4_request\n${hash('sha256', canonicalRequest(host, path, canonicalQuery), 'hex')}`
    return signer(day, secretAccessKey).sign(stringToSign)
  }

  function presign ({ protocol, host, path, credentials, signedAt, expiresIn, extraQuery }: QueryPresignRequest): string {
    const { head, stringToSignHead, sign } = sharedFor(signedAt, credentials, expiresIn)
    const extra = extraQuery === undefined || extraQuery === '' ? '' : `&${extraQuery}`
    const sig = sign(stringToSignHead + hash('sha256', canonicalRequest(host, path, `${head}&X-Amz-SignedHeaders=host${extra}`), 'hex'))
    return `${protocol}//${host}${path}?${head}&X-Amz-Signature=${sig}&X-Amz-SignedHeaders=host${extra}`
  }

  /**
   * presign's work for many URLs with no extra parameters, from bytes: the
   * canonical request is the key's path written between cached byte pieces, its
   * hex digest is written into HMAC's inner block after the string-to-sign head,
   * and the inner digest into the outer block. Three one-shot hashes per URL and
   * no string but the digests.
   */
  function plainUrls ({ protocol, host, basePath, credentials, signedAt, expiresIn }: PlainUrlRequest): PlainUrlSigner {
    const { head, stringToSignHead, signingKey } = sharedFor(signedAt, credentials, expiresIn)
    const canonicalHead = `GET\n${basePath}`
    const canonicalTail = Buffer.from(`\n${head}&X-Amz-SignedHeaders=host\nhost:${host}\n\nhost\nUNSIGNED-PAYLOAD`, 'utf8')
    const keyAt = Buffer.byteLength(canonicalHead, 'utf8')
    let canonical = Buffer.alloc(0)
    // One view per canonical request length: the keys of a batch come in few lengths.
    let views: Buffer[] = []
    const hexAt = SHA256_BLOCK_BYTES + Buffer.byteLength(stringToSignHead, 'utf8')
    const inner = Buffer.alloc(hexAt + 2 * SHA256_BYTES)
    const outer = Buffer.alloc(SHA256_BLOCK_BYTES + SHA256_BYTES)
    writeHmacPads(signingKey, inner, outer)
    inner.write(stringToSignHead, SHA256_BLOCK_BYTES, 'utf8')

    return {
      origin: `${protocol}//${host}${basePath}`,
      query: `?${head}&X-Amz-Signature=`,
      tail: '&X-Amz-SignedHeaders=host',
      signature (encodedKey) {
        const length = keyAt + encodedKey.length + canonicalTail.length
        if (length > canonical.length) {
          canonical = Buffer.alloc(Math.max(length, 4096))
          canonical.write(canonicalHead, 0, 'utf8')
          views = []
        }
        writeLatin1(canonical, encodedKey, keyAt)
        canonical.set(canonicalTail, keyAt + encodedKey.length)
        const view = views[length] ?? (views[length] = canonical.subarray(0, length))
        writeLatin1(inner, hash('sha256', view, 'hex'), hexAt)
        writeLatin1(outer, hash('sha256', inner, 'binary'), SHA256_BLOCK_BYTES)
        return hash('sha256', outer, 'hex')
      }
    }
  }

  return { presign, signature, plainUrls }
}

/** Just the presigning function (a presigned GET with no further parameters unless `extraQuery` is given). */
export function createQueryPresigner (region: string, service = 's3'): (request: QueryPresignRequest) => string {
  return createSigV4Query(region, service).presign
}
