/**
 * The site's VMs and migrations: the hypervisor driver (the synthetic one, the embedded default)
 * and the migration engine, fed from the replicated state — which site holds which image, and
 * every image's chunk list (local manifests and the remote ones the agent fetched) — so that the
 * source and the target compute the same plan from their own replicas. A completed migration is
 * recorded by consensus (a migration-record transaction), so every site's history shows it.
 */
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { ApiRequestError, parseIntegerQuery, parseTimeQuery, type LogExportQuery, type TextExport } from '../api/index.js'
import type { BlockExchange, TransferContext } from '../exchange/index.js'
import {
  createMigrationEngine, createSyntheticDriver, exchangeChunkFetch, EXPORT_FORMATS, WORKLOAD_NAMES,
  type ExportFormat, type ImageManifestData, type LogQuery, type MigrationEngine, type MigrationEvent, type MigrationInfo, type MigrationRequest, type MigrationSummary, type ReplicaView, type Strategy, type SyntheticDriver
} from '../migration/index.js'
import type { ImageInfo, ImageStore } from '../store/index.js'
import type { SwarmNode } from '../swarm/index.js'
import type { SwarmState, SwarmTransaction } from './state.js'

export interface SiteMigrationsInit {
  dataDir: string
  store: ImageStore
  node: SwarmNode
  swarmId: string
  state: () => SwarmState
  siteName: () => string
  peerOf: (peerId: string) => PeerId
  submit: (transaction: SwarmTransaction) => void
  say: (line: string) => void
  onEvent: (event: MigrationEvent) => void
  /**
   * The site's chunk exchange: base layers travel through it (multi-source, verified, resumable).
   * Without it the engine falls back to its built-in fetch over the migration protocol.
   */
  exchange?: BlockExchange
  /** Announces an image this site now holds (the OS/WE images an incoming migration imported). */
  announce?: (info: ImageInfo) => Promise<void>
}

/** The fields `PATCH /v1/migrations/<id>` may change (the names of the migrate request's). */
export interface MigrationParameterUpdate {
  /** Bytes/s on every stream the migration writes; 0 = no cap. */
  bandwidth?: number
  maxDowntimeMs?: number
}

const STRATEGY_NAMES: readonly Strategy[] = ['h-gmig', 'nss', 'ss']

export class SiteMigrations {
  readonly driver: SyntheticDriver
  private engine: MigrationEngine | undefined
  /** Chunk lists by root CID: content-addressed, so never stale once known. */
  private readonly manifests = new Map<string, ImageManifestData>()

  constructor (private readonly init: SiteMigrationsInit) {
    this.driver = createSyntheticDriver({ directory: join(init.dataDir, 'vms'), images: init.store })
  }

  async start (): Promise<void> {
    await this.driver.start()
    const { state, siteName } = this.init
    this.engine = createMigrationEngine({
      // Read at each use: a renamed site (or one admitted after it started) is known by its new name.
      get site () { return siteName() },
      swarmId: this.init.swarmId,
      node: this.init.node,
      peerOf: (site) => {
        const member = state().memberByName(site)
        return member === undefined || member.untilRound !== null ? undefined : this.init.peerOf(member.peerId)
      },
      siteOf: (peer) => {
        const member = state().memberByPeerId(peer.toString())
        return member === undefined || member.untilRound !== null ? undefined : member.name
      },
      driver: this.driver,
      store: this.init.store,
      replica: async () => await this.replica(),
      directory: join(this.init.dataDir, 'migration'),
      ...(this.init.exchange === undefined ? {} : { fetchMissingChunks: this.exchangeFetch(this.init.exchange) }),
      onBaseImported: (rootCids) => { void this.announceImported(rootCids) },
      record: (summary) => {
        this.init.say(`migration ${summary.migration} of ${summary.vmName} to ${summary.to} done: ${summary.bytesOnWire} bytes on the wire, ${summary.bytesSaved} saved, ${Math.round(summary.totalMs)} ms, downtime ${Math.round(summary.downtimeMs)} ms`)
        // The migration is done whatever happens here: a record that cannot be submitted (the
        // agent stopping, the swarm halted) is logged, never thrown into the engine (which would
        // call a completed migration in doubt).
        try {
          this.submitRecord(summary)
        } catch (err) {
          this.init.say(`migration ${summary.migration} of ${summary.vmName} is done but was not recorded in the swarm: ${(err as Error).message}`)
        }
      },
      onEvent: this.init.onEvent
    })
    await this.engine.start()
  }

