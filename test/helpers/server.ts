/**
 * The real server process (src/server.ts) against a test S3, for what only a
 * whole process shows: its second listener, its process-global tracing SDK.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { TestS3 } from './s3.js'
import { TEST_SECRET } from './tokens.js'

const repo = new URL('../../', import.meta.url).pathname

interface Teardown { teardown: (fn: () => unknown) => void }

export interface ServerProcess {
  child: ChildProcess
  address: string
  /** stdout so far, one log line each (pino JSON). */
  lines: string[]
  exited: Promise<number | null>
  /** Resolves with the first stdout line matching `pattern`. */
  waitForLine: (pattern: RegExp) => Promise<string>
}

/** The environment of a production service on the test S3, any port, logging at info. */
export function serviceEnv (s3: TestS3): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NODE_ENV: 'production',
    PORT: '0',
    LOG_LEVEL: 'info',
    S3_BUCKET: s3.bucket,
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: s3.region,
    S3_FORCE_PATH_STYLE: String(s3.forcePathStyle),
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    JWT_SECRET: TEST_SECRET,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'
  }
}

export async function startServerProcess (t: Teardown, s3: TestS3, env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: repo,
    env: { ...serviceEnv(s3), ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
  t.teardown(() => { child.kill('SIGKILL') })
  const lines: string[] = []
  const waiting: Array<{ pattern: RegExp, resolve: (line: string) => void }> = []
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
    lines.push(line)
    for (const waiter of waiting.filter(w => w.pattern.test(line))) {
      waiting.splice(waiting.indexOf(waiter), 1)
      waiter.resolve(line)
    }
  })
  const waitForLine = async (pattern: RegExp): Promise<string> => {
    const seen = lines.find(line => pattern.test(line))
    if (seen !== undefined) return seen
    return await new Promise<string>((resolve, reject) => {
      waiting.push({ pattern, resolve })
      void exited.then(code => { reject(new Error(`server exited (${String(code)}) before logging ${String(pattern)}`)) })
    })
  }
  const listening = await waitForLine(/Server listening at http:\/\/127\.0\.0\.1:\d+/)
  const address = (/(http:\/\/127\.0\.0\.1:\d+)/.exec(listening) as RegExpExecArray)[1]
  return { child, address, lines, exited, waitForLine }
}
