/**
 * Which resolved addresses the proxy may open a connection to. A storage
 * endpoint name that resolves to a link-local or cloud metadata address (a DNS
 * change, a rebinding attack, a mistyped internal name) would otherwise point
 * downloads at the instance metadata service, which hands out credentials.
 * Only names are judged: a literal IP endpoint is connected to as configured.
 */
import { BlockList, isIP } from 'node:net'

const refused = new BlockList()
// IPv4 link-local, home of 169.254.169.254 (AWS, GCP, Azure, OCI metadata) and
// 169.254.170.2 (ECS task credentials). The check matches the IPv4-mapped forms
// (::ffff:169.254.x.x, ::ffff:a9fe:xxxx) too.
refused.addSubnet('169.254.0.0', 16, 'ipv4')
refused.addSubnet('fe80::', 10, 'ipv6') // IPv6 link-local
refused.addSubnet('fd00:ec2::', 32, 'ipv6') // AWS instance metadata over IPv6 (fd00:ec2::254)
// Other spellings of 169.254.0.0/16 inside IPv6: IPv4-compatible (::a.b.c.d),
// IPv4-translated (::ffff:0:a.b.c.d) and the NAT64 well-known prefix.
refused.addSubnet('::a9fe:0', 112, 'ipv6')
refused.addSubnet('::ffff:0:a9fe:0', 112, 'ipv6')
refused.addSubnet('64:ff9b::a9fe:0', 112, 'ipv6')

/** True when the proxy may connect to `address` (an IP as a resolver returns it, zone id allowed); anything unparseable is refused. */
export function connectAddressAllowed (address: string): boolean {
  const bare = address.replace(/%.*$/s, '')
  const family = isIP(bare)
  if (family === 0) return false
  return !refused.check(bare, family === 4 ? 'ipv4' : 'ipv6')
}
