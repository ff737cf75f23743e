/**
 * The migration engine: one per site. It runs H-GMIG's flow (paper section 3.3) — request, plan,
 * agree, transfer (base chunks ‖ UD snapshot and dirty rounds), memory pre-copy, stop-and-copy,
 * resume at the target, release at the source, record — and the paper's baselines NSS and SS as
 * strategies of the same flow. Every phase is in SQLite before the engine acts on it; every stream
 * is a libp2p stream of `/hgmig/<swarmId>/migrate/1.0.0`.
 *
 * Safety rule: until the source has persisted `committed` (after the target verified memory and
 * disk), any failure or cancel leaves the VM running at the source, untouched, and the target drops
 * its partial VM. After `committed` the source never runs the VM again; the target resumes it
 * (asking the source for the outcome if the connection broke in between).
 */
import { randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { join } from 'node:path'
import type { PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import {
  directChunkFetch, hashImageNow, materializeBaseImages, serveChunks, type ChunkSource, type FetchMissingChunks, type FetchProgress,
  type MigrationImageStore, type SourceFigures
} from './base.js'
import type { HypervisorDriver, IncomingMigration, MemoryPassStats, OutgoingEvent, OutgoingMigration, VmDescription } from './driver.js'
import {
  InvalidMigrationInputError, MigrationCancelledError, MigrationError, MigrationNotFoundError, MigrationRefusedError,
  NotStartedError, PeerLostError, PlanMismatchError, ProtocolError, TargetDroppedError, VerificationError, VmStateError, errorMessage
} from './errors.js'
import { MigrationDb, PHASES, type ExportFormat, type LogEntry, type LogKind, type LogQuery, type MigrationPhase, type MigrationRecordRow, type MigrationRole, type MigrationState } from './log.js'
import {
  STRATEGIES, computePlan, planDifferences, rankTargets, summarizePlan, type ImageManifestData, type MigrationPlan, type PlanInput,
  type PlanSummary, type ReplicaView, type Strategy
} from './plan.js'
import { DELIVERY_REPORT_STEP, DeliveryWindow, FairShaper, TokenBucket, deferred, sleep, type Deferred } from './token-bucket.js'
import { ControlChannel, WireCounter, byteChannel, readHeader, writeHeader, type Channel, type ChannelHeader } from './wire.js'

/** What the engine needs of libp2p (a node from createSwarmNode fits). */
export interface MigrationNode {
  handle: (protocol: string, handler: (stream: Stream, connection: { remotePeer: PeerId }) => void | Promise<void>, options?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId | Multiaddr | Multiaddr[], protocols: string | string[], options?: { signal?: AbortSignal, maxOutboundStreams?: number }) => Promise<Stream>
}

export interface MigrationSummary {
  migration: string
  vm: string
  vmName: string
  from: string
  to: string
  strategy: Strategy
  planHash: string
  /** Bytes this site wrote and read on the migration's streams. */
  bytesOnWire: number
  bytesSaved: number
  totalMs: number
  downtimeMs: number
}

export type MigrationEvent =
  | { type: 'migration:log', detail: LogEntry }
  | { type: 'migration:state', detail: MigrationInfo }

export interface MigrationEngineInit {
  /** This site's name, as the swarm names it (and as the replica's holdings name sites). */
  site: string
  swarmId: string
  node: MigrationNode
  /** How to reach a site (a peer id the node is connected to, or its addresses). */
  peerOf: (site: string) => PeerId | Multiaddr | Multiaddr[] | undefined
  /** The site a connected peer is, or undefined for a peer that is not a member (refused). */
  siteOf: (peer: PeerId) => string | undefined
  driver: HypervisorDriver
  store: MigrationImageStore
  /** The agreed state: which site holds which image, and the images' manifests. */
  replica: () => ReplicaView | Promise<ReplicaView>
  /** Where migrations.sqlite and the staging files live. */
  directory: string
  /** The base-layer transfer (issue 5's multi-source exchange); default: the built-in direct fetch. */
  fetchMissingChunks?: FetchMissingChunks
  /** This site's upload capacity in bytes/s, shared fairly by its migrations; 0 = unlimited. */
  linkBandwidth?: number
  /** Bandwidth the plan's time estimate assumes when a request sets none (bytes/s). Default 125 MB/s (1 Gbit/s, the paper's links). */
  estimateBandwidth?: number
  /** Base images this site imported for an incoming migration (root CIDs): the agent announces them. */
  onBaseImported?: (rootCids: string[]) => void
  /** Called once per completed migration at the source: the agent submits it as a consensus transaction. */
  record?: (summary: MigrationSummary) => void
  onEvent?: (event: MigrationEvent) => void
  /** How long a target that verified a VM asks the source for the outcome after losing it (ms). Default 5 minutes. */
  outcomeTimeoutMs?: number
}

export interface MigrationRequest {
  /** VM name or id at this site. */
  vm: string
  /** Target site. */
  to: string
  strategy?: Strategy
  /** Default 300 ms. */
  maxDowntimeMs?: number
  /** This migration's cap in bytes/s on every stream it writes; 0 = none. */
  bandwidth?: number
  /** Pre-copy passes before stop-and-copy is forced. Default 30. */
  maxPasses?: number
  /** SS: the central repository site. */
  repository?: string
}

export interface MigrationInfo extends MigrationRecordRow {
  /** Live progress while running (this process only). */
  progress?: {
    wire: ReturnType<WireCounter['toJSON']>
    passes: number
    baseBytes: number
    baseTotal: number
    /** Base-layer chunks per source site (counted at the target, relayed to the source). */
    sources: SourceFigures[]
  }
}

interface Context {
  id: string
  role: MigrationRole
  abort: AbortController
  counter: WireCounter
  bucket: TokenBucket
  done: Deferred<MigrationInfo>
  outgoing?: OutgoingMigration
  incoming?: IncomingMigration
  /** Target: the driver streams arrive on their own; they wait here for the incoming VM. */
  incomingReady?: Deferred<IncomingMigration>
  source: string
  target: string
  passes: number
  baseBytes: number
  baseTotal: number
  sources: SourceFigures[]
  startedAt: number
  /** Source: the link rate the UD snapshot measured (bytes/s). */
  udRate?: number
  /** Source: the target's last readiness report: seconds until its base layers are in its store (null: not known yet), and when it came. */
  targetReadiness?: { etaSeconds: number | null, readyBytes: number, at: number }
  /** Parameters changed while the migration runs (the driver gets them if it starts copying later). */
  parameters?: { bandwidth?: number, maxDowntimeMs?: number }
  /** Source: the memory copy is held to a trickle until the base layers are in at the target (see holdPrecopy). */
  precopyHeld?: boolean
  /** Source: the target reported its base layers in. */
  baseIn?: boolean
  /** Source: pages left after the last pass, and how many passes in a row left about as many (no progress). */
  lastRemaining?: number
  passesWithoutProgress?: number
  /** Source: what this migration sends on the site's link besides base chunks (UD layer, memory in use). */
  sends?: { ud: number, memory: number }
  /** Source: the guest's throttle (auto-converge), once pre-copy needed it. */
  throttle?: number
  /** Source: the last pre-copy pass's figures (the throttle is computed from them). */
  lastPass?: MemoryPassStats
  /** Source: bytes in flight on the disk and memory streams, bounded by what the target reports read (when it does). */
  delivery?: DeliveryWindow
  /** Target: hears the bytes its driver reads from the disk and memory streams (reported to the source). */
  onDriverRead?: (bytes: number) => void
  /** Target: it told the source the copy is identical; from then on the source decides the commit. */
  verifiedSent?: boolean
}

const DEFAULT_MAX_PASSES = 30
/**
 * Memory's rate while a pre-copy that has not converged waits for the base layers (bytes/s).
 * Its passes cannot converge while base chunks share the link, and each would send the VM's
 * dirty working set again; once the base is in, the requested rate returns. A trickle (a rate of
 * 0 would mean unlimited): at 512 KB/s a DYNAMIC VM whose base took 10 s at a load of 24 re-sent
 * 5 MiB of pages it dirtied again before the end.
 */
const HELD_PRECOPY_RATE = 64 * 1024
/** A pass leaving at least this share of the pages the pass before left made no progress; this many in a row force the stop-and-copy. */
const NO_PROGRESS_SHARE = 0.9
const NO_PROGRESS_PASSES = 3
const DEFAULT_DOWNTIME_MS = 300
/**
 * The first pass's estimate (memory in use at the rate the UD snapshot measured) times this: the
 * snapshot went while the base was still starting, so the pass, sharing the target's ingest with
 * the base at full rate, takes longer (at a load of 20-30 up to 1.3 s more). Early costs an idle
 * VM nothing and a busy one a few dirtied pages; late costs the whole difference in time.
 */
const FIRST_PASS_MARGIN = 1.5
/** Auto-converge's steps (QEMU's defaults: cpu-throttle-initial 20, cpu-throttle-increment 10, max 99). */
const INITIAL_THROTTLE = 0.2
const THROTTLE_STEP = 0.1
const MAX_THROTTLE = 0.99
/**
 * The throttle is at least what brings the guest's dirty rate (as measured in the last pass, scaled
 * back to an unthrottled guest) to this share of the pass's transfer rate: each pass then leaves
 * about half what the one before did, and pre-copy converges in a few passes instead of climbing
 * QEMU's 10 % steps for 6-10 (a dirty-limit computed from the pass figures, as QEMU's dirty-limit
 * capability or a driver setting cpu-throttle-percentage directly would).
 */
const DIRTY_SHARE_OF_RATE = 0.5
/** The pass figures count 4 KiB pages (QEMU's target page size on x86). */
const PAGE_BYTES = 4096
/** The target logs its base transfer's progress at most this often. */
const BATCH_LOG_INTERVAL_MS = 500
const OUTCOME_POLL_MS = 1000
/** How long a target waits for the source's reason after its driver streams broke, before failing on its own. */
const STREAM_FAILURE_GRACE_MS = 1000

/** Control messages queued by type, with the asynchronous ones handled as they come. */
class ControlPump {
  private readonly queue: Array<{ type: string } & Record<string, unknown>> = []
  private readonly waiters: Array<{ types: string[], resolve: (m: { type: string } & Record<string, unknown>) => void, reject: (e: unknown) => void }> = []
  private ended: Error | null = null
  private readonly end = deferred<never>()

  constructor (readonly channel: ControlChannel, private readonly onAsync: (message: { type: string } & Record<string, unknown>) => boolean, private readonly peer: string) {
    this.end.promise.catch(() => {})
    void this.run()
  }

  /** Rejects when the control stream ends: a migration waiting on anything else must not outlive its peer. */
  get closed (): Promise<never> { return this.end.promise }

  private async run (): Promise<void> {
    try {
      for (;;) {
        const message = await this.channel.receive()
        if (message === null) throw new PeerLostError(`${this.peer} closed the control stream`)
        if (this.onAsync(message)) continue
        const i = this.waiters.findIndex((w) => w.types.includes(message.type))
        if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(message)
        else this.queue.push(message)
      }
    } catch (err) {
      this.ended = err as Error
      this.end.reject(err)
      for (const w of this.waiters.splice(0)) w.reject(err)
    }
  }

  async next (types: string[], signal: AbortSignal): Promise<{ type: string } & Record<string, unknown>> {
    // A cancel from the other end aborts the migration and then ends the stream: its reason, not
    // "closed the control stream", is what the record must say.
    if (signal.aborted) throw signal.reason
    const i = this.queue.findIndex((m) => types.includes(m.type))
    if (i >= 0) return this.queue.splice(i, 1)[0] as { type: string } & Record<string, unknown>
    if (this.ended !== null) throw this.ended
    return await new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const k = this.waiters.indexOf(waiter)
        if (k >= 0) this.waiters.splice(k, 1)
        reject(signal.reason)
      }
      const waiter = {
        types,
        resolve: (m: { type: string } & Record<string, unknown>) => { signal.removeEventListener('abort', onAbort); resolve(m) },
        reject: (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e) }
      }
      this.waiters.push(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}

export function createMigrationEngine (init: MigrationEngineInit): MigrationEngine {
  return new MigrationEngine(init)
}

export class MigrationEngine {
  readonly protocol: string
  private db: MigrationDb | undefined
  private readonly contexts = new Map<string, Context>()
  private readonly shaper: FairShaper
  private readonly serveCounter = new WireCounter()
  private running = false
  /** Image rebuilds run one at a time: concurrent migrations of VMs on the same images import them once. */
  private materializing: Promise<unknown> = Promise.resolve()
  /**
   * NSS/SS at a target: the hashing of every local image now in progress, shared by the
   * migrations that ask meanwhile. Five at once each hashing everything starved this process's
   * event loop until libp2p's ping to the source timed out and the connection was aborted (every
   * control stream on it ended: "b closed the control stream").
   */
  private hashingLocal: Promise<{ chunks: string[], chunkSize: number }> | undefined

  constructor (private readonly init: MigrationEngineInit) {
    this.protocol = `/hgmig/${init.swarmId}/migrate/1.0.0`
    this.shaper = new FairShaper(init.linkBandwidth ?? 0)
  }

  /**
   * For a host that serves base chunks over another transport (the swarm's chunk exchange): waits
   * until this site's link shaper lets `bytes` go for `migration`, so those chunks share the link
   * fairly with every migration's own streams.
   */
  async shapeServed (migration: string, bytes: number, signal?: AbortSignal): Promise<void> {
    await this.shaper.take(migration, bytes, signal)
  }

  /** Whether `site` is the target of a migration running out of this site (it may fetch the VM's base chunks). */
  isTargetOf (migration: string, site: string): boolean {
    const ctx = this.contexts.get(`${migration}/source`)
    return ctx !== undefined && ctx.target === site && !ctx.abort.signal.aborted
  }

  /** The injected base-layer transfer, or the built-in one counting into this migration's wire figures. */
  private fetcherFor (ctx: Context): FetchMissingChunks {
    return this.init.fetchMissingChunks ?? directChunkFetch({
      open: async (site, signal, flow) => await this.openChannel(site, { migration: flow, channel: 'chunks', site: this.init.site }, signal),
      counter: ctx.counter,
      stagingDirectory: join(this.init.directory, 'staging'),
      onSourceFailed: (site, err) => { this.log(ctx, 'error', 'transfer', { source: site, error: `chunk source ${site} failed: ${err.message}; its share is retried once, then goes to other holders` }) }
    })
  }

  // ------------------------------------------------------------ lifecycle

  async start (): Promise<void> {
    if (this.running) return
    this.db = new MigrationDb(join(this.init.directory, 'migrations.sqlite'))
    await this.recover()
    await this.init.node.handle(this.protocol, (stream, connection) => {
      this.accept(stream, connection.remotePeer).catch((err: unknown) => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
    }, { maxInboundStreams: 256, maxOutboundStreams: 256 })
    this.running = true
  }

  /** Stops accepting streams and cancels what runs (VMs stay at their sources). */
  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    await this.init.node.unhandle(this.protocol)
    const waits = [...this.contexts.values()].map(async (ctx) => {
      ctx.abort.abort(new MigrationCancelledError('the agent is stopping'))
      await ctx.done.promise.catch(() => {})
    })
    await Promise.all(waits)
    this.db?.close()
    this.db = undefined
  }

  private openDb (): MigrationDb {
    if (this.db === undefined) throw new NotStartedError('the migration engine is not started')
    return this.db
  }

  /**
   * After a restart: nothing is running any more. Before `committed` the source's VM runs on
   * (resumed if the switch-over had paused it) and the target's partial VM is gone (the driver
   * drops half-received VMs); after it, the outcome belongs to the target and is left in doubt.
   */
  private async recover (): Promise<void> {
    const db = this.openDb()
    for (const m of db.list({ state: 'running' })) {
      const reached = PHASES.indexOf(m.phase)
      const committed = PHASES.indexOf('committed')
      if (m.role === 'source' && reached < committed) {
        if (m.phase === 'switchover') await this.init.driver.resume(m.vm).catch(() => {})
        this.finish(m.id, m.role, 'failed', `the agent restarted during ${m.phase}; the VM runs on at ${m.source}`)
      } else if (m.role === 'target' && reached < PHASES.indexOf('resumed')) {
        this.finish(m.id, m.role, reached >= committed ? 'in-doubt' : 'failed', `the agent restarted during ${m.phase}; the partial VM was dropped`)
      } else if (m.role === 'target') {
        this.finish(m.id, m.role, 'completed', null)
      } else {
        db.update(m.id, m.role, { state: 'in-doubt', error: `the agent restarted after ${m.phase}: the target decides; the VM stays paused here until resolved` })
      }
    }
  }

  // ------------------------------------------------------------ public API

  /** Plans a migration without starting it (and the inputs the plan came from). */
  async plan (vm: string, to: string, strategy: Strategy = 'h-gmig', options: { repository?: string, bandwidth?: number } = {}): Promise<MigrationPlan> {
    const description = await this.init.driver.describe(vm)
    return computePlan(this.planInput(description, this.init.site, to, strategy, options.repository, options.bandwidth, await this.init.replica()))
  }

  /** Candidate targets ranked by estimated time and bytes to send (placement hint). */
  async suggest (vm: string, candidates: string[], options: { bandwidth?: number } = {}): Promise<ReturnType<typeof rankTargets>> {
    const plans = await Promise.all(candidates.filter((c) => c !== this.init.site).map(async (c) => await this.plan(vm, c, 'h-gmig', options)))
    return rankTargets(plans)
  }

  private planInput (vm: VmDescription, source: string, target: string, strategy: Strategy, repository: string | undefined, bandwidth: number | undefined, replica: ReplicaView): PlanInput {
    return {
      strategy,
      vm: { id: vm.id, name: vm.name, memoryBytes: vm.memoryBytes, udBytes: vm.ud.allocatedBytes, os: vm.os.rootCid, we: vm.we.rootCid },
      source,
      target,
      repository,
      bandwidth: bandwidth !== undefined && bandwidth > 0 ? bandwidth : (this.init.estimateBandwidth ?? 125_000_000),
      replica
    }
  }

  /** Starts migrating a VM out of this site; resolves once the request is recorded (see wait()). */
  async migrate (request: MigrationRequest): Promise<MigrationInfo> {
    const db = this.openDb()
    const strategy = request.strategy ?? 'h-gmig'
    if (!STRATEGIES.includes(strategy)) throw new InvalidMigrationInputError(`unknown strategy "${strategy}"; one of ${STRATEGIES.join(', ')}`)
    if (typeof request.to !== 'string' || request.to === '') throw new InvalidMigrationInputError('a migration needs a target site (to)')
    if (request.to === this.init.site) throw new InvalidMigrationInputError(`${request.to} is this site; migrate to another one`)
    if (this.init.peerOf(request.to) === undefined) throw new InvalidMigrationInputError(`unknown or unreachable site "${request.to}"`)
    if (strategy === 'ss' && (request.repository === undefined || this.init.peerOf(request.repository) === undefined)) throw new InvalidMigrationInputError('SS needs a reachable repository site (repository)')
    const maxDowntimeMs = request.maxDowntimeMs ?? DEFAULT_DOWNTIME_MS
    if (!(maxDowntimeMs > 0)) throw new InvalidMigrationInputError(`maxDowntimeMs must be > 0 (got ${String(request.maxDowntimeMs)})`)
    const bandwidth = request.bandwidth ?? 0
    if (!(bandwidth >= 0)) throw new InvalidMigrationInputError(`bandwidth must be ≥ 0 bytes/s (got ${String(request.bandwidth)})`)
    const maxPasses = request.maxPasses ?? DEFAULT_MAX_PASSES
    if (!Number.isInteger(maxPasses) || maxPasses < 1) throw new InvalidMigrationInputError(`maxPasses must be a positive integer (got ${String(request.maxPasses)})`)
    const vm = await this.init.driver.describe(request.vm)
    const busy = [...this.contexts.values()].find((c) => db.get(c.id, c.role).vm === vm.id)
    if (busy !== undefined) throw new VmStateError(`VM ${vm.name} is already migrating (${busy.id})`)
    const id = randomBytes(8).toString('hex')
    const options = { maxDowntimeMs, bandwidth, maxPasses, repository: request.repository ?? null }
    db.insert({ id, role: 'source', vm: vm.id, vmName: vm.name, source: this.init.site, target: request.to, strategy, phase: 'request', state: 'running', options })
    const ctx = this.context(id, 'source', this.init.site, request.to, bandwidth)
    this.log(ctx, 'phase', 'request', { vm: vm.name, to: request.to, strategy, ...options })
    void this.runSource(ctx, vm, strategy, options).then((info) => { ctx.done.resolve(info) }, (err: unknown) => { ctx.done.reject(err) })
    return this.info(id, 'source')
  }

  /** Resolves when the migration ends here (completed, failed, cancelled, refused). */
  async wait (id: string): Promise<MigrationInfo> {
    const ctx = [...this.contexts.values()].find((c) => c.id === id)
    if (ctx !== undefined) return await ctx.done.promise
    const rows = this.openDb().find(id)
    if (rows.length === 0) throw new MigrationNotFoundError(`no migration ${id} at this site`)
    return rows[0] as MigrationInfo
  }

  /** Cancels a running migration (at either end). Before switch-over the VM stays at the source. */
  async cancel (id: string, reason = 'cancelled by the user'): Promise<MigrationInfo> {
    const ctx = [...this.contexts.values()].find((c) => c.id === id || c.id.startsWith(id))
    if (ctx === undefined) {
      const rows = this.openDb().find(id)
      if (rows.length === 0) throw new MigrationNotFoundError(`no migration ${id} at this site`)
      throw new VmStateError(`migration ${id} is not running (${(rows[0] as MigrationRecordRow).state})`)
    }
    const row = this.openDb().get(ctx.id, ctx.role)
    if (PHASES.indexOf(row.phase) >= PHASES.indexOf('committed')) throw new VmStateError(`migration ${ctx.id} is past the switch-over commit; it can no longer be cancelled`)
    if (ctx.verifiedSent === true) throw new VmStateError(`migration ${ctx.id} is verified here and the source is committing it; cancel it at the source (${ctx.source}) if it has not committed`)
    ctx.abort.abort(new MigrationCancelledError(reason))
    return await ctx.done.promise.catch(() => this.info(ctx.id, ctx.role))
  }

  /** Changes a running migration's bandwidth cap and downtime limit (QEMU: migrate-set-parameters). */
  setParameters (id: string, parameters: { bandwidth?: number, maxDowntimeMs?: number }): MigrationInfo {
    const ctx = this.contexts.get(`${id}/source`) ?? this.contexts.get(`${id}/target`)
    if (ctx === undefined) throw new MigrationNotFoundError(`no running migration ${id} at this site`)
    if (parameters.bandwidth !== undefined && !(parameters.bandwidth >= 0)) throw new InvalidMigrationInputError(`bandwidth must be ≥ 0 bytes/s (got ${parameters.bandwidth})`)
    if (parameters.maxDowntimeMs !== undefined && !(parameters.maxDowntimeMs > 0)) throw new InvalidMigrationInputError(`maxDowntimeMs must be > 0 (got ${parameters.maxDowntimeMs})`)
    if (parameters.bandwidth !== undefined) ctx.bucket.setRate(parameters.bandwidth)
    ctx.parameters = { ...ctx.parameters, ...parameters }
    // A held pre-copy gets the new bandwidth when the base is in.
    ctx.outgoing?.setParameters({ maxBandwidth: ctx.precopyHeld === true ? undefined : parameters.bandwidth, downtimeLimitMs: parameters.maxDowntimeMs })
    // What the driver now runs with (before the driver copies, the request's values stand).
    const applied = ctx.outgoing?.parameters === undefined ? null : { ...ctx.outgoing.parameters, ...(ctx.precopyHeld === true && parameters.bandwidth !== undefined ? { maxBandwidth: parameters.bandwidth } : {}) }
    this.openDb().update(ctx.id, ctx.role, { result: { parameters: applied ?? parameters } })
    this.log(ctx, 'info', null, { parameters, applied })
    return this.info(ctx.id, ctx.role)
  }

  get (id: string): MigrationInfo[] {
    return this.openDb().find(id).map((row) => this.withProgress(row))
  }

  list (): MigrationInfo[] {
    return this.openDb().list().map((row) => this.withProgress(row))
  }

  logEntries (query: LogQuery = {}): LogEntry[] { return this.openDb().entries(query) }

  exportLog (format: ExportFormat, query: LogQuery = {}): string { return this.openDb().export(format, query) }
  /** The same, a page at a time (for an export of a long history). */
  exportLogChunks (format: ExportFormat, query: LogQuery = {}): Iterable<string> { return this.openDb().exportChunks(format, query) }
  /** Entries the log holds for a query now (an export's progress total). */
  countLog (query: LogQuery = {}): number { return this.openDb().count(query) }

  /** Bytes this site's link shaper granted per migration (fair sharing). */
  linkGrants (): Map<string, number> { return this.shaper.grants() }

  // ------------------------------------------------------------ internals

  private context (id: string, role: MigrationRole, source: string, target: string, bandwidth: number): Context {
    const ctx: Context = {
      id, role, source, target, abort: new AbortController(), counter: new WireCounter(), bucket: new TokenBucket(bandwidth), done: deferred<MigrationInfo>(),
      passes: 0, baseBytes: 0, baseTotal: 0, sources: [], startedAt: performance.now()
    }
    ctx.done.promise.catch(() => {})
    // Every stream, wait and shaper grant of the migration listens on its signal: a known handful, not a leak.
    setMaxListeners(64, ctx.abort.signal)
    this.contexts.set(`${id}/${role}`, ctx)
    return ctx
  }

  private withProgress (row: MigrationRecordRow): MigrationInfo {
    const ctx = this.contexts.get(`${row.id}/${row.role}`)
    if (ctx === undefined) return row
    return { ...row, progress: { wire: ctx.counter.toJSON(), passes: ctx.passes, baseBytes: ctx.baseBytes, baseTotal: ctx.baseTotal, sources: ctx.sources } }
  }

  private info (id: string, role: MigrationRole): MigrationInfo {
    return this.withProgress(this.openDb().get(id, role))
  }

  private log (ctx: { id: string }, kind: LogKind, phase: MigrationPhase | null, data: Record<string, unknown>): void {
    if (this.db === undefined) return
    const entry = this.db.log(ctx.id, kind, phase, data)
    this.init.onEvent?.({ type: 'migration:log', detail: entry })
  }

  private phase (ctx: Context, phase: MigrationPhase, data: Record<string, unknown> = {}): void {
    if (ctx.abort.signal.aborted) throw ctx.abort.signal.reason
    const entry = this.openDb().enterPhase(ctx.id, ctx.role, phase, data)
    this.init.onEvent?.({ type: 'migration:log', detail: entry })
    this.init.onEvent?.({ type: 'migration:state', detail: this.info(ctx.id, ctx.role) })
  }

  /** An entry taken while the VM was paused, logged now that it is not (if it still waits). */
  private logPending (ctx: Context, phase: MigrationPhase, entry: Record<string, unknown> | undefined): void {
    if (entry !== undefined) this.log(ctx, 'info', phase, entry)
  }

  private finish (id: string, role: MigrationRole, state: MigrationState, error: string | null, result: Record<string, unknown> = {}): MigrationInfo {
    const db = this.openDb()
    db.update(id, role, { state, error, result })
    if (error !== null) db.log(id, state === 'completed' ? 'info' : 'error', db.get(id, role).phase, { state, error })
    const info = this.info(id, role)
    this.init.onEvent?.({ type: 'migration:state', detail: info })
    return info
  }

  private shapeFor (ctx: { id: string, bucket?: TokenBucket, delivery?: DeliveryWindow }): (bytes: number, signal?: AbortSignal) => Promise<void> {
    return async (bytes, signal) => {
      await ctx.delivery?.admit(bytes, signal)
      await ctx.bucket?.take(bytes, signal)
      await this.shaper.take(ctx.id, bytes, signal)
    }
  }

  private async openChannel (site: string, header: ChannelHeader, signal: AbortSignal): Promise<Stream> {
    const peer = this.init.peerOf(site)
    if (peer === undefined) throw new PeerLostError(`no address for site ${site}`)
    let stream: Stream
    try {
      stream = await this.init.node.dialProtocol(peer, this.protocol, { signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]), maxOutboundStreams: 256 })
    } catch (err) {
      // A cancel while dialling is a cancel, not a lost peer (the record must say cancelled).
      if (signal.aborted) throw signal.reason
      throw new PeerLostError(`cannot reach ${site}: ${errorMessage(err)}`)
    }
    await writeHeader(stream, header)
    return stream
  }

  private async open (ctx: Context, channel: Channel, site: string): Promise<Stream> {
    return await this.openChannel(site, { migration: ctx.id, channel, site: this.init.site }, ctx.abort.signal)
  }

  /** Inbound stream: who is asking, for which migration, on which channel. */
  private async accept (stream: Stream, peer: PeerId): Promise<void> {
    const site = this.init.siteOf(peer)
    if (site === undefined) throw new ProtocolError(`peer ${peer.toString()} is not a site of this swarm`)
    const header = await readHeader(stream)
    if (header.site !== site) throw new ProtocolError(`peer ${peer.toString()} is ${site}, not ${header.site}`)
    if (header.channel === 'chunks') {
      // Shaped per requesting migration (the header names its plan), fairly with this site's own migrations.
      await serveChunks(new ControlChannel(stream, this.serveCounter, `chunks stream to ${site}`, 'chunks'), (cid) => {
        return this.init.store.blockstore().has(cid) ? this.init.store.readBlock(cid) : undefined
      }, async (bytes) => { await this.shaper.take(header.migration, bytes) })
      return
    }
    if (header.channel === 'control') {
      await this.acceptControl(new ControlChannel(stream, new WireCounter()), site, header)
      return
    }
    const ctx = this.contexts.get(`${header.migration}/target`)
    if (ctx === undefined || ctx.source !== site) throw new ProtocolError(`no incoming migration ${header.migration} from ${site}`)
    const incoming = await ctx.incomingReady?.promise
    if (incoming === undefined) throw new ProtocolError(`migration ${header.migration} is not ready for its ${header.channel} stream`)
    const channel = byteChannel(stream, header.channel, ctx.counter, this.shapeFor(ctx), ctx.onDriverRead)
    if (header.channel === 'disk') incoming.receiveDisk(channel)
    else incoming.receiveMemory(channel)
  }

  private async acceptControl (control: ControlChannel, site: string, header: ChannelHeader): Promise<void> {
    // Generous: a target busy hashing (NSS/SS) for several concurrent migrations reads late.
    const first = await control.receive(AbortSignal.timeout(120_000))
    if (first === null) return
    if (first.type === 'outcome') {
      // The other end lost the control stream around the commit and asks how it ended here.
      const rows = this.openDb().find(header.migration).filter((r) => r.id === header.migration && (r.source === site || r.target === site))
      const row = rows.find((r) => r.role === (r.source === site ? 'target' : 'source'))
      await control.send({ type: 'outcome', phase: row?.phase ?? null, state: row?.state ?? null })
      await control.close()
      return
    }
    if (first.type !== 'request') throw new ProtocolError(`expected a migration request, got ${first.type}`)
    await this.runTarget(control, site, header.migration, first)
  }

  // ------------------------------------------------------------ source side

  private async runSource (ctx: Context, vm: VmDescription, strategy: Strategy, options: { maxDowntimeMs: number, bandwidth: number, maxPasses: number, repository: string | null }): Promise<MigrationInfo> {
    const db = this.openDb()
    const signal = ctx.abort.signal
    let pump: ControlPump | undefined
    /** The switch-over's figures, taken in the pause and logged after it. */
    let switchoverEntry: Record<string, unknown> | undefined
    try {
      this.phase(ctx, 'plan')
      const control = new ControlChannel(await this.open(ctx, 'control', ctx.target), ctx.counter, `control stream to ${ctx.target}`)
      pump = new ControlPump(control, (m) => this.onSourceAsync(ctx, m), ctx.target)
      const controlClosed = pump.closed
      // The memory in use: what the first pass sends. The target balances its base sources by
      // what this site's link carries meanwhile: this VM's UD and memory, and those of the other
      // migrations leaving here now (five concurrent VMs on one image: their base is fetched once,
      // balanced for one VM's bytes, while this link carried five VMs' UD and memory).
      const memoryUsedBytes = (await this.init.driver.stats(vm.id).catch(() => undefined))?.memoryUsedBytes
      ctx.sends = { ud: vm.ud.allocatedBytes, memory: memoryUsedBytes ?? vm.memoryBytes }
      const sourceSends = { ...ctx.sends }
      for (const other of this.contexts.values()) {
        if (other === ctx || other.role !== 'source') continue
        // One that has not described itself yet is taken to be like this one.
        sourceSends.ud += (other.sends ?? ctx.sends).ud
        sourceSends.memory += (other.sends ?? ctx.sends).memory
      }
      const request = { type: 'request', vm, strategy, source: ctx.source, target: ctx.target, repository: options.repository, bandwidth: options.bandwidth, maxDowntimeMs: options.maxDowntimeMs, memoryUsedBytes, sourceSends, delivery: true }
      let plan: MigrationPlan
      if (strategy === 'h-gmig') {
        const replica = await this.init.replica()
        plan = computePlan(this.planInput(vm, ctx.source, ctx.target, strategy, undefined, options.bandwidth, replica))
        await control.send({ ...request, summary: summarizePlan(plan, replica) }, signal)
      } else {
        // NSS and SS share no state: hash both sides' images now and exchange the lists.
        await control.send(request, signal)
        const started = performance.now()
        const manifests = await this.hashVmImages(vm, signal)
        const answer = await pump.next(['hashes', 'refuse'], signal)
        if (answer.type === 'refuse') throw new MigrationRefusedError(String(answer.reason))
        const replica = hashExchangeReplica(ctx.target, manifests, answer.chunks as string[], answer.chunkSize as number)
        plan = computePlan(this.planInput(vm, ctx.source, ctx.target, strategy, options.repository ?? undefined, options.bandwidth, replica))
        this.log(ctx, 'info', 'plan', { dedupMs: performance.now() - started, targetChunks: (answer.chunks as string[]).length })
        await control.send({ type: 'plan', manifests, summary: summarizePlan(plan, replica) }, signal)
      }
      db.update(ctx.id, 'source', { planHash: plan.hash, result: { plan: planFigures(plan) } })
      this.log(ctx, 'info', 'plan', { hash: plan.hash, ...planFigures(plan) })

      this.phase(ctx, 'agree', { planHash: plan.hash })
      const verdict = await pump.next(['agree', 'refuse'], signal)
      if (verdict.type === 'refuse') throw new MigrationRefusedError(String(verdict.reason))
      // A target that reports what its driver read bounds what is in flight (an older one does not).
      if (verdict.delivery === true) {
        const window = new DeliveryWindow()
        ctx.delivery = window
        // A write waiting for room must not outlive the migration, whatever signal its stream passed.
        ctx.abort.signal.addEventListener('abort', () => { window.fail(ctx.abort.signal.reason) }, { once: true })
      }

      this.phase(ctx, 'transfer')
      const diskReady = deferred<void>()
      const converged = deferred<void>()
      const streamFailed = deferred<never>()
      streamFailed.promise.catch(() => {})
      const outgoing = await this.init.driver.migrateOut(vm.id, {
        // As changed meanwhile (setParameters before the driver copies), else as requested.
        parameters: { maxBandwidth: ctx.parameters?.bandwidth ?? options.bandwidth, downtimeLimitMs: ctx.parameters?.maxDowntimeMs ?? options.maxDowntimeMs },
        onEvent: (event) => { this.onOutgoingEvent(ctx, event, options.maxPasses, diskReady, converged, streamFailed) }
      })
      ctx.outgoing = outgoing
      // Before the commit every wait also ends with the control stream: a target that died leaves
      // the delivery window's writers waiting for reports that never come.
      const failOn = async <T>(p: Promise<T>): Promise<T> => await raceAbort(Promise.race([p, streamFailed.promise, controlClosed]), signal)
      const baseDone = pump.next(['base-done'], signal)
      baseDone.catch(() => {})
      baseDone.then(() => { this.releasePrecopy(ctx, options.bandwidth) }, () => {})
      // The paper (4.2): SS and H-GMIG send the base layers and the user data in parallel; NSS does
      // not — its source sends the images, then the user data, then memory.
      if (strategy === 'nss') await failOn(baseDone)
      outgoing.startDisk(byteChannel(await this.open(ctx, 'disk', ctx.target), 'disk', ctx.counter, this.shapeFor(ctx)))
      await failOn(diskReady.promise)

      // Memory pre-copy starts once the user data's snapshot is across (paper 3.3.2, step 3), while
      // base chunks may still be arriving from other holders; the switch-over waits for both. A
      // converged pre-copy re-passes the few pages dirtied meanwhile, so waiting keeps downtime low.
      await failOn(this.memoryStart(ctx, vm, baseDone, signal))
      this.phase(ctx, 'precopy')
      outgoing.startMemory(byteChannel(await this.open(ctx, 'memory', ctx.target), 'memory', ctx.counter, this.shapeFor(ctx)))
      await failOn(Promise.all([converged.promise, baseDone]))

      this.phase(ctx, 'switchover')
      const pauseStarted = performance.now()
      const result = await failOn(outgoing.switchOver({ signal }))
      const pausedAt = result.pausedAt
      await control.send({ type: 'switchover', memorySha256: result.memorySha256, diskSha256: result.diskSha256 }, signal)
      // Logged once the VM runs again, here or at the target: each log entry is a flush to disk,
      // and the target's flushes for the commit queue behind it on a disk they share.
      switchoverEntry = { finalPages: result.finalPages, finalBlocks: result.finalBlocks, finalBytes: result.finalBytes, memorySha256: result.memorySha256, diskSha256: result.diskSha256, pauseToSentMs: performance.now() - pauseStarted, ...(ctx.delivery === undefined ? {} : { delivery: { maxInFlight: ctx.delivery.maxInFlight, window: ctx.delivery.window } }) }
      const verified = await pump.next(['verified', 'failed'], signal)
      if (verified.type === 'failed') throw new VerificationError(String(verified.reason))

      // The commit point: from here on the VM belongs to the target.
      this.phase(ctx, 'committed')
      let resumedAt: number
      try {
        await control.send({ type: 'commit' })
        await pump.next(['resumed'], AbortSignal.timeout(60_000))
      } catch (err) {
        this.log(ctx, 'error', 'committed', { error: `lost the target after the commit: ${errorMessage(err)}; asking it for the outcome` })
        await this.awaitOutcome(ctx, ctx.target, 'resumed')
      } finally {
        resumedAt = performance.now()
      }
      const downtimeMs = resumedAt - pauseStarted
      this.logPending(ctx, 'switchover', switchoverEntry)
      switchoverEntry = undefined
      this.phase(ctx, 'resumed', { downtimeMs })
      await outgoing.release()
      this.phase(ctx, 'released')
      const totalMs = performance.now() - ctx.startedAt
      const wire = ctx.counter.toJSON()
      await control.send({ type: 'done', downtimeMs, totalMs }).catch(() => {})
      await control.close()
      this.phase(ctx, 'record')
      const reportedChunkBytes = Number((await baseDone).chunkWireBytes)
      const chunkWireBytes = Number.isFinite(reportedChunkBytes) && reportedChunkBytes >= 0 ? reportedChunkBytes : 0
      const summary: MigrationSummary = {
        migration: ctx.id, vm: vm.id, vmName: vm.name, from: ctx.source, to: ctx.target, strategy, planHash: plan.hash,
        bytesOnWire: ctx.counter.total() + chunkWireBytes, bytesSaved: plan.bytesSaved, totalMs, downtimeMs
      }
      this.init.record?.(summary)
      // Per-source figures of the base layers (relayed by the target) outlive the run in its result.
      return this.finish(ctx.id, 'source', 'completed', null, { wire, bytesOnWire: summary.bytesOnWire, totalMs, downtimeMs, passes: ctx.passes, pausedAt, sources: ctx.sources })
    } catch (thrown) {
      // An abort (a cancel at either end, the agent stopping) is the cause; what failed after it is its echo.
      const err: unknown = signal.aborted ? signal.reason : thrown
      // Writers waiting for room in the delivery window end with the migration.
      ctx.delivery?.fail(err)
      this.logPending(ctx, 'switchover', switchoverEntry)
      const phase = db.get(ctx.id, 'source').phase
      if (PHASES.indexOf(phase) >= PHASES.indexOf('committed') && !(thrown instanceof TargetDroppedError)) {
        return this.finish(ctx.id, 'source', 'in-doubt', `after the commit: ${errorMessage(err)}`)
      }
      const reason = errorMessage(err)
      // Before the commit (or after it, where the target dropped its copy before its own): the VM
      // runs on here, as it was; the target drops its partial copy.
      await ctx.outgoing?.cancel(reason).catch(() => {})
      // Closed, not reset: the reason must reach the target before the stream ends.
      await pump?.channel.send({ type: 'cancel', reason }).catch(() => {})
      await pump?.channel.close()
      const state: MigrationState = err instanceof MigrationRefusedError ? 'refused' : err instanceof MigrationCancelledError ? 'cancelled' : 'failed'
      return this.finish(ctx.id, 'source', state, `${phase}: ${reason}; VM ${vm.name} runs on at ${ctx.source}`, { wire: ctx.counter.toJSON(), sources: ctx.sources })
    } finally {
      this.contexts.delete(`${ctx.id}/source`)
    }
  }

  private onSourceAsync (ctx: Context, message: { type: string } & Record<string, unknown>): boolean {
    if (message.type === 'base-progress') {
      ctx.baseBytes = Number(message.bytes)
      ctx.baseTotal = Number(message.totalBytes)
      const eta = message.etaSeconds
      ctx.targetReadiness = { etaSeconds: typeof eta === 'number' && Number.isFinite(eta) ? eta : null, readyBytes: Number(message.readyBytes ?? 0), at: performance.now() }
      if (Array.isArray(message.sources)) ctx.sources = message.sources as SourceFigures[]
      return true
    }
    if (message.type === 'delivered') {
      ctx.delivery?.report(Number(message.bytes))
      return true
    }
    if (message.type === 'cancel') {
      ctx.abort.abort(message.state === 'failed'
        ? new MigrationError(`the target failed: ${String(message.reason)}`)
        : new MigrationCancelledError(`the target cancelled: ${String(message.reason)}`))
      return true
    }
    return false
  }

  private onOutgoingEvent (ctx: Context, event: OutgoingEvent, maxPasses: number, diskReady: Deferred<void>, converged: Deferred<void>, failed: Deferred<never>): void {
    switch (event.type) {
      case 'disk-round':
        this.log(ctx, 'disk-round', 'transfer', { ...event.detail })
        if (event.detail.round === 0 && event.detail.durationMs > 0) ctx.udRate = event.detail.bytesSent / event.detail.durationMs * 1000
        break
      case 'disk-ready':
        diskReady.resolve()
        break
      case 'memory-pass':
        ctx.passes = event.detail.pass
        ctx.lastPass = event.detail
        this.log(ctx, 'pass', 'precopy', { ...event.detail })
        if (event.detail.pass >= maxPasses) ctx.outgoing?.forceConvergence()
        // With the base in, passes that no longer shrink the dirty set only repeat the working
        // set (the VM dirties it faster than the link sends it): stop-and-copy now, as Xen does.
        if (ctx.baseIn === true && ctx.lastRemaining !== undefined && event.detail.remainingPages >= ctx.lastRemaining * NO_PROGRESS_SHARE) {
          ctx.passesWithoutProgress = (ctx.passesWithoutProgress ?? 0) + 1
          if (ctx.passesWithoutProgress === NO_PROGRESS_PASSES) {
            ctx.outgoing?.forceConvergence()
            this.log(ctx, 'info', 'precopy', { forced: true, reason: `${NO_PROGRESS_PASSES} passes left ≥ ${NO_PROGRESS_SHARE * 100} % of the pages the pass before left`, pass: event.detail.pass })
          }
        } else {
          ctx.passesWithoutProgress = 0
        }
        // Auto-converge (QEMU's, with its steps): with the base in, a pass that leaves more than
        // the downtime limit allows throttles the guest 20 %, then 10 % more per such pass (at most
        // 99 %), so its dirty rate falls below what the link sends. While the base still arrives
        // the copy is held instead: the base, not the guest, is what slows memory then.
        if (ctx.baseIn === true && event.detail.pass >= 2 && event.detail.expectedDowntimeMs > (ctx.outgoing?.parameters.downtimeLimitMs ?? Number.POSITIVE_INFINITY)) {
          this.throttleStep(ctx, event.detail.pass, event.detail)
        }
        ctx.lastRemaining = event.detail.remainingPages
        // Not converged with the base still arriving: further passes would only repeat the working set.
        if (event.detail.expectedDowntimeMs > (ctx.outgoing?.parameters.downtimeLimitMs ?? Number.POSITIVE_INFINITY) && ctx.baseIn !== true && ctx.precopyHeld !== true && event.detail.pass < maxPasses) {
          ctx.precopyHeld = true
          ctx.outgoing?.setParameters({ maxBandwidth: HELD_PRECOPY_RATE })
          this.log(ctx, 'info', 'precopy', { held: true, pass: event.detail.pass, rate: HELD_PRECOPY_RATE })
        }
        break
      case 'converged':
        this.log(ctx, 'info', 'precopy', { converged: true, pass: event.detail.pass, expectedDowntimeMs: event.detail.expectedDowntimeMs, forced: event.detail.pass >= maxPasses })
        converged.resolve()
        break
      case 'failed':
        failed.reject(event.detail.error)
        break
    }
  }

  /**
   * Auto-converge's next step: the guest throttled 20 %, then 10 % more each time (at most 99 %),
   * or at once as far as the pass figures say it takes (`DIRTY_SHARE_OF_RATE`).
   */
  private throttleStep (ctx: Context, pass: number, stats?: Pick<MemoryPassStats, 'dirtyRate' | 'transferRate'>): void {
    const step = ctx.throttle === undefined ? INITIAL_THROTTLE : ctx.throttle + THROTTLE_STEP
    let needed = 0
    if (stats !== undefined && stats.dirtyRate > 0 && Number.isFinite(stats.transferRate) && stats.transferRate > 0) {
      const unthrottled = stats.dirtyRate * PAGE_BYTES / (1 - (ctx.throttle ?? 0))
      needed = 1 - DIRTY_SHARE_OF_RATE * stats.transferRate / unthrottled
    }
    ctx.throttle = Math.min(MAX_THROTTLE, Math.max(step, needed))
    ctx.outgoing?.setParameters({ cpuThrottle: ctx.throttle })
    this.log(ctx, 'info', 'precopy', { throttle: ctx.throttle, pass, ...(needed > step ? { fromPass: true } : {}) })
  }

  /**
   * The base is in at the target: memory gets its requested rate back (if it was held). A held
   * copy was held because its pass had not converged: that pass counts as one that left too much
   * with the base in, so auto-converge takes its first step now, not a whole pass later (a
   * COMPILATION guest's held pass then took another 0.8 s at 100 Mbit/s before the first step).
   */
  private releasePrecopy (ctx: Context, requested: number): void {
    // A migration that ended meanwhile must not throttle the VM that runs on here.
    if (ctx.abort.signal.aborted || !this.contexts.has(`${ctx.id}/source`)) return
    ctx.baseIn = true
    if (ctx.precopyHeld !== true) return
    ctx.precopyHeld = false
    ctx.outgoing?.setParameters({ maxBandwidth: ctx.parameters?.bandwidth ?? requested })
    this.log(ctx, 'info', 'precopy', { held: false, rate: ctx.parameters?.bandwidth ?? requested })
    this.throttleStep(ctx, ctx.passes, ctx.lastPass)
  }

  /**
   * Waits until pre-copy should start: its first pass (the memory in use, at the rate the UD
   * snapshot measured on this link) should end about when the target has its base layers in its
   * store, by the target's own report (the bytes in its store and the rate they got there: chunk
   * progress alone runs ahead of an import that follows the fetch). Started earlier, memory
   * converges and waits while the VM dirties its working set again; later, the switch-over waits
   * for memory. Without a report (another migration is fetching the same images), it waits for
   * the base.
   */
  private async memoryStart (ctx: Context, vm: VmDescription, baseDone: Promise<unknown>, signal: AbortSignal): Promise<void> {
    let done = false
    baseDone.then(() => { done = true }, () => { done = true })
    const used = (await this.init.driver.stats(vm.id).catch(() => undefined))?.memoryUsedBytes ?? vm.memoryBytes
    const rate = ctx.udRate ?? 0
    const passSeconds = rate > 0 ? used / rate : 0
    let waited = false
    let remaining = Number.NaN
    while (!done && !signal.aborted) {
      const ready = ctx.targetReadiness
      if (ready !== undefined && ready.etaSeconds !== null) {
        remaining = ready.etaSeconds - (performance.now() - ready.at) / 1000
        // A margin for the estimate's noise: memory a little early costs a few pages, late costs time.
        if (remaining <= passSeconds * FIRST_PASS_MARGIN + 0.5) break
      }
      waited = true
      await Promise.race([sleep(50, signal), baseDone.catch(() => {})])
    }
    if (waited) this.log(ctx, 'info', 'transfer', { memoryStart: true, baseInBeforeStart: done, baseBytes: ctx.baseBytes, baseTotal: ctx.baseTotal, targetReadyBytes: ctx.targetReadiness?.readyBytes ?? 0, targetEtaSeconds: Number.isNaN(remaining) ? null : remaining, firstPassSeconds: passSeconds })
  }

  private async hashVmImages (vm: VmDescription, signal: AbortSignal): Promise<ImageManifestData[]> {
    const out: ImageManifestData[] = []
    const images = await this.init.store.list()
    for (const layer of ['os', 'we'] as const) {
      const image = images.find((i) => i.rootCid === vm[layer].rootCid)
      if (image === undefined) throw new MigrationError(`the ${layer.toUpperCase()} image ${vm[layer].rootCid} of VM ${vm.name} is not in this site's store`)
      out.push({ rootCid: image.rootCid, layer, size: image.size, chunkSize: image.chunkSize, chunks: await hashImageNow(this.init.store, image.id, image.chunkSize, signal) })
    }
    return out
  }

  /** Polls `site` for this migration's outcome until it reaches `phase` (or fails there). */
  private async awaitOutcome (ctx: Context, site: string, phase: MigrationPhase): Promise<void> {
    const deadline = Date.now() + (this.init.outcomeTimeoutMs ?? 300_000)
    for (;;) {
      try {
        const control = new ControlChannel(await this.openChannel(site, { migration: ctx.id, channel: 'control', site: this.init.site }, AbortSignal.timeout(10_000)), ctx.counter)
        await control.send({ type: 'outcome' })
        const answer = await control.receive(AbortSignal.timeout(10_000))
        await control.close()
        if (answer !== null && typeof answer.phase === 'string' && PHASES.indexOf(answer.phase as MigrationPhase) >= PHASES.indexOf(phase)) return
        if (answer !== null && (answer.state === 'failed' || answer.state === 'cancelled' || answer.state === 'refused')) {
          const message = `${site} reports the migration ${String(answer.state)} in ${String(answer.phase)}`
          // A target that ended before its commit has dropped its copy: the source's VM is the only one.
          const at = PHASES.indexOf(answer.phase as MigrationPhase)
          const dropped = ctx.role === 'source' && at >= 0 && at < PHASES.indexOf('committed')
          throw dropped ? new TargetDroppedError(`${message}: it dropped its copy before committing`) : new MigrationError(message)
        }
      } catch (err) {
        if (err instanceof MigrationError && !(err instanceof PeerLostError)) throw err
      }
      if (Date.now() > deadline) throw new PeerLostError(`${site} did not report the outcome in time`)
      await sleep(OUTCOME_POLL_MS)
    }
  }

  // ------------------------------------------------------------ target side

  private async runTarget (control: ControlChannel, site: string, id: string, request: Record<string, unknown>): Promise<void> {
    const db = this.openDb()
    const vm = request.vm as VmDescription
    const strategy = request.strategy as Strategy
    if (typeof vm?.id !== 'string' || !STRATEGIES.includes(strategy) || request.target !== this.init.site || request.source !== site) {
      await control.send({ type: 'refuse', reason: `malformed request (target ${String(request.target)}, source ${String(request.source)})` })
      await control.close()
      return
    }
    if (this.contexts.has(`${id}/target`) || db.find(id).some((r) => r.id === id && r.role === 'target')) {
      await control.send({ type: 'refuse', reason: `migration ${id} is already known here` })
      await control.close()
      return
    }
    const options = { maxDowntimeMs: request.maxDowntimeMs, bandwidth: request.bandwidth, repository: request.repository ?? null }
    db.insert({ id, role: 'target', vm: vm.id, vmName: vm.name, source: site, target: this.init.site, strategy, phase: 'request', state: 'running', options })
    const ctx = this.context(id, 'target', site, this.init.site, 0)
    // The target's record counts its control bytes too (an NSS/SS hash list is most of them).
    control.countInto(ctx.counter)
    ctx.incomingReady = deferred<IncomingMigration>()
    ctx.incomingReady.promise.catch(() => {})
    const signal = ctx.abort.signal
    const pump = new ControlPump(control, (m) => {
      if (m.type === 'cancel') {
        ctx.abort.abort(new MigrationCancelledError(`the source cancelled: ${String(m.reason)}`))
        return true
      }
      return false
    }, site)
    this.log(ctx, 'phase', 'request', { vm: vm.name, from: site, strategy })
    let chunkSource: ChunkSource | undefined
    try {
      this.phase(ctx, 'plan')
      let replica: ReplicaView
      let sourceSummary: PlanSummary
      if (strategy === 'h-gmig') {
        replica = await this.init.replica()
        sourceSummary = request.summary as PlanSummary
      } else {
        const started = performance.now()
        const { chunks, chunkSize } = await this.sharedLocalHashes(signal)
        await control.send({ type: 'hashes', chunks, chunkSize }, signal)
        this.log(ctx, 'info', 'plan', { dedupMs: performance.now() - started, chunks: chunks.length })
        const planMessage = await pump.next(['plan'], signal)
        replica = hashExchangeReplica(this.init.site, planMessage.manifests as ImageManifestData[], chunks, chunkSize)
        sourceSummary = planMessage.summary as PlanSummary
      }
      let plan: MigrationPlan
      try {
        plan = computePlan(this.planInput(vm, site, this.init.site, strategy, (request.repository as string | null) ?? undefined, request.bandwidth as number | undefined, replica))
      } catch (err) {
        throw new MigrationRefusedError(`cannot plan here: ${errorMessage(err)}`)
      }
      db.update(id, 'target', { planHash: plan.hash, result: { plan: planFigures(plan) } })

      this.phase(ctx, 'agree', { planHash: plan.hash })
      if (sourceSummary?.hash !== plan.hash) {
        const mismatch = new PlanMismatchError(String(sourceSummary?.hash), plan.hash, sourceSummary === undefined ? [] : planDifferences(sourceSummary, summarizePlan(plan, replica)))
        await control.send({ type: 'refuse', reason: mismatch.message }, signal)
        throw mismatch
      }
      let incoming: IncomingMigration
      try {
        incoming = await this.init.driver.migrateIn(vm)
      } catch (err) {
        await control.send({ type: 'refuse', reason: errorMessage(err) }, signal)
        throw err
      }
      ctx.incoming = incoming
      ctx.incomingReady.resolve(incoming)
      incoming.failed?.catch((err: unknown) => {
        // A source's cancel breaks these streams just before its reason comes on the control
        // stream: that reason, if it comes, is the one to record.
        setTimeout(() => { if (!signal.aborted && this.contexts.has(`${id}/target`)) ctx.abort.abort(err) }, STREAM_FAILURE_GRACE_MS).unref()
      })
      // What the driver has read of the disk and memory streams, reported every step: the source
      // keeps what is in flight within its delivery window (if it asked: an older source would not know the message).
      const delivery = request.delivery === true
      if (delivery) {
        let read = 0
        let reported = 0
        ctx.onDriverRead = (bytes) => {
          read += bytes
          if (read - reported < DELIVERY_REPORT_STEP) return
          reported = read
          control.send({ type: 'delivered', bytes: read }).catch(() => {})
        }
      }
      await control.send({ type: 'agree', planHash: plan.hash, delivery }, signal)

      this.phase(ctx, 'transfer', { missingChunks: plan.missing.length, bytes: plan.bytesToSend.base })
      const started = performance.now()
      ctx.baseTotal = plan.bytesToSend.base
      let lastReport = 0
      let lastReady = 0
      let lastLogged = Number.NEGATIVE_INFINITY
      let loggedComplete = false
      const manifests = replica.manifests.filter((m) => m.rootCid === vm.os.rootCid || m.rootCid === vm.we.rootCid)
      const heldBefore = new Set((await this.init.store.list()).map((image) => image.rootCid))
      chunkSource = await this.fetcherFor(ctx)(plan, signal, (progress: FetchProgress) => {
        ctx.baseBytes = progress.bytes
        if (progress.sources !== undefined) ctx.sources = progress.sources
        // Logged at most every 500 ms (and the last one): each entry is a synchronous, fsynced
        // write on this loop, which also takes in the base (one per exchange report cost ~40 ms
        // of a migration's event loop at the target).
        const complete = progress.totalBytes > 0 && progress.bytes >= progress.totalBytes
        if (complete ? !loggedComplete : performance.now() - lastLogged >= BATCH_LOG_INTERVAL_MS) {
          lastLogged = performance.now()
          loggedComplete ||= complete
          this.log(ctx, 'batch', 'transfer', { ...progress })
        }
        // Readiness as this site sees it: the seconds until the last base byte is verified here, at
        // the rate verified bytes arrived since the fetch began. Not the bytes in the store: the
        // store takes them in batches (up to 16 MiB, one fsync each), so under load that count
        // stood still for seconds and then jumped, and memory started only once the base was in.
        // What follows the last byte (its batch, the image's registration: 0.1-0.6 s) is the
        // source's margin.
        const ready = progress.storedBytes ?? progress.bytes
        const seconds = (performance.now() - started) / 1000
        const rate = seconds > 0 ? progress.bytes / seconds : 0
        const etaSeconds = rate > 0 ? Math.max(0, ctx.baseTotal - progress.bytes) / rate : null
        if (performance.now() - lastReport > 200 || progress.bytes === progress.totalBytes || ready !== lastReady) {
          lastReport = performance.now()
          lastReady = ready
          control.send({ type: 'base-progress', bytes: progress.bytes, totalBytes: progress.totalBytes, readyBytes: ready, readyRate: rate, etaSeconds, sources: ctx.sources }).catch(() => {})
        }
      }, { migration: id, vm, manifests, counter: ctx.counter, sourceSends: sourceSends(vm, request.memoryUsedBytes, request.sourceSends), onImage: (figures) => { this.log(ctx, 'info', 'transfer', { image: figures }) } })
      const rebuild = this.materializing.then(async () => await materializeBaseImages(this.init.store, vm, manifests, chunkSource as ChunkSource, signal))
      this.materializing = rebuild.catch(() => {})
      await rebuild
      // Whoever imported them (the exchange, or the rebuild here), these base images are new at this site.
      const imported = [vm.os.rootCid, vm.we.rootCid].filter((root) => !heldBefore.has(root))
      await chunkSource.close()
      chunkSource = undefined
      const baseMs = performance.now() - started
      this.log(ctx, 'info', 'transfer', { baseDone: true, imported, baseMs, bytes: ctx.baseBytes, sources: ctx.sources })
      this.init.onBaseImported?.(imported)
      // What the base layers took on the wire here (requests, blocks, a duplicate's second copy):
      // the source's record of the migration counts it with its own streams.
      const chunkWireBytes = ctx.counter.sent.chunks + ctx.counter.received.chunks
      await control.send({ type: 'base-done', bytes: ctx.baseBytes, baseMs, sources: ctx.sources, chunkWireBytes }, signal)

      const switchover = await pump.next(['switchover'], signal)
      // The VM is paused at the source: verify and answer first, write the phase with the commit
      // (one flush, not three, before the VM runs again; for a restart, switchover and transfer
      // mean the same here: the partial VM is dropped).
      let verifiedEntry: Record<string, unknown>
      try {
        const verifyStarted = performance.now()
        const sums = await incoming.verify({ memorySha256: String(switchover.memorySha256), diskSha256: String(switchover.diskSha256) }, { signal })
        ctx.verifiedSent = true
        await control.send({ type: 'verified', ...sums }, signal)
        verifiedEntry = { verified: true, ...sums, verifyMs: performance.now() - verifyStarted }
      } catch (err) {
        await control.send({ type: 'failed', reason: errorMessage(err) }).catch(() => {})
        if (this.openDb().get(id, 'target').phase !== 'switchover') this.openDb().enterPhase(id, 'target', 'switchover', {})
        throw err
      }
      try {
        await pump.next(['commit'], signal)
      } catch (err) {
        if (signal.aborted) throw err
        // Verified, and the source went quiet: only the source knows whether it committed.
        this.log(ctx, 'error', 'switchover', { error: `lost the source before its commit: ${errorMessage(err)}; asking it for the outcome` })
        await this.awaitOutcome(ctx, site, 'committed')
      }
      // One transaction: one flush while the VM waits, paused at the source.
      this.openDb().atomically(() => {
        this.phase(ctx, 'switchover')
        this.log(ctx, 'info', 'switchover', verifiedEntry)
        this.phase(ctx, 'committed')
      })
      const running = await incoming.resume()
      // The VM runs: the source's downtime ends with this message; the record follows.
      await control.send({ type: 'resumed' }).catch(() => {})
      this.phase(ctx, 'resumed', { vm: running.name })
      const done = await pump.next(['done'], AbortSignal.timeout(30_000)).catch(() => undefined)
      // Both ends close: a stream half-closed stays open (one per migration, up to the
      // connection's stream limit), and the source's pump would keep the released VM reachable.
      await control.close().catch(() => {})
      this.phase(ctx, 'released')
      ctx.done.resolve(this.finish(id, 'target', 'completed', null, { wire: ctx.counter.toJSON(), downtimeMs: done?.downtimeMs, totalMs: done?.totalMs }))
    } catch (thrown) {
      const err: unknown = signal.aborted ? signal.reason : thrown
      await chunkSource?.close().catch(() => {})
      const phase = db.get(id, 'target').phase
      const reason = errorMessage(err)
      if (PHASES.indexOf(phase) >= PHASES.indexOf('committed')) {
        ctx.done.resolve(this.finish(id, 'target', 'in-doubt', `after the commit: ${reason}`))
        return
      }
      await ctx.incoming?.abort(reason).catch(() => {})
      ctx.incomingReady.reject(err)
      const state: MigrationState = err instanceof PlanMismatchError || err instanceof MigrationRefusedError ? 'refused' : err instanceof MigrationCancelledError ? 'cancelled' : 'failed'
      // With this end's state: a failure here (a full disk) is a failure at the source too, not a cancel.
      if (!(err instanceof MigrationCancelledError && reason.startsWith('the source'))) await control.send({ type: 'cancel', reason, state }).catch(() => {})
      await control.close()
      ctx.done.resolve(this.finish(id, 'target', state, `${phase}: ${reason}; the partial VM was dropped`, { wire: ctx.counter.toJSON() }))
    } finally {
      this.contexts.delete(`${id}/target`)
    }
  }

  /** The local images' hash list, hashed now, or by a hashing already running for another migration. */
  private async sharedLocalHashes (signal: AbortSignal): Promise<{ chunks: string[], chunkSize: number }> {
    if (this.hashingLocal === undefined) {
      // Not tied to one migration's signal: another may be waiting for it.
      const hashing = this.hashLocalImages(AbortSignal.timeout(30 * 60_000))
      this.hashingLocal = hashing
      hashing.then(() => { this.hashingLocal = undefined }, () => { this.hashingLocal = undefined })
    }
    return await raceAbort(this.hashingLocal, signal)
  }

  /** NSS/SS at the target: hash every local image now (the deduplication the paper's baselines pay for). */
  private async hashLocalImages (signal: AbortSignal): Promise<{ chunks: string[], chunkSize: number }> {
    const images = await this.init.store.list()
    const chunks = new Set<string>()
    let chunkSize = 64 * 1024
    for (const image of images) {
      chunkSize = image.chunkSize
      for (const cid of await hashImageNow(this.init.store, image.id, image.chunkSize, signal)) chunks.add(cid)
    }
    return { chunks: [...chunks].sort(), chunkSize }
  }
}

