/**
 * The synthetic hypervisor driver (the embedded default): VMs are SyntheticVm objects in this
 * process — real memory, a real UD disk file, a real workload — registered in SQLite
 * (`<directory>/vms.sqlite`), with pre-copy and the dirty-block disk copy done here, framed over
 * the engine's byte streams. Every byte of memory and of the UD layer crosses those streams.
 *
 * A restarted driver boots its VMs again (memory is process memory: a restart is a reboot; the UD
 * disk persists). VMs half-received when the process stopped are dropped.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import {
  DEFAULT_PARAMETERS, type DuplexByteStream, type HypervisorDriver, type IncomingMigration, type MemoryPassStats,
  type MigrationParameters, type OutgoingEvent, type OutgoingMigration, type OutgoingOptions, type SwitchOverResult,
  type VmDescription, type VmInfo, type VmStats, type WorkloadName
} from './driver.js'
import {
  InvalidMigrationInputError, MigrationCancelledError, MigrationError, NotStartedError, PeerLostError, ProtocolError, VerificationError, VmExistsError,
  VmNotFoundError, VmStateError, errorMessage
} from './errors.js'
import { FRAME, frame, receiveBatches } from './framing.js'
import { DISK_SECTOR, DigestTable, DirtySet, PAGE_SIZE, SyntheticVm, ZERO_PAGE_DIGEST, sha256Digest } from './synthetic-vm.js'
import { TokenBucket, deferred, sleep } from './token-bucket.js'
import { streamFailure } from './wire.js'
import { workloadProfile } from './workloads.js'

/** The images a VM is built on, as the store reports them (ImageStore.resolve fits). */
export interface ImageResolver {
  resolve: (reference: string) => Promise<{ id: string, name: string, layer: string, base: string | null, rootCid: string, size: number, chunkSize: number }>
}

export interface SyntheticDriverInit {
  /** Where the registry and the VMs' disks live (the agent uses `<data>/vms`). */
  directory: string
  images: ImageResolver
  /** Disk block size of new VMs (default: the WE image's chunk size). */
  blockSize?: number
  /**
   * Fault injection, for tests of the end-to-end check: VMs migrating into this site get one
   * byte of a received page (the first one with data, every time it arrives), disk block (in the
   * snapshot or a dirty round) or dirty disk sector (dirty rounds only) flipped before it is
   * applied, as a faulty link or memory would; `failDiskWrite` makes writing the first received
   * UD block fail, as a full disk would. Never set in production.
   */
  faults?: { corruptReceivedPage?: boolean, corruptReceivedBlock?: boolean, corruptReceivedSector?: boolean, failDiskWrite?: boolean }
}

export interface CreateVmOptions {
  name: string
  /** OS and WE images by name, id or root CID; the WE image must be built on the OS image. */
  os: string
  we: string
  memoryBytes: number
  workload: WorkloadName
  /** User data written into the UD layer at creation (default: 1/16 of the disk, at most 64 MiB). */
  initialUserDataBytes?: number
}

const PAGES_PER_BATCH = 64
const BLOCKS_PER_BATCH = 8
const SECTORS_PER_BATCH = 64
const MIN_MEMORY = 1024 * 1024
const MAX_MEMORY = 64 * 1024 * 1024 * 1024
/**
 * After convergence the source sends dirtied pages again only once they would take this share of
 * the downtime limit: a bounded working set is then sent once, in the pause, instead of every
 * few hundred milliseconds while the engine waits for the base layers.
 */
const CONVERGED_REPASS_SHARE = 0.5
/**
 * Once the UD snapshot is across, a round of dirty blocks goes when they would take this share of
 * the downtime limit to send (or at the switch-over): a block the workload rewrites many times
 * meanwhile crosses once, and the pause still has little left to send.
 */
const DISK_ROUND_SHARE = 0.25
const DIRTY_POLL_MS = 25

interface VmRow { id: string, name: string, description: string, state: string, seed: number }

export function createSyntheticDriver (init: SyntheticDriverInit): SyntheticDriver {
  return new SyntheticDriver(init)
}

export class SyntheticDriver implements HypervisorDriver {
  readonly name = 'synthetic'
  private db: Database.Database | undefined
  private readonly vms = new Map<string, SyntheticVm>()
  private readonly migrating = new Set<string>()

  constructor (private readonly init: SyntheticDriverInit) {}

