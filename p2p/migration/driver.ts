/**
 * The hypervisor driver interface: what the migration engine asks of whatever runs the VMs.
 *
 * It sits at the level QEMU works at, so that a QEMU driver (a later issue) fits behind it without
 * the engine changing: the driver runs pre-copy itself (as QEMU does) and only tells the engine
 * about it (pass events, convergence); the engine supplies the byte streams (carried over libp2p),
 * tunes bandwidth and downtime mid-flight, and drives the two-step switch-over. README.md in this
 * folder maps every call onto QMP.
 */
import type { AbortOptions } from '../store/index.js'

/** The H-GMIG paper's workloads (IDLE, STATIC, DYNAMIC, COMPILATION) and the NRAC paper's three. */
export type WorkloadName = 'idle' | 'static' | 'dynamic' | 'compilation' | 'memory-intensive' | 'cpu-intensive' | 'network-intensive'

export type VmState =
  /** Running at this site (possibly migrating out). */
  | 'running'
  /** Paused at this site: stop-and-copy under way, or waiting for the target's confirmation. */
  | 'paused'
  /** Being received from another site; not runnable until resumed. */
  | 'incoming'

export interface VmInfo {
  id: string
  name: string
  driver: string
  state: VmState
  /** True while a migration of this VM is under way (out of or into this site). */
  migrating: boolean
}

/** Everything the engine and the target need to know about a VM: its layers and its sizes. */
export interface VmDescription {
  id: string
  name: string
  driver: string
  memoryBytes: number
  pageSize: number
  workload: WorkloadName
  /** The base layers, as root CIDs in the content-addressed store (same bytes ⇔ same CID at every site). */
  os: { rootCid: string, name?: string, size: number }
  we: { rootCid: string, name?: string, size: number }
  /** The UD layer: a copy-on-write disk over the WE image, `size` virtual bytes in blocks of `blockSize`. */
  ud: { size: number, blockSize: number, allocatedBytes: number }
}

/** Live statistics of a VM: the factors the NRAC paper predicts the dirty rate from. */
export interface VmStats {
  vm: string
  state: VmState
  memoryBytes: number
  memoryUsedBytes: number
  /** 0..100 per vCPU (the synthetic driver reports its profile's load). */
  cpuPercent: number
  /** The VM's own network traffic (not the migration's), bytes/s. */
  networkBytesPerSecond: number
  dirtyPagesPerSecond: number
  dirtyBlocksPerSecond: number
  /** Pages and blocks the workload has written since the VM started at this site: grows while it runs. */
  pagesWritten: number
  blocksWritten: number
  uptimeMs: number
}

/**
 * A duplex byte stream the engine hands a driver (one for the disk, one for memory). Bytes only:
 * a driver frames its own messages; a QEMU driver pipes QEMU's migration socket or NBD socket
 * through it unchanged. Writes resolve when the bytes were accepted (after bandwidth shaping).
 */
export interface DuplexByteStream {
  /** Up to `bytes` (or exactly `bytes` when given) from the other end; null at the end of the stream. */
  read: (options?: AbortOptions & { bytes?: number }) => Promise<Uint8Array | null>
  write: (data: Uint8Array, options?: AbortOptions) => Promise<void>
  /** No more writes from this end; the other end's reads then return null. */
  closeWrite: () => Promise<void>
  /** Tear the stream down at both ends with an error. */
  abort: (err: Error) => void
}

/** Tunables that may change while a migration runs (QEMU: migrate-set-parameters). */
export interface MigrationParameters {
  /** Memory stream cap in bytes/s; 0 = unlimited (QEMU: max-bandwidth). */
  maxBandwidth: number
  /** Longest pause the switch-over may cost, in ms (QEMU: downtime-limit). */
  downtimeLimitMs: number
  /**
   * Share of the guest's time taken away so that it dirties memory and disk more slowly, 0..0.99
   * (QEMU: cpu-throttle-percentage / 100 with the auto-converge capability). Optional: a driver
   * without throttling ignores it. The engine raises it pass by pass when pre-copy stops
   * converging with the link to itself; the VM runs unthrottled again after a cancel.
   */
  cpuThrottle?: number
}

/** One pre-copy pass (QEMU: a MIGRATION_PASS event, with query-migrate's ram figures). */
export interface MemoryPassStats {
  pass: number
  pagesSent: number
  /** Of which all-zero pages, sent as a marker only. */
  zeroPages: number
  bytesSent: number
  /** Pages the VM dirtied while this pass ran. */
  pagesDirtied: number
  /** Pages dirtied per second during the pass. */
  dirtyRate: number
  /** Dirty pages left to send after the pass. */
  remainingPages: number
  durationMs: number
  /** Bytes/s the pass achieved on the stream. */
  transferRate: number
  /** remaining bytes at transferRate, in ms: what a switch-over now would cost. */
  expectedDowntimeMs: number
}

