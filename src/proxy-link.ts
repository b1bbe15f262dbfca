/**
 * Plain proxy links: an absolute URL of GET /api/v1/proxy/link carrying a
 * presigned URL. Built from the configured public base URL only, never from
 * request headers (Host, X-Forwarded-*) an attacker controls.
 */
export const PROXY_LINK_PATH = '/api/v1/proxy/link'

/** The link route's absolute URL, e.g. https://api.example.com/files/api/v1/proxy/link */
export function proxyLinkBase (publicBaseUrl: string, prefix: string): string {
  return `${publicBaseUrl.replace(/\/+$/, '')}${prefix}${PROXY_LINK_PATH}`
}

export function proxyLinkFor (base: string, presignedUrl: string): string {
  return `${base}?presigned_url=${encodeURIComponent(presignedUrl)}`
}
