/**
 * One JSON shape for every error, `{statusCode, code?, error, message}`. Client
 * errors keep their (deliberately written) message; anything 5xx that we did
 * not name ourselves is logged and answered generically, so stack traces,
 * SDK messages and upstream XML never reach a response body.
 */
import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { ErrorResponse } from './schemas.js'

/** Our own errors (see errors.ts) carry public messages even when they are 5xx. */
const PUBLIC_CODE_PREFIX = 'ARTOS_'

export function errorResponseFor (error: FastifyError): ErrorResponse {
  const status = error.validation !== undefined ? 400 : error.statusCode
  const statusCode = status !== undefined && Number.isInteger(status) && status >= 400 && status <= 599 ? status : 500
  const isPublic = statusCode < 500 || error.code?.startsWith(PUBLIC_CODE_PREFIX) === true
  return {
    statusCode,
    ...(isPublic && typeof error.code === 'string' ? { code: error.code } : {}),
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: isPublic ? error.message : 'Internal Server Error'
  }
}

export function errorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const body = errorResponseFor(error)
  if (body.statusCode >= 500) {
    request.log.error({ err: error }, 'request failed')
  } else {
    request.log.info({ statusCode: body.statusCode, code: error.code }, error.message)
  }
  void reply.status(body.statusCode).send(body)
}
