/**
 * Presigned URLs minted by software we did not write: botocore (Debian's
 * python3-botocore, what boto3 and the aws CLI sign with), the aws CLI itself
 * (Debian's awscli) and the AWS SDK for JavaScript v3's getSignedUrl.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { S3Client, GetObjectCommand, type GetObjectCommandInput } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'

const run = promisify(execFile)
/** Debian's interpreter and CLI, not whatever a PATH (pyenv, venv) puts first. */
export const DEBIAN_PYTHON = '/usr/bin/python3'
export const DEBIAN_AWS = '/usr/bin/aws'
const SCRIPT = fileURLToPath(new URL('./botocore-presign.py', import.meta.url))

export interface Signer {
  endpoint: string
  region: string
  bucket: string
  forcePathStyle: boolean
  credentials: { accessKeyId: string, secretAccessKey: string, sessionToken?: string }
}

/** Extra GetObject parameters, named as in our tests; botocore's names are mapped in the script. */
export interface ExtraParams {
  filenameDisposition?: string
  contentType?: string
  cacheControl?: string
  contentLanguage?: string
  contentEncoding?: string
  versionId?: string
  partNumber?: number
}

export interface BotocoreCase extends ExtraParams {
  key: string
  expiresIn?: number
}

/** One python process signs every case. */
export async function botocorePresign (signer: Signer, cases: BotocoreCase[]): Promise<string[]> {
  const input = cases.map(({ key, expiresIn, ...params }) => ({
    endpoint: signer.endpoint,
    region: signer.region,
    bucket: signer.bucket,
    addressingStyle: signer.forcePathStyle ? 'path' : 'virtual',
    ...signer.credentials,
    key,
    expiresIn: expiresIn ?? 3600,
    params
  }))
  return await runScript<string[]>([], input)
}

/** The signature botocore's S3 query signer computes for each URL's own request and X-Amz-Date. */
export async function botocoreSignatures (signer: Signer, urls: string[]): Promise<string[]> {
  return await runScript<string[]>(['--signatures'], urls.map(url => ({ url, region: signer.region, ...signer.credentials })))
}

async function runScript<T> (args: string[], input: unknown): Promise<T> {
  const child = execFile(DEBIAN_PYTHON, [SCRIPT, ...args], { maxBuffer: 64 * 1024 * 1024 })
  const output = new Promise<string>((resolve, reject) => {
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', chunk => { stdout += String(chunk) })
    child.stderr?.on('data', chunk => { stderr += String(chunk) })
    child.on('error', reject)
    child.on('close', code => { code === 0 ? resolve(stdout) : reject(new Error(`botocore-presign.py exited ${String(code)}: ${stderr}`)) })
  })
  child.stdin?.end(JSON.stringify(input))
  return JSON.parse(await output) as T
}

/** `aws s3 presign s3://bucket/key` with the CLI's defaults (SigV4, host-only). */
export async function awsCliPresign (signer: Signer, key: string, expiresIn = 3600): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'artos-awscli-'))
  try {
    const config = join(dir, 'config')
    await writeFile(config, `[default]\nregion = ${signer.region}\ns3 =\n  addressing_style = ${signer.forcePathStyle ? 'path' : 'virtual'}\n`)
    const { stdout } = await run(DEBIAN_AWS, ['s3', 'presign', `s3://${signer.bucket}/${key}`, '--expires-in', String(expiresIn), '--endpoint-url', signer.endpoint], {
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        AWS_CONFIG_FILE: config,
        AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
        AWS_ACCESS_KEY_ID: signer.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: signer.credentials.secretAccessKey,
        ...(signer.credentials.sessionToken === undefined ? {} : { AWS_SESSION_TOKEN: signer.credentials.sessionToken })
      }
    })
    return stdout.trim()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** getSignedUrl(client, new GetObjectCommand(…)), as the SDK's documentation shows it. */
export async function sdkPresign (signer: Signer, key: string, params: ExtraParams = {}, expiresIn = 3600): Promise<string> {
  const client = new S3Client({ endpoint: signer.endpoint, region: signer.region, forcePathStyle: signer.forcePathStyle, credentials: signer.credentials })
  try {
    const input: GetObjectCommandInput = {
      Bucket: signer.bucket,
      Key: key,
      ResponseContentDisposition: params.filenameDisposition,
      ResponseContentType: params.contentType,
      ResponseCacheControl: params.cacheControl,
      ResponseContentLanguage: params.contentLanguage,
      ResponseContentEncoding: params.contentEncoding,
      VersionId: params.versionId,
      PartNumber: params.partNumber
    }
    return await getSignedUrl(client, new GetObjectCommand(input), { expiresIn })
  } finally {
    client.destroy()
  }
}
