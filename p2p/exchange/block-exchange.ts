/**
 * The block exchange: a js-libp2p style component the agent hosts. It serves this site's blocks
 * over `/hgmig/<swarmId>/blocks/1.0.0` under the agent's policy and rate limits, and fetches
 * images from several sources at once, verified and resumable (see transfer.ts).
 */
import { mkdirSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { TypedEventEmitter } from 'main-event'
import { CID } from 'multiformats/cid'
import { LAYERS, type ImageInfo } from '../store/index.js'
import { ExchangeStoppedError, InvalidRequestError, TransferAbortedError, TransferRunningError } from './errors.js'
import { protocolId, type TransferContext } from './protocol.js'
import { TokenBucket } from './rate-limit.js'
import { BlockServer } from './server.js'
import { adoptionKey, Transfer } from './transfer.js'
import { TransferState, type TransferRecord } from './transfer-state.js'
import type { BlockExchangeInit, CancelResult, ExchangeEvents, FetchRequest, FetchResult, FinishedTransferSummary, ServedStats, TransferProgress, TransferSummary } from './types.js'

const DEFAULTS = {
  streamsPerSource: 2,
  windowBytesPerStream: 2 << 20,
  stallTimeoutMs: 5_000,
  maxInvalidBlocks: 2,
  maxInboundStreams: 32,
  sendCoalesceBytes: 256 * 1024
}

export function createBlockExchange (init: BlockExchangeInit): BlockExchange {
  return new BlockExchange(init)
}

export class BlockExchange extends TypedEventEmitter<ExchangeEvents> {
  readonly protocol: string
  private readonly init: BlockExchangeInit
  private readonly options: typeof DEFAULTS
  private state: TransferState | undefined
  private server: BlockServer | undefined
  private readonly ingress: TokenBucket | undefined
  private readonly egress: TokenBucket | undefined
  private readonly running = new Map<string, { controller: AbortController, progress: TransferProgress | undefined }>()
  /** Roots being forgotten (`cancel` with `forget`): no fetch of them may start meanwhile. */
  private readonly forgetting = new Set<string>()
  /** Invalid blocks per peer since start: the agent may lower its trust in a peer that lies. */
  private readonly penalties = new Map<string, number>()

  constructor (init: BlockExchangeInit) {
    super()
    this.init = init
    this.protocol = protocolId(init.swarmId)
    this.options = {
      streamsPerSource: positiveInteger(init.streamsPerSource, DEFAULTS.streamsPerSource, 'streamsPerSource'),
      windowBytesPerStream: positiveInteger(init.windowBytesPerStream, DEFAULTS.windowBytesPerStream, 'windowBytesPerStream'),
      stallTimeoutMs: positiveInteger(init.stallTimeoutMs, DEFAULTS.stallTimeoutMs, 'stallTimeoutMs'),
      maxInvalidBlocks: positiveInteger(init.maxInvalidBlocks, DEFAULTS.maxInvalidBlocks, 'maxInvalidBlocks'),
      maxInboundStreams: positiveInteger(init.maxInboundStreams, DEFAULTS.maxInboundStreams, 'maxInboundStreams'),
      sendCoalesceBytes: init.sendCoalesceBytes === 0 ? 0 : positiveInteger(init.sendCoalesceBytes, DEFAULTS.sendCoalesceBytes, 'sendCoalesceBytes')
    }
    const limits = init.rateLimits ?? {}
    this.ingress = limits.ingress === undefined ? undefined : new TokenBucket(limits.ingress, 'rateLimits.ingress')
    this.egress = limits.egress === undefined ? undefined : new TokenBucket(limits.egress, 'rateLimits.egress')
    // Checked now, so that a bad limit fails at start rather than at the first transfer.
    if (limits.ingressPerTransfer !== undefined) void new TokenBucket(limits.ingressPerTransfer, 'rateLimits.ingressPerTransfer')
    if (limits.egressPerTransfer !== undefined) void new TokenBucket(limits.egressPerTransfer, 'rateLimits.egressPerTransfer')
  }

  get isStarted (): boolean {
    return this.state !== undefined
  }

  async start (): Promise<void> {
    if (this.state !== undefined) return
    const directory = resolve(this.init.directory)
    mkdirSync(directory, { recursive: true })
    const state = new TransferState(this.init.database ?? join(directory, 'transfers.sqlite'))
    // Leaves pinned for transfers this state no longer knows (forgotten while the store was elsewhere,
    // or a crash between the two steps of a forget): free them. A transfer whose image the store
    // registered before a crash took the end of the transfer with it is done.
    try {
      for (const record of state.list()) {
        if (await this.localImage(record.id) !== undefined) state.finish(record, 'done', null)
      }
      for (const key of await this.init.store.adoptions()) {
        if (key.startsWith(adoptionKey('')) && state.load(key.slice(adoptionKey('').length)) === undefined) await this.init.store.releaseAdoption(key)
      }
    } catch (err) {
      state.close()
      throw err
    }
    const server = new BlockServer({
      store: this.init.store,
      policy: this.init.policy,
      egress: this.egress,
      egressPerTransfer: this.init.rateLimits?.egressPerTransfer,
      coalesceBytes: this.options.sendCoalesceBytes,
      onRefused: (detail) => { this.safeDispatchEvent('serve:refused', { detail }) }
    })
    try {
      await this.init.node.handle(this.protocol, (stream, connection) => { server.handle(stream, connection) }, {
        maxInboundStreams: this.options.maxInboundStreams,
        maxOutboundStreams: Math.max(64, this.options.streamsPerSource * 8)
      })
    } catch (err) {
      state.close()
      throw err
    }
    this.state = state
    this.server = server
  }

  async stop (): Promise<void> {
    const state = this.state
    if (state === undefined) return
    await this.init.node.unhandle(this.protocol).catch(() => {})
    this.server?.stop()
    const stopping = new ExchangeStoppedError('block exchange stopped')
    for (const { controller } of this.running.values()) controller.abort(stopping)
    // Transfers settle (commit what they wrote) before the database closes.
    while (this.running.size > 0) await new Promise((resolve) => setTimeout(resolve, 10))
    this.ingress?.clear(stopping)
    this.egress?.clear(stopping)
    state.close()
    this.state = undefined
    this.server = undefined
  }

  /**
   * Fetches an image into the local store from the given sources. Resumes the transfer of the
   * same root if one was interrupted (crash, stop, cancel): what was written is not fetched again.
   */
  async fetch (request: FetchRequest): Promise<FetchResult> {
    const state = this.requireState()
    const normalized = this.normalize(request)
    const rootCid = normalized.root.toString()
    if (this.running.has(rootCid)) throw new TransferRunningError(`${rootCid} is already being fetched`)
    if (this.forgetting.has(rootCid)) throw new TransferRunningError(`the transfer of ${rootCid} is being abandoned`)
    // One image per root: already here, nothing to do.
    const existing = await this.localImage(rootCid)
    if (existing !== undefined) {
      const stale = state.load(rootCid)
      if (stale !== undefined) state.finish(stale, 'done', null)
      return { image: existing, chunksFetched: 0, bytesFetched: 0, bytesReceived: 0, chunksResumed: 0, chunksRecovered: 0, chunksLocal: 0, chunksZero: 0, invalidBlocks: 0, sources: [], durationMs: 0, fetchMs: 0, importMs: 0, firstBlockMs: 0 }
    }
    const stored = state.load(rootCid)
    if (stored !== undefined && !sameManifest(state, stored, normalized.cids)) {
      // The caller now names another manifest (or other parameters) for this root: start over.
      state.delete(rootCid)
    }
    const record = state.load(rootCid) ?? normalized.record
    if (state.load(rootCid) === undefined) state.create(record, normalized.cids.map((c) => c.bytes))
    const controller = new AbortController()
    const signal = request.signal === undefined ? controller.signal : AbortSignal.any([request.signal, controller.signal])
    const entry: { controller: AbortController, progress: TransferProgress | undefined } = { controller, progress: undefined }
    this.running.set(rootCid, entry)
    const transfer = new Transfer({
      node: this.init.node,
      protocol: this.protocol,
      store: this.init.store,
      state,
      ingress: [this.ingress, this.transferIngress(request)],
      ...this.options,
      onProgress: (progress) => {
        entry.progress = progress
        request.onProgress?.(progress)
        this.safeDispatchEvent('transfer:progress', { detail: progress })
      },
      onStored: (detail) => { this.safeDispatchEvent('block:stored', { detail }) },
      onPenalised: (detail) => {
        this.penalties.set(detail.peer, (this.penalties.get(detail.peer) ?? 0) + 1)
        this.safeDispatchEvent('peer:penalised', { detail })
      },
      onSourceDropped: (detail) => { this.safeDispatchEvent('source:dropped', { detail }) }
    }, { ...normalized, record, signal })
    try {
      const result = await transfer.run()
      state.finish(record, 'done', null)
      // Listeners of the events see the transfer as ended.
      this.running.delete(rootCid)
      this.safeDispatchEvent('transfer:done', { detail: result })
      return result
    } catch (err) {
      const error = err as Error
      // Kept for a resume (unless the transfer ended itself, e.g. a manifest that builds another root): say how this run ended.
      if (state.load(rootCid) !== undefined) state.noteOutcome(rootCid, isInterruption(error) ? 'interrupted' : 'failed', error.message)
      this.running.delete(rootCid)
      this.safeDispatchEvent('transfer:failed', { detail: { rootCid, error } })
      throw err
    } finally {
      this.running.delete(rootCid)
    }
  }

  /**
   * Transfers known here: running ones and interrupted or failed ones waiting for a `fetch` of the
   * same root to resume. `sources` (what each source delivered) takes a scan of the transfer's
   * rows, so it is filled only when asked for (`{ sources: true }`); status polls leave it empty.
   */
  transfers (options: { sources?: boolean } = {}): TransferSummary[] {
    const state = this.requireState()
    return state.list().map((record) => {
      const chunks = state.counts(record.id)
      const running = this.running.get(record.id)
      const summary: TransferSummary = {
        rootCid: record.id,
        name: record.name,
        layer: record.layer,
        purpose: record.purpose,
        chunksDone: chunks.done,
        chunksTotal: chunks.total,
        running: running !== undefined,
        state: running !== undefined ? 'running' : record.lastOutcome === 'failed' ? 'failed' : 'interrupted',
        bytesDone: state.bytesDone(record, chunks),
        bytesTotal: record.size,
        sources: options.sources !== true || chunks.total === 0 ? [] : state.sourceTotals(record, chunks.total),
        created: record.created,
        lastError: record.lastError ?? null
      }
      if (running?.progress !== undefined) summary.progress = running.progress
      return summary
    })
  }

  /** Transfers that ended (done, or failed with nothing to resume), newest first. */
  finished (limit?: number): FinishedTransferSummary[] {
    return this.requireState().history(limit).map((entry) => ({
      rootCid: entry.id,
      name: entry.name,
      layer: entry.layer,
      purpose: entry.purpose,
      outcome: entry.outcome,
      chunksTotal: entry.chunksTotal,
      bytesTotal: entry.size,
      sources: entry.sources,
      created: entry.created,
      finished: entry.finished,
      error: entry.error
    }))
  }

  /** The last progress of a running transfer. */
  progress (rootCid: string): TransferProgress | undefined {
    return this.running.get(rootCid)?.progress
  }

  /**
   * Cancels a running transfer (its state and stored leaves stay for a resume); `forget` also drops
   * them: the state rows go in one transaction, then the store releases the transfer's pins in
   * one of its own, deleting the leaves no image and no other transfer uses. A crash between the
   * two leaves pins of a transfer the state no longer knows, which `start` releases: either the
   * transfer stays whole or, after the restart at the latest, nothing of it does.
   */
  async cancel (rootCid: string, options: { forget?: boolean } = {}): Promise<CancelResult> {
    const state = this.requireState()
    const forget = options.forget === true
    if (forget) {
      if (this.forgetting.has(rootCid)) throw new TransferRunningError(`the transfer of ${rootCid} is being abandoned already`)
      this.forgetting.add(rootCid)
    }
    try {
      const running = this.running.get(rootCid)
      if (running !== undefined) {
        running.controller.abort(new TransferAbortedError(`transfer of ${rootCid} cancelled`))
        while (this.running.has(rootCid)) await new Promise((resolve) => setTimeout(resolve, 10))
      }
      const record = state.load(rootCid)
      const counts = record === undefined ? { total: 0, done: 0 } : state.counts(rootCid)
      const result: CancelResult = { rootCid, known: record !== undefined || running !== undefined, wasRunning: running !== undefined, chunksDone: counts.done, chunksTotal: counts.total, freedChunks: 0, freedBytes: 0 }
      if (!forget) return result
      state.delete(rootCid)
      if (record !== undefined && record.partialPath !== '') await rm(record.partialPath, { force: true })
      const freed = await this.init.store.releaseAdoption(adoptionKey(rootCid))
      result.freedChunks = freed.freedChunks
      result.freedBytes = freed.freedBytes
      return result
    } finally {
      if (forget) this.forgetting.delete(rootCid)
    }
  }

  /** What this site served, per peer. */
  served (): ServedStats {
    const server = this.server
    if (server === undefined) throw new ExchangeStoppedError('block exchange is not started')
    return structuredClone(server.stats)
  }

  /** Invalid blocks received per peer since start. */
  penalised (): Record<string, number> {
    return Object.fromEntries(this.penalties)
  }

  private requireState (): TransferState {
    if (this.state === undefined) throw new ExchangeStoppedError('block exchange is not started')
    return this.state
  }

  private async localImage (rootCid: string): Promise<ImageInfo | undefined> {
    try {
      return await this.init.store.resolve(rootCid)
    } catch {
      return undefined
    }
  }

  private transferIngress (request: FetchRequest): TokenBucket | undefined {
    const limit = request.ingress ?? this.init.rateLimits?.ingressPerTransfer
    return limit === undefined ? undefined : new TokenBucket(limit, 'ingress')
  }

  private normalize (request: FetchRequest): { record: TransferRecord, root: CID, cids: CID[], sources: FetchRequest['sources'], context: TransferContext } {
    const root = parseCid(request.rootCid, 'rootCid')
    if (!LAYERS.includes(request.layer)) throw new InvalidRequestError(`layer must be os, we or ud, not "${String(request.layer)}"`)
    const chunkSize = request.chunkSize ?? this.init.store.chunkSize
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new InvalidRequestError(`chunkSize must be a positive integer, not ${String(request.chunkSize)}`)
    if (chunkSize !== this.init.store.chunkSize && root.version === 1) throw new InvalidRequestError(`chunkSize ${chunkSize} differs from the store's ${this.init.store.chunkSize}: the image would import with other CIDs`)
    if (!Number.isSafeInteger(request.size) || request.size <= 0) throw new InvalidRequestError(`size must be a positive number of bytes, not ${String(request.size)}`)
    if (!Array.isArray(request.chunks)) throw new InvalidRequestError('chunks must be the list of the image\'s leaf CIDs')
    const expected = Math.ceil(request.size / chunkSize)
    if (request.chunks.length !== expected) throw new InvalidRequestError(`chunks lists ${request.chunks.length} CIDs; ${request.size} bytes at ${chunkSize} per chunk are ${expected}`)
    const cids = request.chunks.map((c, i) => parseCid(c, `chunks[${i}]`))
    if (!Array.isArray(request.sources)) throw new InvalidRequestError('sources must be a list of { peer, addrs?, positions? }')
    const purpose = request.purpose ?? 'replication'
    if (purpose !== 'migration' && purpose !== 'replication') throw new InvalidRequestError(`purpose must be migration or replication, not "${String(purpose)}"`)
    const rootCid = root.toString()
    const context: TransferContext = { purpose, image: rootCid }
    if (request.migration !== undefined) context.migration = request.migration
    return {
      root,
      cids,
      sources: request.sources,
      context,
      record: {
        id: rootCid,
        name: request.name ?? rootCid,
        layer: request.layer,
        base: request.base ?? null,
        private: request.private === true,
        size: request.size,
        chunkSize,
        purpose,
        migration: request.migration ?? null,
        partialPath: '',
        created: Date.now()
      }
    }
  }
}

/** A run that was stopped (cancel, stop, the caller's signal) rather than one that failed. */
function isInterruption (err: Error): boolean {
  return err instanceof TransferAbortedError || err instanceof ExchangeStoppedError || err.name === 'AbortError'
}

function sameManifest (state: TransferState, record: TransferRecord, cids: CID[]): boolean {
  const rows = state.chunks(record.id)
  if (rows.length !== cids.length) return false
  return rows.every((row, i) => Buffer.from(row.cid).equals((cids[i] as CID).bytes))
}

function parseCid (value: unknown, field: string): CID {
  try {
    if (value instanceof Uint8Array) return CID.decode(value)
    if (typeof value === 'string') return CID.parse(value)
    const cid = CID.asCID(value)
    if (cid !== null) return cid
  } catch {
    // reported below
  }
  throw new InvalidRequestError(`${field} is not a CID: ${String(value)}`)
}

function positiveInteger (value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidRequestError(`${field} must be a positive integer, not ${String(value)}`)
  return value
}
