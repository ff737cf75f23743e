import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type Database from 'better-sqlite3'
import type { CID } from 'multiformats/cid'
import type { ImageInfo, ImageStore, Layer } from '../store/index.js'
import type { SwarmNode } from '../swarm/index.js'
import type { SourceFailure } from './errors.js'
import type { SourceTotal } from './transfer-state.js'
import type { Purpose, TransferContext } from './protocol.js'
import type { RateLimit } from './rate-limit.js'

export type { Purpose, TransferContext, RateLimit, SourceFailure, SourceTotal }

/**
 * What the exchange uses of the image store: reads of local blocks to serve; the leaves it
 * already has (`pinLeaves`); adoption of verified leaves as they arrive (`adoptLeaves`, no second
 * hash, no partial file); registration of the fetched image from its manifest (`registerAdopted`,
 * which must give the requested root CID); and `releaseAdoption` / `adoptions` for cancelled
 * transfers. `ImageStore` satisfies it; tests wrap it.
 */
export type ExchangeStore = Pick<ImageStore, 'readBlock' | 'blockstore' | 'resolve' | 'chunkSize' | 'directory' |
'pinLeaves' | 'adoptLeaves' | 'registerAdopted' | 'releaseAdoption' | 'adoptions'>

/**
 * The agent's serving policy. Called for every inbound stream (`isMember`) and every wanted block
 * (`mayServe`): chunks of public images go to members; chunks of a private image only to the
 * target of a migration that needs them (the context names the migration); nothing to non-members.
 */
export interface ServingPolicy {
  isMember: (peer: PeerId) => boolean
  mayServe: (peer: PeerId, cid: CID, context: TransferContext) => boolean | Promise<boolean>
}

export interface ExchangeRateLimits {
  /** All blocks this site receives. */
  ingress?: RateLimit
  /** All blocks this site sends. */
  egress?: RateLimit
  /** Each fetch's own ingress, unless the request sets its own. */
  ingressPerTransfer?: RateLimit
  /** Blocks sent to one peer for one image (one remote transfer). */
  egressPerTransfer?: RateLimit
}

export interface BlockExchangeInit {
  node: SwarmNode
  store: ExchangeStore
  /** The swarm id: the protocol is `/hgmig/<swarmId>/blocks/1.0.0`, so swarms never exchange blocks. */
  swarmId: string
  policy: ServingPolicy
  /** Holds transfer state (`transfers.sqlite` unless `database` is given). */
  directory: string
  /** An open database to keep transfer state in instead (tables `exchange_*`). */
  database?: Database.Database
  rateLimits?: ExchangeRateLimits
  /** Streams opened to each source per transfer (default 2). */
  streamsPerSource?: number
  /** Bytes wanted but not yet received per stream (default 2 MiB): bounds what is in flight. */
  windowBytesPerStream?: number
  /** A source with wants outstanding that sends nothing for this long is dropped (default 5 s; at least 10 × its usual block latency). */
  stallTimeoutMs?: number
  /** Invalid blocks (hash mismatch) after which a source is dropped from a transfer (default 2). */
  maxInvalidBlocks?: number
  /** Inbound block streams per connection (default 32). */
  maxInboundStreams?: number
  /** Serving: answers to one stream gathered into one send, up to this many bytes (default 256 KiB; 0: one send per block). */
  sendCoalesceBytes?: number
}

export interface FetchSource {
  peer: PeerId | string
  /** Where to dial it, if the peer store does not know yet. */
  addrs?: Array<Multiaddr | string>
  /** Chunk positions (manifest indices) this source holds; default all of them. */
  positions?: Iterable<number>
}

export interface FetchRequest {
  /** Root CID of the image; the fetched chunks must rebuild exactly this root. */
  rootCid: string | CID
  /** The leaves' CIDs in file order (the image's manifest, as the store's `manifest()` lists it). */
  chunks: Array<CID | Uint8Array | string>
  size: number
  layer: Layer
  /** Local name of the image; default its root CID. */
  name?: string
  /** The image's base (a local image: name, id or root CID), for WE and UD images; fetch it first. */
  base?: string
  private?: boolean
  /** Default the store's chunk size. */
  chunkSize?: number
  sources: FetchSource[]
  /** Default 'replication'. Migration transfers go before replication at every rate limit. */
  purpose?: Purpose
  /** The agent's migration id, sent to sources for their policy. */
  migration?: string
  /** This transfer's ingress limit (default the exchange's `ingressPerTransfer`). */
  ingress?: RateLimit
  signal?: AbortSignal
  onProgress?: (progress: TransferProgress) => void
}

export interface SourceProgress {
  peer: string
  state: 'connecting' | 'active' | 'dropped'
  /** Verified blocks and their bytes this source delivered. */
  chunks: number
  bytes: number
  /** Bytes received from it in all (duplicates and invalid blocks too). */
  bytesReceived: number
  bytesPerSecond: number
  /** Mean time from a want to its block, ms. */
  latencyMs: number | undefined
  invalidBlocks: number
  dropReason?: string
}