/** One round of the UD copy: the first is the snapshot (every allocated block), then dirty blocks. */
export interface DiskRoundStats {
  round: number
  blocksSent: number
  bytesSent: number
  /** Blocks the VM wrote while the round ran (to be sent in the next one). */
  blocksDirtied: number
  durationMs: number
}

export type OutgoingEvent =
  | { type: 'disk-round', detail: DiskRoundStats }
  /** The first full copy of the UD layer is at the target; from now on only dirty blocks follow (QEMU: BLOCK_JOB_READY). */
  | { type: 'disk-ready', detail: { bytesSent: number } }
  | { type: 'memory-pass', detail: MemoryPassStats }
  /** The remaining dirty pages fit the downtime limit at the measured rate: the engine may switch over. */
  | { type: 'converged', detail: MemoryPassStats }
  /** A copy loop failed (its stream broke): the engine cancels the migration. */
  | { type: 'failed', detail: { stream: 'disk' | 'memory', error: Error } }

/** What the source's stop-and-copy delivered; the target checks its copy against these. */
export interface SwitchOverResult {
  memorySha256: string
  diskSha256: string
  /** Pages and blocks sent while the VM was paused. */
  finalPages: number
  finalBlocks: number
  finalBytes: number
  /** The VM was paused at this instant (ms since the epoch): downtime runs from here. */
  pausedAt: number
}

/** The source side of one VM's migration. */
export interface OutgoingMigration {
  readonly vm: VmDescription
  /** Starts copying the UD layer (snapshot, then dirty rounds until switchOver()) over `stream`. */
  startDisk: (stream: DuplexByteStream) => void
  /** Starts memory pre-copy over `stream`: passes until converged, then keeps iterating until switchOver(). */
  startMemory: (stream: DuplexByteStream) => void
  setParameters: (parameters: Partial<MigrationParameters>) => void
  readonly parameters: MigrationParameters
  /** Treat the next pass as converged whatever its figures (the engine's pass cap). */
  forceConvergence: () => void
  /**
   * Switch-over, step 1 (source): pause the VM, send the last dirty pages and blocks, end both
   * streams, and report checksums. The VM stays paused here until release() or cancel().
   */
  switchOver: (options?: AbortOptions) => Promise<SwitchOverResult>
  /** Stop copying; the VM runs on here, as it was (resumed if switchOver() had paused it). */
  cancel: (reason: string) => Promise<void>
  /** The target runs the VM now: drop it here. */
  release: () => Promise<void>
}

/** The target side of one VM's migration. */
export interface IncomingMigration {
  readonly vm: VmDescription
  receiveDisk: (stream: DuplexByteStream) => void
  receiveMemory: (stream: DuplexByteStream) => void
  /**
   * Waits until both streams ended (the source's stop-and-copy arrived), then checks memory and
   * disk against the source's checksums; throws VerificationError when they differ.
   */
  verify: (expected: Pick<SwitchOverResult, 'memorySha256' | 'diskSha256'>, options?: AbortOptions) => Promise<{ memorySha256: string, diskSha256: string }>
  /** Switch-over, step 2 (target): start the VM here; its workload continues. */
  resume: () => Promise<VmInfo>
  /** Drop the partial VM (failure or cancel before switch-over). */
  abort: (reason: string) => Promise<void>
  /**
   * Rejects if applying the disk or memory stream fails here (a full disk, a malformed frame):
   * the engine then ends the migration at both ends. Without it nothing would read the streams
   * any more, and the source would wait for room on them for ever.
   */
  readonly failed?: Promise<never>
}

export interface OutgoingOptions {
  parameters?: Partial<MigrationParameters>
  onEvent: (event: OutgoingEvent) => void
}

export interface HypervisorDriver {
  readonly name: string
  start: () => Promise<void>
  stop: () => Promise<void>
  list: () => Promise<VmInfo[]>
  /** By name or id. */
  describe: (vm: string) => Promise<VmDescription>
  stats: (vm: string) => Promise<VmStats>
  /** Source: begin migrating a running VM out. One migration per VM at a time. */
  migrateOut: (vm: string, options: OutgoingOptions) => Promise<OutgoingMigration>
  /**
   * Target: make room for an incoming VM (nothing runs until resume()). The engine puts the OS and
   * WE images into the local store before it resumes the VM.
   */
  migrateIn: (vm: VmDescription) => Promise<IncomingMigration>
  /**
   * After a restart in the middle of a switch-over: run a VM that was left paused here again
   * (the engine knows the target never took it over).
   */
  resume: (vm: string) => Promise<void>
  /** After a restart: drop a VM the target has taken over. */
  release: (vm: string) => Promise<void>
}

export const DEFAULT_PARAMETERS: MigrationParameters = { maxBandwidth: 0, downtimeLimitMs: 300 }
