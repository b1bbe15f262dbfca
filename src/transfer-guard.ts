/**
 * The floor under a download's transfer rate. Idle timeouts miss an upstream
 * that drips a byte every few seconds and a client that stops reading (the
 * response's buffers stay full, nothing times out): either holds a download
 * slot for as long as it likes. What counts is what the client's socket
 * actually took: bytes handed to the kernel, which is throttled by the slower
 * of the two sides. The side to blame is the one that held it up: a response
 * waiting for the client to drain it, or else the upstream.
 */
import { ServerResponse } from 'node:http'

export interface TransferFloor {
  /** Bytes per second a download must move, averaged over each window; 0 turns the floor off. */
  minBytesPerSecond: number
  windowMs: number
}

export type SlowSide = 'client' | 'upstream'

/** The verdict at the end of a window: which side is too slow, if any. */
export function judgeWindow (deliveredBytes: number, elapsedMs: number, minBytesPerSecond: number, clientBackedUp: boolean): SlowSide | undefined {
  if (deliveredBytes * 1000 >= minBytesPerSecond * elapsedMs) return undefined
  return clientBackedUp ? 'client' : 'upstream'
}

/**
 * Judges `response` at the end of every window until the returned stop
 * function is called; calls `tooSlow` at most once. Needs an HTTP/1 response
 * on a real socket (an HTTP/2 session's socket carries other streams too;
 * Fastify's inject has none), and does nothing otherwise or with the floor off.
 */
export function watchTransfer (response: ServerResponse, floor: TransferFloor, tooSlow: (side: SlowSide, bytesPerSecond: number) => void): () => void {
  const socket = response.socket
  if (floor.minBytesPerSecond === 0 || !(response instanceof ServerResponse) || socket === null || typeof socket.bytesWritten !== 'number') return () => {}
  // bytesWritten also counts what still waits in the socket's own buffer.
  const delivered = (): number => socket.bytesWritten - socket.writableLength
  let lastBytes = delivered()
  let lastAt = performance.now()
  const timer = setInterval(() => {
    // Everything is with the kernel: nothing left for either side to hold up.
    if (response.writableFinished) { clearInterval(timer); return }
    const bytes = delivered()
    const now = performance.now()
    const elapsedMs = now - lastAt
    const backedUp = response.writableNeedDrain || socket.writableNeedDrain
    const side = judgeWindow(bytes - lastBytes, elapsedMs, floor.minBytesPerSecond, backedUp)
    if (side !== undefined) {
      clearInterval(timer)
      tooSlow(side, Math.round((bytes - lastBytes) * 1000 / elapsedMs))
      return
    }
    lastBytes = bytes
    lastAt = now
  }, floor.windowMs)
  timer.unref()
  return () => { clearInterval(timer) }
}