  async start (): Promise<void> {
    if (this.db !== undefined) return
    mkdirSync(join(this.init.directory, 'vms'), { recursive: true })
    const db = new Database(join(this.init.directory, 'vms.sqlite'))
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.exec(`CREATE TABLE IF NOT EXISTS vms (
      id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL, state TEXT NOT NULL, seed INTEGER NOT NULL, created INTEGER NOT NULL)`)
    this.db = db
    for (const row of db.prepare('SELECT * FROM vms').all() as VmRow[]) {
      if (row.state === 'incoming') {
        db.prepare('DELETE FROM vms WHERE id = ?').run(row.id)
        rmSync(this.vmDir(row.id), { recursive: true, force: true })
        continue
      }
      const vm = this.open(JSON.parse(row.description) as VmDescription, row.seed)
      if (row.state === 'running') vm.run()
    }
  }

  async stop (): Promise<void> {
    for (const vm of this.vms.values()) vm.close()
    this.vms.clear()
    this.db?.close()
    this.db = undefined
  }

  private openDb (): Database.Database {
    if (this.db === undefined) throw new NotStartedError('the synthetic driver is not started')
    return this.db
  }

  private vmDir (id: string): string {
    return join(this.init.directory, 'vms', id)
  }

  private open (description: VmDescription, seed: number, memory?: Buffer): SyntheticVm {
    mkdirSync(this.vmDir(description.id), { recursive: true })
    const vm = new SyntheticVm({
      description,
      profile: workloadProfile(description.workload),
      diskPath: join(this.vmDir(description.id), 'ud.img'),
      allocationPath: join(this.vmDir(description.id), 'ud.alloc'),
      memory,
      seed
    })
    this.vms.set(description.id, vm)
    return vm
  }

  /** Creates and starts a VM on local OS and WE images. */
  async create (options: CreateVmOptions): Promise<VmInfo> {
    const db = this.openDb()
    if (typeof options.name !== 'string' || options.name.length === 0) throw new InvalidMigrationInputError('a VM needs a name')
    if (!Number.isSafeInteger(options.memoryBytes) || options.memoryBytes < MIN_MEMORY || options.memoryBytes > MAX_MEMORY || options.memoryBytes % PAGE_SIZE !== 0) {
      throw new InvalidMigrationInputError(`memory must be a multiple of ${PAGE_SIZE} bytes between 1 MiB and 64 GiB (got ${String(options.memoryBytes)})`)
    }
    workloadProfile(options.workload)
    if (db.prepare('SELECT 1 FROM vms WHERE name = ?').get(options.name) !== undefined) throw new VmExistsError(`a VM named "${options.name}" already runs here`)
    const os = await this.init.images.resolve(options.os)
    const we = await this.init.images.resolve(options.we)
    if (os.layer !== 'os') throw new InvalidMigrationInputError(`--os ${options.os} is a ${os.layer.toUpperCase()} image, not an OS image`)
    if (we.layer !== 'we') throw new InvalidMigrationInputError(`--we ${options.we} is a ${we.layer.toUpperCase()} image, not a WE image`)
    if (we.base !== os.id) throw new InvalidMigrationInputError(`WE image ${we.name} is not built on OS image ${os.name}`)
    const blockSize = this.init.blockSize ?? we.chunkSize
    const description: VmDescription = {
      id: randomBytes(6).toString('hex'),
      name: options.name,
      driver: this.name,
      memoryBytes: options.memoryBytes,
      pageSize: PAGE_SIZE,
      workload: options.workload,
      os: { rootCid: os.rootCid, name: os.name, size: os.size },
      we: { rootCid: we.rootCid, name: we.name, size: we.size },
      ud: { size: we.size, blockSize, allocatedBytes: 0 }
    }
    const seed = randomBytes(4).readUInt32LE(0)
    const vm = this.open(description, seed)
    vm.seedDisk(options.initialUserDataBytes ?? Math.min(64 * 1024 * 1024, Math.floor(we.size / 16)))
    db.prepare('INSERT INTO vms (id, name, description, state, seed, created) VALUES (?, ?, ?, ?, ?, ?)')
      .run(description.id, description.name, JSON.stringify(description), 'running', seed, Date.now())
    vm.run()
    return this.info(vm)
  }

  private info (vm: SyntheticVm): VmInfo {
    return { id: vm.description.id, name: vm.description.name, driver: this.name, state: vm.state, migrating: this.migrating.has(vm.description.id) }
  }

  private find (reference: string): SyntheticVm {
    this.openDb()
    const vm = this.vms.get(reference) ?? [...this.vms.values()].find((v) => v.description.name === reference)
    if (vm === undefined) throw new VmNotFoundError(reference, [...this.vms.values()].filter((v) => v.state !== 'incoming').map((v) => v.description.name))
    return vm
  }

  async list (): Promise<VmInfo[]> {
    this.openDb()
    return [...this.vms.values()].filter((vm) => vm.state !== 'incoming').map((vm) => this.info(vm))
  }

