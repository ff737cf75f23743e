import type { StoreCall } from './store-rpc.js'

/**
 * The local API's contract: what the agent answers and streams, and what the CLI, the UI and the
 * tests send. Plain data only (JSON), so neither side needs the other's libraries.
 */

export interface MemberStatus {
  /** Creator id in the hashgraph (index in the swarm's member list). */
  index: number
  /** The site's name as the replicated state has it (genesis name until a site-name transaction). */
  name: string
  peerId: string
  self: boolean
  /** Whether this agent has an open connection to the member (always true for itself). */
  connected: boolean
  /** Last round-trip time measured by the libp2p ping service, in milliseconds; null if unknown. */
  rttMs: number | null
  /**
   * This agent's gossipsub score of the member: 0 normally, negative after it relayed events that
   * proved invalid here (from -80 on, this agent ignores its gossip until the score decays); null
   * for this site itself.
   */
  gossipScore: number | null
  /** Bytes per second over this agent's connections to the member (all protocols), over the last few seconds; null for itself or if never connected. */
  throughput: { sentBytesPerSecond: number, receivedBytesPerSecond: number } | null
  /** That site's state hash and count of ordered transactions as it last reported them (every few seconds while connected); null if never. */
  stateHash: string | null
  ordered: number | null
  /** First consensus round in which its events count (1 for founding members). */
  since: number
  /** First round without it once removed or gone; null while it stays. */
  until: number | null
}

/**
 * This site's place in the swarm: a member; joining (asked to join, not approved yet); approved
 * (added by consensus, its first round not decided yet); leaving (removal ordered, its round not
 * decided yet: it must keep taking part until then); removed.
 */
export type SiteRole = 'member' | 'joining' | 'approved' | 'leaving' | 'removed'

export interface LatencySummary {
  /** Own transactions ordered since the agent started. */
  count: number
  /** Quantiles over the most recent samples, in milliseconds; null until there is a sample. */
  p50Ms: number | null
  p95Ms: number | null
  p99Ms: number | null
}

export interface AgentStatus {
  site: string
  peerId: string
  role: SiteRole
  swarm: { id: string, name: string }
  members: MemberStatus[]
  /** Last round whose events all have their place in the consensus order (0: none yet). */
  lastDecidedRound: number
  /** The engine's view: highest round of any event held, events in memory, events waiting (for parents or for a round's member set). */
  hashgraph: { lastRound: number, eventsInMemory: number, waiting: number }
  /** Running SHA-256 over the replicated state's history: equal at sites that applied the same order. */
  stateHash: string
  /** Set if the state machine stopped applying the consensus order (it had a gap): the state is frozen and suspect. */
  halted: string | null
  transactions: {
    /** Transactions in the consensus order so far (applied + rejected). */
    ordered: number
    applied: number
    rejected: number
    /** Own transactions submitted and not ordered yet. */
    pending: number
  }
  latency: LatencySummary
  /** Other sites' latency probes, from their submission (their clock) to their consensus position here. */
  remoteLatency: LatencySummary
  /** Hashgraph events added per second (own and received), over the last second. */
  eventsPerSecond: number
  /** This site's newest checkpoint (written, or fetched to join; see p2p/hashgraph/README.md), null before the first. */
  checkpoint: { round: number, at: string } | null
  listen: string[]
  startedAt: string
  pid: number
}

/** One own transaction's consensus latency at this site. */
export interface LatencySample {
  /** Milliseconds since the Unix epoch when it was ordered here. */
  at: number
  latencyMs: number
  position: number
  kind: string
  /** For another site's probe: that site's name. */
  site?: string
}

export type TransactionOutcome = 'applied' | 'rejected'

