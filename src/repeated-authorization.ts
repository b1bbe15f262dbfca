/**
 * At most one Authorization header per request. Node keeps the first of
 * several and a proxy in front of us may keep the last, so the token a proxy
 * judged and the one we verify could differ. Such a request is malformed, and
 * RFC 6750 §3.1 answers a repeated parameter with 400 `invalid_request`.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { RepeatedAuthorizationError } from './errors.js'

/** True when `rawHeaders` (name, value, name, value, …) names Authorization more than once, in any letter case. */
export function hasRepeatedAuthorization (rawHeaders: readonly string[]): boolean {
  let seen = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    // The length test keeps the common case (other headers) free of a lower-cased copy.
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (seen) return true
      seen = true
    }
  }
  return false
}

/** onRequest hook: 400 for a request with more than one Authorization header, before anything reads it. */
export function refuseRepeatedAuthorization (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  if (hasRepeatedAuthorization(request.raw.rawHeaders)) {
    void reply.header('www-authenticate', 'Bearer realm="artos-files", error="invalid_request"')
    done(new RepeatedAuthorizationError())
    return
  }
  done()
}
