/**
 * Which presigned URLs the proxy may fetch. Pure and synchronous: it decides
 * from the raw string alone, before any outbound connection, and is tested
 * exhaustively (tables and fast-check properties). Signature verification,
 * which needs our credentials, follows in plugins/s3.ts.
 */
import { checkKeyForOrg, isSafeOrgId } from './object-key.js'

/** Where our objects live, from the S3 plugin's resolved bucket URL. */
export interface ObjectOrigin {
  /** e.g. "http:" or "https:" */
  protocol: string
  /** host[:port] exactly as our URLs carry it, lower case, no default port */
  authority: string
  /** "/bucket/" for path style, "/" for virtual-hosted style */
  basePath: string
}

export function objectOriginOf (bucketUrl: URL): ObjectOrigin {
  const basePath = bucketUrl.pathname.endsWith('/') ? bucketUrl.pathname : `${bucketUrl.pathname}/`
  return { protocol: bucketUrl.protocol, authority: bucketUrl.host.toLowerCase(), basePath }
}

export interface PresignedGet {
  key: string
  /** Query parameters other than X-Amz-Signature, in their original order. */
  query: Array<[string, string]>
  signature: string
  amzDate: string
  signedAt: Date
  expiresIn: number
  credential: string
}

export type UrlVerdict =
  | { ok: true, url: PresignedGet }
  /**
   * invalid → 422, forbidden → 403, expired → 410. `key` is the object the URL
   * names, once it is known to name one in our bucket (for the audit trail).
   */
  | { ok: false, reason: 'invalid' | 'forbidden' | 'expired', message: string, key?: string }

const REQUIRED_PARAMS = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'] as const
/**
 * The parameters of a presigned GetObject, whoever minted it (our presigner,
 * botocore and the aws CLI, the AWS SDK for JavaScript): SigV4's own, the SDK's
 * operation marker and checksum mode, response header overrides, a version and
 * a part. Each must also be covered by the signature (plugins/s3.ts verifies the
 * whole query). Anything else (`acl`, `tagging`, `torrent`, `uploadId`, …) would
 * make the GET another operation, whose answer is not a file.
 */
export const GET_OBJECT_PARAMS: ReadonlySet<string> = new Set<string>([
  ...REQUIRED_PARAMS, 'X-Amz-Security-Token', 'X-Amz-Content-Sha256',
  'x-id', 'x-amz-checksum-mode',
  'response-cache-control', 'response-content-disposition', 'response-content-encoding',
  'response-content-language', 'response-content-type', 'response-expires',
  'versionId', 'partNumber'
])
/** Values that would change what the GET means, or that no tool writes otherwise. */
const FIXED_VALUES: ReadonlyMap<string, string> = new Map([
  ['x-id', 'GetObject'],
  ['X-Amz-Content-Sha256', 'UNSIGNED-PAYLOAD']
])
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/
/** A URL "signed" further in the future than this is not one of ours. */
const MAX_CLOCK_SKEW_MS = 15 * 60_000
const MAX_URL_LENGTH = 8192
// Only printable ASCII: our URLs are fully percent-encoded, and the WHATWG
// parser silently drops tabs/newlines and trims spaces, which would let a
// string mean something other than what it looks like.
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/

type Refusal = Extract<UrlVerdict, { ok: false }>
const invalid = (message: string): Refusal => ({ ok: false, reason: 'invalid', message })
const forbidden = (message: string): Refusal => ({ ok: false, reason: 'forbidden', message })
const expired = (message: string): Refusal => ({ ok: false, reason: 'expired', message })
const withKey = (key: string, refusal: Refusal): Refusal => ({ ...refusal, key })

/** The organization a key belongs to: its first segment, when that is a valid organization id. */
export function keyOrganization (key: string): string | undefined {
  const slash = key.indexOf('/')
  const org = slash === -1 ? undefined : key.slice(0, slash)
  return isSafeOrgId(org) ? org : undefined
}

/**
 * @param org the caller's organization, or how to read it from the key (plain
 *   links carry no token: the key's own organization is the one it counts against)
 */