  private submitRecord (summary: MigrationSummary): void {
    this.init.submit({
      type: 'migration-record',
      migration: summary.migration,
      vm: summary.vmName,
      from: summary.from,
      to: summary.to,
      strategy: summary.strategy,
      planHash: summary.planHash,
      bytesOnWire: Math.round(summary.bytesOnWire),
      bytesSaved: Math.round(summary.bytesSaved),
      totalMs: Math.round(summary.totalMs),
      downtimeMs: Math.round(summary.downtimeMs)
    })
  }

  async stop (): Promise<void> {
    await this.engine?.stop()
    await this.driver.stop()
  }

  /** Base layers through the exchange: each chunk from the current members the plan names for it. */
  private exchangeFetch (exchange: BlockExchange): ReturnType<typeof exchangeChunkFetch> {
    const { state } = this.init
    return exchangeChunkFetch({
      exchange,
      store: this.init.store,
      sourceOf: (site) => {
        const member = state().memberByName(site)
        return member === undefined || member.untilRound !== null ? undefined : { peer: this.init.peerOf(member.peerId) }
      },
      siteOf: (peerId) => state().memberByPeerId(peerId)?.name,
      onSourceDropped: (site, reason) => { this.init.say(`migration chunk source ${site} dropped: ${reason}; its share goes to the other holders`) }
    })
  }

  private async announceImported (rootCids: string[]): Promise<void> {
    const announce = this.init.announce
    if (announce === undefined) return
    try {
      for (const image of (await this.init.store.list()).filter((i) => rootCids.includes(i.rootCid))) await announce(image)
    } catch (err) {
      this.init.say(`announcing the base images a migration brought failed: ${(err as Error).message}`)
    }
  }

  /**
   * The exchange's serving policy for migrations (the agent's `mayServe` asks this besides the
   * public-image rule): the target of a migration running out of this site may fetch its chunks,
   * private images' included.
   */
  mayServe (peer: PeerId, context: TransferContext): boolean {
    if (context.purpose !== 'migration' || context.migration === undefined || this.engine === undefined) return false
    const site = this.init.state().memberByPeerId(peer.toString())
    return site !== undefined && site.untilRound === null && this.engine.isTargetOf(context.migration, site.name)
  }

  /** What the planner reads: the agreed holdings and every announced image's chunk list known here. */
  private async replica (): Promise<ReplicaView> {
    const state = this.init.state()
    const holdings: ReplicaView['holdings'] = []
    const manifests: ImageManifestData[] = []
    const local = new Set((await this.init.store.list()).map((i) => i.rootCid))
    for (const image of state.imageList()) {
      for (const holder of image.holders) holdings.push({ site: state.member(holder)?.name ?? String(holder), rootCid: image.rootCid })
      let manifest = this.manifests.get(image.rootCid)
      if (manifest === undefined) {
        let chunks: string[] | undefined
        if (local.has(image.rootCid)) {
          chunks = []
          for await (const cid of this.init.store.manifest(image.rootCid)) chunks.push(cid.toString())
        } else {
          chunks = (await this.init.store.remoteManifest(image.rootCid))?.chunks.map((c) => c.toString())
        }
        if (chunks === undefined) continue
        manifest = { rootCid: image.rootCid, layer: image.layer, size: image.size, chunkSize: image.chunkSize, chunks }
        this.manifests.set(image.rootCid, manifest)
      }
      manifests.push(manifest)
    }
    return { holdings, manifests }
  }

