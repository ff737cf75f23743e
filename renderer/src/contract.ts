/**
 * The local API's shapes as the UI uses them. The endpoints that exist are typed by the agent's own
 * contract (p2p/api/types.ts, type-only: nothing of p2p/ is bundled); the planned ones are declared
 * here with the names and shapes the API plan gives, until they land in p2p/api/types.ts.
 */
import type { JoinRequestView, LanPeerView, MemberStatus } from '../../p2p/api/types.js'
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

/** Transfers at this site (GET /v1/transfers, DELETE /v1/transfers/:root): the agent's own contract. */
export type { AbandonTransferResponse, TransferView, TransfersResponse } from '../../p2p/api/types.js'

/** Images as the swarm knows them (GET /v1/images): the agent's own contract. */
export type { ImageView, ImagesResponse as ImagesView } from '../../p2p/api/types.js'

export interface SimilarityView { images: string[], labels: string[], matrix: number[][] }

export interface ImportRequest { path: string, layer: ImageLayer, base?: string, name?: string, private?: boolean }
/** GET /v1/swarm/requests: join requests waiting for approval, and the peers mDNS found (newest first). */
export interface SwarmRequests {
  requests?: JoinRequestView[]
  lanPeers?: LanPeerView[]
}
export interface InviteView { code: string, expiresAt?: string, bootstrap?: string[] }

/**
 * Migrations: the engine's own shapes (p2p/migration), type-only, so a change there breaks this
 * build rather than the page. GET /v1/migrations answers `{ migrations: MigrationInfo[], history:
 * MigrationRecord[] }` (this site's rows, one per role, and the swarm's consensus history).
 */
import type { LogEntry as MigrationLogEntry } from '../../p2p/migration/index.js'
export type { MigrationLogEntry }
export type {
  DiskRoundStats, LayerPlan, MemoryPassStats, MigrationInfo, MigrationPhase, MigrationPlan,
  MigrationRole, MigrationState, Strategy, VmInfo, VmStats, WorkloadName
} from '../../p2p/migration/index.js'
export type { MigrationRecord } from '../../p2p/agent/state.js'

/** The phases in order, as p2p/migration PHASES (a value: copied, not imported, so no engine code is bundled). */
export const MIGRATION_PHASES = ['request', 'plan', 'agree', 'transfer', 'precopy', 'switchover', 'committed', 'resumed', 'released', 'record'] as const
/** The synthetic driver's workloads (p2p/migration WORKLOAD_NAMES). */
export const WORKLOADS = ['idle', 'static', 'dynamic', 'compilation', 'memory-intensive', 'cpu-intensive', 'network-intensive'] as const

/** A candidate target, as GET /v1/migrations/plan?vm= (no `to`) ranks them. */
export interface RankedTarget { target: string, estimatedSeconds: number, bytesToSend: number, similarity: { m: number, n: number } }

/** POST /v1/migrations. */
export interface MigrationStart { vm: string, to: string, strategy?: 'h-gmig' | 'nss' | 'ss', maxDowntimeMs?: number, bandwidth?: number, repository?: string }

/** GET /v1/logs?format=json: the entries and the rows of the migrations they belong to. */
export interface MigrationLogExport { migrations: unknown[], entries: MigrationLogEntry[] }

/**
 * Planned (requested from the lead): per-source figures of the base-layer transfer in
 * MigrationInfo.progress. Read through this helper so the UI runs against agents without them.
 */
export interface SourceFigures { site: string, chunks: number, bytes: number, dropReason?: string }
export function progressSources (info: object): SourceFigures[] | null {
  return (info as { progress?: { sources?: SourceFigures[] } }).progress?.sources ?? null
}

/** A member's traffic with this site (MemberStatus.throughput): null for itself or never connected. */
export type MemberThroughput = NonNullable<MemberStatus['throughput']>
export function memberThroughput (member: MemberStatus): MemberThroughput | null | undefined {
  // undefined: an agent older than the field (the page is served by its own agent, so only in tests of old builds).
  return (member as { throughput?: MemberThroughput | null }).throughput
}

/** An image's chunk map per member (GET /v1/images/:rootCid/chunks?buckets=N). */
export type { ChunkMapSite, ChunkMapView, JoinRequestView, LanPeerView } from '../../p2p/api/types.js'

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
