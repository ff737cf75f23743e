/**
 * The local API's shapes as the UI uses them. The endpoints that exist are typed by the agent's own
 * contract (p2p/api/types.ts, type-only: nothing of p2p/ is bundled); the planned ones are declared
 * here with the names and shapes the API plan gives, until they land in p2p/api/types.ts.
 */
export type { AgentEvent, AgentStatus, LatencySample, MemberStatus, PingResponse } from '../../p2p/api/types.js'

/**
 * Membership fields newer agents report (MemberStatus.since/until, AgentStatus.role); read through
 * these helpers so the UI also runs against agents that do not have them.
 */
export type SiteRole = 'member' | 'joining' | 'approved' | 'leaving' | 'removed'
export function roleOf (status: object): SiteRole { return (status as { role?: SiteRole }).role ?? 'member' }
export function memberSince (member: object): number | null { return (member as { since?: number }).since ?? null }
export function memberUntil (member: object): number | null { return (member as { until?: number | null }).until ?? null }

/** The live hashgraph (GET /v1/hashgraph): the agent's own contract. */
export type { HashgraphEventView, HashgraphView } from '../../p2p/api/types.js'

export type ImageLayer = 'os' | 'we' | 'ud'

/** An image as the swarm knows it (GET /v1/images), identified by its root CID. */
export interface ImageView {
  rootCid: string
  name: string
  layer: ImageLayer
  /** Root CID of its base image (null for OS). */
  base: string | null
  size: number
  chunkSize?: number
  chunkCount: number
  public: boolean
  /** Names of the sites holding it now. */
  holders?: string[]
  /** This site holds it. */
  local?: boolean
  zeroChunks?: number
  /** Chunks no other image at the site shares (dedup: the rest costs nothing). */
  uniqueChunks?: number
}

export interface ImagesView {
  images: ImageView[]
  /** The same images grouped by holding site (root CIDs), every current member. */
  sites: Array<{ site: string, peerId: string, images: string[] }>
}

export interface SimilarityView { images: string[], labels: string[], matrix: number[][] }

export interface ImportRequest { path: string, layer: ImageLayer, base?: string, name?: string, private?: boolean }
export interface SwarmRequests {
  requests?: Array<{ peerId: string, name: string, at: string, inviter?: string }>
  /** Planned: peers found by mDNS that are not members. */
  lanPeers?: Array<{ peerId: string, addrs: string[] }>
}
export interface InviteView { code: string, expiresAt?: string, bootstrap?: string[] }

/** Migrations (issue 6): fields the UI shows when the agent reports them; all but the first few optional. */
export interface VmView { id: string, name: string, site: string, memoryBytes?: number, diskBytes?: number, state?: string }
export interface SuggestedSite { site: string, predictedBytes?: number, predictedMs?: number, m?: number, n?: number }
export interface TransferBar { done: number, total: number, bytesPerSecond?: number, etaMs?: number }
export interface MigrationView {
  id: string
  vm: string
  from: string
  to: string
  /** e.g. planning, base, ud, precopy, stop-and-copy, resume, done, failed, cancelled */
  phase: string
  state?: 'running' | 'done' | 'failed' | 'cancelled'
  error?: string
  startedAt?: string
  endedAt?: string
  phases?: Array<{ name: string, startedAt: string, endedAt?: string | null }>
  bars?: { base?: TransferBar, ud?: TransferBar, memory?: TransferBar }
  sources?: Array<{ site: string, bytesPerSecond: number }>
  dirtyPages?: number[]
  plan?: { bitmapSummary?: string, m?: number, n?: number, suggested?: SuggestedSite[] }
  expectedDowntimeMs?: number
  actualDowntimeMs?: number | null
}
export interface MigrationStart { vm: string, to: string, maxDowntimeMs?: number, bandwidth?: number }

export interface LogEntry {
  at: string
  level: string
  message: string
  migration?: string
  phase?: string
  site?: string
  [field: string]: unknown
}

/** What the Electron preload exposes as window.hgmig; absent in a plain browser. */
export interface DesktopBridge {
  platform: string
  /** The running agent's API token (the page never reads files). */
  token: () => Promise<string>
  /** Native open dialog for a disk image; the chosen path, or null if cancelled. */
  openImageFile: () => Promise<string | null>
  /** Native save dialog, then writes `content`; the path written, or null if cancelled. */
  saveFile: (request: { suggestedName: string, content: string }) => Promise<string | null>
  /** Leaves this swarm's data aside and restarts the agent to ask another swarm to admit this site. */
  joinSwarm?: (code: string) => Promise<{ site: string, previousData: string }>
}

declare global {
  interface Window { hgmig?: DesktopBridge }
}