export function checkPresignedUrl (raw: unknown, origin: ObjectOrigin, org: string | ((key: string) => string | undefined), now: number): UrlVerdict {
  if (typeof raw !== 'string' || raw === '') return invalid('presigned_url must be given exactly once')
  if (raw.length > MAX_URL_LENGTH || !PRINTABLE_ASCII.test(raw)) return invalid('presigned_url is not a URL')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return invalid('presigned_url is not a URL')
  }
  if (url.hash !== '' || raw.includes('#')) return invalid('presigned_url must not have a fragment')

  const params = new Map<string, string>()
  for (const [name, value] of url.searchParams) {
    // Only names we know are echoed: this message is logged, and a pasted secret can be a name.
    if (params.has(name)) return invalid(`presigned_url repeats ${GET_OBJECT_PARAMS.has(name) ? name : 'a parameter'}`)
    params.set(name, value)
  }
  for (const name of REQUIRED_PARAMS) {
    if (params.get(name) === undefined || params.get(name) === '') return invalid(`presigned_url is not a SigV4 presigned URL (no ${name})`)
  }
  if (params.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return invalid('presigned_url is not a SigV4 presigned URL')

  // Origin and path are judged on the raw text: the parser would resolve dot
  // segments, backslashes and numeric IP forms before we could see them.
  const schemeEnd = raw.indexOf('://')
  const authorityEnd = raw.slice(schemeEnd + 3).search(/[/?\\]/)
  const rawScheme = raw.slice(0, schemeEnd + 1).toLowerCase()
  const rawAuthority = authorityEnd === -1 ? raw.slice(schemeEnd + 3) : raw.slice(schemeEnd + 3, schemeEnd + 3 + authorityEnd)
  if (schemeEnd === -1 || rawScheme !== origin.protocol || rawAuthority.toLowerCase() !== origin.authority) {
    return forbidden('only S3 URLs are allowed')
  }
  const rawPath = raw.slice(schemeEnd + 3 + rawAuthority.length).split('?')[0]
  if (rawPath.includes('\\')) return forbidden('only S3 URLs are allowed')
  for (const segment of rawPath.split('/')) {
    const dotted = segment.replace(/%2e/gi, '.')
    if (dotted === '.' || dotted === '..') return forbidden('only S3 URLs are allowed')
  }
  if (!rawPath.startsWith(origin.basePath)) return forbidden('only S3 URLs are allowed')
  let key: string
  try {
    // S3 decodes the path once; "+" in a path is a literal plus, not a space.
    key = decodeURIComponent(rawPath.slice(origin.basePath.length))
  } catch {
    return forbidden('only S3 URLs are allowed')
  }
  const expectedOrg = typeof org === 'string' ? org : org(key)
  if (expectedOrg === undefined || !checkKeyForOrg(key, expectedOrg).ok) return withKey(key, forbidden('only S3 URLs are allowed'))

  for (const [name, value] of params) {
    if (!GET_OBJECT_PARAMS.has(name)) return withKey(key, expired('Expired or invalid presigned URL'))
    const fixed = FIXED_VALUES.get(name)
    if (fixed !== undefined && value !== fixed) return withKey(key, expired('Expired or invalid presigned URL'))
  }
  if (params.get('X-Amz-SignedHeaders') !== 'host') return withKey(key, expired('Expired or invalid presigned URL'))
  const amzDate = params.get('X-Amz-Date') as string
  const match = AMZ_DATE.exec(amzDate)
  const expiresText = params.get('X-Amz-Expires') as string
  if (match === null || !/^\d{1,6}$/.test(expiresText)) return withKey(key, invalid('presigned_url is not a SigV4 presigned URL'))
  const [, y, mo, d, h, mi, s] = match
  const signedAt = new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, +s))
  // Date.UTC rolls over out-of-range fields (second 60, day 32): insist on a real instant.
  if (signedAt.toISOString().replace(/[-:]|\.\d{3}/g, '') !== amzDate) return withKey(key, invalid('presigned_url is not a SigV4 presigned URL'))
  const expiresIn = Number(expiresText)
  if (expiresIn < 1 || expiresIn > 604800) return withKey(key, expired('Expired or invalid presigned URL'))
  if (signedAt.getTime() - now > MAX_CLOCK_SKEW_MS) return withKey(key, expired('Expired or invalid presigned URL'))
  if (now >= signedAt.getTime() + expiresIn * 1000) return withKey(key, expired('Expired or invalid presigned URL'))

  return {
    ok: true,
    url: {
      key,
      query: [...params].filter(([name]) => name !== 'X-Amz-Signature'),
      signature: params.get('X-Amz-Signature') as string,
      amzDate,
      signedAt,
      expiresIn,
      credential: params.get('X-Amz-Credential') as string
    }
  }
}
