/**
 * Image transfers at this site: `hgmig image fetch IMAGE` pulls an image another site announced
 * (its base first) from every site holding it, through the block exchange; `hgmig image replicate
 * IMAGE --to SITE` asks another site to pull it (pre-warming). Holders come from the replicated
 * state, chunk lists from the manifests the agent recorded. What this site serves is decided in
 * serving-policy.ts.
 *
 * Replicate protocol (`/hgmig/<swarm id>/replicate/1.0.0`, request/response): `{ rootCid }` from a
 * member → the receiving agent starts fetching it in the background and answers `{ accepted }`.
 */
import type { PeerId } from '@libp2p/interface'
import { ApiRequestError } from '../api/index.js'
import type { BlockExchange, FetchResult, TransferProgress } from '../exchange/index.js'
import type { ImageInfo, ImageStore, Layer } from '../store/index.js'
import { handleRequests, sendRequest, type SwarmNode } from '../swarm/index.js'
import type { ImageRecord, SwarmState } from './state.js'

export function replicateProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/replicate/1.0.0`
}

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

  constructor (private readonly init: ImageTransfersInit) {}

  async start (): Promise<void> {
    await handleRequests(this.init.node, replicateProtocol(this.init.swarmId), async (request, peer) => await this.answerReplicate(request, peer))
  }

  async stop (): Promise<void> {
    await this.init.node.unhandle(replicateProtocol(this.init.swarmId))
  }

  /** Pulls an announced image (and its missing bases) to this site. */
  async fetch (reference: string, options: { signal?: AbortSignal, onProgress?: (progress: TransferProgress) => void } = {}): Promise<FetchSummary> {
    const record = this.resolve(reference)
    const bases: string[] = []
    const local = await this.init.store.list()
    if (record.base !== null && !local.some((i) => i.rootCid === record.base)) {
      this.init.say(`fetching base ${record.base} of ${record.name} first`)
      const base = await this.fetch(record.base, options)
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

  /** Restarts transfers a crash or stop interrupted, with today's holders. */
  resumeInterrupted (): void {
    for (const transfer of this.init.exchange.transfers()) {
      if (transfer.running || this.background.has(transfer.rootCid)) continue
      this.init.say(`resuming the interrupted transfer of ${transfer.name} (${transfer.chunksDone}/${transfer.chunksTotal} chunks done)`)
      this.inBackground(transfer.rootCid)
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

  private inBackground (rootCid: string): void {
    if (this.background.has(rootCid)) return
    const running = this.fetch(rootCid)
      .catch((err: Error) => { this.init.say(`transfer of ${rootCid} failed: ${err.message}`) })
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

  /** The announced name, unless a local image already has it (names are unique per store). */
  private async localName (name: string): Promise<string> {
    const taken = new Set((await this.init.store.list()).map((i) => i.name))
    if (!taken.has(name)) return name
    for (let n = 2; ; n++) if (!taken.has(`${name}-${n}`)) return `${name}-${n}`
  }
}