  private needEngine (): MigrationEngine {
    if (this.engine === undefined) throw new ApiRequestError(503, 'the migration engine is not running')
    return this.engine
  }

  // ------------------------------------------------------------ API

  async vms (): Promise<unknown[]> {
    return await this.driver.list()
  }

  async createVm (body: unknown): Promise<unknown> {
    const b = objectOf(body, ['name', 'os', 'we', 'memoryBytes', 'workload', 'initialUserDataBytes'])
    const name = stringField(b, 'name')
    // The swarm's migration record holds at most 128 characters of a VM's name.
    if (name.length > MAX_VM_NAME) throw new ApiRequestError(400, `field "name" must be at most ${MAX_VM_NAME} characters (got ${name.length})`)
    const os = stringField(b, 'os')
    const we = stringField(b, 'we')
    const memoryBytes = b['memoryBytes']
    if (typeof memoryBytes !== 'number' || !Number.isSafeInteger(memoryBytes) || memoryBytes <= 0) throw new ApiRequestError(400, 'field "memoryBytes" must be a positive integer')
    const workload = b['workload'] ?? 'idle'
    if (typeof workload !== 'string' || !(WORKLOAD_NAMES as readonly string[]).includes(workload)) throw new ApiRequestError(400, `field "workload" must be one of ${WORKLOAD_NAMES.join(', ')}`)
    const initial = b['initialUserDataBytes']
    if (initial !== undefined && (typeof initial !== 'number' || !Number.isSafeInteger(initial) || initial < 0)) throw new ApiRequestError(400, 'field "initialUserDataBytes" must be a non-negative integer')
    const vm = await this.driver.create({ name, os, we, memoryBytes, workload: workload as typeof WORKLOAD_NAMES[number], ...(initial === undefined ? {} : { initialUserDataBytes: initial }) })
    this.init.say(`created VM ${name} (${workload}, ${memoryBytes} bytes of memory) on ${os} / ${we}`)
    return vm
  }

  async migrate (body: unknown): Promise<MigrationInfo> {
    const b = objectOf(body, ['vm', 'to', 'strategy', 'maxDowntimeMs', 'bandwidth', 'maxPasses', 'repository'])
    const request: MigrationRequest = { vm: stringField(b, 'vm'), to: stringField(b, 'to') }
    if (b['strategy'] !== undefined) {
      if (!STRATEGY_NAMES.includes(b['strategy'] as Strategy)) throw new ApiRequestError(400, `field "strategy" must be one of ${STRATEGY_NAMES.join(', ')}`)
      request.strategy = b['strategy'] as Strategy
    }
    for (const field of ['maxDowntimeMs', 'bandwidth', 'maxPasses'] as const) {
      const value = b[field]
      if (value === undefined) continue
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new ApiRequestError(400, `field "${field}" must be a non-negative number`)
      request[field] = value
    }
    if (b['repository'] !== undefined) request.repository = stringField(b, 'repository')
    const target = this.init.state().memberByName(request.to)
    if (target === undefined || target.untilRound !== null) throw new ApiRequestError(404, `no current member named ${JSON.stringify(request.to)}`)
    if (target.name === this.init.siteName()) throw new ApiRequestError(409, 'the VM already runs at this site')
    return await this.needEngine().migrate(request)
  }

  list (): { migrations: MigrationInfo[] } {
    return { migrations: this.needEngine().list() }
  }

