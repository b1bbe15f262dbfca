/**
 * GET /metrics on a listener of its own (METRICS_PORT), never the API's port:
 * a scrape target is for the monitoring network, and the API's auth, rate
 * limits and load shedding must not apply to (or count) scrapes. A bare
 * node:http server: one route, nothing else to secure or instrument.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'

export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464/metrics */
  url: string
  close: () => Promise<void>
}

export async function listenMetrics (registry: Registry, { host, port }: { host: string, port: number }): Promise<MetricsServer> {
  const server = createServer((request, response) => {
    const path = request.url?.split('?')[0]
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found\n')
      return
    }
    registry.metrics().then(text => {
      response.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
      response.end(request.method === 'HEAD' ? undefined : text)
    }, () => {
      response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Internal Server Error\n')
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const { address, family, port: bound } = server.address() as AddressInfo
  return {
    url: `http://${family === 'IPv6' ? `[${address}]` : address}:${bound}/metrics`,
    async close () {
      const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
      server.closeAllConnections() // a scraper's keep-alive connection would hold close() open
      await closed
    }
  }
}
