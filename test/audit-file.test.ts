/**
 * The audit trail's file (src/audit-file.ts) on a real filesystem: created
 * owner-only, appended to, whole lines in call order under concurrent
 * appends, and failures that surface instead of vanishing.
 */
import t, { type Test } from 'tap'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuditFile } from '../src/audit-file.js'

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'artos-audit-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

t.test('created owner-only; an existing file is appended to, never truncated', async t => {
  const path = join(await tempDir(t), 'audit.jsonl')
  const file = new AuditFile(path, true)
  await file.append('{"n":1}\n')
  await file.close()
  t.equal((await stat(path)).mode & 0o777, 0o600)
  const again = new AuditFile(path, false)
  await again.append('{"n":2}\n')
  await again.close()
  t.equal(await readFile(path, 'utf8'), '{"n":1}\n{"n":2}\n')

  const existing = join(await tempDir(t), 'kept.jsonl')
  await writeFile(existing, 'earlier\n')
  const kept = new AuditFile(existing, true)
  await kept.append('later\n')
  await kept.close()
  t.equal(await readFile(existing, 'utf8'), 'earlier\nlater\n')
})

t.test('concurrent appends (sharing syncs) all resolve, as whole lines in call order', async t => {
  for (const fsync of [true, false]) {
    const path = join(await tempDir(t), 'audit.jsonl')
    const file = new AuditFile(path, fsync)
    const lines = Array.from({ length: 500 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(i % 97)}"}\n`)
    await Promise.all(lines.map(async line => { await file.append(line) }))
    // More after the burst: a sync queued behind a finished one still runs.
    await file.append('{"n":"last"}\n')
    await file.close()
    t.equal(await readFile(path, 'utf8'), lines.join('') + '{"n":"last"}\n', `fsync ${String(fsync)}`)
  }
})

t.test('a path that cannot be opened fails at once, naming it', async t => {
  const path = join(await tempDir(t), 'missing-dir', 'audit.jsonl')
  t.throws(() => new AuditFile(path, true), { message: new RegExp(`^artos-files: cannot open the audit log file "${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}": ENOENT`) })
  t.notOk(existsSync(path))
})

t.test('a full disk rejects the append; a closed file rejects it too', async t => {
  // A character device: writes fail (ENOSPC); fdatasync has nothing to do (EINVAL), which is no error.
  const full = new AuditFile('/dev/full', true)
  await t.rejects(full.append('{"n":1}\n'), { code: 'ENOSPC' })
  await full.close()
  t.equal(full.closed, true)
  const devNull = new AuditFile('/dev/null', true)
  await devNull.append('{"n":1}\n')
  await devNull.close()
  t.pass('a device that cannot sync takes synced appends')

  const path = join(await tempDir(t), 'audit.jsonl')
  const file = new AuditFile(path, true)
  await file.close()
  t.equal(file.closed, true)
  await t.rejects(file.append('{"n":1}\n'), /closed/)
  await file.close()
  file.closeSync()
  t.equal(await readFile(path, 'utf8'), '', 'nothing written after close')
})
