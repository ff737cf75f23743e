/**
 * One synthetic VM: a real memory region, a real UD disk file (copy-on-write blocks over the WE
 * image), and a workload that writes pages and disk blocks at its profile's rates. Dirty logging
 * (as KVM's log-dirty mode and QEMU's dirty bitmaps do) is on while a migration runs.
 */
import { createHash, randomFillSync } from 'node:crypto'
import { closeSync, fsyncSync, openSync, readSync, writeFileSync, writeSync, existsSync, readFileSync, ftruncateSync } from 'node:fs'
import type { VmDescription, VmState, VmStats } from './driver.js'
import type { WorkloadProfile } from './workloads.js'

/** Page size of the synthetic guest (x86's). */
export const PAGE_SIZE = 4096
/** Size of one disk write of the workload. */
const DISK_WRITE_SIZE = 4096
/**
 * Granularity of the UD layer's dirty tracking (QEMU: blockdev-mirror's `granularity`, its dirty
 * bitmap's unit): a 4 KiB write dirties 4 KiB, not the whole 64 KiB block it falls in. At block
 * granularity a COMPILATION guest's 600 writes/s dirtied 37.5 MiB/s of blocks, as much as the link
 * carried, so the UD copy never converged and re-sent 100-170 MiB of an 8 MiB layer.
 */
export const DISK_SECTOR = 4096
const TICK_MS = 20

/** Deterministic generator for the workload's choices (xorshift32): cheap, and seedable. */
function xorshift (seed: number): () => number {
  let state = (seed >>> 0) || 0x9e3779b9
  return () => {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state
  }
}

/** A set of indices as a byte per index plus a count: test, add, take all. */
export class DirtySet {
  private readonly bits: Uint8Array
  private count = 0

  constructor (readonly size: number) {
    this.bits = new Uint8Array(size)
  }

  get length (): number { return this.count }

  add (index: number): void {
    if (this.bits[index] === 0) {
      this.bits[index] = 1
      this.count++
    }
  }

  has (index: number): boolean { return this.bits[index] === 1 }

  fill (indices: Iterable<number>): void { for (const i of indices) this.add(i) }

  /** The indices in order. */
  indices (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.size; i++) if (this.bits[i] === 1) out.push(i)
    return out
  }

  /** The indices in order, and the set emptied. */
  drain (): number[] {
    const out: number[] = []
    if (this.count === 0) return out
    for (let i = 0; i < this.size; i++) if (this.bits[i] === 1) out.push(i)
    this.bits.fill(0)
    this.count = 0
    return out
  }

  toBytes (): Uint8Array { return this.bits.slice() }

  static fromBytes (bytes: Uint8Array): DirtySet {
    const set = new DirtySet(bytes.byteLength)
    for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] === 1) set.add(i)
    return set
  }
}

const DIGEST_BYTES = 32

export function sha256Digest (data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest()
}

/** SHA-256 of an all-zero page: what every page of a zeroed memory region hashes to. */
export const ZERO_PAGE_DIGEST = sha256Digest(new Uint8Array(PAGE_SIZE))

/**
 * Running checksums of a copy: one SHA-256 per page (or disk block), taken of the bytes as they
 * were copied, so the switch-over only hashes what it copies while the VM is paused. The copy's
 * checksum is the SHA-256 of the table: of every page's digest in order (memory, dense), or of
 * each present block's index and digest in order (disk, sparse).
 */
export class DigestTable {
  private readonly table: Buffer
  private readonly present: Uint8Array

  /** `initial`: every entry starts present with this digest (a zeroed memory); otherwise empty. */
  constructor (readonly size: number, initial?: Buffer) {
    this.table = Buffer.alloc(size * DIGEST_BYTES)
    this.present = new Uint8Array(size)
    if (initial !== undefined) {
      for (let i = 0; i < size; i++) initial.copy(this.table, i * DIGEST_BYTES)
      this.present.fill(1)
    }
  }

  set (index: number, digest: Buffer): void {
    digest.copy(this.table, index * DIGEST_BYTES)
    this.present[index] = 1
  }

  has (index: number): boolean { return this.present[index] === 1 }

  /** The SHA-256 of the table (hex): present entries, in index order, with their index when sparse. */
  combined (sparse: boolean): string {
    const hash = createHash('sha256')
    if (!sparse) return hash.update(this.table).digest('hex')
    const entry = Buffer.alloc(4 + DIGEST_BYTES)
    for (let i = 0; i < this.size; i++) {
      if (this.present[i] !== 1) continue
      entry.writeUInt32LE(i, 0)
      this.table.copy(entry, 4, i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES)
      hash.update(entry)
    }
    return hash.digest('hex')
  }
}

