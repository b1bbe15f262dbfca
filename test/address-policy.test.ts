/**
 * Which resolved addresses the proxy connects to (src/address-policy.ts):
 * boundaries of every refused range, exhaustive sweeps of the bits that
 * decide, and properties against a reference written here from the RFCs
 * (independent of node:net's BlockList, which the module uses).
 */
import t from 'tap'
import fc from 'fast-check'
import { connectAddressAllowed } from '../src/address-policy.js'

/** IPv6 text (with or without an embedded IPv4 tail) → its eight 16-bit groups. */
function groupsOf (ip: string): number[] {
  let text = ip.toLowerCase().replace(/%.*$/s, '')
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (tail !== null) {
    const [a, b, c, d] = tail.slice(1).map(Number)
    text = `${text.slice(0, tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined]
  const left = head === '' ? [] : head.split(':')
  const right = rest === undefined || rest === '' ? [] : rest.split(':')
  const zeros = rest === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...zeros, ...right].map(group => parseInt(group, 16))
}

const zero = (groups: number[]): boolean => groups.every(group => group === 0)

/** The policy as the RFCs and cloud documentation state it. */
function referenceRefused (ip: string): boolean {
  const v4 = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(ip)
  if (v4 !== null) return v4[1] === '169' && v4[2] === '254' // RFC 3927
  const g = groupsOf(ip)
  if ((g[0] & 0xffc0) === 0xfe80) return true // fe80::/10, RFC 4291
  if (g[0] === 0xfd00 && g[1] === 0x0ec2) return true // fd00:ec2::/32, AWS IMDS
  const embedsIpv4 =
    (zero(g.slice(0, 5)) && (g[5] === 0xffff || g[5] === 0)) || // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible)
    (zero(g.slice(0, 4)) && g[4] === 0xffff && g[5] === 0) || // ::ffff:0:a.b.c.d (translated)
    (g[0] === 0x64 && g[1] === 0xff9b && zero(g.slice(2, 6))) // 64:ff9b::/96 (NAT64)
  return embedsIpv4 && g[6] === 0xa9fe
}

t.test('boundaries of every refused range', async t => {
  const cases: Array<[string, boolean]> = [
    // IPv4 link-local and metadata
    ['169.254.169.254', false], ['169.254.170.2', false], ['169.254.0.0', false], ['169.254.255.255', false],
    ['169.253.255.255', true], ['169.255.0.0', true], ['168.254.0.1', true], ['170.254.0.1', true],
    ['127.0.0.1', true], ['10.0.0.1', true], ['52.216.0.1', true], ['0.0.0.0', true], ['255.255.255.255', true],
    // IPv6 link-local
    ['fe80::', false], ['fe80::1', false], ['FE80::1', false], ['fe80::1%eth0', false], ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false],
    ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true], ['fec0::1', true], ['ff02::1', true],
    // AWS metadata over IPv6
    ['fd00:ec2::254', false], ['fd00:ec2::', false], ['fd00:ec2:ffff:ffff:ffff:ffff:ffff:ffff', false], ['FD00:EC2::254', false],
    ['fd00:ec1:ffff:ffff:ffff:ffff:ffff:ffff', true], ['fd00:ec3::', true], ['fd00::254', true], ['fd01:ec2::254', true],
    // 169.254/16 spelled inside IPv6
    ['::ffff:169.254.169.254', false], ['::ffff:a9fe:a9fe', false], ['::FFFF:A9FE:1', false], ['0:0:0:0:0:ffff:169.254.0.0', false],
    ['::169.254.169.254', false], ['::a9fe:a9fe', false], ['::ffff:0:169.254.169.254', false], ['64:ff9b::169.254.169.254', false],
    ['::ffff:169.253.255.255', true], ['::ffff:169.255.0.0', true], ['::ffff:127.0.0.1', true], ['::ffff:a9fd:ffff', true],
    ['64:ff9b::8.8.8.8', true], ['64:ff9b:1::169.254.169.254', true], ['2002:a9fe:a9fe::1', true],
    // ordinary addresses
    ['::1', true], ['::', true], ['2600:1f18::1', true], ['2001:db8::1', true],
    // not an address at all: fail closed
    ['', false], ['localhost', false], ['169.254.1', false], ['1.2.3.4.5', false], ['fe80:::1', false], ['%eth0', false], ['256.1.1.1', false]
  ]
  for (const [address, allowed] of cases) t.equal(connectAddressAllowed(address), allowed, `${address || '(empty)'} ${allowed ? 'allowed' : 'refused'}`)
})

t.test('exhaustive: every IPv4 /16, plain and IPv4-mapped', async t => {
  const wrong: string[] = []
  for (let a = 0; a < 256; a++) {
    for (let b = 0; b < 256; b++) {
      const refusedHere = a === 169 && b === 254
      const ip = `${a}.${b}.${(a * 7 + b) % 256}.${(a + b * 13) % 256}`
      const hex = `::ffff:${((a << 8) | b).toString(16)}:${(((a * 7 + b) % 256) << 8 | ((a + b * 13) % 256)).toString(16)}`
      for (const form of [ip, `::ffff:${ip}`, hex]) {
        if (connectAddressAllowed(form) === refusedHere) wrong.push(form)
      }
    }
  }
  t.same(wrong, [], 'refused exactly when the first two octets are 169.254')
})

t.test('exhaustive: every first IPv6 group', async t => {
  const wrong: string[] = []
  for (let g = 0; g < 0x10000; g++) {
    // 0, 0x64 and 0xfd00 also depend on later groups; they are covered by the table and the properties.
    if (g === 0 || g === 0x64 || g === 0xfd00) continue
    const ip = `${g.toString(16)}:ec2:a9fe::a9fe:a9fe`
    if (connectAddressAllowed(ip) === ((g & 0xffc0) === 0xfe80)) wrong.push(ip)
  }
  t.same(wrong, [], 'refused exactly for fe80::/10')
  const second: string[] = []
  for (let g = 0; g < 0x10000; g++) {
    const ip = `fd00:${g.toString(16)}::254`
    if (connectAddressAllowed(ip) === (g === 0xec2)) second.push(ip)
  }
  t.same(second, [], 'under fd00::/16, refused exactly for fd00:ec2::/32')
})

t.test('properties: agrees with the reference for any address', async t => {
  fc.assert(fc.property(fc.ipV4(), ip => connectAddressAllowed(ip) === !referenceRefused(ip)), { numRuns: 20_000 })
  fc.assert(fc.property(fc.ipV6(), ip => connectAddressAllowed(ip) === !referenceRefused(ip)), { numRuns: 20_000 })
  // Addresses near the refused ranges, where random ones rarely land.
  const group = fc.integer({ min: 0, max: 0xffff }).map(n => n.toString(16))
  const near = fc.oneof(
    fc.tuple(fc.constantFrom('fe80', 'febf', 'fe7f', 'fec0', 'fd00'), fc.constantFrom('ec2', 'ec1', 'ec3', '0'), group, group).map(([a, b, c, d]) => `${a}:${b}::${c}:${d}`),
    fc.tuple(fc.constantFrom('::', '::ffff:', '::ffff:0:', '64:ff9b::', '64:ff9b:1::', '::1:'), fc.constantFrom('a9fe', 'a9fd', 'a9ff', 'fe80'), group).map(([prefix, high, low]) => `${prefix}${high}:${low}`),
    fc.tuple(fc.constantFrom('::', '::ffff:', '::ffff:0:', '64:ff9b::'), fc.constantFrom(169, 168, 170), fc.constantFrom(254, 253, 255), fc.nat(255), fc.nat(255)).map(([prefix, a, b, c, d]) => `${prefix}${a}.${b}.${c}.${d}`)
  )
  fc.assert(fc.property(near, ip => connectAddressAllowed(ip) === !referenceRefused(ip)), { numRuns: 20_000 })
  t.pass('20,000 runs each agree')
})

t.test('properties: case and zone ids do not change the verdict', async t => {
  fc.assert(fc.property(fc.ipV6(), fc.stringMatching(/^[a-z0-9]{1,8}$/), (ip, zone) => {
    const verdict = connectAddressAllowed(ip)
    return connectAddressAllowed(ip.toUpperCase()) === verdict && connectAddressAllowed(`${ip}%${zone}`) === verdict
  }), { numRuns: 5_000 })
  t.pass('5,000 runs')
})