/** Everything the event stream (GET /v1/events, WebSocket) carries, one JSON object per message. */
export type AgentEvent =
  | { type: 'hello', status: AgentStatus }
  | { type: 'transaction', position: number, round: number, creator: number, site: string, kind: string, outcome: TransactionOutcome, reason?: string, stateHash: string }
  | { type: 'rounds', lastDecidedRound: number, orderedEvents: number }
  | { type: 'latency', sample: LatencySample, remote?: boolean }
  | { type: 'peer', peerId: string, member: number | null, connected: boolean }
  | { type: 'progress', task: string, done: number, total: number | null, message?: string }
  | { type: 'join-request', request: JoinRequestView }
  | { type: 'transfer', progress: TransferProgressView }
  /** A transfer at this site ended a run: done, failed, or interrupted (stopped; it resumes later). */
  | { type: 'transfer-state', transfer: TransferView }
  /** An operator abandoned a transfer: stopped, forgotten, its leaves released (DELETE /v1/transfers/:root). */
  | { type: 'transfer-abandoned', abandoned: AbandonTransferResponse }
  /** A migration's state changed or its log grew (`event.type` 'migration:state' or 'migration:log'). */
  | { type: 'migration', event: { type: string, detail: unknown } }
  /** An import started with POST /v1/images finished (`error` set if it failed). */
  | { type: 'image', task: string, site: string, image?: { rootCid: string, name: string, layer: 'os' | 'we' | 'ud', size: number, chunkCount: number, public: boolean }, error?: string }
  | { type: 'membership', change: 'add' | 'remove', index: number, peerId: string, name: string, fromRound: number }

export interface PingRequest {
  /** How many latency-probe transactions to submit (1 to 1000, default 1). */
  count?: number
}

export interface PingResponse {
  /** Hex ids (SHA-256 of the transaction bytes) of the submitted probes. */
  submitted: string[]
}

export interface InviteRequest {
  /** How long the code admits join requests, in hours (default 24, at most 720). */
  ttlHours?: number
}

export interface InviteResponse {
  /** Secret: it carries the swarm key. Give it to the new site's operator only. */
  code: string
  expiresAt: string
  /** The addresses in the code the new site will dial first. */
  bootstrap: string[]
}

/** A site that asked this agent to admit it, with a valid invite, waiting for a member's approval. */
export interface JoinRequestView {
  peerId: string
  name: string
  /** Peer id of the member whose invite it presented. */
  inviter: string
  /** ISO time of its latest request. */
  at: string
}

export interface ApproveRequest {
  /** The requesting site's peer id or name. */
  peer: string
}

export interface RemoveRequest {
  /** A member's name or peer id. */
  site: string
}

/** A transaction was submitted; its outcome arrives with the consensus order (event stream, status). */
export interface SubmittedResponse {
  /** Hex SHA-256 of the transaction bytes. */
  submitted: string
}

export interface ImportImageRequest {
  /** Absolute path of the image file on the agent's host. */
  path: string
  layer: 'os' | 'we' | 'ud'
  /** The base image (WE: its OS, UD: its WE): name, id or root CID of a local image. */
  base?: string
  name?: string
  private?: boolean
}

/** One hashgraph event as the UI draws it. */
export interface HashgraphEventView {
  id: string
  creator: number
  /** The creator's sequence number (0 for its first event). */
  seq: number
  selfParent: string | null
  otherParent: string | null
  round: number | null
  witness: boolean
  /** null: not decided yet (or not a witness). */
  famous: boolean | null
  /** Position in the consensus order, once decided. */
  order: number | null
  /** The creator's timestamp, ISO. */
  timestamp: string
  transactions: number
}

export interface HashgraphView {
  /** Site names by creator index. */
  members: string[]
  /** The newest events this site holds in memory, oldest first. */
  events: HashgraphEventView[]
}

/** A chunk transfer's progress (the block exchange's own report). */
export interface TransferProgressView {
  rootCid: string
  name: string
  purpose: 'migration' | 'replication'
  chunksDone: number
  chunksTotal: number
  bytesDone: number
  bytesTotal: number
  /** Block bytes received over the network so far. */
  bytesReceived: number
  bytesPerSecond: number
  etaSeconds?: number
  phase: 'preparing' | 'fetching' | 'importing' | 'done'
  /** Per source: its contribution and rate. */
  sources: Array<{ peer: string, state: 'connecting' | 'active' | 'dropped', chunks: number, bytes: number, bytesPerSecond: number, invalidBlocks: number, dropReason?: string }>
}

/**
 * A transfer at this site (GET /v1/transfers): running now; interrupted (stopped, cancelled or
 * killed: it resumes when the agent does); failed (its last run ended with `lastError`: it is
 * tried again while it stays); done (its image is registered here). Abandoned ones are forgotten.
 */
