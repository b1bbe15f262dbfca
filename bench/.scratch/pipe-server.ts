import http from 'node:http'
import { Agent, request } from 'undici'
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
const s3 = JSON.parse(process.env.BENCH_S3 as string)
const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.forcePathStyle, credentials: s3.credentials })
const agent = new Agent({})
const server = http.createServer(async (req, res) => {
  if (req.method === 'POST') {
    let b = ''; for await (const c of req) b += c
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: JSON.parse(b).key }), { expiresIn: 3600 })
    res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ url })); return
  }
  const u = new URL(req.url ?? '/', 'http://x').searchParams.get('presigned_url') as string
  const up = await request(u, { dispatcher: agent })
  res.writeHead(up.statusCode, { 'content-length': String(up.headers['content-length']) })
  up.body.pipe(res)
})
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number }
  process.stdout.write(JSON.stringify({ address: `http://127.0.0.1:${a.port}`, pid: process.pid }) + '\n')
})
process.stdin.on('end', () => process.exit(0)); process.stdin.resume()
process.once('SIGTERM', () => process.exit(0))
