/**
 * Our routes take JSON bodies only (the contract's 415 otherwise). Fastify
 * parses text/plain by default, so such a body reached validation as a string
 * and came back as a puzzling "body must be object"; a host may also have
 * added parsers (forms, multipart, XML) that our context would inherit.
 */
import type { FastifyInstance } from 'fastify'
import { UnsupportedMediaTypeError } from './errors.js'

/**
 * In `fastify`'s own (encapsulated) context: Fastify's JSON parser, with the
 * server's prototype-poisoning settings, and 415 for any other or missing
 * content type on a request with a body. The host's parsers are untouched.
 */
export function acceptJsonBodiesOnly (fastify: FastifyInstance): void {
  const { onProtoPoisoning = 'error', onConstructorPoisoning = 'error' } = fastify.initialConfig
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, fastify.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning))
  // '*' also catches a body sent without any Content-Type. Fastify closes the
  // connection after a parser error, so the unread body is not left behind.
  fastify.addContentTypeParser('*', (_request, _payload, done) => { done(new UnsupportedMediaTypeError(), undefined) })
}
