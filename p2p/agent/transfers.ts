/**
 * Image transfers at this site: `hgmig image fetch IMAGE` pulls an image another site announced
 * (its base first) from every site holding it, through the block exchange; `hgmig image replicate
 * IMAGE --to SITE` asks another site to pull it (pre-warming). Holders come from the replicated
 * state, chunk lists from the manifests the agent recorded. What this site serves is decided in
 * serving-policy.ts.
 *
 * Replicate protocol (`/hgmig/<swarm id>/replicate/1.0.0`, request/response): `{ rootCid }` from a
 * member → the receiving agent starts fetching it in the background and answers `{ accepted }`.
 *
 * Operators see every transfer (`list`: running, interrupted, failed, done) and end one for good
 * (`abandon`: stopped, its state forgotten, its leaves released in the store), so an image nobody
 * will fetch any more does not keep its chunks pinned forever.
 */
import type { PeerId } from '@libp2p/interface'
import { ApiRequestError, type AbandonTransferResponse, type AgentEvent, type TransferSourceView, type TransferView } from '../api/index.js'
import type { BlockExchange, FetchResult, FinishedTransferSummary, SourceTotal, TransferProgress, TransferSummary } from '../exchange/index.js'
import type { ImageInfo, ImageStore, Layer } from '../store/index.js'
import { handleRequests, sendRequest, type SwarmNode } from '../swarm/index.js'
import { TransferAbandonedError, TransferImageNotFoundError, TransferNotFoundError } from './errors.js'
import type { ImageRecord, SwarmState } from './state.js'

