/**
 * Own events pushed straight to every connected member over one long-lived stream per member
 * (`/hgmig/<swarm>/events/push/1.0.0`): length-prefixed event bytes, nothing else. Why not only
 * gossipsub: on loopback a gossipsub message took 3.3 ms of a 7.5 ms consensus hop (its RPC
 * protobuf, message ids, seen cache and validator queue on top of pnet, noise and yamux), and
 * consensus waits for ~6–12 such hops per ordering (bench/RESULTS.md, issue 4, sessions 5–6).
 * A push is one stream write; the receiver validates each event as a gossiped one (the same
 * engine checks), and a sender whose frame is oversized, malformed or invalid has its stream
 * closed and the fault counted against it: gossipsub's behaviour penalty (its score, as for
 * invalid gossip) and, after `maxFaults`, no push stream accepted from it for `banMs` (its events
 * still come by gossip or sync, where they are checked the same way).
 *
 * Streams are opened by the sender when a member connects (and again, at most once per
 * `reopenMs`, when one closed); events queued for a slow member beyond `maxQueuedBytes` close
 * its stream (it catches up by sync) rather than hold memory or the sender.
 */
import type { PeerId, Stream, StreamMessageEvent } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import type { SwarmNode } from './node.js'

/** What the receiver made of one pushed event: 'reject' means the sender is at fault. */
export type PushVerdict = 'accept' | 'ignore' | 'reject'

export interface EventPushInit {
  node: SwarmNode
  /** The stream protocol, e.g. `/hgmig/<swarm>/events/push/1.0.0`. */
  protocol: string
  /** Whether a peer may push to us and be pushed to (the members). */
  admitted: (peer: PeerId) => boolean
  /** Validates and inserts one event pushed by `peer` (synchronously, in arrival order). */
  receive: (peer: PeerId, bytes: Uint8Array) => PushVerdict
  /** Largest frame accepted, in bytes. */
  maxMessageBytes: number
  /** Bytes queued for one member before its stream is closed instead (default 8 MiB). */
  maxQueuedBytes?: number
  /** Faults (invalid frames) before a peer's push streams are refused for `banMs` (default 3). */
  maxFaults?: number
  banMs?: number
  /** Least time between two attempts to open a stream to one member (default 1000 ms). */
  reopenMs?: number
  onError?: (err: Error) => void
}

/** A peer sent something on a push stream that is not a valid event. */
export class PushStreamFaultError extends Error {
  override readonly name = 'PushStreamFaultError'
  readonly code = 'ERR_PUSH_STREAM_FAULT'
}

interface Outbound { stream: Stream | null, queue: Uint8Array[], queuedBytes: number, writing: boolean, lastOpen: number }

export class EventPush {
  private readonly init: Required<Omit<EventPushInit, 'onError'>> & Pick<EventPushInit, 'onError'>
  private readonly outbound = new Map<string, Outbound>()
  private readonly inbound = new Map<string, Stream>()
  private readonly faults = new Map<string, { count: number, bannedUntil: number }>()
  /**
   * Connected peers by their string form, kept from libp2p's connect/disconnect events: send()
   * runs once per own event, and node.getPeers() builds a new PeerId from a string per peer and
   * call (2.6 % of an agent's CPU in the bench profile, bench/RESULTS.md issue 4, session 7).
   */
  private readonly connected = new Map<string, PeerId>()
  private running = false
  private readonly onConnect = (event: CustomEvent<PeerId>): void => {
    this.connected.set(event.detail.toString(), event.detail)
    this.open(event.detail)
  }

  private readonly onDisconnect = (event: CustomEvent<PeerId>): void => {
    const key = event.detail.toString()
    // libp2p says disconnect when the peer's last connection closed: none is left.
    this.connected.delete(key)
  }

  constructor (init: EventPushInit) {
    this.init = { maxQueuedBytes: 8 * 1024 * 1024, maxFaults: 3, banMs: 60_000, reopenMs: 1000, ...init }
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    const { node, protocol } = this.init
    await node.handle(protocol, (stream, connection) => { this.serve(stream, connection.remotePeer) }, { maxInboundStreams: 2 })
    node.addEventListener('peer:connect', this.onConnect)
    node.addEventListener('peer:disconnect', this.onDisconnect)
    for (const peer of node.getPeers()) {
      this.connected.set(peer.toString(), peer)
      this.open(peer)
    }
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    const { node, protocol } = this.init
    node.removeEventListener('peer:connect', this.onConnect)
    node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.connected.clear()
    await node.unhandle(protocol)
    for (const out of this.outbound.values()) out.stream?.abort(new Error('stopping'))
    for (const stream of this.inbound.values()) stream.abort(new Error('stopping'))
    this.outbound.clear()
    this.inbound.clear()
  }

