/**
 * Security headers from helmet, computed once at startup. @fastify/helmet
 * rebuilds helmet's middleware (and re-parses the CSP) on every request, which
 * cost ~19% of a presign request's CPU in bench/presign.ts; the headers never
 * change, so we ask helmet once and set the result with one hook.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import helmet, { type HelmetOptions } from 'helmet'
import type { IncomingMessage, ServerResponse } from 'node:http'

export function helmetHeaders (options: Readonly<HelmetOptions>): Record<string, string> {
  const headers: Record<string, string> = {}
  const recorder = {
    setHeader (name: string, value: string | number | readonly string[]) { headers[name.toLowerCase()] = String(value) },
    removeHeader (name: string) { Reflect.deleteProperty(headers, name.toLowerCase()) }
  }
  let finished = false
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, () => { finished = true })
  if (!finished) throw new Error('helmet did not finish synchronously')
  return headers
}

async function securityHeadersPlugin (fastify: FastifyInstance, options: HelmetOptions): Promise<void> {
  const headers = helmetHeaders(options)
  fastify.addHook('onRequest', (_request, reply, done) => {
    void reply.headers(headers)
    done()
  })
}

export default fp(securityHeadersPlugin, { name: 'artos-files-security-headers', fastify: '5.x' })