  async describe (reference: string): Promise<VmDescription> {
    const vm = this.find(reference)
    return { ...vm.description, ud: { ...vm.description.ud, allocatedBytes: vm.allocatedBytes() } }
  }

  async stats (reference: string): Promise<VmStats> {
    return this.find(reference).stats()
  }

  /** Stops and deletes a VM that is not migrating. */
  async destroy (reference: string): Promise<void> {
    const vm = this.find(reference)
    if (this.migrating.has(vm.description.id)) throw new VmStateError(`VM ${vm.description.name} is migrating; cancel the migration first`)
    this.drop(vm)
  }

  private drop (vm: SyntheticVm): void {
    vm.close()
    this.vms.delete(vm.description.id)
    this.openDb().prepare('DELETE FROM vms WHERE id = ?').run(vm.description.id)
    rmSync(this.vmDir(vm.description.id), { recursive: true, force: true })
  }

  private setState (vm: SyntheticVm, state: 'running' | 'paused' | 'incoming'): void {
    this.openDb().prepare('UPDATE vms SET state = ? WHERE id = ?').run(state, vm.description.id)
  }

  async resume (reference: string): Promise<void> {
    const vm = this.find(reference)
    vm.run()
    this.setState(vm, 'running')
  }

  async release (reference: string): Promise<void> {
    this.drop(this.find(reference))
  }

  async migrateOut (reference: string, options: OutgoingOptions): Promise<OutgoingMigration> {
    const vm = this.find(reference)
    if (vm.state !== 'running') throw new VmStateError(`VM ${vm.description.name} is ${vm.state}, not running`)
    if (this.migrating.has(vm.description.id)) throw new VmStateError(`VM ${vm.description.name} is already migrating`)
    this.migrating.add(vm.description.id)
    return new SyntheticOutgoing(vm, { ...DEFAULT_PARAMETERS, ...options.parameters }, options.onEvent, {
      paused: () => { this.setState(vm, 'paused') },
      resumed: () => { this.setState(vm, 'running') },
      finished: () => { this.migrating.delete(vm.description.id) },
      release: () => { this.drop(vm) }
    })
  }

  async migrateIn (description: VmDescription): Promise<IncomingMigration> {
    const db = this.openDb()
    if (this.vms.has(description.id)) throw new VmExistsError(`VM ${description.name} (${description.id}) is already at this site`)
    if (db.prepare('SELECT 1 FROM vms WHERE name = ?').get(description.name) !== undefined) throw new VmExistsError(`a VM named "${description.name}" already runs here`)
    workloadProfile(description.workload)
    if (description.pageSize !== PAGE_SIZE) throw new InvalidMigrationInputError(`page size ${description.pageSize} is not the synthetic driver's ${PAGE_SIZE}`)
    rmSync(this.vmDir(description.id), { recursive: true, force: true })
    const seed = randomBytes(4).readUInt32LE(0)
    const vm = this.open(description, seed, Buffer.alloc(Math.ceil(description.memoryBytes / PAGE_SIZE) * PAGE_SIZE))
    vm.state = 'incoming'
    db.prepare('INSERT INTO vms (id, name, description, state, seed, created) VALUES (?, ?, ?, ?, ?, ?)')
      .run(description.id, description.name, JSON.stringify(description), 'incoming', seed, Date.now())
    this.migrating.add(description.id)
    return new SyntheticIncoming(vm, this.init.faults ?? {}, {
      resumed: () => { this.setState(vm, 'running'); this.migrating.delete(description.id); return this.info(vm) },
      aborted: () => { this.migrating.delete(description.id); this.drop(vm) }
    })
  }
}

interface OutgoingHooks {
  paused: () => void
  resumed: () => void
  finished: () => void
  release: () => void
}

/** Source side: the dirty-block disk copy and memory pre-copy of one VM. */
class SyntheticOutgoing implements OutgoingMigration {
  readonly vm: VmDescription
  private readonly bucket: TokenBucket
  private readonly switchRequested = deferred()
  private switching = false
  private forced = false
  private readonly abort = new AbortController()
  private diskDone: Promise<{ blocks: number, bytes: number }> | undefined
  /** Memory's first pass is over: UD dirty rounds may go (see copyDisk). */
  private firstPassDone = false
  private memoryDone: Promise<{ pages: number, bytes: number }> | undefined
  private readonly streams: DuplexByteStream[] = []
  /** Running checksums of every page and UD sector as last sent (switch-over hashes only the last ones). */
  private readonly pageDigests: DigestTable
  private readonly sectorDigests: DigestTable