export type TransferStateName = 'running' | 'interrupted' | 'done' | 'failed'

export interface TransferSourceView {
  /** The member's name; null for this site itself (all-zero chunks, chunks it already had). */
  site: string | null
  peerId: string | null
  /** Manifest positions it delivered, across every run, and their image bytes. */
  chunks: number
  bytes: number
  /** While the transfer runs: the source's state in this run, its rate, why it was dropped. */
  state?: 'connecting' | 'active' | 'dropped'
  bytesPerSecond?: number
  dropReason?: string
}

export interface TransferView {
  rootCid: string
  /** The image's name at this site. */
  name: string
  layer: 'os' | 'we' | 'ud'
  purpose: 'migration' | 'replication'
  state: TransferStateName
  chunksDone: number
  chunksTotal: number
  bytesDone: number
  bytesTotal: number
  /** Receive rate and seconds left while running; null otherwise. */
  bytesPerSecond: number | null
  etaSeconds: number | null
  sources: TransferSourceView[]
  /** ISO times: first asked for; ended (done or failed for good), null while it can still run. */
  startedAt: string
  finishedAt: string | null
  lastError: string | null
}

export interface TransfersResponse {
  /** Running, interrupted and failed transfers first (oldest first), then finished ones (newest first). */
  transfers: TransferView[]
}

/** DELETE /v1/transfers/:root — `:root` is the image's root CID or name. */
export interface AbandonTransferResponse {
  rootCid: string
  name: string
  /** It was being fetched and was stopped. */
  wasRunning: boolean
  chunksDone: number
  chunksTotal: number
  /** Leaves only this transfer kept, deleted from the store (`hgmig image gc` gives their disk space back); chunks other images use stay. */
  freedChunks: number
  freedBytes: number
}

/** What a site announces of an image it holds (the image-announce transaction's content). */
export interface ImageAnnouncement {
  rootCid: string
  name: string
  layer: 'os' | 'we' | 'ud'
  /** Root CID of its base image (WE: its OS, UD: its WE), null for an OS image. */
  base: string | null
  size: number
  chunkSize: number
  chunkCount: number
  public: boolean
}

/** An image as the swarm knows it: announced by consensus, with this site's view of it. */
export interface ImageView extends ImageAnnouncement {
  /** Names of the sites holding it now. */
  holders: string[]
  /** This site holds it. */
  local: boolean
  /** This site knows its chunk list (it holds it, or fetched its manifest). */
  manifest: boolean
}

export interface ImagesResponse {
  images: ImageView[]
  /** The same images grouped by holding site (every current member, even with none). */
  sites: Array<{ site: string, peerId: string, images: string[] }>
}

export interface MetricsText {
  contentType: string
  text: string
}

/** What the API server needs from the agent; the agent implements it. */
/** A peer found on the LAN by mDNS. */
export interface LanPeerView {
  peerId: string
  /** Its addresses as mDNS announced them. */
  addrs: string[]
  lastSeen: string
  /** Already a current member of this swarm. */
  member: boolean
}

/**
 * Which of an image's chunks each member holds. Positions are grouped into `buckets` runs of
 * `chunksPerBucket`; `states` has one character per run: h every chunk held, p some held,
 * f some being fetched by that site now (known for this site only), m none held, z all-zero
 * (never stored or sent).
 */
export interface ChunkMapView {
  rootCid: string
  name: string
  chunkCount: number
  chunkSize: number
  buckets: number
  chunksPerBucket: number
  sites: ChunkMapSite[]
}

export interface ChunkMapSite {
  site: string
  peerId: string
  /** Chunks of this image the site holds (in any image it holds), zero chunks included. */
  held: number
  inFlight: number
  states: string
}

/**
 * A text download produced a piece at a time (an export of a long history): the server writes each
 * piece as the client takes it, so neither side holds the whole text.
 */
export interface TextExport {
  contentType: string
  chunks: Iterable<string>
  /**
   * Rows the export holds, counted as it starts (sent as the `X-Hgmig-Rows` header, for progress).
   * One row per line in every format; rows recorded during the export may follow, so it is a floor.
   */
  rows?: number
}