  /**
   * Changes a running migration's bandwidth cap and downtime limit mid-flight (QEMU's
   * migrate-set-parameters), at its source: body `{ bandwidth?, maxDowntimeMs? }`.
   */
  updateParameters (id: string, body: unknown): MigrationInfo {
    const b = objectOf(body, ['bandwidth', 'maxDowntimeMs'])
    const update: MigrationParameterUpdate = {}
    if (b['bandwidth'] !== undefined) {
      const value = b['bandwidth']
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new ApiRequestError(400, 'field "bandwidth" must be a non-negative number of bytes/s (0: no cap)')
      update.bandwidth = value
    }
    if (b['maxDowntimeMs'] !== undefined) {
      const value = b['maxDowntimeMs']
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new ApiRequestError(400, 'field "maxDowntimeMs" must be a positive number of milliseconds')
      update.maxDowntimeMs = value
    }
    if (update.bandwidth === undefined && update.maxDowntimeMs === undefined) throw new ApiRequestError(400, 'nothing to change: give "bandwidth" and/or "maxDowntimeMs"')
    const engine = this.needEngine()
    const rows = engine.get(id)
    if (rows.length === 0) throw new ApiRequestError(404, `no migration ${JSON.stringify(id)} at this site`)
    const source = rows.find((r) => r.role === 'source')
    if (source === undefined) throw new ApiRequestError(409, `migration ${id} runs out of ${rows[0]!.source}: change its parameters there`)
    if (source.state !== 'running') throw new ApiRequestError(409, `migration ${id} is not running (${source.state})`)
    return engine.setParameters(source.id, update)
  }

  /** The driver's live statistics of a VM at this site (memory, CPU, its network throughput, dirty rates). */
  async vmStats (name: string): Promise<unknown> {
    return await this.driver.stats(name)
  }

  /** Stops and deletes a VM at this site (refused while it migrates). */
  async destroyVm (name: string): Promise<{ destroyed: string }> {
    await this.driver.destroy(name)
    this.init.say(`destroyed VM ${name}`)
    return { destroyed: name }
  }

  async cancel (id: string): Promise<MigrationInfo> {
    return await this.needEngine().cancel(id, 'cancelled by the user')
  }

  /** The plan for one target, or (without `to`) the candidate sites ranked by bytes to send and time. */
  /** The plan to `to`, or candidates ranked; times estimated at `bandwidth` bytes/s when given. */
  async plan (vm: string, to: string | null, bandwidth?: number): Promise<unknown> {
    const engine = this.needEngine()
    const options = bandwidth === undefined ? {} : { bandwidth }
    if (to !== null) return await engine.plan(vm, to, 'h-gmig', options)
    const candidates = this.init.state().activeMembers().map((m) => m.name).filter((name) => name !== this.init.siteName())
    return await engine.suggest(vm, candidates, options)
  }

  exportLog ({ format, migration, since, after }: LogExportQuery): TextExport {
    if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new ApiRequestError(400, `query "format" must be one of ${EXPORT_FORMATS.join(', ')}`)
    const query: LogQuery = {}
    if (migration !== null) query.migration = migration
    const at = parseTimeQuery('since', since)
    if (at !== undefined) query.since = at.getTime()
    const seq = parseIntegerQuery('after', after, 0)
    if (seq !== undefined) query.after = seq
    const engine = this.needEngine()
    const rows = engine.countLog(query)
    const chunks = engine.exportLogChunks(format as ExportFormat, query)
    const contentType = format === 'csv' ? 'text/csv; charset=utf-8' : format === 'ndjson' ? 'application/x-ndjson; charset=utf-8' : 'application/json; charset=utf-8'
    return { chunks, contentType, rows }
  }
}

function objectOf (body: unknown, allowed: string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiRequestError(400, 'request body must be a JSON object')
  const extra = Object.keys(body).find((k) => !allowed.includes(k))
  if (extra !== undefined) throw new ApiRequestError(400, `unknown field "${extra}" (allowed: ${allowed.join(', ')})`)
  return body as Record<string, unknown>
}

/** The longest VM name the swarm's migration record takes (p2p/agent/state.ts). */
const MAX_VM_NAME = 128

function stringField (body: Record<string, unknown>, field: string): string {
  const value = body[field]
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) throw new ApiRequestError(400, `field "${field}" must be a non-empty string`)
  return value
}
