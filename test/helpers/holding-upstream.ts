/**
 * A storage double that holds every download open after its first bytes (so
 * download slots stay taken), answers paths with `/done` at once and paths
 * with `/broken` with a 500.
 */
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

interface Teardown { teardown: (fn: () => unknown) => void }

export async function startHoldingUpstream (t: Teardown): Promise<{ endpoint: string, open: Set<ServerResponse> }> {
  const open = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    if (req.url?.includes('/done') === true) { res.end('done'); return }
    if (req.url?.includes('/broken') === true) { res.writeHead(500); res.end('<Error/>'); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write('first bytes')
    open.add(res)
    res.on('close', () => { open.delete(res) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const res of open) res.destroy()
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, open }
}