/** GET /v1/logs: each field as the query string has it (null when absent); the backend validates. */
export interface LogExportQuery {
  format: string
  /** Only this migration's entries. */
  migration: string | null
  /** ISO time: only entries logged at or after it. */
  since: string | null
  /** A sequence number: only entries after it (what a reader polling the log saw last). */
  after: string | null
}

/** `GET /v1/consensus/audit` query, as given (the agent checks it). */
export interface ConsensusAuditQuery {
  format: string
  since: string | null
  until: string | null
  limit: string | null
}

export interface AgentBackend {
  status: () => AgentStatus
  latencySeries: () => { samples: LatencySample[], remote: LatencySample[] }
  submitPing: (request: PingRequest) => PingResponse
  /**
   * Runs an image-store call at the agent (the CLI's image commands while the agent holds the
   * store). Progress events go to `onProgress`; `signal` aborts when the client goes away.
   */
  storeCall: (call: StoreCall, options: { signal: AbortSignal, onProgress: (event: { type: string, detail: unknown }) => void }) => Promise<unknown>
  images: () => Promise<ImagesResponse>
  /** Shared-chunk fractions between this site's images: matrix[i][j] = bytes of image i found in image j / size of i. */
  similarity: () => Promise<{ images: string[], labels: string[], matrix: number[][] }>
  /** VMs at this site (the hypervisor driver's list). */
  vms: () => Promise<unknown[]>
  /** Creates a VM: `{ name, os, we, memoryBytes, workload?, initialUserDataBytes? }`. */
  createVm: (body: unknown) => Promise<unknown>
  /** Migrations this site takes part in, and the swarm's history of completed ones (by consensus). */
  migrations: () => { migrations: unknown[], history: unknown[] }
  /** Starts a migration: `{ vm, to, strategy?, maxDowntimeMs?, bandwidth?, maxPasses?, repository? }`. */
  migrate: (body: unknown) => Promise<unknown>
  cancelMigration: (id: string) => Promise<unknown>
  /** Changes a running migration's bandwidth cap and downtime limit: `{ bandwidth?, maxDowntimeMs? }`. */
  updateMigration: (id: string, body: unknown) => Promise<unknown>
  /** A VM's live statistics (memory, CPU, network, dirty rates) from its driver. */
  vmStats: (name: string) => Promise<unknown>
  /** Destroys a VM that is not migrating. */
  destroyVm: (name: string) => Promise<unknown>
  /** Which of an image's chunks each member holds, in `buckets` runs of positions. */
  chunkMap: (rootCid: string, buckets: number) => Promise<ChunkMapView>
  /** Peers mDNS found on the LAN lately, newest first. */
  lanPeers: () => LanPeerView[]
  /** The plan to one target, or candidate targets ranked (`to` null); times estimated at `bandwidth` bytes/s if given. */
  migrationPlan: (vm: string, to: string | null, bandwidth?: number) => Promise<unknown>
  /** The migration log (entries of every migration at this site, or one), as ndjson, csv or json. */
  exportLog: (query: LogExportQuery) => TextExport
  /** The consensus audit: ordered events (round, witness, fame, round received, consensus time, position) whose consensus time is in [since, until), as ndjson, csv or json. */
  consensusAudit: (query: ConsensusAuditQuery) => TextExport
  /** Starts importing a file on the agent's host; progress and the outcome arrive on the event stream. */
  importImage: (request: ImportImageRequest) => { task: string }
  hashgraph: (limit: number) => HashgraphView
  invite: (request: InviteRequest) => Promise<InviteResponse>
  joinRequests: () => JoinRequestView[]
  approve: (request: ApproveRequest) => SubmittedResponse
  removeMember: (request: RemoveRequest) => SubmittedResponse
  leave: () => SubmittedResponse
  metrics: () => Promise<MetricsText>
  /** Transfers at this site (GET /v1/transfers). */
  transfers: () => Promise<TransfersResponse>
  /** Stops a transfer if it runs, forgets it and releases its leaves (DELETE /v1/transfers/:root; root CID or image name). */
  abandonTransfer: (reference: string) => Promise<AbandonTransferResponse>
  /** Registers a listener for the event stream; returns the function that removes it. */
  subscribe: (listener: (event: AgentEvent) => void) => () => void
}

/** Contents of `api.json` in the data directory (mode 0600): how local clients reach the running agent. */
export interface ApiFile {
  port: number
  token: string
  pid: number
}