export interface SyntheticVmInit {
  description: VmDescription
  profile: WorkloadProfile
  /** The UD disk file (created sparse at the disk's virtual size if missing). */
  diskPath: string
  /** Which UD blocks hold data (the rest read from the WE image); persisted beside the disk. */
  allocationPath: string
  /** Memory to adopt (an incoming VM's received memory); otherwise booted from the profile. */
  memory?: Buffer
  seed: number
}

export class SyntheticVm {
  readonly description: VmDescription
  readonly memory: Buffer
  readonly pages: number
  readonly blocks: number
  /** UD blocks that hold data. */
  readonly allocated: DirtySet
  /** Dirty tracking's unit on the UD layer: DISK_SECTOR, or the block when the block size is not a multiple of it. */
  readonly sectorSize: number
  readonly sectorsPerBlock: number
  /** Sectors of the disk (blocks × sectors per block; those past the disk's end are empty). */
  readonly sectors: number
  state: VmState = 'paused'
  private profile: WorkloadProfile
  private readonly diskFd: number
  private readonly allocationPath: string
  private timer: NodeJS.Timeout | null = null
  private readonly next: () => number
  private lastTick = 0
  private pageCarry = 0
  private diskCarry = 0
  /** Share of the workload's time taken away (auto-converge): its page and block writes slow down by it. */
  throttle = 0
  private startedAt = Date.now()
  pagesWritten = 0
  blocksWritten = 0
  /** Dirty logging, on while a migration copies this VM. */
  dirtyPages: DirtySet | null = null
  dirtySectors: DirtySet | null = null
  private readonly recentPages: number[] = []
  private readonly recentBlocks: number[] = []
  private readonly scratch = Buffer.alloc(DISK_WRITE_SIZE)

  constructor (init: SyntheticVmInit) {
    this.description = init.description
    this.profile = init.profile
    this.pages = Math.ceil(init.description.memoryBytes / PAGE_SIZE)
    this.blocks = Math.ceil(init.description.ud.size / init.description.ud.blockSize)
    this.sectorSize = init.description.ud.blockSize % DISK_SECTOR === 0 ? DISK_SECTOR : init.description.ud.blockSize
    this.sectorsPerBlock = init.description.ud.blockSize / this.sectorSize
    this.sectors = this.blocks * this.sectorsPerBlock
    this.next = xorshift(init.seed)
    this.allocationPath = init.allocationPath
    this.allocated = existsSync(init.allocationPath) ? DirtySet.fromBytes(readFileSync(init.allocationPath)) : new DirtySet(this.blocks)
    const fresh = !existsSync(init.diskPath)
    this.diskFd = openSync(init.diskPath, fresh ? 'w+' : 'r+')
    if (fresh) ftruncateSync(this.diskFd, init.description.ud.size)
    if (init.memory !== undefined) {
      this.memory = init.memory
    } else {
      this.memory = Buffer.alloc(this.pages * PAGE_SIZE)
      // Booted: the profile's share of memory holds data, the rest is zero pages.
      randomFillSync(this.memory, 0, Math.floor(this.pages * this.profile.memoryUse) * PAGE_SIZE)
    }
  }

  /** Writes `bytes` of user data at the start of the UD layer (a fresh VM's initial files). */
  seedDisk (bytes: number): void {
    const blockSize = this.description.ud.blockSize
    const block = Buffer.alloc(blockSize)
    for (let index = 0; index * blockSize < Math.min(bytes, this.description.ud.size); index++) {
      randomFillSync(block)
      const length = Math.min(blockSize, this.description.ud.size - index * blockSize)
      writeSync(this.diskFd, block, 0, length, index * blockSize)
      this.allocated.add(index)
    }
    this.persistAllocation()
  }

  run (): void {
    if (this.timer !== null) return
    this.state = 'running'
    this.startedAt = Date.now()
    this.lastTick = performance.now()
    this.timer = setInterval(() => { this.tick() }, TICK_MS)
    this.timer.unref()
  }

  pause (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.state = 'paused'
  }

  get running (): boolean { return this.timer !== null }

