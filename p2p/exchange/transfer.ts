/**
 * One image transfer: the multi-source scheduler and the verified, resumable write path.
 *
 * Scheduling is pull-based: every stream of every source keeps a window of wanted bytes
 * outstanding and, whenever blocks arrive, takes the next chunks it holds from the shared order.
 * A source that delivers faster frees its window sooner and so takes proportionally more: chunks
 * spread over sources in proportion to their measured throughput without a central estimate.
 * Sources are served in the order (throughput, then latency), so a lower-latency source gets the
 * chunk when rates are equal. Near the end (nothing left to take), an idle source re-requests the
 * oldest chunk outstanding at another source for longer than a few of that source's usual block
 * latencies (endgame); the first copy wins and the other is cancelled. A source whose streams
 * fail, that stalls, that refuses, or that sends too many blocks not matching their CIDs is
 * dropped, and its outstanding chunks go back to the others.
 *
 * Every block is hashed against the CID it was asked for before anything else happens to it; a
 * mismatch is never stored, the chunk is re-queued for another source and the sender penalised.
 * Verified blocks go straight into the image store (`adoptLeaves`: written once into its pack
 * files, not hashed again, pinned for this transfer), in batches; once a batch is durable its
 * positions are marked done in SQLite. When every leaf is in, the store registers the image from
 * the manifest (`registerAdopted`: only the inner nodes are built), which must give the requested
 * root CID. No partial file, no second hash of the data, no re-import.
 */
import { rm } from 'node:fs/promises'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import type { ImageInfo } from '../store/index.js'
import type { SwarmNode } from '../swarm/index.js'
import { BlockArena, type ArenaBlock } from './block-arena.js'
import { blockMatches, leafData, zeroLeafCids } from './cid-check.js'
import { ExchangeError, ManifestMismatchError, NoSourcesLeftError, TransferAbortedError, type SourceFailure } from './errors.js'
import { encodeCids, encodeHello, FrameDecoder, MAX_WANTS_PER_MESSAGE, MESSAGE, type TransferContext } from './protocol.js'
import { PRIORITY, type TokenBucket } from './rate-limit.js'
import type { TransferRecord, TransferState } from './transfer-state.js'
import type { ExchangeStore, FetchResult, FetchSource, PenaltyDetail, SourceProgress, TransferProgress } from './types.js'

const TICK_MS = 250
/** Verified blocks wait at most this long, or until this many gather, before they go to the store (one fsync and one transaction per batch). */
const COMMIT_INTERVAL_MS = 50
const COMMIT_BATCH = 256
/** Verified bytes handed to the store but not yet durable, at most: beyond it no new wants go out. */
const MAX_WRITE_BACKLOG = 64 << 20
const MIN_ENDGAME_DELAY_MS = 250
/** Streams to one source must open within this. */
const DIAL_TIMEOUT_MS = 10_000

export interface TransferDeps {
  node: SwarmNode
  protocol: string
  store: ExchangeStore
  state: TransferState
  /** The exchange's global ingress bucket and this transfer's own (either may be missing). */
  ingress: Array<TokenBucket | undefined>
  streamsPerSource: number
  windowBytesPerStream: number
  stallTimeoutMs: number
  maxInvalidBlocks: number
  onProgress: (progress: TransferProgress) => void
  onStored: (detail: { rootCid: string, cid: string, peer: string, bytes: number }) => void
  onPenalised: (detail: PenaltyDetail) => void
  onSourceDropped: (detail: { rootCid: string, peer: string, reason: string }) => void
}

interface Want {
  cid: CID
  key: string
  /** Manifest positions with this CID (a chunk repeated in the image is fetched once). */
  positions: number[]
  /** Expected file data length (the same at every position: the last, short chunk has its own CID). */
  length: number
  done: boolean
  /** Sources it is outstanding at, with the time it was asked. */
  inflight: Map<SourceLink, number>
  /** Sources that failed it (don't have, refused, sent wrong bytes). */
  excluded: Set<SourceLink>
}

interface Outstanding {
  want: Want
  sentAt: number
}

class OutStream {
  readonly decoder = new FrameDecoder()
  readonly outstanding: Outstanding[] = []
  outstandingBytes = 0
  /** Waiting for rate-limit tokens before the next WANT. */
  reserving = false
  constructor (readonly stream: Stream) {}
}

