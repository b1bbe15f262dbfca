/**
 * S3 access: one long-lived S3Client, the bucket's resolved origin and the
 * credentials, decorated onto the instance (`fastify.artosFilesS3`, read with
 * filesS3Of in src/decorators.ts). Signing and verifying presigned
 * GETs is src/presigned-get.ts's job; this plugin only feeds it.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { S3Client } from '@aws-sdk/client-s3'
import { fromNodeProviderChain } from '@aws-sdk/credential-providers'
import { formatUrl } from '@aws-sdk/util-format-url'
import type { AwsCredentialIdentityProvider } from '@aws-sdk/types'
import { credentialsOutlasting, type CredentialSource } from '../src/credentials.js'
import { objectOriginOf, type ObjectOrigin, type PresignedGet } from '../src/presigned-url.js'
import { createPresignedGets, type PresignBatch, type SignedGet } from '../src/presigned-get.js'
import type { PresignItem } from '../src/schemas.js'
import { claimNames, S3 } from '../src/decorators.js'

export { encodeKeyPath } from '../src/presigned-get.js'

export interface S3PluginOptions {
  bucket: string
  region: string
  endpoint?: string | undefined
  forcePathStyle?: boolean | undefined
  credentials?: CredentialSource | undefined
  /** A host's own client; we then neither configure nor destroy it. */
  s3Client?: S3Client | undefined
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
  /** A presigned GET URL for an already-checked request, valid for `expiresIn` seconds. */
  presignGetObject: (request: PresignItem) => Promise<SignedGet>
  /** The same for many requests, with one credentials look-up and one signing instant. */
  presignGetObjects: (requests: PresignItem[]) => Promise<SignedGet[]>
  /** A signer for one batch: one credentials look-up, one signing instant (src/batch-response.ts). */
  presignBatch: () => Promise<PresignBatch>
  /** Scheme, authority and base path that every URL we sign starts with. */
  objectOrigin: ObjectOrigin
  /**
   * Verifies a parsed presigned URL over its whole query with our current key.
   * Returns the URL to fetch when the signature matches, else undefined.
   */
  verifyPresignedGet: (url: PresignedGet) => Promise<string | undefined>
  credentials: AwsCredentialIdentityProvider
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

  const objectOrigin = objectOriginOf(bucketUrl)
  const urls = createPresignedGets({ origin: objectOrigin, signingRegion, expiresIn })
  // Verifying needs only the current key, not one that outlasts a new URL.
  const current = typeof source === 'function' ? source : async () => source

  return {
    client,
    objectOrigin,
    bucket,
    bucketUrl,
    signingRegion,
    expiresIn,
    credentials,
    async presignGetObject (request) {
      // Throws rather than hand out a URL that would outlive its credentials.
      return urls.sign(request, await credentials(), Date.now())
    },
    async presignGetObjects (requests) {
      const batch = urls.batch(await credentials(), Date.now())
      return requests.map(batch.sign)
    },
    async presignBatch () {
      return urls.batch(await credentials(), Date.now())
    },
    async verifyPresignedGet (url) {
      return urls.verify(url, await current())
    }
  }
}

async function s3Plugin (fastify: FastifyInstance, opts: S3PluginOptions): Promise<void> {
  claimNames(fastify, { instance: [S3] })
  const s3 = await createFilesS3(opts)
  fastify.decorate(S3, s3)
  if (opts.s3Client === undefined) {
    fastify.addHook('onClose', async () => { s3.client.destroy() })
  }
}

export default fp(s3Plugin, { name: 'artos-files-s3', fastify: '5.x' })