export function replicateProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/replicate/1.0.0`
}

/** Finished transfers the list shows, newest first. */
const FINISHED_LISTED = 50
/** An interrupted transfer's resume is tried this many times, the first retry after RESUME_BACKOFF_MS, doubling. */
const RESUME_ATTEMPTS = 5
const RESUME_BACKOFF_MS = 10_000

export interface ImageTransfersInit {
  exchange: BlockExchange
  store: ImageStore
  node: SwarmNode
  swarmId: string
  state: () => SwarmState
  selfPeerId: string
  peerOf: (peerId: string) => PeerId
  isMember: (peerId: string) => boolean
  announce: (info: ImageInfo) => Promise<void>
  say: (line: string) => void
  onProgress: (progress: TransferProgress) => void
  /** Stream events: a transfer's run ended (`transfer-state`), a transfer was abandoned (`transfer-abandoned`). */
  onEvent?: (event: AgentEvent) => void
}

export interface FetchSummary {
  image: ImageInfo
  chunksFetched: number
  bytesFetched: number
  bytesReceived: number
  chunksLocal: number
  chunksZero: number
  chunksResumed: number
  invalidBlocks: number
  durationMs: number
  sources: Array<{ site: string, peerId: string, chunks: number, bytes: number, dropReason?: string }>
  /** The base images fetched first (root CIDs), if any were missing here. */
  bases: string[]
}

export class ImageTransfers {
  private readonly background = new Map<string, Promise<unknown>>()
  /** Roots an operator is abandoning: nothing starts or resumes them meanwhile. */
  private readonly abandoning = new Set<string>()
  /** Roots abandoned while a fetch of them ran: that fetch reports the abandonment, not a cancel. */
  private readonly abandoned = new Set<string>()
  /**
   * Transfers a crash or stop interrupted before this run, to resume (not a migration's: its
   * migration ended with the run): per root, the failed attempts and when the next may start.
   * Nothing else is resumed: a fetch cancelled or failed in this run stays as it ended.
   */
  private readonly toResume = new Map<string, { attempts: number, nextAt: number }>()
  private readonly onRunEnded = (event: CustomEvent<{ rootCid: string }>): void => {
    const { onEvent } = this.init
    if (onEvent === undefined || this.abandoning.has(event.detail.rootCid)) return
    const transfer = this.views().find((t) => t.rootCid === event.detail.rootCid)
    if (transfer !== undefined) onEvent({ type: 'transfer-state', transfer })
  }

  private readonly onDone = (event: CustomEvent<FetchResult>): void => { this.onRunEnded(new CustomEvent('done', { detail: { rootCid: event.detail.image.rootCid } })) }

  constructor (private readonly init: ImageTransfersInit) {}

  async start (): Promise<void> {
    for (const transfer of this.init.exchange.transfers()) {
      if (!transfer.running && transfer.state === 'interrupted' && transfer.purpose !== 'migration') this.toResume.set(transfer.rootCid, { attempts: 0, nextAt: 0 })
    }
    await handleRequests(this.init.node, replicateProtocol(this.init.swarmId), async (request, peer) => await this.answerReplicate(request, peer))
    this.init.exchange.addEventListener('transfer:failed', this.onRunEnded)
    this.init.exchange.addEventListener('transfer:done', this.onDone)
  }

  async stop (): Promise<void> {
    this.init.exchange.removeEventListener('transfer:failed', this.onRunEnded)
    this.init.exchange.removeEventListener('transfer:done', this.onDone)
    await this.init.node.unhandle(replicateProtocol(this.init.swarmId))
  }

  /** Every transfer at this site: running, interrupted and failed ones (oldest first), then the finished ones (newest first). */
  async list (): Promise<TransferView[]> {
    return this.views()
  }

  private views (): TransferView[] {
    const current = this.init.exchange.transfers({ sources: true }).map((t) => this.view(t))
    const finished = this.init.exchange.finished(FINISHED_LISTED).map((f) => this.finishedView(f))
    return [...current, ...finished]
  }

  /**
   * Ends a transfer for good: stops it if it runs, forgets its persisted state and releases its
   * pinned leaves (the store deletes those no image and no other transfer uses; `gc` gives their
   * disk space back). `reference`: the image's root CID or name (here or as announced).
   */
  async abandon (reference: string): Promise<AbandonTransferResponse> {
    const transfer = this.transferFor(reference)
    const rootCid = transfer.rootCid
    if (this.abandoning.has(rootCid)) throw new ApiRequestError(409, `the transfer of ${transfer.name} (${rootCid}) is being abandoned already`)
    this.abandoning.add(rootCid)
    try {
      if (transfer.running) this.abandoned.add(rootCid)
      const result = await this.init.exchange.cancel(rootCid, { forget: true })
      // A background run (resume, replicate) ends with the cancel: let it settle before anything may start it again.
      await this.background.get(rootCid)
      const abandoned: AbandonTransferResponse = {
        rootCid,
        name: transfer.name,
        wasRunning: result.wasRunning,
        chunksDone: result.chunksDone,
        chunksTotal: result.chunksTotal,
        freedChunks: result.freedChunks,
        freedBytes: result.freedBytes
      }
      this.init.say(`abandoned the transfer of ${transfer.name} (${rootCid}): ${result.wasRunning ? 'stopped, ' : ''}${result.chunksDone}/${result.chunksTotal} chunks were done; ${result.freedChunks} chunks (${result.freedBytes} bytes) released`)
      this.init.onEvent?.({ type: 'transfer-abandoned', abandoned })
      return abandoned
    } finally {
      this.abandoning.delete(rootCid)
      // The fetch that ran has seen its abandonment by now (the cancel waited for it to end).
      this.abandoned.delete(rootCid)
    }
  }

  /** Pulls an announced image (and its missing bases) to this site. */
  async fetch (reference: string, options: { signal?: AbortSignal, onProgress?: (progress: TransferProgress) => void } = {}, derived: ReadonlySet<string> = new Set()): Promise<FetchSummary> {
    const record = this.resolve(reference)
    // Announcements come from members; one whose base chain loops would recurse for ever.
    if (derived.has(record.rootCid)) throw new ApiRequestError(409, `the base chain of ${record.name} (${record.rootCid}) loops back to it: its announcement is malformed`)
    if (this.abandoning.has(record.rootCid)) throw new ApiRequestError(409, `the transfer of ${record.name} (${record.rootCid}) is being abandoned; fetch it again once that is done`)
    const bases: string[] = []
    const local = await this.init.store.list()
    if (record.base !== null && !local.some((i) => i.rootCid === record.base)) {
      this.init.say(`fetching base ${record.base} of ${record.name} first`)
      const base = await this.fetch(record.base, options, new Set([...derived, record.rootCid]))
      bases.push(...base.bases, base.image.rootCid)
    }
    const existing = local.find((i) => i.rootCid === record.rootCid)
    if (existing !== undefined) throw new ApiRequestError(409, `${record.name} (${record.rootCid}) is already at this site as ${existing.name}`)
    const manifest = await this.init.store.remoteManifest(record.rootCid)
    if (manifest === undefined) throw new ApiRequestError(409, `the chunk list of ${record.name} (${record.rootCid}) is not known here yet: its holders (${this.holderNames(record)}) have not been reachable${record.public ? '' : ' — and it is private, so they never publish it'}`)
    const sources = record.holders
      .map((h) => this.init.state().member(h)!)
      .filter((m) => m.peerId !== this.init.selfPeerId && m.untilRound === null)
      .map((m) => ({ peer: m.peerId }))
    if (sources.length === 0) throw new ApiRequestError(409, `no other site holds ${record.name} (${record.rootCid})`)
    this.init.say(`fetching ${record.name} (${record.rootCid}, ${manifest.chunks.length} chunks) from ${this.holderNames(record)}`)
    const result: FetchResult = await this.init.exchange.fetch({
      rootCid: record.rootCid,
      chunks: manifest.chunks,
      size: record.size,
      layer: record.layer as Layer,
      name: await this.localName(record.name),
      ...(record.base === null ? {} : { base: record.base }),
      private: !record.public,
      chunkSize: record.chunkSize,
      sources,
      purpose: 'replication',
      signal: options.signal,
      onProgress: (progress) => {
        this.init.onProgress(progress)
        options.onProgress?.(progress)
      }
    }).catch((err: Error) => {
      if (this.abandoned.has(record.rootCid)) throw new TransferAbandonedError(`the transfer of ${record.name} (${record.rootCid}) was abandoned at this site: its chunks were released`)
      throw err
    })
    await this.init.announce(result.image)
    const siteOf = (peerId: string): string => this.init.state().memberByPeerId(peerId)?.name ?? peerId
    this.init.say(`fetched ${result.image.name}: ${result.chunksFetched} chunks (${result.bytesFetched} bytes) over the network, ${result.chunksLocal} local, ${result.chunksZero} zero, in ${Math.round(result.durationMs)} ms`)
    return {
      image: result.image,
      chunksFetched: result.chunksFetched,
      bytesFetched: result.bytesFetched,
      bytesReceived: result.bytesReceived,
      chunksLocal: result.chunksLocal,
      chunksZero: result.chunksZero,
      chunksResumed: result.chunksResumed,
      invalidBlocks: result.invalidBlocks,
      durationMs: result.durationMs,
      sources: result.sources.map((s) => ({ site: siteOf(s.peer), peerId: s.peer, chunks: s.chunks, bytes: s.bytes, ...(s.dropReason === undefined ? {} : { dropReason: s.dropReason }) })),
      bases
    }
  }

  /** Asks `site` to pull the image; it answers at once and fetches in the background. */
  async replicate (reference: string, site: string): Promise<{ site: string, rootCid: string, accepted: boolean }> {
    const record = this.resolve(reference)
    const state = this.init.state()
    const target = state.activeMembers().find((m) => m.peerId === site) ?? state.memberByName(site)
    if (target === undefined || target.untilRound !== null) throw new ApiRequestError(404, `no current member ${JSON.stringify(site)} (members: ${state.activeMembers().map((m) => m.name).join(', ')})`)
    if (record.holders.includes(target.index)) throw new ApiRequestError(409, `${target.name} already holds ${record.name}`)
    const answer = await sendRequest(this.init.node, this.init.peerOf(target.peerId), replicateProtocol(this.init.swarmId), { rootCid: record.rootCid }, { signal: AbortSignal.timeout(30_000) }) as { accepted?: boolean }
    return { site: target.name, rootCid: record.rootCid, accepted: answer.accepted === true }
  }

  /**
   * Restarts the transfers a crash or stop interrupted before this run, with today's holders
   * (called every few seconds: the holders may not be connected yet). One that fails is tried
   * again after 10 s, 20 s, 40 s, …, five times in all; `hgmig image fetch` resumes it after that.
   */
  resumeInterrupted (): void {
    const now = Date.now()
    const transfers = new Map(this.init.exchange.transfers().map((t) => [t.rootCid, t]))
    for (const [rootCid, retry] of this.toResume) {
      const transfer = transfers.get(rootCid)
      if (transfer === undefined || this.abandoning.has(rootCid)) {
        this.toResume.delete(rootCid)
        continue
      }
      if (transfer.running || this.background.has(rootCid) || now < retry.nextAt) continue
      this.init.say(`resuming the interrupted transfer of ${transfer.name} (${transfer.chunksDone}/${transfer.chunksTotal} chunks done)`)
      this.inBackground(rootCid, (ok) => {
        if (ok || ++retry.attempts >= RESUME_ATTEMPTS) {
          this.toResume.delete(rootCid)
          if (!ok) this.init.say(`gave up resuming ${transfer.name} after ${RESUME_ATTEMPTS} attempts; \`hgmig image fetch ${transfer.name}\` resumes it`)
          return
        }
        retry.nextAt = Date.now() + RESUME_BACKOFF_MS * 2 ** (retry.attempts - 1)
      })
    }
  }

  private async answerReplicate (request: unknown, peer: PeerId): Promise<{ accepted: boolean }> {
    if (!this.init.isMember(peer.toString())) throw new Error('only members may ask this site to replicate')
    const rootCid = (request as { rootCid?: unknown } | null)?.rootCid
    if (typeof rootCid !== 'string') throw new Error('malformed replicate request')
    const record = this.resolve(rootCid)
    this.init.say(`${this.init.state().memberByPeerId(peer.toString())?.name ?? peer.toString()} asked this site to replicate ${record.name}`)
    this.inBackground(record.rootCid)
    return { accepted: true }
  }

  private inBackground (rootCid: string, ended?: (ok: boolean) => void): void {
    if (this.background.has(rootCid) || this.abandoning.has(rootCid)) return
    const running = this.fetch(rootCid)
      .then(() => { ended?.(true) }, (err: Error) => {
        this.init.say(`transfer of ${rootCid} failed: ${err.message}`)
        ended?.(false)
      })
      .finally(() => { this.background.delete(rootCid) })
    this.background.set(rootCid, running)
  }

  private resolve (reference: string): ImageRecord {
    const images = this.init.state().imageList()
    const byRoot = images.find((i) => i.rootCid === reference)
    if (byRoot !== undefined) return byRoot
    const byName = images.filter((i) => i.name === reference)
    if (byName.length === 1) return byName[0]!
    if (byName.length > 1) throw new ApiRequestError(409, `${byName.length} images are named ${JSON.stringify(reference)}: name one by its root CID (${byName.map((i) => `${i.rootCid} at ${this.holderNames(i)}`).join('; ')})`)
    throw new ApiRequestError(404, `no image ${JSON.stringify(reference)} is announced in the swarm (announced: ${images.slice(0, 20).map((i) => i.name).join(', ') || 'none'})`)
  }

  private holderNames (record: ImageRecord): string {
    return record.holders.map((h) => this.init.state().member(h)?.name ?? String(h)).join(', ') || 'nobody'
  }

  /** The transfer `reference` names: a transfer here by root CID or local name, else the announced image's (named errors for neither). */
  private transferFor (reference: string): TransferSummary {
    const transfers = this.init.exchange.transfers()
    const direct = transfers.find((t) => t.rootCid === reference) ?? transfers.find((t) => t.name === reference)
    if (direct !== undefined) return direct
    const announced = this.init.state().imageList().filter((i) => i.rootCid === reference || i.name === reference)
    const viaAnnounced = transfers.find((t) => announced.some((i) => i.rootCid === t.rootCid))
    if (viaAnnounced !== undefined) return viaAnnounced
    const finished = this.init.exchange.finished(FINISHED_LISTED).find((f) => f.rootCid === reference || f.name === reference || announced.some((i) => i.rootCid === f.rootCid))
    const here = transfers.length === 0 ? 'none' : transfers.map((t) => `${t.name} (${t.state})`).join(', ')
    if (announced.length === 0 && finished === undefined) {
      throw new TransferImageNotFoundError(`no image ${JSON.stringify(reference)} is being fetched here or announced in the swarm (transfers here: ${here})`)
    }
    const what = finished?.outcome === 'done' ? `its transfer is done (the image is here: remove it with "hgmig image rm ${finished.name}")` : 'it has no transfer at this site'
    throw new TransferNotFoundError(`nothing to abandon for ${JSON.stringify(reference)}: ${what} (transfers here: ${here})`)
  }

  private view (t: TransferSummary): TransferView {
    const live = t.progress
    const running = t.state === 'running'
    return {
      rootCid: t.rootCid,
      name: t.name,
      layer: t.layer,
      purpose: t.purpose,
      state: t.state,
      // The live report counts blocks stored since the last commit of the state too.
      chunksDone: Math.max(t.chunksDone, live?.chunksDone ?? 0),
      chunksTotal: t.chunksTotal,
      bytesDone: Math.max(t.bytesDone, live?.bytesDone ?? 0),
      bytesTotal: t.bytesTotal,
      bytesPerSecond: running ? live?.bytesPerSecond ?? 0 : null,
      etaSeconds: running && live?.etaSeconds !== undefined ? Math.round(live.etaSeconds) : null,
      sources: this.sourceViews(t.sources, running ? live?.sources ?? [] : []),
      startedAt: new Date(t.created).toISOString(),
      finishedAt: null,
      lastError: t.lastError
    }
  }

  private finishedView (f: FinishedTransferSummary): TransferView {
    return {
      rootCid: f.rootCid,
      name: f.name,
      layer: f.layer,
      purpose: f.purpose,
      state: f.outcome,
      chunksDone: f.outcome === 'done' ? f.chunksTotal : f.sources.reduce((n, s) => n + s.chunks, 0),
      chunksTotal: f.chunksTotal,
      bytesDone: f.outcome === 'done' ? f.bytesTotal : f.sources.reduce((n, s) => n + s.bytes, 0),
      bytesTotal: f.bytesTotal,
      bytesPerSecond: null,
      etaSeconds: null,
      sources: this.sourceViews(f.sources, []),
      startedAt: new Date(f.created).toISOString(),
      finishedAt: new Date(f.finished).toISOString(),
      lastError: f.error
    }
  }

  /** Persisted per-source totals, with this run's live state of each source (a source that delivered nothing yet is listed too). */
  private sourceViews (totals: SourceTotal[], live: TransferProgress['sources']): TransferSourceView[] {
    const siteOf = (peerId: string): string => this.init.state().memberByPeerId(peerId)?.name ?? peerId
    const views: TransferSourceView[] = totals.map((s) => ({ site: s.peer === null ? null : siteOf(s.peer), peerId: s.peer, chunks: s.chunks, bytes: s.bytes }))
    for (const source of live) {
      let view = views.find((v) => v.peerId === source.peer)
      if (view === undefined) {
        view = { site: siteOf(source.peer), peerId: source.peer, chunks: 0, bytes: 0 }
        views.push(view)
      }
      view.state = source.state
      view.bytesPerSecond = source.bytesPerSecond
      if (source.dropReason !== undefined) view.dropReason = source.dropReason
    }
    return views
  }

  /** The announced name, unless a local image already has it (names are unique per store). */
  private async localName (name: string): Promise<string> {
    const taken = new Set((await this.init.store.list()).map((i) => i.name))
    if (!taken.has(name)) return name
    for (let n = 2; ; n++) if (!taken.has(`${name}-${n}`)) return `${name}-${n}`
  }
}