class SourceLink {
  state: SourceProgress['state'] = 'connecting'
  readonly streams: OutStream[] = []
  cursor = 0
  chunks = 0
  bytes = 0
  bytesReceived = 0
  invalid = 0
  latencyTotal = 0
  latencyCount = 0
  bytesSinceTick = 0
  rate = 0
  lastProgress = performance.now()
  dropReason: string | undefined
  readonly key: string

  constructor (readonly peerId: PeerId, readonly source: FetchSource, readonly holds: Set<number> | null) {
    this.key = peerId.toString()
  }

  get meanLatencyMs (): number | undefined {
    return this.latencyCount === 0 ? undefined : this.latencyTotal / this.latencyCount
  }

  get outstanding (): number {
    let n = 0
    for (const s of this.streams) n += s.outstanding.length
    return n
  }

  holdsWant (want: Want): boolean {
    if (this.holds === null) return true
    for (const position of want.positions) if (this.holds.has(position)) return true
    return false
  }

  progress (): SourceProgress {
    const p: SourceProgress = {
      peer: this.key,
      state: this.state,
      chunks: this.chunks,
      bytes: this.bytes,
      bytesReceived: this.bytesReceived,
      bytesPerSecond: Math.round(this.rate),
      latencyMs: this.meanLatencyMs,
      invalidBlocks: this.invalid
    }
    if (this.dropReason !== undefined) p.dropReason = this.dropReason
    return p
  }
}

/** The store adoption that pins a transfer's leaves until its image is registered (one per root CID). */
export function adoptionKey (rootCid: string): string {
  return `exchange:${rootCid}`
}

export interface NormalizedRequest {
  record: TransferRecord
  root: CID
  cids: CID[]
  sources: FetchSource[]
  context: TransferContext
  signal: AbortSignal | undefined
}

export class Transfer {
  private readonly record: TransferRecord
  private readonly rootCid: string
  private readonly adoption: string
  private readonly wants: Want[] = []
  private readonly requeue: Want[] = []
  private readonly inflightWants = new Set<Want>()
  private sources: SourceLink[] = []
  private readonly failures: SourceFailure[] = []
  private fetchDone = 0
  private positionsDone = 0
  private bytesDone = 0
  private chunksTotal = 0
  private bytesReceived = 0
  private bytesFetched = 0
  private chunksResumed = 0
  private chunksLocal = 0
  private chunksRecovered = 0
  private chunksZero = 0
  private invalidBlocks = 0
  private writeBacklog = 0
  private writesPending = 0
  /** Verified blocks waiting for the next store batch. */
  private unstored: Array<{ want: Want, block: ArenaBlock, source: SourceLink }> = []
  /** Verified blocks live here, not in the transport's buffers, until the store has them (see block-arena.ts). */
  private readonly arena: BlockArena
  /** A batch is being stored (batches go one at a time, in order). */
  private storing = false
  private commitTimer: NodeJS.Timeout | null = null
  private tickTimer: NodeJS.Timeout | null = null
  private rate = 0
  private bytesSinceTick = 0
  private lastTick = performance.now()
  private phase: TransferProgress['phase'] = 'preparing'
  private fetchStartedAt = 0
  private firstBlockAt = 0
  private finished = false
  private failure: Error | undefined
  private readonly started = performance.now()
  private settle: { resolve: () => void, reject: (err: Error) => void } | undefined
  private readonly writesIdle: Array<() => void> = []
  private readonly onAbort = (): void => { this.fail(new TransferAbortedError(`transfer of ${this.rootCid} cancelled; its state is kept for a resume`)) }

  constructor (private readonly deps: TransferDeps, private readonly request: NormalizedRequest) {
    this.record = request.record
    this.rootCid = request.root.toString()
    this.adoption = adoptionKey(this.rootCid)
    // A kubo leaf is its data in a small UnixFS envelope: room for that beside the chunk.
    this.arena = new BlockArena(this.record.chunkSize + 1024, MAX_WRITE_BACKLOG + COMMIT_BATCH * (this.record.chunkSize + 1024))
  }

