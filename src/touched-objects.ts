/**
 * Which objects a request touched, recorded by its route for the plugins that
 * report on requests (plugins/audit.ts; metrics and traces may read it too).
 * A route replaces its record as it learns more: a presign records its key
 * before any check, then again with the expiry once it has signed.
 */
import type { FastifyRequest } from 'fastify'

export interface TouchedObject {
  key: string
  versionId?: string
  /** The status this object got, when it is not the response's (an item of a batch). */
  status?: number
  /** The error code this object got, when it is not the response's. */
  code?: string
  /** When the presigned URL handed out for it stops working. */
  expiresAt?: Date
}

/** Symbol-keyed, so a host's own request decorations never collide with it. */
export const TOUCHED_OBJECTS = Symbol('artos-files.touched-objects')

type WithTouched = FastifyRequest & { [TOUCHED_OBJECTS]?: TouchedObject[] | null }

export function recordTouched (request: FastifyRequest, objects: TouchedObject[]): void {
  (request as WithTouched)[TOUCHED_OBJECTS] = objects
}

export function touchedObjects (request: FastifyRequest): TouchedObject[] | undefined {
  return (request as WithTouched)[TOUCHED_OBJECTS] ?? undefined
}