  /** One workload step: the page and block writes due since the last one. */
  tick (): void {
    const now = performance.now()
    const seconds = (now - this.lastTick) / 1000
    this.lastTick = now
    const running = 1 - this.throttle
    this.pageCarry += this.profile.dirtyPagesPerSecond * seconds * running
    this.diskCarry += this.profile.diskWritesPerSecond * seconds * running
    const hotPages = Math.max(1, Math.floor(this.pages * this.profile.memoryWorkingSet))
    let pageWrites = 0
    for (; this.pageCarry >= 1; this.pageCarry--) {
      const page = this.next() % hotPages
      // 8 fresh bytes somewhere in the page: the page's content changes, as any store would change it.
      const offset = page * PAGE_SIZE + (this.next() % (PAGE_SIZE / 8)) * 8
      this.memory.writeUInt32LE(this.next(), offset)
      this.memory.writeUInt32LE(this.next(), offset + 4)
      this.dirtyPages?.add(page)
      pageWrites++
    }
    const blockSize = this.description.ud.blockSize
    const hotBlocks = Math.max(1, Math.floor(this.blocks * this.profile.diskWorkingSet))
    let blockWrites = 0
    for (; this.diskCarry >= 1; this.diskCarry--) {
      const block = this.next() % hotBlocks
      const within = Math.min(blockSize, this.description.ud.size - block * blockSize)
      const offset = block * blockSize + (this.next() % Math.max(1, Math.floor(within / DISK_WRITE_SIZE))) * DISK_WRITE_SIZE
      randomFillSync(this.scratch)
      writeSync(this.diskFd, this.scratch, 0, Math.min(DISK_WRITE_SIZE, within), offset)
      if (!this.allocated.has(block)) {
        this.allocated.add(block)
        this.persistAllocation()
      }
      this.dirtySectors?.add(Math.floor(offset / this.sectorSize))
      blockWrites++
    }
    this.pagesWritten += pageWrites
    this.blocksWritten += blockWrites
    this.recentPages.push(pageWrites)
    this.recentBlocks.push(blockWrites)
    if (this.recentPages.length > 50) { this.recentPages.shift(); this.recentBlocks.shift() }
  }

  readPage (index: number): Uint8Array {
    return this.memory.subarray(index * PAGE_SIZE, (index + 1) * PAGE_SIZE)
  }

  readBlock (index: number): Buffer {
    const blockSize = this.description.ud.blockSize
    const length = Math.min(blockSize, this.description.ud.size - index * blockSize)
    const buffer = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const n = readSync(this.diskFd, buffer, done, length - done, index * blockSize + done)
      if (n === 0) { buffer.fill(0, done); break }
      done += n
    }
    return buffer
  }

  writeBlock (index: number, data: Uint8Array): void {
    writeSync(this.diskFd, data, 0, data.byteLength, index * this.description.ud.blockSize)
    this.allocated.add(index)
  }

  /** Bytes of sector `index` (fewer at the disk's end, none past it). */
  sectorLength (index: number): number {
    return Math.max(0, Math.min(this.sectorSize, this.description.ud.size - index * this.sectorSize))
  }

  readSector (index: number): Buffer {
    const buffer = Buffer.alloc(this.sectorLength(index))
    let done = 0
    while (done < buffer.byteLength) {
      const n = readSync(this.diskFd, buffer, done, buffer.byteLength - done, index * this.sectorSize + done)
      if (n === 0) break
      done += n
    }
    return buffer
  }

  writeSector (index: number, data: Uint8Array): void {
    writeSync(this.diskFd, data, 0, data.byteLength, index * this.sectorSize)
    this.allocated.add(Math.floor(index / this.sectorsPerBlock))
  }

  persistAllocation (): void {
    writeFileSync(this.allocationPath, this.allocated.toBytes())
  }

  sync (): void {
    fsyncSync(this.diskFd)
    this.persistAllocation()
  }

  allocatedBytes (): number {
    return this.allocated.length * this.description.ud.blockSize
  }

  stats (): VmStats {
    const window = this.recentPages.length * TICK_MS / 1000
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
    const running = this.running
    return {
      vm: this.description.id,
      state: this.state,
      memoryBytes: this.description.memoryBytes,
      memoryUsedBytes: Math.floor(this.pages * this.profile.memoryUse) * PAGE_SIZE,
      cpuPercent: running ? this.profile.cpuPercent * (1 - this.throttle) : 0,
      networkBytesPerSecond: running ? this.profile.networkBytesPerSecond : 0,
      dirtyPagesPerSecond: running && window > 0 ? sum(this.recentPages) / window : 0,
      dirtyBlocksPerSecond: running && window > 0 ? sum(this.recentBlocks) / window : 0,
      pagesWritten: this.pagesWritten,
      blocksWritten: this.blocksWritten,
      uptimeMs: Date.now() - this.startedAt
    }
  }

  close (): void {
    this.pause()
    this.sync()
    closeSync(this.diskFd)
  }
}
