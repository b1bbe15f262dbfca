/**
 * Local development without any cloud account: an embedded S3-compatible
 * server (s3rver, data under DATA_DIR/s3) and a persisted dev JWT secret.
 * Never used when NODE_ENV=production (config.ts refuses to start instead).
 * s3rver does not verify signatures; the signature-verifying suite uses Swift.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { createSigner } from 'fast-jwt'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { ConfigError } from './config.js'
import type { FilesOptions } from './options.js'

export const DEV_BUCKET = 'artos-dev'
export const DEV_ORG = 'demo-org'
export const DEV_OBJECT_KEY = `${DEV_ORG}/documents/welcome.txt`
/** s3rver's built-in account. */
export const EMBEDDED_S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

export interface EmbeddedS3 {
  endpoint: string
  close: () => Promise<void>
}

/**
 * s3rver is a dev dependency: an install without them (npm ci --omit=dev) has
 * none, and then there is no S3 at all until one is configured.
 */
async function loadS3rver (): Promise<typeof import('s3rver')> {
  try {
    return (await import('s3rver')).default
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && (err as Error).message.includes("'s3rver'")) {
      throw new ConfigError('no S3 configured: set S3_BUCKET (and S3_REGION, or S3_ENDPOINT for an S3-compatible store, plus credentials); the embedded development S3 (s3rver) is a dev dependency and is not installed')
    }
    throw err
  }
}

/** Starts s3rver on a free loopback port with `bucket` created and the demo object in it. */
export async function startEmbeddedS3 (directory: string, bucket: string, port = 0): Promise<EmbeddedS3> {
  const S3rver = await loadS3rver()
  await mkdir(directory, { recursive: true })
  const server = new S3rver({
    address: '127.0.0.1',
    port,
    directory,
    silent: true,
    configureBuckets: [{ name: bucket, configs: [] }]
  })
  const { port: boundPort } = await server.run()
  const endpoint = `http://127.0.0.1:${boundPort}`
  const client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: EMBEDDED_S3_CREDENTIALS })
  try {
    await client.send(new PutObjectCommand({
      Bucket: bucket, Key: DEV_OBJECT_KEY, Body: 'Hello from the Artos Files API.\n', ContentType: 'text/plain; charset=utf-8'
    }))
  } finally {
    client.destroy()
  }
  return {
    endpoint,
    close: async () => { await server.close() }
  }
}

/** The dev secret lives in DATA_DIR so tokens printed once keep working across restarts. */
export async function loadOrCreateDevJwtSecret (dataDir: string): Promise<string> {
  const file = join(dataDir, 'dev-jwt-secret')
  try {
    const secret = (await readFile(file, 'utf8')).trim()
    if (secret.length >= 32) return secret
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true })
  const secret = randomBytes(32).toString('base64url')
  await writeFile(file, `${secret}\n`, { mode: 0o600 })
  return secret
}

export async function readDevJwtSecret (dataDir: string): Promise<string> {
  return (await readFile(join(dataDir, 'dev-jwt-secret'), 'utf8')).trim()
}

export function signDevToken (secret: string, org: string, { orgClaim = 'org_id', expiresInSeconds = 12 * 3600 } = {}): string {
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: expiresInSeconds * 1000 })
  return sign({ sub: 'dev-user', [orgClaim]: org })
}

export interface DevEnvironment {
  /** The options with the embedded S3 and/or dev secret filled in. */
  files: FilesOptions
  close: () => Promise<void>
  /** The lines to print once the server listens: a token and a curl command. */
  banner: (address: string) => string
}

/** Fills in what a development machine lacks: S3 (embedded s3rver) and/or a JWT secret. */
export async function prepareDevEnvironment (files: Omit<FilesOptions, 'bucket'> & { bucket?: string }, dataDir: string): Promise<DevEnvironment> {
  let embeddedS3: EmbeddedS3 | undefined
  let devSecret: string | undefined
  const prepared = { ...files }
  if (prepared.bucket === undefined) {
    embeddedS3 = await startEmbeddedS3(join(dataDir, 's3'), DEV_BUCKET)
    Object.assign(prepared, { bucket: DEV_BUCKET, endpoint: embeddedS3.endpoint, forcePathStyle: true, credentials: EMBEDDED_S3_CREDENTIALS })
  }
  if (prepared.jwt === undefined) {
    devSecret = await loadOrCreateDevJwtSecret(dataDir)
    prepared.jwt = { secret: devSecret }
  }
  return {
    files: prepared as FilesOptions,
    close: async () => { await embeddedS3?.close() },
    banner: (address) => {
      const lines: string[] = []
      if (embeddedS3 !== undefined) lines.push(`Embedded local S3 at ${embeddedS3.endpoint} (data in ${join(dataDir, 's3')}), bucket "${DEV_BUCKET}", demo object ${DEV_OBJECT_KEY}`)
      if (devSecret !== undefined) {
        const token = signDevToken(devSecret, DEV_ORG, { orgClaim: files.orgClaim })
        lines.push(
          `Dev token for organization "${DEV_ORG}" (valid 12 h; new ones: npm run token -- --org <org>):`,
          token,
          '',
          'Try it:',
          `curl -s -X POST ${address}/generate-presigned-url -H "Authorization: Bearer ${token}" -H 'Content-Type: application/json' -d '{"key":"${DEV_OBJECT_KEY}"}'`,
          `Docs: ${address}/documentation`
        )
      }
      return `\n${lines.join('\n')}\n`
    }
  }
}