  constructor (
    private readonly machine: SyntheticVm,
    private currentParameters: MigrationParameters,
    private readonly onEvent: (event: OutgoingEvent) => void,
    private readonly hooks: OutgoingHooks
  ) {
    this.vm = { ...machine.description, ud: { ...machine.description.ud, allocatedBytes: machine.allocatedBytes() } }
    this.bucket = new TokenBucket(currentParameters.maxBandwidth)
    this.pageDigests = new DigestTable(machine.pages)
    this.sectorDigests = new DigestTable(machine.sectors)
    // Dirty logging from now on: whatever the VM writes after this is sent again.
    machine.dirtyPages = new DirtySet(machine.pages)
    machine.dirtySectors = new DirtySet(machine.sectors)
    this.switchRequested.promise.catch(() => {})
  }

  get parameters (): MigrationParameters { return { ...this.currentParameters } }

  setParameters (parameters: Partial<MigrationParameters>): void {
    if (parameters.maxBandwidth !== undefined) {
      if (!(parameters.maxBandwidth >= 0)) throw new InvalidMigrationInputError(`maxBandwidth must be ≥ 0 bytes/s (got ${parameters.maxBandwidth})`)
      this.currentParameters.maxBandwidth = parameters.maxBandwidth
      this.bucket.setRate(parameters.maxBandwidth)
    }
    if (parameters.downtimeLimitMs !== undefined) {
      if (!(parameters.downtimeLimitMs > 0)) throw new InvalidMigrationInputError(`downtimeLimitMs must be > 0 (got ${parameters.downtimeLimitMs})`)
      this.currentParameters.downtimeLimitMs = parameters.downtimeLimitMs
    }
    if (parameters.cpuThrottle !== undefined) {
      if (!(parameters.cpuThrottle >= 0 && parameters.cpuThrottle < 1)) throw new InvalidMigrationInputError(`cpuThrottle must be in [0, 1) (got ${parameters.cpuThrottle})`)
      this.currentParameters.cpuThrottle = parameters.cpuThrottle
      // A cancelled migration left the VM unthrottled, and a late step must not throttle it again.
      if (!this.abort.signal.aborted) this.machine.throttle = parameters.cpuThrottle
    }
  }

  forceConvergence (): void { this.forced = true }

  private fail (stream: 'disk' | 'memory', err: unknown): never {
    const error = err instanceof Error ? err : streamFailure(err, `${stream} stream`)
    if (!this.abort.signal.aborted) this.onEvent({ type: 'failed', detail: { stream, error } })
    throw error
  }

  startDisk (stream: DuplexByteStream): void {
    this.streams.push(stream)
    this.diskDone = this.copyDisk(stream).catch((err: unknown) => this.fail('disk', err))
    this.diskDone.catch(() => {})
  }

  startMemory (stream: DuplexByteStream): void {
    this.streams.push(stream)
    this.memoryDone = this.copyMemory(stream).catch((err: unknown) => this.fail('memory', err))
    this.memoryDone.catch(() => {})
  }

  private async sendBlocks (stream: DuplexByteStream, indices: number[]): Promise<number> {
    let bytes = 0
    const signal = this.abort.signal
    for (let i = 0; i < indices.length; i += BLOCKS_PER_BATCH) {
      const batch = indices.slice(i, i + BLOCKS_PER_BATCH)
      const blocks = batch.map((index) => this.machine.readBlock(index))
      batch.forEach((index, k) => { setBlockDigests(this.machine, this.sectorDigests, index, blocks[k] as Buffer) })
      const data = diskFrame(FRAME.batch, batch, blocks)
      await stream.write(data, { signal })
      bytes += data.byteLength
    }
    return bytes
  }

  /**
   * Sends the dirty sectors at `indices`. A sector of a block the target has not had yet (the VM
   * allocated it after the snapshot began) stands for a block whose other sectors are zero at both
   * ends (copy-on-write without copy-up): their digests start as zero sectors here and there.
   */
  private async sendSectors (stream: DuplexByteStream, indices: number[]): Promise<number> {
    let bytes = 0
    const signal = this.abort.signal
    const perBlock = this.machine.sectorsPerBlock
    for (let i = 0; i < indices.length; i += SECTORS_PER_BATCH) {
      const batch = indices.slice(i, i + SECTORS_PER_BATCH).filter((index) => this.machine.sectorLength(index) > 0)
      if (batch.length === 0) continue
      const sectors = batch.map((index) => this.machine.readSector(index))
      batch.forEach((index, k) => {
        const first = Math.floor(index / perBlock) * perBlock
        if (!this.sectorDigests.has(first)) zeroBlockDigests(this.machine, this.sectorDigests, first / perBlock)
        this.sectorDigests.set(index, sha256Digest(sectors[k] as Buffer))
      })
      const data = diskFrame(FRAME.sectors, batch, sectors)
      await stream.write(data, { signal })
      bytes += data.byteLength
    }
    return bytes
  }