  async run (): Promise<FetchResult> {
    const { signal } = this.request
    if (signal?.aborted === true) throw new TransferAbortedError(`transfer of ${this.rootCid} cancelled before it started`)
    signal?.addEventListener('abort', this.onAbort, { once: true })
    try {
      await this.prepare()
      const fetchStarted = performance.now()
      this.fetchStartedAt = fetchStarted
      if (this.fetchDone < this.wants.length) await this.fetch()
      const fetchMs = performance.now() - fetchStarted
      this.phase = 'importing'
      this.emitProgress()
      const importStarted = performance.now()
      const image = await this.registerImage()
      const importMs = performance.now() - importStarted
      this.phase = 'done'
      this.emitProgress()
      // The state rows go with the history entry (BlockExchange.fetch, one transaction).
      return {
        image,
        chunksFetched: this.sources.reduce((n, s) => n + s.chunks, 0),
        bytesFetched: this.bytesFetched,
        bytesReceived: this.bytesReceived,
        chunksResumed: this.chunksResumed,
        chunksRecovered: this.chunksRecovered,
        chunksLocal: this.chunksLocal,
        chunksZero: this.chunksZero,
        invalidBlocks: this.invalidBlocks,
        sources: this.sources.map((s) => s.progress()),
        durationMs: performance.now() - this.started,
        fetchMs,
        importMs,
        firstBlockMs: this.firstBlockAt === 0 ? 0 : this.firstBlockAt - this.fetchStartedAt
      }
    } finally {
      signal?.removeEventListener('abort', this.onAbort)
      this.stopTimers()
    }
  }

  // ------------------------------------------------------------ preparation

  private async prepare (): Promise<void> {
    const { record } = this
    const { state, store } = this.deps
    // A transfer from before leaves were adopted wrote a partial file: not used any more.
    if (record.partialPath !== '') await rm(record.partialPath, { force: true })
    const rows = state.chunks(record.id)
    this.chunksTotal = rows.length
    const lastLength = record.size - (rows.length - 1) * record.chunkSize
    const zeroCids = zeroLeafCids([record.chunkSize, lastLength])
    const byCid = new Map<string, Want & { donePositions: number[] }>()
    const zeroPositions: number[] = []
    for (const row of rows) {
      const length = row.position === rows.length - 1 ? lastLength : record.chunkSize
      const cid = CID.decode(row.cid)
      const key = cid.toString()
      if (zeroCids.has(key)) {
        // All zeros: never fetched nor stored (the registration records them by their CID).
        if (row.done) this.chunksResumed++
        else this.chunksZero++
        if (!row.done) zeroPositions.push(row.position)
        this.countDone(1, length)
        continue
      }
      let want = byCid.get(key)
      if (want === undefined) {
        want = { cid, key, positions: [], donePositions: [], length, done: false, inflight: new Map(), excluded: new Set() }
        byCid.set(key, want)
      }
      want.positions.push(row.position)
      if (row.done) want.donePositions.push(row.position)
    }
    state.markDone(record.id, [{ positions: zeroPositions, source: null }])
    // Which leaves the store has (and pins them for this transfer): those of local images are not
    // fetched; those it adopted for this transfer before a crash, but after the last batch marked
    // here, are recovered. A leaf marked done that the store lost (a power cut took its batch) is fetched again.
    const entries = [...byCid.values()]
    const found = await store.pinLeaves(this.adoption, entries.map((w) => w.cid))
    const local: Array<{ positions: number[], source: string | null }> = []
    const lost: number[] = []
    entries.forEach((want, i) => {
      const here = found[i] !== 'absent'
      if (!here) {
        lost.push(...want.donePositions)
        this.wants.push(want)
        return
      }
      this.chunksResumed += want.donePositions.length
      want.done = true
      this.countDone(want.positions.length, want.length * want.positions.length)
      if (want.donePositions.length === want.positions.length) return
      if (found[i] === 'adopted') this.chunksRecovered++
      else this.chunksLocal++
      local.push({ positions: want.positions, source: null })
    })
    state.markMissing(record.id, lost)
    state.markDone(record.id, local)
  }

  private countDone (positions: number, bytes: number): void {
    this.positionsDone += positions
    this.bytesDone += bytes
  }

  // ------------------------------------------------------------ fetching