  /** Whether events sent now reach `peer` by push (its stream is open). */
  reaches (peer: PeerId): boolean {
    return this.outbound.get(peer.toString())?.stream != null
  }

  /** How many members events sent now reach by push (streams open). */
  get reachedCount (): number {
    let count = 0
    for (const out of this.outbound.values()) if (out.stream != null) count++
    return count
  }

  /** Faults counted against `peer` so far (for tests and status). */
  faultsOf (peer: PeerId): number {
    return this.faults.get(peer.toString())?.count ?? 0
  }

  /**
   * Queues `events` (in order: a receiver inserts them as they come) for every member with an
   * open stream; opens streams to connected members that have none. Returns how many members
   * they were queued for.
   */
  send (events: readonly Uint8Array[]): number {
    if (!this.running) return 0
    let reached = 0
    for (const [key, peer] of this.connected) {
      const out = this.outbound.get(key)
      if (out?.stream == null) {
        this.open(peer)
        continue
      }
      let bytes = 0
      for (const event of events) bytes += event.byteLength
      if (out.queuedBytes + bytes > this.init.maxQueuedBytes) {
        // A member that reads this slowly is better served by sync than by an ever longer queue.
        out.stream.abort(new Error('push queue full'))
        continue
      }
      out.queue.push(...events)
      out.queuedBytes += bytes
      reached++
      if (!out.writing) void this.pump(out)
    }
    return reached
  }

  private open (peer: PeerId): void {
    const key = peer.toString()
    if (!this.running || !this.init.admitted(peer)) return
    let out = this.outbound.get(key)
    const now = performance.now()
    if (out !== undefined && (out.stream !== null || out.writing || now - out.lastOpen < this.init.reopenMs)) return
    out ??= { stream: null, queue: [], queuedBytes: 0, writing: false, lastOpen: now }
    out.lastOpen = now
    // `writing` marks the dial in progress, so that no second one starts.
    out.writing = true
    this.outbound.set(key, out)
    const entry = out
    this.init.node.dialProtocol(peer, this.init.protocol, { signal: AbortSignal.timeout(10_000) }).then((stream) => {
      entry.writing = false
      if (!this.running || this.outbound.get(key) !== entry) {
        stream.abort(new Error('not needed'))
        return
      }
      entry.stream = stream
      stream.addEventListener('close', () => {
        if (entry.stream === stream) {
          entry.stream = null
          entry.queue = []
          entry.queuedBytes = 0
        }
      })
      if (entry.queue.length > 0) void this.pump(entry)
    }, () => {
      // Not reachable now (or it runs an agent without push): gossip and sync carry our events.
      entry.writing = false
    })
  }

  /**
   * Writes the member's queue, everything queued meanwhile in one write (frames: an unsigned
   * varint length, then the event). Framed here rather than by @libp2p/utils' lpStream, which
   * costs a promise per byte of each length when reading and event listeners per use.
   */
  private async pump (out: Outbound): Promise<void> {
    const stream = out.stream
    if (stream === null) return
    out.writing = true
    try {
      while (out.queue.length > 0 && out.stream === stream) {
        const batch = out.queue
        out.queue = []
        out.queuedBytes = 0
        if (!stream.send(frames(batch))) await drained(stream)
      }
    } catch (err) {
      stream.abort(err as Error)
    } finally {
      out.writing = false
    }
  }

  private serve (stream: Stream, peer: PeerId): void {
    const key = peer.toString()
    const fault = this.faults.get(key)
    if (!this.admitted(peer) || (fault !== undefined && fault.bannedUntil > Date.now())) {
      stream.abort(new Error('push refused'))
      return
    }
    // One inbound stream per member: a newer one (the member reconnected) replaces the old.
    this.inbound.get(key)?.abort(new Error('replaced'))
    this.inbound.set(key, stream)
    void this.read(stream, peer).finally(() => {
      if (this.inbound.get(key) === stream) this.inbound.delete(key)
    })
  }

