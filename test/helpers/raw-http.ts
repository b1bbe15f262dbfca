/**
 * One HTTP/1.1 request written byte for byte on a socket. fetch (undici) and
 * light-my-request may merge or drop repeated headers; this sends each header
 * line exactly as given, in order and letter case.
 */
import { connect } from 'node:net'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

export async function rawRequest (base: string, method: string, path: string, headers: Array<[string, string]>, body = ''): Promise<RawResponse> {
  const { hostname, port } = new URL(base)
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close']
  for (const [name, value] of headers) lines.push(`${name}: ${value}`)
  if (body !== '' || method === 'POST') lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
  const request = `${lines.join('\r\n')}\r\n\r\n${body}`
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.on('data', chunk => chunks.push(chunk))
    socket.on('end', () => { resolve(Buffer.concat(chunks).toString('utf8')) })
    socket.on('error', reject)
    socket.setTimeout(10_000, () => { socket.destroy(new Error('no response within 10 s')) })
    // write, not end: a half-closed socket reads as a client that went away (the proxy aborts for those).
    socket.write(request)
  })
  const split = raw.indexOf('\r\n\r\n')
  const [statusLine, ...headerLines] = raw.slice(0, split).split('\r\n')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1])
  const responseHeaders: Record<string, string> = {}
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    responseHeaders[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  let responseBody = raw.slice(split + 4)
  // Fastify answers JSON with Content-Length; a chunked body is de-chunked for completeness.
  if (responseHeaders['transfer-encoding'] === 'chunked') responseBody = dechunk(responseBody)
  return { status, headers: responseHeaders, body: responseBody }
}

function dechunk (text: string): string {
  let out = ''
  let rest = text
  for (;;) {
    const end = rest.indexOf('\r\n')
    const size = parseInt(rest.slice(0, end), 16)
    if (!(size > 0)) return out
    out += rest.slice(end + 2, end + 2 + size)
    rest = rest.slice(end + 2 + size + 2)
  }
}
