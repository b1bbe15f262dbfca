/**
 * An append-only file of JSON lines for the audit trail.
 *
 * Lines are written with a synchronous write(2) on an O_APPEND descriptor: once
 * `append` returns, the line is in the kernel and survives the process dying
 * in any way (a crash, SIGKILL, process.exit). A small append to a local file
 * costs microseconds; one call per response keeps lines whole and in order.
 *
 * With `fsync`, `append` also resolves only once an fdatasync(2) that started
 * after the write has completed, so the line survives power loss and kernel
 * crashes too. Appends that arrive while a sync is running share the next one
 * (group commit): under load, one sync covers many responses.
 */
import { closeSync, fdatasync, fdatasyncSync, openSync, writeSync } from 'node:fs'

export class AuditFile {
  private fd: number | undefined
  private syncing: Promise<void> | undefined
  private queued: Promise<void> | undefined

  /** Opens (creating, owner-only) or appends to `path`; throws at once when it cannot. */
  constructor (readonly path: string, private readonly fsync: boolean) {
    try {
      this.fd = openSync(path, 'a', 0o600)
    } catch (err) {
      throw new Error(`artos-files: cannot open the audit log file "${path}": ${(err as Error).message}`)
    }
  }

  get closed (): boolean {
    return this.fd === undefined
  }

  /** Writes `text` now (throws when it cannot); resolves once it is durable as configured. */
  async append (text: string): Promise<void> {
    if (this.fd === undefined) throw new Error('the audit log file is closed')
    const bytes = Buffer.from(text, 'utf8')
    let written = 0
    // A regular file takes the whole buffer at once; the loop is for the exception.
    while (written < bytes.length) written += writeSync(this.fd, bytes, written)
    if (this.fsync) await this.sync()
  }

  /** An fdatasync that starts after every write made so far. */
  private async sync (): Promise<void> {
    if (this.queued !== undefined) return await this.queued
    if (this.syncing === undefined) return await this.startSync()
    const queued = this.syncing.catch(() => {}).then(async () => {
      this.queued = undefined
      await this.startSync()
    })
    this.queued = queued
    return await queued
  }

  private async startSync (): Promise<void> {
    const fd = this.fd
    const syncing = new Promise<void>((resolve, reject) => {
      if (fd === undefined) { reject(new Error('the audit log file is closed')); return }
      fdatasync(fd, err => { if (err === null || unsyncable(err)) resolve(); else reject(err) })
    })
    this.syncing = syncing
    const done = (): void => { if (this.syncing === syncing) this.syncing = undefined }
    syncing.then(done, done)
    return await syncing
  }

  /** Waits for syncs in progress, syncs what is left and closes. */
  async close (): Promise<void> {
    await this.queued?.catch(() => {})
    await this.syncing?.catch(() => {})
    this.closeSync()
  }

  /** For process exit, where nothing asynchronous runs any more. */
  closeSync (): void {
    const fd = this.fd
    if (fd === undefined) return
    this.fd = undefined
    try {
      fdatasyncSync(fd)
    } catch (err) {
      if (!unsyncable(err)) throw err
    } finally {
      closeSync(fd)
    }
  }
}

/** A pipe or character device (/dev/stdout, a FIFO to a log shipper) has nothing to sync: EINVAL. */
function unsyncable (err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EINVAL'
}
