import t from 'tap'
import { credentialsOutlasting, CredentialsExpireTooSoonError } from '../src/credentials.js'

const HOUR = 3600
const base = { accessKeyId: 'AKID', secretAccessKey: 'SECRET' }

t.test('static credentials without expiry are used as they are', async t => {
  const provider = credentialsOutlasting(base, HOUR)
  t.same(await provider(), base)
})

t.test('credentials that outlast the URL lifetime are used without a refresh', async t => {
  const now = 1_000_000
  const calls: unknown[] = []
  const creds = { ...base, expiration: new Date(now + 2 * HOUR * 1000) }
  const provider = credentialsOutlasting(async (options?: unknown) => { calls.push(options); return creds }, HOUR, () => now)
  t.equal(await provider(), creds)
  t.same(calls, [undefined])
})

t.test('credentials expiring within the URL lifetime are force-refreshed first', async t => {
  const now = 1_000_000
  const stale = { ...base, expiration: new Date(now + 10 * 60_000) }
  const fresh = { ...base, accessKeyId: 'NEW', expiration: new Date(now + 6 * HOUR * 1000) }
  const calls: unknown[] = []
  const provider = credentialsOutlasting(async (options?: { forceRefresh?: boolean }) => {
    calls.push(options)
    return options?.forceRefresh === true ? fresh : stale
  }, HOUR, () => now)
  t.equal(await provider(), fresh)
  t.same(calls, [undefined, { forceRefresh: true }])
})

t.test('if even fresh credentials die first, signing is refused, and refreshes are rate limited', async t => {
  let now = 1_000_000
  let forced = 0
  const short = (): typeof base & { expiration: Date } => ({ ...base, expiration: new Date(now + 30 * 60_000) })
  const provider = credentialsOutlasting(async (options?: { forceRefresh?: boolean }) => {
    if (options?.forceRefresh === true) forced++
    return short()
  }, HOUR, () => now)
  await t.rejects(provider(), CredentialsExpireTooSoonError)
  await t.rejects(provider(), CredentialsExpireTooSoonError)
  t.equal(forced, 1, 'no second forced refresh within 30 s')
  now += 31_000
  await t.rejects(provider(), CredentialsExpireTooSoonError)
  t.equal(forced, 2, 'refresh retried after 30 s')
})

t.test('fixed credentials that expire too soon are refused', async t => {
  const provider = credentialsOutlasting({ ...base, expiration: new Date(Date.now() + 60_000) }, HOUR)
  await t.rejects(provider(), /expire at .* before a URL signed now would/)
})
