/**
 * The serving side of the block protocol: one BlockServer per exchange, one ServedStream per
 * inbound stream. Wants are queued per stream (bounded) and answered in order; each block is read
 * from the store (not hashed: the fetcher hashes every block it receives), passes the serving
 * policy and the egress rate limits (migration before replication), and is sent as one frame,
 * waiting for the stream to drain when the muxer's buffer is full.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  decodeCids, decodeHello, FrameDecoder, frame, frameHeader, MAX_QUEUED_WANTS_PER_STREAM, MAX_REQUEST_BYTES, MESSAGE,
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
  /** Answers gathered into one send, up to this many bytes (0: one send per answer). */
  coalesceBytes: number
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

  get coalesceBytes (): number { return this.init.coalesceBytes }

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

  /**
   * Answers queued wants in order. Answers are gathered and sent together, up to the server's
   * `coalesceBytes` or until the queue is empty or a rate limit makes it wait: one send becomes
   * one yamux frame (and one window update back from the fetcher) however many blocks it carries,
   * and fewer of noise's messages (65,519 bytes at most each: a lone 64 KiB block took a full one
   * and a 17-byte one).
   */
  private async pump (): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    const gathered: Uint8Array[] = []
    let gatheredBytes = 0
    const flush = (): void => {
      if (gatheredBytes === 0 || this.closed) return
      // One send of the parts as they are (a list, not a copy): still one yamux frame.
      const out = gathered.length === 1 ? gathered[0] as Uint8Array : new Uint8ArrayList(...gathered)
      gathered.length = 0
      gatheredBytes = 0
      this.stream.send(out)
    }
    try {
      while (this.queue.length > 0 && !this.closed) {
        const want = this.queue[0] as QueuedWant
        const parts = await this.answer(want, flush)
        this.queue.shift()
        for (const part of parts) {
          gathered.push(part)
          gatheredBytes += part.byteLength
        }
        if (gatheredBytes >= this.server.coalesceBytes || this.queue.length === 0) {
          flush()
          if (this.stream.writableNeedsDrain) await this.stream.onDrain()
        }
      }
      flush()
    } catch (err) {
      this.abort(err as Error)
    } finally {
      this.pumping = false
    }
    if (this.stream.readableEnded && this.queue.length === 0) this.finish()
  }

  /** The frames answering one want (header and block as separate parts: the send gathers them). `beforeWait` runs before a rate limit makes it wait. */
  private async answer (want: QueuedWant, beforeWait: () => void): Promise<Uint8Array[]> {
    const context = this.context as TransferContext
    if (want.cancelled) return [frame(MESSAGE.CANCELLED)]
    const stats = this.server.peerStats(this.peerKey)
    if (!(await this.server.policy.mayServe(this.peer, want.cid, context))) {
      stats.refused++
      this.server.refused({ peer: this.peerKey, reason: 'policy', cid: want.cid.toString() })
      return [frame(MESSAGE.REFUSED, encoder.encode('refused by the serving policy'))]
    }
    const block = this.server.readBlock(want.cid)
    if (block === undefined) return [frame(MESSAGE.DONT_HAVE)]
    for (const bucket of this.server.buckets(this.peerKey, context)) {
      if (bucket !== undefined && !bucket.tryTake(block.byteLength, PRIORITY[context.purpose])) {
        // What is gathered goes now: it was paid for, and waiting here must not hold it back.
        beforeWait()
        await bucket.take(block.byteLength, PRIORITY[context.purpose])
      }
    }
    // Cancelled while waiting for the rate limit: the fetcher has the block from elsewhere.
    if (want.cancelled) return [frame(MESSAGE.CANCELLED)]
    if (this.closed) return []
    stats.blocks++
    stats.bytes += block.byteLength
    this.server.stats.blocks++
    this.server.stats.bytes += block.byteLength
    // Header and block go in the same send (a separate 3-byte send cost as much stack work as a block).
    return [frameHeader(MESSAGE.BLOCK, block.byteLength), block]
  }

  private finish (): void {
    if (this.closed) return
    this.closed = true
    this.stream.close().catch((err: Error) => { this.stream.abort(err) })
  }
}