  private async fetch (): Promise<void> {
    // Cancelled while it prepared: nothing will settle a fetch started now.
    if (this.finished) throw this.failure ?? new TransferAbortedError(`transfer of ${this.rootCid} cancelled`)
    this.phase = 'fetching'
    const done = new Promise<void>((resolve, reject) => { this.settle = { resolve, reject } })
    const seen = new Set<string>()
    for (const source of this.request.sources) {
      const peerId = typeof source.peer === 'string' ? peerIdFromString(source.peer) : source.peer
      if (seen.has(peerId.toString()) || peerId.equals(this.deps.node.peerId)) continue
      seen.add(peerId.toString())
      this.sources.push(new SourceLink(peerId, source, source.positions === undefined ? null : new Set(source.positions)))
    }
    this.tickTimer = setInterval(() => { this.tick() }, TICK_MS)
    this.emitProgress()
    if (this.sources.length === 0) this.fail(new NoSourcesLeftError(this.rootCid, this.wants.length, []))
    for (const source of this.sources) void this.connect(source)
    await done
  }

  private async connect (source: SourceLink): Promise<void> {
    const { node, protocol } = this.deps
    try {
      const addrs = (source.source.addrs ?? []).map((a) => typeof a === 'string' ? multiaddr(a) : a)
      if (addrs.length > 0) await node.peerStore.merge(source.peerId, { multiaddrs: addrs })
      const hello = encodeHello(this.request.context)
      const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS)
      // Every dial settles before any is used: the streams of a source whose other dial failed are
      // aborted, not left open against the source's per-connection stream limit.
      const opened = await Promise.allSettled(Array.from({ length: this.deps.streamsPerSource }, async () => await node.dialProtocol(source.peerId, protocol, { signal })))
      const streams = opened.flatMap((r) => r.status === 'fulfilled' ? [r.value] : [])
      const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed !== undefined || this.finished || source.state === 'dropped') {
        for (const stream of streams) stream.abort(new Error('transfer over'))
        if (failed !== undefined) throw failed.reason
        return
      }
      for (const stream of streams) {
        const out = new OutStream(stream)
        source.streams.push(out)
        // Piece by piece: a frame inside one piece is a view, one across pieces is copied (subarray() would copy every message whole).
        stream.addEventListener('message', (event) => {
          const data = event.data
          if (data instanceof Uint8Array) this.onData(source, out, data)
          else for (const piece of data) this.onData(source, out, piece)
        })
        stream.addEventListener('close', (event) => {
          if (!this.finished && source.state !== 'dropped') this.drop(source, `stream closed${event.error === undefined ? ' by the source' : `: ${event.error.message}`}`)
        })
        // A source's process dying ends the connection, which yamux passes on as the end of the
        // streams' readable side only (no 'close' while our side stays writable): a server never
        // ends its side while it serves, so this is the source going away.
        stream.addEventListener('remoteCloseWrite', () => {
          if (!this.finished && source.state !== 'dropped') this.drop(source, 'the source ended the stream (connection lost)')
        })
        stream.send(hello)
      }
      source.state = 'active'
      source.lastProgress = performance.now()
      this.pumpAll()
    } catch (err) {
      if (!this.finished) this.drop(source, `cannot open a block stream: ${(err as Error).message}`)
    }
  }

  /** Fills every source's windows, best sources first (throughput, then latency). */
  private pumpAll (): void {
    if (this.finished) return
    const ordered = this.sources.filter((s) => s.state === 'active').sort((a, b) =>
      (b.rate - a.rate) || ((a.meanLatencyMs ?? Infinity) - (b.meanLatencyMs ?? Infinity)))
    for (const source of ordered) this.pump(source)
    this.checkStuck()
  }

  private pump (source: SourceLink): void {
    if (this.finished || source.state !== 'active') return
    for (const out of source.streams) {
      if (out.reserving) continue
      // Refill only when a quarter of the window is free: every WANT costs a frame through yamux,
      // noise and pnet, and refilling per block made sending wants a tenth of the fetcher's CPU.
      const free = this.deps.windowBytesPerStream - out.outstandingBytes
      if (out.outstanding.length > 0 && free < Math.max(this.deps.windowBytesPerStream / 4, 4 * this.record.chunkSize)) continue
      const batch: Want[] = []
      while (out.outstandingBytes < this.deps.windowBytesPerStream && batch.length < MAX_WANTS_PER_MESSAGE && this.writeBacklog < MAX_WRITE_BACKLOG) {
        const want = this.take(source)
        if (want === undefined) break
        if (!this.tryTakeTokens(want.length)) {
          // Rate-limited: ask for this one once the buckets allow it.
          this.send(source, out, batch)
          batch.length = 0
          this.reserveThenSend(source, out, want)
          break
        }
        this.assign(source, out, want)
        batch.push(want)
      }
      this.send(source, out, batch)
    }
  }

  private tryTakeTokens (bytes: number): boolean {
    const priority = PRIORITY[this.request.context.purpose]
    const buckets = this.deps.ingress.filter((b): b is TokenBucket => b !== undefined)
    for (const bucket of buckets) if (bucket.tryTake(bytes, priority) === false) return false
    return true
  }

  private reserveThenSend (source: SourceLink, out: OutStream, want: Want): void {
    out.reserving = true
    // Assigned now so that no other stream takes it meanwhile.
    this.assign(source, out, want)
    const priority = PRIORITY[this.request.context.purpose]
    const wait = async (): Promise<void> => {
      for (const bucket of this.deps.ingress) if (bucket !== undefined) await bucket.take(want.length, priority, this.request.signal)
    }
    wait().then(() => {
      out.reserving = false
      if (this.finished || source.state !== 'active') return
      this.send(source, out, [want])
      this.pump(source)
    }, () => { out.reserving = false })
  }

  private assign (source: SourceLink, out: OutStream, want: Want): void {
    const now = performance.now()
    if (source.outstanding === 0) source.lastProgress = now
    want.inflight.set(source, now)
    this.inflightWants.add(want)
    out.outstanding.push({ want, sentAt: now })
    out.outstandingBytes += want.length
  }

  private send (source: SourceLink, out: OutStream, batch: Want[]): void {
    if (batch.length === 0) return
    try {
      out.stream.send(encodeCids(MESSAGE.WANT, batch.map((w) => w.cid)))
    } catch (err) {
      this.drop(source, `cannot send wants: ${(err as Error).message}`)
    }
  }

  /** The next chunk this source should fetch: re-queued ones first, then in file order, then the endgame. */
  private take (source: SourceLink): Want | undefined {
    for (let i = 0; i < this.requeue.length; i++) {
      const want = this.requeue[i] as Want
      if (want.done || want.inflight.size > 0) {
        this.requeue.splice(i--, 1)
        continue
      }
      if (source.holdsWant(want) && !want.excluded.has(source)) {
        this.requeue.splice(i, 1)
        return want
      }
    }
    while (source.cursor < this.wants.length) {
      const want = this.wants[source.cursor++] as Want
      if (!want.done && want.inflight.size === 0 && source.holdsWant(want) && !want.excluded.has(source)) return want
    }
    return this.endgame(source)
  }

  private endgame (source: SourceLink): Want | undefined {
    const now = performance.now()
    let best: Want | undefined
    let bestAge = 0
    for (const want of this.inflightWants) {
      if (want.inflight.size !== 1 || want.inflight.has(source) || want.excluded.has(source) || !source.holdsWant(want)) continue
      const [holder, askedAt] = want.inflight.entries().next().value as [SourceLink, number]
      const age = now - askedAt
      const delay = Math.max(MIN_ENDGAME_DELAY_MS, 4 * (holder.meanLatencyMs ?? 0))
      if (age > delay && age > bestAge) {
        best = want
        bestAge = age
      }
    }
    return best
  }

  private onData (source: SourceLink, out: OutStream, data: Uint8Array): void {
    if (this.finished || source.state === 'dropped') return
    let frames
    try {
      frames = out.decoder.push(data)
    } catch (err) {
      this.drop(source, `protocol error: ${(err as Error).message}`)
      return
    }
    const now = performance.now()
    for (const { type, body } of frames) {
      if (type === MESSAGE.REJECT) {
        this.drop(source, `refused: ${new TextDecoder().decode(body)}`)
        return
      }
      const entry = out.outstanding.shift()
      if (entry === undefined) {
        this.drop(source, 'protocol error: an answer to nothing')
        return
      }
      const { want } = entry
      out.outstandingBytes -= want.length
      want.inflight.delete(source)
      if (want.inflight.size === 0) this.inflightWants.delete(want)
      source.lastProgress = now
      switch (type) {
        case MESSAGE.BLOCK:
          source.latencyTotal += now - entry.sentAt
          source.latencyCount++
          this.onBlock(source, want, body)
          break
        case MESSAGE.DONT_HAVE:
          this.exclude(source, want)
          break
        case MESSAGE.REFUSED:
          this.exclude(source, want)
          this.noteFailure(source, `refused: ${new TextDecoder().decode(body)}`)
          break
        case MESSAGE.CANCELLED:
          if (!want.done && want.inflight.size === 0) this.requeue.push(want)
          break
        default:
          this.drop(source, `protocol error: message type ${type}`)
          return
      }
      if ((source.state as SourceProgress['state']) === 'dropped' || this.finished) return
    }
    this.pump(source)
    this.checkStuck()
  }

  private onBlock (source: SourceLink, want: Want, block: Uint8Array): void {
    if (this.firstBlockAt === 0) this.firstBlockAt = performance.now()
    source.bytesReceived += block.byteLength
    source.bytesSinceTick += block.byteLength
    this.bytesReceived += block.byteLength
    this.bytesSinceTick += block.byteLength
    // The endgame's second copy: the first one won.
    if (want.done) return
    const data = blockMatches(want.cid, block) ? leafData(want.cid, block) : undefined
    if (data === undefined || data.byteLength !== want.length) {
      this.penalise(source, want, data === undefined ? 'block does not hash to its CID' : `block holds ${data.byteLength} bytes, ${want.length} expected`)
      return
    }
    want.done = true
    this.fetchDone++
    source.chunks++
    source.bytes += block.byteLength
    this.bytesFetched += block.byteLength
    // Another source still has it outstanding (endgame): tell it not to bother.
    for (const other of want.inflight.keys()) this.cancelAt(other, want)
    // The block as received (a kubo leaf is its UnixFS envelope): what the store keeps under its CID.
    this.store(want, block, source)
  }

  private penalise (source: SourceLink, want: Want, reason: string): void {
    source.invalid++
    this.invalidBlocks++
    want.excluded.add(source)
    if (want.inflight.size === 0) this.requeue.push(want)
    const dropped = source.invalid >= this.deps.maxInvalidBlocks
    this.deps.onPenalised({ peer: source.key, cid: want.key, rootCid: this.rootCid, reason, invalidBlocks: source.invalid, dropped })
    if (dropped) this.drop(source, `sent ${source.invalid} block(s) that do not match their CIDs`)
  }

  private exclude (source: SourceLink, want: Want): void {
    want.excluded.add(source)
    if (!want.done && want.inflight.size === 0) this.requeue.push(want)
  }

  private noteFailure (source: SourceLink, reason: string): void {
    if (!this.failures.some((f) => f.peer === source.key && f.reason === reason)) this.failures.push({ peer: source.key, reason })
  }

  private cancelAt (source: SourceLink, want: Want): void {
    for (const out of source.streams) {
      if (!out.outstanding.some((e) => e.want === want)) continue
      try {
        out.stream.send(encodeCids(MESSAGE.CANCEL, [want.cid]))
      } catch {
        // The stream is going away; its close handler deals with it.
      }
    }
  }

  private drop (source: SourceLink, reason: string): void {
    if (source.state === 'dropped') return
    source.state = 'dropped'
    source.dropReason = reason
    this.noteFailure(source, reason)
    for (const out of source.streams) {
      for (const { want } of out.outstanding.splice(0)) {
        want.inflight.delete(source)
        if (want.inflight.size === 0) {
          this.inflightWants.delete(want)
          if (!want.done) this.requeue.push(want)
        }
      }
      out.outstandingBytes = 0
      out.stream.abort(new Error(`source dropped: ${reason}`))
    }
    this.deps.onSourceDropped({ rootCid: this.rootCid, peer: source.key, reason })
    this.pumpAll()
  }

  /** Fails the transfer when chunks remain and nothing is outstanding or coming: no source can send them. */
  private checkStuck (): void {
    if (this.finished) return
    if (this.fetchDone >= this.wants.length) {
      this.maybeComplete()
      return
    }
    const waiting = this.sources.some((s) => s.state === 'connecting' || (s.state === 'active' && (s.outstanding > 0 || s.streams.some((o) => o.reserving))))
    // Pending writes re-pump when they land (the write backlog may be what holds new wants back).
    if (waiting || this.writesPending > 0) return
    this.fail(new NoSourcesLeftError(this.rootCid, this.wants.length - this.fetchDone, this.failures))
  }

  // ------------------------------------------------------------ storing and committing

  /** Queues a verified block for the store; batches go when COMMIT_BATCH gather or COMMIT_INTERVAL_MS pass. */
  private store (want: Want, block: Uint8Array, source: SourceLink): void {
    this.writeBacklog += block.byteLength
    this.writesPending++
    this.unstored.push({ want, block: this.arena.copy(block), source })
    if (this.unstored.length >= COMMIT_BATCH) this.storeBatch()
    else if (this.commitTimer === null) this.commitTimer = setTimeout(() => { this.storeBatch() }, COMMIT_INTERVAL_MS)
  }

  /**
   * Hands the waiting blocks to the store (one batch at a time: written once into its pack files,
   * fsynced, indexed and pinned), then marks their positions done here: a position is done only
   * once its leaf is durable in the store. A crash between the two leaves a leaf the store has and
   * this state does not: the next run finds it (`pinLeaves`) and does not fetch it again.
   */
  private storeBatch (): void {
    if (this.commitTimer !== null) clearTimeout(this.commitTimer)
    this.commitTimer = null
    if (this.storing || this.unstored.length === 0) return
    const batch = this.unstored
    this.unstored = []
    this.storing = true
    const bytes = batch.reduce((sum, { block }) => sum + block.bytes.byteLength, 0)
    const settled = (): void => {
      for (const { block } of batch) this.arena.release(block)
      this.storing = false
      this.writeBacklog -= bytes
      this.writesPending -= batch.length
      if (this.writesPending === 0) for (const wake of this.writesIdle.splice(0)) wake()
    }
    const notStored = (err: Error, what: (root: string) => string): void => {
      // Not stored (or not recorded as stored): these chunks are not done, and the transfer stops
      // (a resume finds what did reach the store). The batch gathered meanwhile still goes to the
      // store: a finish() that came first waits for every pending write.
      for (const { want } of batch) want.done = false
      settled()
      this.fail(new ExchangeError(`${what(this.rootCid)}: ${err.message}`))
      if (this.unstored.length > 0) this.storeBatch()
    }
    this.deps.store.adoptLeaves(this.adoption, batch.map(({ want, block }) => ({ cid: want.cid, block: block.bytes }))).then(() => {
      try {
        this.deps.state.markDone(this.record.id, batch.map(({ want, source }) => ({ positions: want.positions, source: source.key })))
      } catch (err) {
        // A full disk can take the leaves' pack write and refuse the WAL append after it.
        notStored(err as Error, (root) => `cannot record the chunks of ${root} as done (they are in the image store)`)
        return
      }
      for (const { want, source } of batch) {
        this.countDone(want.positions.length, want.length * want.positions.length)
        this.deps.onStored({ rootCid: this.rootCid, cid: want.key, peer: source.key, bytes: want.length })
      }
      settled()
      // The next batch gathered meanwhile goes at once once the transfer is over, else on the usual terms.
      if (this.finished || this.unstored.length >= COMMIT_BATCH) this.storeBatch()
      else if (this.unstored.length > 0 && this.commitTimer === null) this.commitTimer = setTimeout(() => { this.storeBatch() }, COMMIT_INTERVAL_MS)
      for (const source of new Set(batch.map((e) => e.source))) if (source.state === 'active') this.pump(source)
      this.maybeComplete()
    }, (err: Error) => { notStored(err, (root) => `cannot store the chunks of ${root} in the image store`) })
  }

  private maybeComplete (): void {
    if (this.finished || this.fetchDone < this.wants.length || this.writesPending > 0) return
    this.finish(undefined)
  }

  private fail (err: Error): void {
    this.finish(err)
  }

  private finish (err: Error | undefined): void {
    if (this.finished) return
    this.finished = true
    this.failure = err
    this.stopTimers()
    for (const source of this.sources) {
      for (const out of source.streams) {
        if (err === undefined) out.stream.close().catch(() => { out.stream.abort(new Error('transfer over')) })
        else out.stream.abort(err)
      }
    }
    const settle = this.settle
    const done = async (): Promise<void> => {
      // Blocks already verified still count: let them reach the store and be marked done.
      if (this.writesPending > 0) {
        const idle = new Promise<void>((resolve) => { this.writesIdle.push(resolve) })
        this.storeBatch()
        await idle
      }
    }
    done().then(() => {
      this.emitProgress()
      if (err === undefined) settle?.resolve()
      else settle?.reject(err)
    }, (e: Error) => settle?.reject(e))
  }

  private stopTimers (): void {
    if (this.tickTimer !== null) clearInterval(this.tickTimer)
    this.tickTimer = null
    if (this.commitTimer !== null) {
      clearTimeout(this.commitTimer)
      this.commitTimer = null
    }
  }

  private tick (): void {
    const now = performance.now()
    const seconds = (now - this.lastTick) / 1000
    this.lastTick = now
    const alpha = 0.3
    this.rate = this.rate === 0 ? this.bytesSinceTick / seconds : (1 - alpha) * this.rate + alpha * this.bytesSinceTick / seconds
    this.bytesSinceTick = 0
    for (const source of this.sources) {
      source.rate = source.rate === 0 ? source.bytesSinceTick / seconds : (1 - alpha) * source.rate + alpha * source.bytesSinceTick / seconds
      source.bytesSinceTick = 0
      if (source.state !== 'active' || source.outstanding === 0) continue
      const limit = Math.max(this.deps.stallTimeoutMs, 10 * (source.meanLatencyMs ?? 0))
      if (now - source.lastProgress > limit) this.drop(source, `stalled: nothing received for ${Math.round(now - source.lastProgress)} ms`)
    }
    // An idle source may now pass the endgame delay for a chunk stuck elsewhere.
    this.pumpAll()
    this.emitProgress()
  }

  private emitProgress (): void {
    const remaining = this.record.size - this.bytesDone
    this.deps.onProgress({
      rootCid: this.rootCid,
      name: this.record.name,
      purpose: this.request.context.purpose,
      chunksDone: this.positionsDone,
      chunksTotal: this.chunksTotal,
      bytesDone: this.bytesDone,
      bytesTotal: this.record.size,
      bytesReceived: this.bytesReceived,
      fetchChunksDone: this.fetchDone,
      fetchChunksTotal: this.wants.length,
      bytesPerSecond: Math.round(this.rate),
      etaSeconds: this.rate > 0 ? remaining / this.rate : undefined,
      sources: this.sources.map((s) => s.progress()),
      phase: this.phase
    })
  }

  // ------------------------------------------------------------ registration

  /** Every leaf is in the store: the store registers the image from the manifest (inner nodes only). */
  private async registerImage (): Promise<ImageInfo> {
    const { record, request } = this
    const { store, state } = this.deps
    try {
      return await store.registerAdopted(this.adoption, {
        rootCid: request.root,
        chunks: request.cids,
        size: record.size,
        layer: record.layer,
        name: record.name,
        ...(record.base === null ? {} : { base: record.base }),
        private: record.private,
        profile: request.root.version === 0 ? 'ipfs' : 'hgmig'
      })
    } catch (err) {
      if ((err as Error).name === 'MissingChunksError') {
        // Leaves the store no longer has (a power cut took their batch back): fetched by the next run.
        const positions = (err as Error & { positions: number[] }).positions
        state.markMissing(record.id, positions)
        throw new ExchangeError(`${positions.length} chunk(s) of ${this.rootCid} are no longer in the image store; fetch again to replace them`)
      }
      if ((err as Error).name === 'RootMismatchError') {
        // Every leaf was checked against the manifest, so the manifest is not this root's: start over with the right one.
        state.finish(record, 'failed', `the chunks build another root: ${(err as Error).message}`)
        await store.releaseAdoption(this.adoption)
        throw new ManifestMismatchError((err as Error).message)
      }
      throw err
    }
  }
}