  private async copyDisk (stream: DuplexByteStream): Promise<{ blocks: number, bytes: number }> {
    const dirty = this.machine.dirtySectors
    if (dirty === null) throw new MigrationCancelledError('migration cancelled')
    let round = 0
    let total = 0
    let totalMs = 0
    // Round 0 is the snapshot: every allocated block; dirty logging catches what changes meanwhile.
    let indices = this.machine.allocated.indices()
    dirty.drain()
    for (;;) {
      const started = performance.now()
      const bytes = round === 0 ? await this.sendBlocks(stream, indices) : await this.sendSectors(stream, indices)
      await stream.write(frame(FRAME.roundEnd, [round]), { signal: this.abort.signal })
      total += bytes
      const durationMs = performance.now() - started
      totalMs += durationMs
      this.onEvent({ type: 'disk-round', detail: { round, blocksSent: indices.length, bytesSent: bytes, blocksDirtied: dirty.length, durationMs } })
      if (round === 0) this.onEvent({ type: 'disk-ready', detail: { bytesSent: total } })
      round++
      const rate = totalMs > 0 ? total / totalMs * 1000 : Number.POSITIVE_INFINITY
      // Until memory pre-copy's first pass is over (the engine starts memory when the end is near:
      // the base layers about in at the target), dirty blocks wait: a block the workload keeps
      // rewriting would otherwise cross once per round for as long as the base and that pass take
      // (a DYNAMIC VM re-sent 25-40 MiB of an 8 MiB UD layer while its base arrived), and it has
      // to cross once more at the end anyway. From then on, rounds go as they come due.
      const due = (): boolean => this.firstPassDone && dirty.length > 0 &&
        dirty.length * this.machine.sectorSize / rate * 1000 > this.currentParameters.downtimeLimitMs * DISK_ROUND_SHARE
      while (!due() && !this.switching) {
        await Promise.race([sleep(DIRTY_POLL_MS, this.abort.signal), this.switchRequested.promise])
      }
      if (this.switching) break
      indices = dirty.drain()
    }
    // The VM is paused: the last dirty sectors, then the end.
    const last = dirty.drain()
    const bytes = await this.sendSectors(stream, last)
    await stream.write(frame(FRAME.final, []), { signal: this.abort.signal })
    await stream.closeWrite()
    return { blocks: last.length, bytes: bytes + 1 }
  }

  /**
   * Sends the pages at `indices`. The first pass skips zero pages (the target's memory starts
   * zeroed). With `dirty`, a page written again since the pass began is skipped (as Xen's pre-copy
   * does): it is in the dirty set, so a later pass or the stop-and-copy sends it once instead of now
   * and again then.
   */
  private async sendPages (stream: DuplexByteStream, indices: number[], skipZero: boolean, dirty?: DirtySet): Promise<{ bytes: number, zero: number, sent: number, redirtied: number }> {
    let bytes = 0
    let zero = 0
    let sent = 0
    let redirtied = 0
    const signal = this.abort.signal
    for (let i = 0; i < indices.length; i += PAGES_PER_BATCH) {
      const headers: Buffer[] = []
      const pages: Uint8Array[] = []
      for (const index of indices.slice(i, i + PAGES_PER_BATCH)) {
        if (dirty?.has(index) === true) { redirtied++; continue }
        const page = this.machine.readPage(index)
        const isZero = isZeroPage(page)
        if (isZero) {
          zero++
          // The target's memory starts zeroed: a zero page of the first pass need not be sent at all.
          if (skipZero) { this.pageDigests.set(index, ZERO_PAGE_DIGEST); continue }
        }
        const header = Buffer.alloc(5)
        header.writeUInt32LE(index, 0)
        header[4] = isZero ? 0 : 1
        headers.push(header)
        if (isZero) {
          this.pageDigests.set(index, ZERO_PAGE_DIGEST)
        } else {
          // Copied: the workload may write the page before the stream has sent it (then it is dirty again).
          const copy = Buffer.from(page)
          this.pageDigests.set(index, sha256Digest(copy))
          pages.push(copy)
        }
        sent++
      }
      if (headers.length === 0) continue
      const data = frame(FRAME.batch, [headers.length], [...headers, ...pages])
      await this.bucket.take(data.byteLength, signal)
      await stream.write(data, { signal })
      bytes += data.byteLength
    }
    return { bytes, zero, sent, redirtied }
  }

