import Fastify from 'fastify'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
const V = process.env.VARIANT ?? ''
const s3 = JSON.parse(process.env.BENCH_S3 as string)
const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials })
const agent = V.includes('opts') ? new Agent({ connectTimeout: 5000, headersTimeout: 15000, bodyTimeout: 30000, maxRedirections: 0 } as Agent.Options) : new Agent({})
const app = Fastify()
app.post('/generate-presigned-url', async (req) => {
  const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: (req.body as any).key }), { expiresIn: 3600 })
  return { url }
})
app.get('/api/v1/proxy/file', async (req, reply) => {
  const u = (req.query as any).presigned_url as string
  const abort = new AbortController()
  if (V.includes('signal')) reply.raw.once('close', () => { if (!reply.raw.writableFinished) abort.abort() })
  const up = await request(u, { dispatcher: agent, ...(V.includes('signal') ? { signal: abort.signal } : {}) })
  reply.header('content-length', up.headers['content-length'])
  reply.header('content-type', 'application/octet-stream')
  return await reply.code(200).send(up.body as Readable)
})
const address = await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(JSON.stringify({ address, pid: process.pid }) + '\n')
process.stdin.on('end', () => process.exit(0)); process.stdin.resume()
process.once('SIGTERM', () => process.exit(0))
