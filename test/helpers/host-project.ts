/**
 * Host projects built from the packed package: `npm pack`, then an offline
 * `npm ci` of the tarball plus a host's own dependencies, at the versions this
 * repository's package-lock.json pins (the lockfile is derived from ours, so no
 * registry metadata is needed: npm 11 asks for full packuments when it resolves
 * ranges, and a cache filled by `npm ci` holds tarballs only).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const repo = new URL('../../', import.meta.url).pathname
/** Host sources: each subfolder is one host project (test/hosts/<name>). */
export const hostSources = join(repo, 'test/hosts')

interface LockEntry {
  version?: string
  resolved?: string
  integrity?: string
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, { optional?: boolean }>
  [field: string]: unknown
}

export async function pack (into: string): Promise<{ tarball: string, files: string[] }> {
  const packed = await run('npm', ['pack', '--silent', '--pack-destination', into], { cwd: repo, maxBuffer: 16 * 1024 * 1024 })
  const tarball = join(into, packed.stdout.trim().split('\n').pop() as string)
  const listing = await run('tar', ['-tzf', tarball])
  return { tarball, files: listing.stdout.split('\n').filter(Boolean) }
}

/**
 * Writes package.json and package-lock.json for a host depending on the
 * tarball and on `deps` (names installed in this repository), then `npm ci --offline`.
 */
export async function installHost (dir: string, tarball: string, deps: string[]): Promise<void> {
  const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }
  const ours = lock.packages['']
  const tarballSpec = `file:${tarball}`
  // Our lockfile omits `resolved`; with it npm fetches the tarball it has cached instead of registry metadata it may not have.
  const registry = (await run('npm', ['config', 'get', 'registry'])).stdout.trim().replace(/\/?$/, '/')
  const tarballUrl = (path: string, version: string): string => {
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
    return `${registry}${name}/-/${name.slice(name.lastIndexOf('/') + 1)}-${version}.tgz`
  }
  const artos: LockEntry = {
    version: String(ours.version),
    resolved: tarballSpec,
    integrity: `sha512-${createHash('sha512').update(await readFile(tarball)).digest('base64')}`,
    dependencies: ours.dependencies,
    peerDependencies: ours.peerDependencies
  }
  const packages: Record<string, LockEntry> = {}
  const resolve = (from: string, name: string): string | undefined => {
    // Node's lookup: the nearest node_modules/<name> walking up from `from`.
    for (let dir = from; ; dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : '') {
      const path = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`
      if (lock.packages[path] !== undefined) return path
      if (dir === '') return undefined
    }
  }
  const add = (path: string): void => {
    if (packages[path] !== undefined) return
    const entry = path === 'node_modules/artos-files' ? artos : lock.packages[path]
    if (entry === undefined) throw new Error(`no lock entry ${path}`)
    // The flags say how the entry was reached from our root; here every entry is a host dependency.
    const { dev: _dev, devOptional: _devOptional, optional: _optional, peer: _peer, ...kept } = entry
    packages[path] = kept.resolved === undefined && kept.version !== undefined ? { ...kept, resolved: tarballUrl(path, kept.version) } : kept
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies })) {
      if (entry.peerDependenciesMeta?.[name]?.optional === true) continue
      const found = resolve(path === 'node_modules/artos-files' ? '' : path, name)
      if (found === undefined) {
        if (entry.optionalDependencies?.[name] !== undefined) continue
        throw new Error(`${path} needs ${name}, which this repository has not installed`)
      }
      add(found)
    }
  }
  add('node_modules/artos-files')
  const dependencies: Record<string, string> = { 'artos-files': tarballSpec }
  for (const name of deps) {
    const path = `node_modules/${name}`
    const version = lock.packages[path]?.version
    if (version === undefined) throw new Error(`${name} is not installed in this repository`)
    dependencies[name] = version
    add(path)
  }
  const root = { name: 'host', version: '1.0.0', private: true, type: 'module', dependencies }
  await writeFile(join(dir, 'package.json'), JSON.stringify(root, null, 2))
  await writeFile(join(dir, 'package-lock.json'), JSON.stringify({
    name: 'host', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': root, ...packages }
  }, null, 2))
  await run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], { cwd: dir, maxBuffer: 16 * 1024 * 1024 })
}

/** Copies test/hosts/<name> into the host folder, as a project beside its node_modules. */
export async function copyHostSources (name: string, dir: string): Promise<string> {
  const target = join(dir, name)
  await mkdir(target, { recursive: true })
  await cp(join(hostSources, name), target, { recursive: true })
  return target
}

/** tsc's diagnostics for one tsconfig ('' when it compiles). */
export async function tsc (host: string, project: string): Promise<string> {
  return await run(join(host, 'node_modules/.bin/tsc'), ['-p', project], { cwd: host, maxBuffer: 16 * 1024 * 1024 })
    .then(({ stdout }) => stdout, (err: { stdout?: string, message: string }) => err.stdout !== undefined && err.stdout !== '' ? err.stdout : err.message)
}

/** Starts a compiled host; resolves with the address it printed as `LISTENING <url>`. */
export async function startHost (t: { teardown: (fn: () => unknown) => void }, script: string, env: Record<string, string>): Promise<{ address: string, child: ChildProcess }> {
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { child.kill('SIGTERM') })
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', code => { reject(new Error(`host exited with ${String(code)}`)) })
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', line => {
      if (line.startsWith('LISTENING ')) resolve(line.slice('LISTENING '.length))
    })
  })
  return { address, child }
}

/** Runs a compiled script to its end; its stdout lines are JSON values. */
export async function runScript (script: string, env: Record<string, string> = {}): Promise<unknown[]> {
  const { stdout } = await run(process.execPath, [script], { env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env } })
  return stdout.split('\n').filter(Boolean).map(line => JSON.parse(line))
}