/**
 * What a migration's source sends on its own link besides base chunks: as the source reports
 * (its migrations' UD layers and memory in use), else this VM's UD layer and memory in use, else
 * all of its memory.
 */
function sourceSends (vm: VmDescription, memoryUsedBytes: unknown, reported: unknown): { ud: number, memory: number } {
  const valid = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0
  const r = reported as { ud?: unknown, memory?: unknown } | undefined
  if (r !== null && typeof r === 'object' && valid(r.ud) && valid(r.memory)) return { ud: r.ud, memory: r.memory }
  const memory = valid(memoryUsedBytes) && memoryUsedBytes <= vm.memoryBytes ? memoryUsedBytes : vm.memoryBytes
  return { ud: vm.ud.allocatedBytes, memory }
}

/** The replica NSS and SS plan from: the VM's two manifests and the target's freshly hashed chunk list. */
function hashExchangeReplica (target: string, manifests: ImageManifestData[], targetChunks: string[], chunkSize: number): ReplicaView {
  const list: ImageManifestData = { rootCid: `hash-list:${target}`, layer: 'os', size: targetChunks.length * chunkSize, chunkSize, chunks: targetChunks }
  return { holdings: [{ site: target, rootCid: list.rootCid }], manifests: [...manifests, list] }
}

function planFigures (plan: MigrationPlan): Record<string, unknown> {
  return {
    hash: plan.hash,
    strategy: plan.strategy,
    similarity: plan.similarity,
    missingChunks: plan.missing.length,
    bytesToSend: plan.bytesToSend,
    bytesSaved: plan.bytesSaved,
    estimatedSeconds: plan.estimatedSeconds,
    sources: [...new Set(plan.missing.flatMap((c) => c.sources))].sort()
  }
}

/** `promise`, or the signal's reason if it aborts first; the listener goes when either settles. */
async function raceAbort<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  let onAbort = (): void => {}
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
