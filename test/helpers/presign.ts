/** Getting URLs the way a client does: through POST /generate-presigned-url. */
import type { FastifyInstance } from 'fastify'
import { orgToken } from './tokens.js'

export async function presignedUrlFor (app: FastifyInstance, key: string, org = key.split('/')[0]): Promise<string> {
  const res = await app.inject({
    method: 'POST', url: '/generate-presigned-url', headers: { authorization: `Bearer ${orgToken(org)}` }, payload: { key }
  })
  if (res.statusCode !== 200) throw new Error(`presign failed: ${res.statusCode} ${res.body}`)
  return res.json<{ url: string }>().url
}

export function proxyPath (presignedUrl: string): string {
  return `/api/v1/proxy/file?presigned_url=${encodeURIComponent(presignedUrl)}`
}