  private async copyMemory (stream: DuplexByteStream): Promise<{ pages: number, bytes: number }> {
    const dirty = this.machine.dirtyPages
    if (dirty === null) throw new MigrationCancelledError('migration cancelled')
    let pass = 1
    let converged = false
    let totalBytes = 0
    let totalMs = 0
    let indices = Array.from({ length: this.machine.pages }, (_, i) => i)
    dirty.drain()
    for (;;) {
      const started = performance.now()
      const { bytes, zero, sent } = await this.sendPages(stream, indices, pass === 1, dirty)
      await stream.write(frame(FRAME.roundEnd, [pass]), { signal: this.abort.signal })
      const durationMs = performance.now() - started
      totalBytes += bytes
      totalMs += durationMs
      // The rate over all passes so far: one short pass alone says little about the link.
      const transferRate = totalMs > 0 ? totalBytes / totalMs * 1000 : Number.POSITIVE_INFINITY
      const remainingPages = dirty.length
      const stats: MemoryPassStats = {
        pass,
        pagesSent: sent,
        zeroPages: zero,
        bytesSent: bytes,
        pagesDirtied: remainingPages,
        dirtyRate: durationMs > 0 ? remainingPages / durationMs * 1000 : 0,
        remainingPages,
        durationMs,
        transferRate,
        expectedDowntimeMs: Number.isFinite(transferRate) ? remainingPages * PAGE_SIZE / transferRate * 1000 : 0
      }
      this.firstPassDone = true
      this.onEvent({ type: 'memory-pass', detail: stats })
      if (!converged && (stats.expectedDowntimeMs <= this.currentParameters.downtimeLimitMs || this.forced)) {
        converged = true
        this.onEvent({ type: 'converged', detail: stats })
      }
      if (converged) await this.untilRepassNeeded(dirty, transferRate)
      if (this.switching) break
      pass++
      indices = dirty.drain()
    }
    const last = dirty.drain()
    const { bytes } = await this.sendPages(stream, last, false)
    await stream.write(frame(FRAME.final, []), { signal: this.abort.signal })
    await stream.closeWrite()
    return { pages: last.length, bytes: bytes + 1 }
  }

  /** Converged: waits for the switch-over, or until the pages dirtied since would take too long to send in the pause. */
  private async untilRepassNeeded (dirty: DirtySet, transferRate: number): Promise<void> {
    const tooMany = (): boolean => dirty.length * PAGE_SIZE / transferRate * 1000 > this.currentParameters.downtimeLimitMs * CONVERGED_REPASS_SHARE
    while (!this.switching && !tooMany()) {
      await Promise.race([sleep(DIRTY_POLL_MS, this.abort.signal), this.switchRequested.promise])
    }
  }

  async switchOver (): Promise<SwitchOverResult> {
    if (this.diskDone === undefined || this.memoryDone === undefined) throw new VmStateError('switch-over before both the disk and the memory copy started')
    this.machine.pause()
    this.hooks.paused()
    const pausedAt = Date.now()
    this.switching = true
    this.switchRequested.resolve()
    const [disk, memory] = await Promise.all([this.diskDone, this.memoryDone])
    // Every page was sent (and hashed) by the first pass; a UD block allocated but never sent
    // (none should be) is hashed from the disk now, so the target, which lacks it, fails the check.
    for (let i = 0; i < this.machine.pages; i++) if (!this.pageDigests.has(i)) this.pageDigests.set(i, sha256Digest(this.machine.readPage(i)))
    for (const block of this.machine.allocated.indices()) {
      for (let i = block * this.machine.sectorsPerBlock; i < (block + 1) * this.machine.sectorsPerBlock; i++) {
        if (!this.sectorDigests.has(i) && this.machine.sectorLength(i) > 0) this.sectorDigests.set(i, sha256Digest(this.machine.readSector(i)))
      }
    }
    return {
      memorySha256: this.pageDigests.combined(false),
      diskSha256: this.sectorDigests.combined(true),
      finalPages: memory.pages,
      finalBlocks: disk.blocks,
      finalBytes: memory.bytes + disk.bytes,
      pausedAt
    }
  }

  private stopLogging (): void {
    this.machine.dirtyPages = null
    this.machine.dirtySectors = null
  }

  async cancel (reason: string): Promise<void> {
    if (this.abort.signal.aborted) return
    const error = new MigrationCancelledError(reason)
    this.abort.abort(error)
    this.switchRequested.reject(error)
    for (const stream of this.streams) stream.abort(error)
    await Promise.allSettled([this.diskDone, this.memoryDone])
    this.stopLogging()
    // The VM runs on here as it was: unthrottled.
    this.machine.throttle = 0
    if (!this.machine.running) {
      this.machine.run()
      this.hooks.resumed()
    }
    this.hooks.finished()
  }

