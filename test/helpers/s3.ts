/**
 * The S3-compatible server a test talks to over loopback: the one named by
 * S3_TEST_* variables (Swift from scripts/swift-s3.sh, or real S3), else an
 * in-process s3rver started for this test. Each test gets a bucket of its own.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import S3rver from 's3rver'
import {
  S3Client, CreateBucketCommand, PutObjectCommand, DeleteObjectCommand, DeleteBucketCommand, ListObjectsV2Command, PutBucketVersioningCommand
} from '@aws-sdk/client-s3'

export interface TestS3 {
  endpoint: string
  region: string
  bucket: string
  forcePathStyle: boolean
  credentials: { accessKeyId: string, secretAccessKey: string }
  /** True when the server checks SigV4 signatures (Swift, real S3), false for s3rver. */
  verifiesSignatures: boolean
  client: S3Client
  put: (key: string, body: string | Uint8Array, contentType?: string) => Promise<void>
}

interface Teardown { teardown: (fn: () => unknown) => void }

export function externalS3Configured (): boolean {
  return process.env.S3_TEST_ENDPOINT !== undefined && process.env.S3_TEST_ENDPOINT !== ''
}

export async function startTestS3 (t: Teardown): Promise<TestS3> {
  return externalS3Configured() ? await useExternalS3(t) : await startS3rver(t)
}

async function startS3rver (t: Teardown): Promise<TestS3> {
  const directory = await mkdtemp(join(tmpdir(), 'artos-s3rver-'))
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true })
  const { port } = await server.run()
  t.teardown(async () => {
    await server.close()
    await rm(directory, { recursive: true, force: true })
  })
  return await useS3rver(t, `http://127.0.0.1:${port}`)
}

/** An s3rver already listening at `endpoint` (the benchmarks run one in a process of its own). */
export async function useS3rver (t: Teardown, endpoint: string): Promise<TestS3> {
  return await withBucket(t, {
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    verifiesSignatures: false
  })
}

async function useExternalS3 (t: Teardown): Promise<TestS3> {
  const env = process.env
  const required = ['S3_TEST_ENDPOINT', 'S3_TEST_ACCESS_KEY_ID', 'S3_TEST_SECRET_ACCESS_KEY'] as const
  for (const name of required) {
    if (env[name] === undefined || env[name] === '') throw new Error(`${name} must be set when S3_TEST_ENDPOINT is`)
  }
  return await withBucket(t, {
    endpoint: env.S3_TEST_ENDPOINT as string,
    region: env.S3_TEST_REGION ?? 'us-east-1',
    forcePathStyle: env.S3_TEST_FORCE_PATH_STYLE !== 'false',
    credentials: { accessKeyId: env.S3_TEST_ACCESS_KEY_ID as string, secretAccessKey: env.S3_TEST_SECRET_ACCESS_KEY as string },
    verifiesSignatures: true
  })
}

async function withBucket (t: Teardown, server: Omit<TestS3, 'bucket' | 'client' | 'put'>): Promise<TestS3> {
  const bucket = process.env.S3_TEST_BUCKET ?? `artos-test-${randomBytes(6).toString('hex')}`
  const ownsBucket = process.env.S3_TEST_BUCKET === undefined
  const client = new S3Client({
    endpoint: server.endpoint, region: server.region, forcePathStyle: server.forcePathStyle, credentials: server.credentials
  })
  if (ownsBucket) await client.send(new CreateBucketCommand({ Bucket: bucket }))
  const keys = new Set<string>()
  t.teardown(async () => {
    // Leave nothing behind on a shared server.
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket })).catch(() => undefined)
    for (const key of new Set([...keys, ...(listed?.Contents ?? []).map(o => o.Key as string)])) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => {})
    }
    if (ownsBucket) await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {})
    client.destroy()
  })
  return {
    ...server,
    bucket,
    client,
    async put (key, body, contentType = 'application/octet-stream') {
      keys.add(key)
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }))
    }
  }
}

/** Turns on versioning for the test's bucket and writes `older`, then `newer`, under `key`; returns the older version's id. */
export async function putTwoVersions (s3: TestS3, key: string, older: string, newer: string): Promise<string | undefined> {
  await s3.client.send(new PutBucketVersioningCommand({ Bucket: s3.bucket, VersioningConfiguration: { Status: 'Enabled' } }))
  const first = await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: older }))
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: newer }))
  return first.VersionId
}
