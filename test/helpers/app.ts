/** Builds the whole app against a test S3, the way server.ts does. */
import { buildApp, type BuildAppOptions } from '../../src/app.js'
import type { TestS3 } from './s3.js'
import { TEST_SECRET } from './tokens.js'

interface Teardown { teardown: (fn: () => unknown) => void }

export async function buildTestApp (t: Teardown, s3: TestS3, overrides: Partial<BuildAppOptions> = {}) {
  const app = await buildApp({
    bucket: s3.bucket,
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    credentials: s3.credentials,
    jwt: { secret: TEST_SECRET },
    // Test machines are shared and busy: only the tests about load shedding
    // (which set a low maxEventLoopDelayMs themselves) should ever meet it.
    maxEventLoopUtilization: 1,
    ...overrides
  })
  t.teardown(async () => { await app.close() })
  return app
}

/**
 * The whole app against a test double of the storage endpoint (a loopback
 * server that stalls, drips, redirects or resets), with credentials the double
 * never checks. Closed at teardown; listening is the caller's choice.
 */
export async function buildAppForUpstream (t: Teardown, endpoint: string, overrides: Partial<BuildAppOptions> = {}) {
  return await buildTestApp(t, {
    endpoint,
    region: 'us-east-1',
    bucket: 'bucket',
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' }
  } as TestS3, { docs: false, ...overrides })
}
