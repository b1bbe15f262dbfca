/**
 * What signing one URL of a batch costs in CPU, in this process, for the same keys:
 *
 *   sdk    `await getSignedUrl(new S3Client(…), new GetObjectCommand(…))`, what L does per item;
 *   ours   createFilesS3(…).presignBatch() and its byte signer (plain.signature), what
 *          B signs a batch with (src/batch-response.ts writes the URLs around it);
 *   floor  the three SHA-256 runs no SigV4 query presign can skip (the canonical
 *          request, then HMAC's inner and outer hash under the day's signing key),
 *          as one-shot crypto.hash() calls over inputs built beforehand: the rest free.
 *
 * floor is checked to reproduce our URLs' signatures. CPU time (process.cpuUsage),
 * not wall time, so other processes on a shared host count less; rounds interleaved,
 * medians. sdk ÷ floor bounds what any Node server can reach against L.
 */
import { createHmac, hash } from 'node:crypto'
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { createFilesS3, encodeKeyPath } from '../plugins/s3.js'
import { median, type BenchS3 } from './lib.js'

export interface SigningCost {
  /** Median CPU ns per URL. */
  sdkNs: number
  oursNs: number
  floorNs: number
  runs: { sdk: number[], ours: number[], floor: number[] }
}

/** The three hash runs that produce `url`'s signature, for URLs like it (no extra parameters). */
function floorSigner (sampleUrl: string, secretAccessKey: string): (canonicalRequest: string) => string {
  const { searchParams } = new URL(sampleUrl)
  const date = searchParams.get('X-Amz-Date') as string
  const scope = (searchParams.get('X-Amz-Credential') as string).split('/').slice(1).join('/')
  const [day, ...rest] = scope.split('/')
  let key = createHmac('sha256', `AWS4${secretAccessKey}`).update(day).digest()
  for (const part of rest) key = createHmac('sha256', key).update(part).digest()
  const head = `AWS4-HMAC-SHA256\n${date}\n${scope}\n`
  const inner = Buffer.alloc(64 + head.length + 64)
  const outer = Buffer.alloc(64 + 32)
  for (let i = 0; i < 64; i++) {
    inner[i] = (key[i] ?? 0) ^ 0x36
    outer[i] = (key[i] ?? 0) ^ 0x5c
  }
  inner.write(head, 64, 'latin1')
  return canonicalRequest => {
    inner.write(hash('sha256', canonicalRequest, 'hex'), 64 + head.length, 'latin1')
    outer.write(hash('sha256', inner, 'binary'), 64, 'binary')
    return hash('sha256', outer, 'hex')
  }
}

/** The canonical request `url` was signed over (no extra parameters, so X-Amz-SignedHeaders is last). */
function canonicalRequestOf (url: string): string {
  const u = new URL(url)
  const query = u.search.slice(1).replace(/X-Amz-Signature=[0-9a-f]{64}&/, '')
  return `GET\n${u.pathname}\n${query}\nhost:${u.host}\n\nhost\nUNSIGNED-PAYLOAD`
}

const cpuNs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) * 1000 }

export async function signingCost (s3: BenchS3, keys: string[], rounds: number): Promise<SigningCost> {
  const { bucket, region, endpoint, forcePathStyle, credentials } = s3
  const files = await createFilesS3({ bucket, region, endpoint, forcePathStyle, credentials, expiresIn: 3600 })
  const client = new S3Client({ region, endpoint, forcePathStyle, credentials })
  try {
    const items = keys.map(key => ({ key }))
    const paths = keys.map(encodeKeyPath)
    // One instant: the byte signer must reproduce each URL's signature.
    const batch = await files.presignBatch()
    const urls = items.map(item => batch.sign(item).url)
    const unlike = urls.findIndex((url, i) => new URL(url).searchParams.get('X-Amz-Signature') !== batch.plain.signature(paths[i]))
    if (unlike !== -1) throw new Error(`the batch signer does not reproduce the signature of ${urls[unlike]}`)
    const canonical = urls.map(canonicalRequestOf)
    const floor = floorSigner(urls[0], credentials.secretAccessKey)
    const wrong = urls.findIndex((url, i) => new URL(url).searchParams.get('X-Amz-Signature') !== floor(canonical[i]))
    if (wrong !== -1) throw new Error(`the hash floor does not reproduce the signature of ${urls[wrong]}`)

    let sink = 0
    const perUrl = async (times: number, fn: () => Promise<void> | void): Promise<number> => {
      const t0 = cpuNs()
      for (let i = 0; i < times; i++) await fn()
      return (cpuNs() - t0) / times / keys.length
    }
    const sdk = async (): Promise<void> => {
      for (const key of keys) sink += (await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: 3600 })).length
    }
    const ours = async (): Promise<void> => {
      const { plain } = await files.presignBatch()
      for (const path of paths) sink += plain.signature(path).length
    }
    const hashes = (): void => { for (const c of canonical) sink += floor(c).length }
    // Warm-up (JIT), then interleaved rounds of about the same length each.
    await perUrl(2, sdk)
    await perUrl(20, ours)
    await perUrl(20, hashes)
    const runs = { sdk: [] as number[], ours: [] as number[], floor: [] as number[] }
    for (let r = 0; r < rounds; r++) {
      runs.sdk.push(await perUrl(1, sdk))
      runs.ours.push(await perUrl(50, ours))
      runs.floor.push(await perUrl(50, hashes))
    }
    if (sink === 0) throw new Error('nothing signed')
    return { sdkNs: median(runs.sdk), oursNs: median(runs.ours), floorNs: median(runs.floor), runs }
  } finally {
    client.destroy()
    files.client.destroy()
  }
}