  async release (): Promise<void> {
    this.abort.abort(new MigrationCancelledError('released'))
    this.stopLogging()
    this.hooks.finished()
    this.hooks.release()
  }
}

/** Why applying a stream at the target failed; the engine's own errors (a lost peer, a cancel) say it already. */
function applyError (what: string, err: unknown): Error {
  return err instanceof MigrationError ? err : new MigrationError(`applying the ${what} stream at the target failed: ${errorMessage(err)}`)
}

/** A disk frame: per unit (block or sector) its index and length, then the units' bytes. */
function diskFrame (type: number, indices: number[], units: Buffer[]): Uint8Array {
  const headers = Buffer.alloc(indices.length * 8)
  indices.forEach((index, k) => { headers.writeUInt32LE(index, k * 8); headers.writeUInt32LE((units[k] as Buffer).byteLength, k * 8 + 4) })
  return frame(type, [indices.length], [headers, ...units])
}

/** The digests of block `index`'s sectors, from the whole block's bytes. */
function setBlockDigests (machine: SyntheticVm, digests: DigestTable, index: number, block: Uint8Array): void {
  const first = index * machine.sectorsPerBlock
  for (let k = 0; k < machine.sectorsPerBlock; k++) {
    const length = machine.sectorLength(first + k)
    if (length === 0) break
    digests.set(first + k, sha256Digest(block.subarray(k * machine.sectorSize, k * machine.sectorSize + length)))
  }
}

/** Block `index`'s sectors all zero (a block the VM allocated after the UD snapshot began). */
function zeroBlockDigests (machine: SyntheticVm, digests: DigestTable, index: number): void {
  const first = index * machine.sectorsPerBlock
  for (let k = 0; k < machine.sectorsPerBlock; k++) {
    const length = machine.sectorLength(first + k)
    if (length === 0) break
    digests.set(first + k, length === ZERO_SECTOR.byteLength ? ZERO_SECTOR_DIGEST : sha256Digest(new Uint8Array(length)))
  }
}

function flipFirstByte (data: Uint8Array): void {
  data[0] = (data[0] ?? 0) ^ 0xff
}

function isZeroPage (page: Uint8Array): boolean {
  return Buffer.compare(page, ZERO_PAGE) === 0
}
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE)
const ZERO_SECTOR = Buffer.alloc(DISK_SECTOR)
const ZERO_SECTOR_DIGEST = sha256Digest(ZERO_SECTOR)

interface IncomingHooks {
  resumed: () => VmInfo
  aborted: () => void
}

/** Target side: applies received pages and blocks; checks them at switch-over; runs the VM. */
class SyntheticIncoming implements IncomingMigration {
  readonly vm: VmDescription
  private diskDone: Promise<void> | undefined
  private memoryDone: Promise<void> | undefined
  private readonly abortController = new AbortController()
  private readonly streams: DuplexByteStream[] = []
  /** Running checksums of what arrived: every page as applied (the memory starts zeroed), every UD sector as written. */
  private readonly pageDigests: DigestTable
  private readonly sectorDigests: DigestTable
  /** Fault injection (tests): the page or block whose received bytes get a byte flipped, each time it arrives. */
  private corruptPage: number | undefined
  private corruptBlock: number | undefined
  private corruptSector: number | undefined

  constructor (private readonly machine: SyntheticVm, private readonly faults: NonNullable<SyntheticDriverInit['faults']>, private readonly hooks: IncomingHooks) {
    this.failed.catch(() => {})
    this.vm = machine.description
    this.pageDigests = new DigestTable(machine.pages, ZERO_PAGE_DIGEST)
    this.sectorDigests = new DigestTable(machine.sectors)
  }

  private readonly failure = deferred<never>()
  readonly failed = this.failure.promise

  receiveDisk (stream: DuplexByteStream): void {
    this.streams.push(stream)
    this.diskDone = this.applyDisk(stream)
    this.diskDone.catch((err) => { this.applyFailed('UD disk', err) })
  }

  receiveMemory (stream: DuplexByteStream): void {
    this.streams.push(stream)
    this.memoryDone = this.applyMemory(stream)
    this.memoryDone.catch((err) => { this.applyFailed('memory', err) })
  }

  private applyFailed (what: string, err: unknown): void {
    // A source that went away or cancelled is the control stream's news, with its reason.
    if (this.abortController.signal.aborted || err instanceof PeerLostError || err instanceof MigrationCancelledError) return
    this.failure.reject(applyError(what, err))
  }