  private admitted (peer: PeerId): boolean {
    return this.running && this.init.admitted(peer)
  }

  /** Reads frames as they arrive and hands each to `receive` at once, in order. */
  private read (stream: Stream, peer: PeerId): Promise<void> {
    const buffer = new Uint8ArrayList()
    return new Promise<void>((resolve) => {
      const done = (): void => {
        stream.removeEventListener('message', onMessage)
        resolve()
      }
      const onMessage = (event: StreamMessageEvent): void => {
        buffer.append(event.data)
        for (;;) {
          const header = frameLength(buffer)
          if (header === null) return
          if (header === 'bad' || header.length > this.init.maxMessageBytes) {
            this.fault(peer, stream, header === 'bad' ? 'malformed frame length' : `frame of ${header.length} bytes (limit ${this.init.maxMessageBytes})`)
            done()
            return
          }
          if (buffer.byteLength < header.bytes + header.length) return
          const frame = buffer.subarray(header.bytes, header.bytes + header.length)
          buffer.consume(header.bytes + header.length)
          if (!this.running) {
            done()
            return
          }
          if (this.init.receive(peer, frame) === 'reject') {
            this.fault(peer, stream, 'invalid event')
            done()
            return
          }
        }
      }
      stream.addEventListener('message', onMessage)
      stream.addEventListener('close', done, { once: true })
    })
  }

  /** Closes the stream and counts the fault against the peer (its gossipsub score, then a ban). */
  private fault (peer: PeerId, stream: Stream, what: string): void {
    const key = peer.toString()
    const fault = this.faults.get(key) ?? { count: 0, bannedUntil: 0 }
    fault.count++
    if (fault.count % this.init.maxFaults === 0) fault.bannedUntil = Date.now() + this.init.banMs
    this.faults.set(key, fault)
    lowerGossipScore(this.init.node, key)
    stream.abort(new PushStreamFaultError(`${what} pushed by ${key}`))
  }
}

/**
 * Gossipsub's behaviour penalty (P7: weight −10 × penalties², decaying), the one score term
 * gossipsub lets us add to from outside: what an invalid gossip message costs a peer, in the
 * score that decides whether gossipsub still exchanges messages with it.
 */
function lowerGossipScore (node: SwarmNode, peer: string): void {
  const score = (node.services.pubsub as unknown as { score?: { addPenalty?: (id: string, penalty: number, label: string) => void } }).score
  score?.addPenalty?.(peer, 1, 'broken_promise')
}

/** Largest frame length header: 5 bytes of varint (up to 2^35). */
const MAX_LENGTH_BYTES = 5

/** The events as length-prefixed frames, in one buffer. */
function frames (events: readonly Uint8Array[]): Uint8Array {
  let size = 0
  for (const event of events) size += varintLength(event.byteLength) + event.byteLength
  const out = new Uint8Array(size)
  let at = 0
  for (const event of events) {
    let length = event.byteLength
    while (length >= 0x80) {
      out[at++] = (length & 0x7f) | 0x80
      length = Math.floor(length / 128)
    }
    out[at++] = length
    out.set(event, at)
    at += event.byteLength
  }
  return out
}

function varintLength (value: number): number {
  let bytes = 1
  while (value >= 0x80) {
    value = Math.floor(value / 128)
    bytes++
  }
  return bytes
}

/** The next frame's length and its header's size; null: not all of the header is here yet. */
function frameLength (buffer: Uint8ArrayList): { length: number, bytes: number } | 'bad' | null {
  let length = 0
  for (let i = 0; i < Math.min(buffer.byteLength, MAX_LENGTH_BYTES); i++) {
    const byte = buffer.get(i)
    length += (byte & 0x7f) * 2 ** (7 * i)
    if ((byte & 0x80) === 0) return { length, bytes: i + 1 }
  }
  return buffer.byteLength >= MAX_LENGTH_BYTES ? 'bad' : null
}

async function drained (stream: Stream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => { stream.removeEventListener('close', onClose); resolve() }
    const onClose = (): void => { stream.removeEventListener('drain', onDrain); reject(new Error('push stream closed')) }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}
