/**
 * Per-organization download slots, so one organization's slow downloads
 * cannot take every slot of an instance (or of all of them). In memory for one
 * instance; in Redis for all instances sharing it: one sorted set per
 * organization, a member per download (a random lease id) scored with its
 * expiry. A running download renews its lease; a crashed instance's leases
 * simply expire. Every step is one Lua script (atomic), timed by Redis's own
 * clock, so instances with skewed clocks agree (Redis 5+: effects replication).
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'

export interface SlotLease {
  /** Gives the slot back; calling it again does nothing. */
  release: () => void
}

export interface DownloadSlots {
  /** A slot of `organization`'s cap, or undefined when all are taken. Rejects when the store is unreachable. */
  acquire: (organization: string) => Promise<SlotLease | undefined>
}

export function memorySlots (cap: number): DownloadSlots {
  const taken = new Map<string, number>()
  return {
    async acquire (organization) {
      const count = taken.get(organization) ?? 0
      if (count >= cap) return undefined
      taken.set(organization, count + 1)
      return once(() => {
        const left = (taken.get(organization) ?? 1) - 1
        if (left === 0) taken.delete(organization)
        else taken.set(organization, left)
      })
    }
  }
}

export interface RedisSlotsOptions {
  cap: number
  /** How long a lease outlives its last renewal: how soon a crashed instance's slots come back. */
  leaseMs: number
  /** Renewals and releases happen after the request's answer; their failures (a lease then just expires) go here. */
  onBackgroundError: (err: unknown) => void
}

// KEYS[1] the organization's set; ARGV lease id, cap, lease ms. Returns 1 when the slot is taken.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`

// KEYS[1] the organization's set; ARGV lease id, lease ms. XX: a lease already gone stays gone.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

interface SlotCommands {
  artosAcquireDownloadSlot: (key: string, lease: string, cap: number, leaseMs: number) => Promise<number>
  artosRenewDownloadSlot: (key: string, lease: string, leaseMs: number) => Promise<number>
}

export const REDIS_SLOT_PREFIX = 'artos-files-downloads:'

export function redisSlots (redis: Redis, { cap, leaseMs, onBackgroundError }: RedisSlotsOptions): DownloadSlots {
  redis.defineCommand('artosAcquireDownloadSlot', { numberOfKeys: 1, lua: ACQUIRE })
  redis.defineCommand('artosRenewDownloadSlot', { numberOfKeys: 1, lua: RENEW })
  const commands = redis as unknown as SlotCommands
  return {
    async acquire (organization) {
      const key = REDIS_SLOT_PREFIX + organization
      const lease = randomUUID()
      if (await commands.artosAcquireDownloadSlot(key, lease, cap, leaseMs) !== 1) return undefined
      // Renewed well before it lapses, so a slow renewal never loses a running download's slot.
      const renewal = setInterval(() => { commands.artosRenewDownloadSlot(key, lease, leaseMs).catch(onBackgroundError) }, leaseMs / 3)
      renewal.unref()
      return once(() => {
        clearInterval(renewal)
        redis.zrem(key, lease).catch(onBackgroundError)
      })
    }
  }
}

function once (release: () => void): SlotLease {
  let released = false
  return {
    release () {
      if (released) return
      released = true
      release()
    }
  }
}
