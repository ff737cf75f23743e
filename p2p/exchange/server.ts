/**
 * The serving side of the block protocol: one BlockServer per exchange, one ServedStream per
 * inbound stream. Wants are queued per stream (bounded) and answered in order; each block is read
 * from the store (not hashed: the fetcher hashes every block it receives), passes the serving
 * policy and the egress rate limits (migration before replication), and is sent as one frame,
 * waiting for the stream to drain when the muxer's buffer is full.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import {
  decodeCids, decodeHello, FrameDecoder, frame, MAX_QUEUED_WANTS_PER_STREAM, MAX_REQUEST_BYTES, MESSAGE,
  type TransferContext
} from './protocol.js'
import { PRIORITY, TokenBucket, type RateLimit } from './rate-limit.js'
import type { ExchangeStore, ServedStats, ServeRefusedDetail, ServingPolicy } from './types.js'

const encoder = new TextEncoder()

export interface BlockServerInit {
  store: ExchangeStore
  policy: ServingPolicy
  egress: TokenBucket | undefined
  egressPerTransfer: RateLimit | undefined
  onRefused: (detail: ServeRefusedDetail) => void
}

export class BlockServer {
  readonly stats: ServedStats = { peers: {}, blocks: 0, bytes: 0, rejectedStreams: 0 }
  private readonly streams = new Set<ServedStream>()
  /** Per (peer, image) egress buckets, created on first use. */
  private readonly transferBuckets = new Map<string, TokenBucket>()

  constructor (private readonly init: BlockServerInit) {}

  handle (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer
    if (!this.init.policy.isMember(peer)) {
      this.stats.rejectedStreams++
      this.init.onRefused({ peer: peer.toString(), reason: 'not-a-member' })
      stream.send(frame(MESSAGE.REJECT, encoder.encode('not a member of this swarm')))
      stream.close().catch(() => { stream.abort(new Error('not a member')) })
      return
    }
    const served = new ServedStream(this, stream, peer)
    this.streams.add(served)
    stream.addEventListener('close', () => { this.streams.delete(served) })
  }

  stop (): void {
    for (const served of this.streams) served.abort(new Error('block exchange stopping'))
    this.streams.clear()
    for (const bucket of this.transferBuckets.values()) bucket.clear(new Error('block exchange stopping'))
  }

  peerStats (peer: string): { blocks: number, bytes: number, refused: number } {
    let entry = this.stats.peers[peer]
    if (entry === undefined) {
      entry = { blocks: 0, bytes: 0, refused: 0 }
      this.stats.peers[peer] = entry
    }
    return entry
  }

  buckets (peer: string, context: TransferContext): Array<TokenBucket | undefined> {
    const { egressPerTransfer } = this.init
    if (egressPerTransfer === undefined) return [this.init.egress]
    const key = `${peer} ${context.image ?? ''}`
    let bucket = this.transferBuckets.get(key)
    if (bucket === undefined) {
      bucket = new TokenBucket(egressPerTransfer, 'rateLimits.egressPerTransfer')
      this.transferBuckets.set(key, bucket)
    }
    return [this.init.egress, bucket]
  }

  get policy (): ServingPolicy { return this.init.policy }

  /**
   * The block's bytes, or undefined when this site does not hold it. Leaves a transfer here has
   * stored but not yet registered are in the store too (adopted), so a site passes chunks on
   * before its own copy of the image is complete. Not hashed here: the fetcher hashes every block
   * it receives (a corrupt block here costs this site a penalty there, and the fetcher asks
   * another source).
   */
  readBlock (cid: CID): Uint8Array | undefined {
    try {
      return this.init.store.readBlock(cid, { verify: false })
    } catch {
      return undefined
    }
  }

  refused (detail: ServeRefusedDetail): void {
    this.init.onRefused(detail)
  }
}

interface QueuedWant {
  cid: CID
  cancelled: boolean
}

