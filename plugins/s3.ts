/**
 * S3 access: one long-lived S3Client and one presigner, built at startup and
 * decorated onto the instance. A presign costs one SHA-256 and one HMAC with a
 * cached signing key (src/sigv4-presign.ts), instead of rebuilding the SDK
 * middleware stack as getSignedUrl does on every call.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { S3Client } from '@aws-sdk/client-s3'
import { S3RequestPresigner } from '@aws-sdk/s3-request-presigner'
import { fromNodeProviderChain } from '@aws-sdk/credential-providers'
import { HttpRequest } from '@smithy/protocol-http'
import { Hash } from '@smithy/hash-node'
import { formatUrl } from '@aws-sdk/util-format-url'
import type { AwsCredentialIdentityProvider } from '@aws-sdk/types'
import { timingSafeEqual } from 'node:crypto'
import { credentialsOutlasting, type CredentialSource } from '../src/credentials.js'
import { objectOriginOf, type ObjectOrigin, type PresignedGet } from '../src/presigned-url.js'
import { createQueryPresigner, encodeRfc3986 } from '../src/sigv4-presign.js'

export interface S3PluginOptions {
  bucket: string
  region: string
  endpoint?: string
  forcePathStyle?: boolean
  credentials?: CredentialSource
  /** A host's own client; we then neither configure nor destroy it. */
  s3Client?: S3Client
  /** Lifetime of every presigned URL, in seconds. */
  expiresIn: number
}

export interface FilesS3 {
  client: S3Client
  bucket: string
  /** Where the bucket's objects live, e.g. http://127.0.0.1:9000/bucket or https://bucket.s3.eu-west-1.amazonaws.com/ */
  bucketUrl: URL
  signingRegion: string
  expiresIn: number
  /** A presigned GET URL for `key` in our bucket, valid for `expiresIn` seconds. */
  presignGetObject: (key: string) => Promise<string>
  /** Scheme, authority and base path that every URL we sign starts with. */
  objectOrigin: ObjectOrigin
  /**
   * Re-signs a parsed presigned URL with our own key. Returns the URL to fetch
   * when every signed parameter and the signature match, else undefined.
   */
  verifyPresignedGet: (url: PresignedGet) => Promise<string | undefined>
  credentials: AwsCredentialIdentityProvider
}

declare module 'fastify' {
  interface FastifyInstance {
    s3: FilesS3
  }
}

const NOTHING_TO_ENCODE = /^[A-Za-z0-9\-._~/]*$/

/** RFC 3986 unreserved characters stay; everything else, `/` excepted, is percent-encoded as S3 expects. */
export function encodeKeyPath (key: string): string {
  // Most keys need no encoding at all; skip the split/encode/join for them.
  if (NOTHING_TO_ENCODE.test(key)) return key
  return key.split('/').map(encodeRfc3986).join('/')
}

export async function createFilesS3 (opts: S3PluginOptions): Promise<FilesS3> {
  const { bucket, expiresIn } = opts
  // The signer gets the refreshing provider itself: the client's own cache would
  // keep credentials until 5 minutes before they expire, too late for a 1-hour URL.
  const source = opts.s3Client?.config.credentials ?? opts.credentials ?? fromNodeProviderChain()
  const credentials = credentialsOutlasting(source, expiresIn)
  const client = opts.s3Client ?? new S3Client({
    region: opts.region,
    endpoint: opts.endpoint,
    forcePathStyle: opts.forcePathStyle,
    credentials
  })
  const region = await client.config.region()

  // Let the SDK's own endpoint rules decide virtual-hosted vs path style, FIPS, custom endpoints.
  const customEndpoint = client.config.isCustomEndpoint && client.config.endpoint !== undefined
    ? formatUrl({ ...(await client.config.endpoint()), query: undefined })
    : undefined
  const resolved = client.config.endpointProvider({
    Bucket: bucket,
    Region: region,
    ForcePathStyle: client.config.forcePathStyle,
    Endpoint: customEndpoint,
    UseFIPS: await client.config.useFipsEndpoint(),
    UseDualStack: await client.config.useDualstackEndpoint(),
    Accelerate: client.config.useAccelerateEndpoint
  })
  const bucketUrl = new URL(resolved.url.href)
  const authScheme = (resolved.properties?.authSchemes as Array<{ signingRegion?: string }> | undefined)?.[0]
  const signingRegion = authScheme?.signingRegion ?? region

  const presign = createQueryPresigner(signingRegion)
  // Verifying uses the SDK's independent implementation, so every proxied URL
  // also cross-checks our fast signer. It needs only the current key, not one
  // that outlasts a new URL.
  const verifier = new S3RequestPresigner({
    credentials: source,
    region: signingRegion,
    sha256: Hash.bind(null, 'sha256'),
    service: 's3'
  })
  const protocol = bucketUrl.protocol
  const hostname = bucketUrl.hostname.replace(/^\[(.*)\]$/, '$1')
  const port = bucketUrl.port === '' ? undefined : Number(bucketUrl.port)
  const host = bucketUrl.host
  const objectOrigin = objectOriginOf(bucketUrl)
  const { basePath } = objectOrigin

  const getRequest = (key: string): HttpRequest => new HttpRequest({
    protocol,
    hostname,
    port,
    method: 'GET',
    path: basePath + encodeKeyPath(key),
    headers: { host }
  })

  return {
    client,
    objectOrigin,
    bucket,
    bucketUrl,
    signingRegion,
    expiresIn,
    credentials,
    async presignGetObject (key: string): Promise<string> {
      // Throws rather than hand out a URL that would outlive its credentials.
      const identity = await credentials()
      return presign({ protocol, host, path: basePath + encodeKeyPath(key), credentials: identity, signedAt: new Date(), expiresIn })
    },
    async verifyPresignedGet (url: PresignedGet): Promise<string | undefined> {
      const expected = await verifier.presign(getRequest(url.key), {
        expiresIn: url.expiresIn, signingDate: url.signedAt, signingRegion
      })
      const query = expected.query as Record<string, string>
      const { 'X-Amz-Signature': signature, ...signedParams } = query
      if (url.query.length !== Object.keys(signedParams).length) return undefined
      for (const [name, value] of url.query) {
        if (signedParams[name] !== value) return undefined
      }
      const given = Buffer.from(url.signature)
      const ours = Buffer.from(signature)
      if (given.length !== ours.length || !timingSafeEqual(given, ours)) return undefined
      return formatUrl(expected)
    }
  }
}

async function s3Plugin (fastify: FastifyInstance, opts: S3PluginOptions): Promise<void> {
  const s3 = await createFilesS3(opts)
  fastify.decorate('s3', s3)
  if (opts.s3Client === undefined) {
    fastify.addHook('onClose', async () => { s3.client.destroy() })
  }
}

export default fp(s3Plugin, { name: 'artos-files-s3', fastify: '5.x' })