export interface TransferProgress {
  rootCid: string
  name: string
  purpose: Purpose
  /** Positions of the manifest done (fetched and stored, local, or zero) of all positions. */
  chunksDone: number
  chunksTotal: number
  /** Image bytes done of the image size. */
  bytesDone: number
  bytesTotal: number
  /** Block bytes received over the network in this run. */
  bytesReceived: number
  /** Of the unique chunks that had to cross the network: how many arrived. */
  fetchChunksDone: number
  fetchChunksTotal: number
  /** Receive rate over the last seconds, bytes/s. */
  bytesPerSecond: number
  etaSeconds: number | undefined
  sources: SourceProgress[]
  /** 'importing': every leaf is in; the store registers the image (builds its inner nodes). */
  phase: 'preparing' | 'fetching' | 'importing' | 'done'
}

export interface FetchResult {
  image: ImageInfo
  /** Unique chunks fetched over the network in this run, and their block bytes. */
  chunksFetched: number
  bytesFetched: number
  /** All block bytes received (with duplicates of the endgame and invalid blocks). */
  bytesReceived: number
  /** Positions that were written before this run (a resumed transfer). */
  chunksResumed: number
  /** Chunks a killed run had stored in the image store but not yet marked done here, found there instead of fetched again. */
  chunksRecovered: number
  /** Unique chunks the local store had already (other images: pinned, never fetched), and all-zero positions (never fetched). */
  chunksLocal: number
  chunksZero: number
  invalidBlocks: number
  sources: SourceProgress[]
  durationMs: number
  /** Of durationMs: the network phase (first dial to last block stored), and the store's registration of the image after it (inner nodes only). */
  fetchMs: number
  importMs: number
  /** Of fetchMs: until the first block arrived (dialling sources, handshakes, the first round trip). */
  firstBlockMs: number
}

export interface TransferSummary {
  rootCid: string
  name: string
  layer: Layer
  purpose: Purpose
  chunksDone: number
  chunksTotal: number
  running: boolean
  /** running: being fetched now; interrupted: its last run was stopped, cancelled or killed; failed: its last run ended with `lastError`. Both resume with the next `fetch` of the root. */
  state: 'running' | 'interrupted' | 'failed'
  /** Image bytes of the positions done, and the image's size. */
  bytesDone: number
  bytesTotal: number
  /** What each source delivered across all runs (peer null: this site: zeros, chunks it had); empty unless asked for (`transfers({ sources: true })`). */
  sources: SourceTotal[]
  /** When the transfer was first asked for (ms since the epoch). */
  created: number
  lastError: string | null
  /** The running transfer's last progress report (rate, ETA, live per-source figures). */
  progress?: TransferProgress
}

/** A transfer that ended: 'done' (the image is registered) or 'failed' with nothing left to resume. */
export interface FinishedTransferSummary {
  rootCid: string
  name: string
  layer: Layer
  purpose: Purpose
  outcome: 'done' | 'failed'
  chunksTotal: number
  bytesTotal: number
  sources: SourceTotal[]
  created: number
  finished: number
  error: string | null
}

/** What a cancel did: whether the transfer was running, and (with `forget`) what the store freed. */
export interface CancelResult {
  rootCid: string
  /** false: no transfer of this root was known (nothing was done). */
  known: boolean
  wasRunning: boolean
  chunksDone: number
  chunksTotal: number
  /** Leaves only this transfer kept, deleted from the store (their pack bytes come back at the next gc). */
  freedChunks: number
  freedBytes: number
}

/** A source sent a block that does not hash to the CID it was asked for: it was not stored. */
export interface PenaltyDetail {
  peer: string
  cid: string
  rootCid: string
  reason: string
  invalidBlocks: number
  dropped: boolean
}

export interface ServeRefusedDetail {
  peer: string
  reason: 'not-a-member' | 'policy'
  cid?: string
}

export interface ExchangeEvents {
  'transfer:progress': CustomEvent<TransferProgress>
  'transfer:done': CustomEvent<FetchResult>
  'transfer:failed': CustomEvent<{ rootCid: string, error: Error }>
  /** A verified block is durable in the image store and its positions are committed to the transfer state. */
  'block:stored': CustomEvent<{ rootCid: string, cid: string, peer: string, bytes: number }>
  'peer:penalised': CustomEvent<PenaltyDetail>
  'source:dropped': CustomEvent<{ rootCid: string, peer: string, reason: string }>
  'serve:refused': CustomEvent<ServeRefusedDetail>
}

export interface ServedStats {
  /** Per peer id: blocks and bytes sent, wants refused by policy. */
  peers: Record<string, { blocks: number, bytes: number, refused: number }>
  blocks: number
  bytes: number
  rejectedStreams: number
}
