/**
 * One request, one response, over a fresh libp2p stream: each a length-prefixed dag-cbor value.
 * For the small control protocols (join requests, manifest fetches) that need no streaming.
 * Sizes are bounded on both sides, and a handler failure becomes an error response the caller
 * sees as a RemoteRequestError, never a crash of either side.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { PeerId } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { SwarmNode } from './node.js'

export interface RequestOptions {
  signal?: AbortSignal
  /** Largest response accepted, in bytes. */
  maxResponseBytes?: number
}

/** The remote side answered with an error (it refused or failed the request). */
export class RemoteRequestError extends Error {
  override readonly name = 'RemoteRequestError'
  readonly code = 'ERR_REMOTE_REQUEST'
}

const DEFAULT_MAX_BYTES = 64 * 1024

type Wire = { ok: true, value: unknown } | { ok: false, error: string }

export async function sendRequest (node: SwarmNode, peer: PeerId, protocol: string, request: unknown, options: RequestOptions = {}): Promise<unknown> {
  const signal = options.signal ?? AbortSignal.timeout(30_000)
  const stream = await node.dialProtocol(peer, protocol, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: options.maxResponseBytes ?? DEFAULT_MAX_BYTES })
    await lp.write(dagCbor.encode(request), { signal })
    const response = dagCbor.decode((await lp.read({ signal })).subarray()) as Wire
    await stream.close({ signal })
    if (response === null || typeof response !== 'object' || typeof response.ok !== 'boolean') throw new RemoteRequestError(`${protocol}: malformed response from ${peer.toString()}`)
    if (!response.ok) throw new RemoteRequestError(String(response.error))
    return response.value
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

export interface HandleRequestsOptions {
  maxRequestBytes?: number
  maxResponseBytes?: number
  maxInboundStreams?: number
}

/**
 * Serves `protocol`: `handler` gets the decoded request and the remote peer (authenticated by
 * noise) and returns the response value, or throws to answer with its message.
 */
export async function handleRequests (node: SwarmNode, protocol: string, handler: (request: unknown, peer: PeerId) => Promise<unknown>, options: HandleRequestsOptions = {}): Promise<void> {
  await node.handle(protocol, (stream, connection) => {
    const serve = async (): Promise<void> => {
      const signal = AbortSignal.timeout(30_000)
      const lp = lpStream(stream, { maxDataLength: options.maxRequestBytes ?? DEFAULT_MAX_BYTES })
      const request = dagCbor.decode((await lp.read({ signal })).subarray())
      let response: Wire
      try {
        response = { ok: true, value: await handler(request, connection.remotePeer) }
      } catch (err) {
        response = { ok: false, error: (err as Error).message }
      }
      let bytes = dagCbor.encode(response)
      if (bytes.byteLength > (options.maxResponseBytes ?? DEFAULT_MAX_BYTES)) bytes = dagCbor.encode({ ok: false, error: 'response too large' })
      await lp.write(bytes, { signal })
      await stream.close({ signal })
    }
    serve().catch((err: Error) => { stream.abort(err) })
  }, { maxInboundStreams: options.maxInboundStreams ?? 16 })
}
