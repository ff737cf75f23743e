import type { CID } from 'multiformats/cid'
import type { DagProfile } from './blocks.js'
import type { ChunkLocation } from './errors.js'
import type { ProgressOptions } from './progress.js'

export type { DagProfile }

/** H-GMIG's three image layers: an OS image; a working environment on an OS; user data on a WE. */
export type Layer = 'os' | 'we' | 'ud'
export const LAYERS: readonly Layer[] = ['os', 'we', 'ud']
/** The layer a base must have, per layer. */
export const BASE_LAYER: Record<Layer, Layer | undefined> = { os: undefined, we: 'os', ud: 'we' }

export interface AbortOptions {
  signal?: AbortSignal
}

export interface ImageInfo {
  /** Short random id (hex), unique in this store. */
  id: string
  name: string
  layer: Layer
  /** The base image's id, or null for an OS image. */
  base: string | null
  rootCid: string
  size: number
  chunkSize: number
  profile: DagProfile
  public: boolean
  /** ISO 8601. */
  created: string
  chunkCount: number
  zeroBytes: number
}

export interface ImageDetails extends ImageInfo {
  baseName: string | null
  /** Images that name this one as their base. */
  dependents: string[]
  /** Distinct leaves of this image, all-zero ones included. */
  distinctChunks: number
  /** Bytes of this image whose chunk also occurs in another local image, or is all zero. */
  sharedBytes: number
  /** Bytes stored on disk for this image's blocks that no other image uses (what removing it frees). */
  exclusiveStoredBytes: number
}

/** What to import: a file path, or a stream of known length (benchmarks, the agent's uploads). */
export type ImportSource = string | { content: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number, description: string }

export interface AddImageOptions extends ProgressOptions, AbortOptions {
  layer: Layer
  /** Name, id or root CID of the base image: required for WE (an OS image) and UD (a WE image). */
  base?: string
  /** Default: the file's base name. Unique in the store. */
  name?: string
  /** Private images are never advertised to the swarm. */
  private?: boolean
  /** 'ipfs': the root CID equals `ipfs add`'s (CIDv0, 256 KiB, dag-pb leaves). Default 'hgmig'. */
  profile?: DagProfile
}

/** An image to register from leaves already in the store (`ImageStore.registerAdopted`): its remote manifest. */
export interface AdoptedImage {
  rootCid: string | CID
  /** The leaves' CIDs in file order. */
  chunks: CID[]
  size: number
  layer: Layer
  /** Name, id or root CID of the base image (WE, UD). */
  base?: string
  /** Default: the root CID. */
  name?: string
  private?: boolean
  /** Default: 'ipfs' for a CIDv0 root, else 'hgmig'. */
  profile?: DagProfile
}

export interface ExportOptions extends ProgressOptions, AbortOptions {
  /** Replace OUT if it exists. Default: refuse. */
  overwrite?: boolean
}

export interface ExportResult {
  image: string
  path: string
  bytes: number
}

export interface CorruptChunk extends ChunkLocation {
  cid: string
  reason: string
}

export interface VerifyReport {
  image: string
  name: string
  chunksChecked: number
  bytesChecked: number
  innerNodesChecked: number
  corrupt: CorruptChunk[]
  /** Inner DAG nodes that are corrupt (no byte offset of their own). */
  corruptNodes: Array<{ cid: string, reason: string }>
}

export interface LayerSimilarity {
  layer: Layer
  a: string
  b: string
  /** Bytes of a whose chunk also occurs in b. */
  sharedBytes: number
  /** sharedBytes / size of a. */
  ratio: number
  /** The same seen from b: bytes of b found in a / size of b. */
  reverseRatio: number
  /** Non-zero bytes of a whose chunk also occurs in b: what a site holding b need not receive of a, zeros aside. */
  sharedDataBytes: number
  /** sharedDataBytes / non-zero bytes of a (0 when a is all zeros). */
  dataRatio: number
}

export interface SimilarityReport extends LayerSimilarity {
  chunkSize: number
  /** Pairs of same-layer ancestors (OS with OS, WE with WE): the paper's (m, n). */
  layers: LayerSimilarity[]
}

export interface SimilarityMatrix {
  images: Array<{ id: string, name: string, layer: Layer }>
  /** ratios[i][j]: bytes of image i found in image j / size of image i (at chunk granularity). */
  ratios: number[][]
}

export interface PresenceReport {
  image: string
  size: number
  /** Bytes of the image whose chunk another local image also holds, or that are all zero. */
  presentBytes: number
  zeroBytes: number
  ratio: number
}

/** The manifest of an image held by another site (gossiped by the swarm; recorded, its chunks not fetched). */
export interface RemoteManifest {
  /** The site that holds the image (its name or peer id, as the swarm names sites). */
  site: string
  rootCid: string
  name?: string
  layer: Layer
  baseRootCid?: string
  size: number
  chunkSize: number
  /** The leaves' CIDs in file order. */
  chunks: Array<CID | Uint8Array>
}

export interface RemoveResult {
  image: string
  name: string
  /** Blocks no other image used, now deleted (stored ones and all-zero records). */
  freedChunks: number
  /** Their stored bytes, reclaimed on disk by the next compaction ('gc'). */
  freedBytes: number
}

export interface GcResult {
  /** Blocks left by imports that never finished, deleted. */
  orphansDeleted: number
  packsCompacted: number
  bytesReclaimed: number
}

export interface StoreStats {
  images: number
  chunks: number
  zeroChunks: number
  /** Bytes of all blocks stored on disk (leaves and inner nodes; all-zero leaves are not stored). */
  storedBytes: number
  /** The leaves' share of storedBytes: the file data actually kept (the dedup benchmark compares it with the optimum). */
  storedLeafBytes: number
  /** Bytes in pack files that belong to deleted chunks, until gc compacts them. */
  deadBytes: number
  packFiles: number
  chunkSize: number
}

/**
 * What the image commands need. The store implements it directly; once the agent runs (next
 * issue) the CLI talks to the agent's local API through another implementation of the same
 * interface, as kubo's CLI does with its daemon.
 */
export interface ImageStoreClient {
  add(source: ImportSource, options: AddImageOptions): Promise<ImageInfo>
  list(): Promise<ImageInfo[]>
  show(image: string): Promise<ImageDetails>
  export(image: string, out: string, options?: ExportOptions): Promise<ExportResult>
  verify(image: string, options?: ProgressOptions & AbortOptions): Promise<VerifyReport>
  similarity(a: string, b: string): Promise<SimilarityReport>
  similarityMatrix(images?: string[]): Promise<SimilarityMatrix>
  presence(image: string): Promise<PresenceReport>
  remove(image: string): Promise<RemoveResult>
  gc(options?: ProgressOptions & AbortOptions): Promise<GcResult>
  stats(): Promise<StoreStats>
  close(): Promise<void>
}