class ServedStream {
  private readonly decoder = new FrameDecoder(MAX_REQUEST_BYTES + 8)
  private readonly queue: QueuedWant[] = []
  private context: TransferContext | undefined
  private pumping = false
  private closed = false
  private readonly peerKey: string

  constructor (private readonly server: BlockServer, private readonly stream: Stream, private readonly peer: PeerId) {
    this.peerKey = peer.toString()
    stream.addEventListener('message', (event) => {
      try {
        this.onData(event.data.subarray())
      } catch (err) {
        this.abort(err as Error)
      }
    })
    stream.addEventListener('close', () => { this.closed = true })
    stream.addEventListener('remoteCloseWrite', () => {
      if (this.queue.length === 0 && !this.pumping) this.finish()
    })
  }

  abort (err: Error): void {
    this.closed = true
    this.stream.abort(err)
  }

  private onData (data: Uint8Array): void {
    for (const { type, body } of this.decoder.push(data)) {
      switch (type) {
        case MESSAGE.HELLO:
          this.context = decodeHello(body)
          break
        case MESSAGE.WANT: {
          if (this.context === undefined) throw new Error('WANT before HELLO')
          const cids = decodeCids(body, 'WANT')
          if (this.queue.length + cids.length > MAX_QUEUED_WANTS_PER_STREAM) throw new Error(`more than ${MAX_QUEUED_WANTS_PER_STREAM} wants queued on one stream`)
          for (const cid of cids) this.queue.push({ cid, cancelled: false })
          void this.pump()
          break
        }
        case MESSAGE.CANCEL: {
          const cancelled = new Set(decodeCids(body, 'CANCEL').map((cid) => cid.toString()))
          for (const want of this.queue) if (cancelled.has(want.cid.toString())) want.cancelled = true
          break
        }
        default:
          throw new Error(`unexpected message type ${type}`)
      }
    }
  }

  private async pump (): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.queue.length > 0 && !this.closed) {
        const want = this.queue[0] as QueuedWant
        await this.answer(want)
        this.queue.shift()
        if (this.stream.writableNeedsDrain) await this.stream.onDrain()
      }
    } catch (err) {
      this.abort(err as Error)
    } finally {
      this.pumping = false
    }
    if (this.stream.readableEnded && this.queue.length === 0) this.finish()
  }

  private async answer (want: QueuedWant): Promise<void> {
    const context = this.context as TransferContext
    if (want.cancelled) {
      this.stream.send(frame(MESSAGE.CANCELLED))
      return
    }
    const stats = this.server.peerStats(this.peerKey)
    if (!(await this.server.policy.mayServe(this.peer, want.cid, context))) {
      stats.refused++
      this.server.refused({ peer: this.peerKey, reason: 'policy', cid: want.cid.toString() })
      this.stream.send(frame(MESSAGE.REFUSED, encoder.encode('refused by the serving policy')))
      return
    }
    const block = this.server.readBlock(want.cid)
    if (block === undefined) {
      this.stream.send(frame(MESSAGE.DONT_HAVE))
      return
    }
    for (const bucket of this.server.buckets(this.peerKey, context)) {
      if (bucket !== undefined && !bucket.tryTake(block.byteLength, PRIORITY[context.purpose])) await bucket.take(block.byteLength, PRIORITY[context.purpose])
    }
    // Cancelled while waiting for the rate limit: the fetcher has the block from elsewhere.
    if (want.cancelled) {
      this.stream.send(frame(MESSAGE.CANCELLED))
      return
    }
    if (this.closed) return
    // One send for header and block: each send becomes its own yamux frame, noise message and
    // pnet pass, so a separate 3-byte header cost as much stack work as a block's second half.
    this.stream.send(frame(MESSAGE.BLOCK, block))
    stats.blocks++
    stats.bytes += block.byteLength
    this.server.stats.blocks++
    this.server.stats.bytes += block.byteLength
  }

  private finish (): void {
    if (this.closed) return
    this.closed = true
    this.stream.close().catch((err: Error) => { this.stream.abort(err) })
  }
}
