/**
 * Why the proxy let a download go before it ended (plugins/upstream.ts's
 * deadline and transfer-rate floor), recorded on the response for the plugins
 * that report on requests. A cut resets the client's connection, which they
 * would otherwise take for a client that left: the audit trail and the
 * metrics read this to blame the side that was at fault.
 */
import type { Writable } from 'node:stream'

export type DownloadCut = 'deadline' | 'upstream-too-slow' | 'client-too-slow'

/** Symbol-keyed, so nothing else on the response collides with it. */
const CUT = Symbol('artos-files.download-cut')

type WithCut = Writable & { [CUT]?: DownloadCut }

export function recordCut (response: Writable, cut: DownloadCut): void {
  (response as WithCut)[CUT] = cut
}

export function cutOf (response: Writable): DownloadCut | undefined {
  return (response as WithCut)[CUT]
}

/** The storage side held the download up (late, or too slow): a timeout of the upstream's, not a client that left. */
export function cutByUpstream (response: Writable): boolean {
  const cut = cutOf(response)
  return cut === 'deadline' || cut === 'upstream-too-slow'
}