  private async applyDisk (stream: DuplexByteStream): Promise<void> {
    const signal = this.abortController.signal
    const machine = this.machine
    await receiveBatches(stream, 'disk', signal, async (reader, count, type) => {
      const headers = Buffer.from(await reader.bytes(count * 8, signal))
      const sectors = type === FRAME.sectors
      for (let k = 0; k < count; k++) {
        const index = headers.readUInt32LE(k * 8)
        const length = headers.readUInt32LE(k * 8 + 4)
        const block = sectors ? Math.floor(index / machine.sectorsPerBlock) : index
        if (block >= machine.blocks) throw new ProtocolError(`disk ${sectors ? 'sector' : 'block'} ${index} is beyond the disk (${machine.blocks} blocks)`)
        if (length > (sectors ? machine.sectorLength(index) : machine.description.ud.blockSize)) throw new ProtocolError(`disk ${sectors ? 'sector' : 'block'} ${index} of ${length} bytes is larger than its place on the disk`)
        const data = await reader.bytes(length, signal)
        if (this.faults.corruptReceivedBlock === true && (this.corruptBlock ??= block) === block) flipFirstByte(data)
        if (sectors && this.faults.corruptReceivedSector === true && (this.corruptSector ??= index) === index) flipFirstByte(data)
        if (this.faults.failDiskWrite === true) throw new Error(`ENOSPC: no space left on device, writing UD block ${block} (injected)`)
        if (!sectors) {
          machine.writeBlock(index, data)
          setBlockDigests(machine, this.sectorDigests, index, data)
          continue
        }
        // A block new to this disk: its other sectors are zero here, as at the source.
        if (!machine.allocated.has(block)) zeroBlockDigests(machine, this.sectorDigests, block)
        machine.writeSector(index, data)
        this.sectorDigests.set(index, sha256Digest(data))
      }
    }, [FRAME.batch, FRAME.sectors])
    this.machine.sync()
    await stream.closeWrite().catch(() => {})
  }

  private async applyMemory (stream: DuplexByteStream): Promise<void> {
    const signal = this.abortController.signal
    await receiveBatches(stream, 'memory', signal, async (reader, count) => {
      const headers = Buffer.from(await reader.bytes(count * 5, signal))
      for (let k = 0; k < count; k++) {
        const index = headers.readUInt32LE(k * 5)
        if (index >= this.machine.pages) throw new ProtocolError(`page ${index} is beyond the VM's memory (${this.machine.pages} pages)`)
        const target = this.machine.memory.subarray(index * PAGE_SIZE, (index + 1) * PAGE_SIZE)
        if (headers[k * 5 + 4] === 0) {
          target.fill(0)
          this.pageDigests.set(index, ZERO_PAGE_DIGEST)
          continue
        }
        target.set(await reader.bytes(PAGE_SIZE, signal))
        if (this.faults.corruptReceivedPage === true && (this.corruptPage ??= index) === index) flipFirstByte(target)
        // Hashed as it now is in this VM's memory, not as it came off the stream.
        this.pageDigests.set(index, sha256Digest(target))
      }
    })
    await stream.closeWrite().catch(() => {})
  }

  async verify (expected: { memorySha256: string, diskSha256: string }): Promise<{ memorySha256: string, diskSha256: string }> {
    if (this.diskDone === undefined || this.memoryDone === undefined) throw new VmStateError('verify before both streams were attached')
    // A small VM can reach the switch-over before a failed write here ends the migration: the same reason either way.
    await Promise.all([this.diskDone.catch((err) => { throw applyError('UD disk', err) }), this.memoryDone.catch((err) => { throw applyError('memory', err) })])
    const memorySha256 = this.pageDigests.combined(false)
    const diskSha256 = this.sectorDigests.combined(true)
    const wrong: string[] = []
    if (memorySha256 !== expected.memorySha256) wrong.push(`memory ${memorySha256.slice(0, 12)}… ≠ source ${expected.memorySha256.slice(0, 12)}…`)
    if (diskSha256 !== expected.diskSha256) wrong.push(`UD disk ${diskSha256.slice(0, 12)}… ≠ source ${expected.diskSha256.slice(0, 12)}…`)
    if (wrong.length > 0) throw new VerificationError(`VM ${this.vm.name} is not identical at the target: ${wrong.join('; ')}`)
    return { memorySha256, diskSha256 }
  }

  async resume (): Promise<VmInfo> {
    this.machine.run()
    return this.hooks.resumed()
  }

  async abort (reason: string): Promise<void> {
    if (this.abortController.signal.aborted) return
    const error = new MigrationCancelledError(reason)
    this.abortController.abort(error)
    for (const stream of this.streams) stream.abort(error)
    await Promise.allSettled([this.diskDone, this.memoryDone])
    try { this.hooks.aborted() } catch (err) { throw new MigrationCancelledError(`dropping the partial VM failed: ${errorMessage(err)}`) }
  }
}
