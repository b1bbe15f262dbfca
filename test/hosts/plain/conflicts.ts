/**
 * What a host sees at register time when names collide, and when an option
 * name is mistyped from JavaScript. Prints one JSON line per case.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import artosFiles from 'artos-files'

const options = { bucket: 'bucket', region: 'us-east-1', endpoint: 'http://127.0.0.1:9', jwt: { secret: 'a-secret-that-is-at-least-32-characters' } }

async function attempt (name: string, prepare: (app: FastifyInstance) => void, extra: Record<string, unknown> = {}): Promise<void> {
  const app = Fastify()
  prepare(app)
  try {
    await app.register(artosFiles, { ...options, ...extra } as never)
    await app.ready()
    console.log(JSON.stringify({ name, ok: true }))
  } catch (err) {
    console.log(JSON.stringify({ name, ok: false, code: (err as { code?: string }).code ?? null, message: (err as Error).message }))
  } finally {
    await app.close().catch(() => {})
  }
}

// Names a host plausibly owns already: ours must not collide with them.
await attempt('host decorates organization, user, s3, authenticate', app => {
  app.decorateRequest('organization', null)
  app.decorateRequest('user', undefined)
  app.decorate('s3', null)
  app.decorate('authenticate', null)
})
// Names that are ours: the host is told which, by whom, and what to change.
await attempt('host decorates artosFiles on requests', app => { app.decorateRequest('artosFiles', null) })
await attempt('host decorates artosFilesS3', app => { app.decorate('artosFilesS3', null) })
// Already refused on main: a mistyped option names the closest valid one.
await attempt('option typo', () => {}, { endPoint: 'http://127.0.0.1:9' })
