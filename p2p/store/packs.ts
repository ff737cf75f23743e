import { closeSync, constants, existsSync, fstatSync, fsync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, writev } from 'node:fs'
import { join } from 'node:path'
import type Database from 'better-sqlite3'
import { DIRECT_IO_ALIGNMENT, isDirectIoAligned } from './aligned.js'
import { StoreFormatError } from './errors.js'

/** Linux accepts at most this many buffers per writev. */
const IOV_MAX = 1024

async function writevAt (fd: number, buffers: Uint8Array[], position: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    writev(fd, buffers, position, (err, written) => { if (err === null) resolve(written); else reject(err) })
  })
}

async function fsyncFd (fd: number): Promise<void> {
  await new Promise<void>((resolve, reject) => { fsync(fd, (err) => { if (err === null) resolve(); else reject(err) }) })
}

/** A pack file is closed for appends at this size, so that compaction rewrites bounded files. */
export const PACK_LIMIT_BYTES = 1 << 30
/** Blocks are gathered into writes of this size: few syscalls, whatever the chunk size. */
const WRITE_BYTES = 8 << 20
/** At most this much written but not yet on disk per store: the importer waits beyond it. */
const MAX_WRITES_IN_FLIGHT_BYTES = 32 << 20
/**
 * Holders (the reader's pieces) one write may pin, and all writes in flight. In a mostly-zero image
 * a few data chunks per piece would otherwise pin tens of pieces until 8 MiB of data gather; the
 * reader has a fixed number of aligned pieces (file-reader.ts), which these bounds keep enough.
 */
const MAX_HOLDERS_PER_WRITE = 4
const MAX_HOLDERS_IN_FLIGHT = 8

/** Whoever owns the memory behind appended blocks: held until the write carrying them completes. */
export interface BufferHolder {
  hold: () => void
  release: () => void
}

export interface BlockLocation {
  pack: number
  offset: number
}

/**
 * Which stream of packs a block goes to: page-aligned blocks of page-aligned memory (the leaves of
 * an imported file) to packs written with O_DIRECT, everything else (inner nodes, a file's short
 * last chunk, leaves from streams) through the page cache. Two streams, so that neither pads.
 */
type PackStream = 'direct' | 'buffered'

interface WritablePack {
  id: number
  fd: number
  /** `fd` was opened with O_DIRECT. */
  direct: boolean
  /** Opened without O_DIRECT after the kernel refused a direct write (`EINVAL`): used from then on. */
  fallbackFd?: number
  /** File offset where the next block goes. */
  end: number
  /** Blocks appended but not yet handed to write(): they start at `end - bufferedBytes`. */
  buffer: Uint8Array[]
  bufferedBytes: number
  /** Owners of buffered blocks' memory, released once those bytes are written. */
  holders: BufferHolder[]
  /** Distinct holders among `holders` (blocks of one holder are appended one after another). */
  distinctHolders: number
  dirty: boolean
}

/**
 * Append-only pack files under `<store>/packs/`. A block is appended (a buffered positional write)
 * and gets its (pack, offset) at once; `sync()` makes everything appended so far durable. The
 * store records a block in SQLite only after a `sync()` that covered it, so the index never points
 * at bytes that a crash could lose. Bytes written after the last indexed block are garbage from an
 * interrupted import: `recover()` truncates them.
 *
 * Page-aligned blocks in aligned memory are written with O_DIRECT (no page-cache copy, no
 * writeback by the importing process: ~0.5 CPU s less per GiB), into packs of their own so that
 * every direct write stays aligned; `sync()` still fsyncs them (the device's cache, the file's
 * size and extents). Where the kernel refuses O_DIRECT, the same blocks go through the page cache.
 */
export class PackFiles {
  private readonly directory: string
  private readonly active: Partial<Record<PackStream, WritablePack>> = {}
  /** False once O_DIRECT was refused here (open or write): every block goes through the page cache then. */
  private directIo = true
  /** Bytes written to pack files since this object was made, with O_DIRECT and through the page cache. */
  readonly written = { direct: 0, pageCache: 0 }
  /** Packs closed for appends whose last writes still need an fsync. */
  private readonly retired: WritablePack[] = []
  private readonly inFlight = new Set<Promise<unknown>>()
  private inFlightBytes = 0
  private inFlightHolders = 0
  private writeFailure: unknown
  private readonly readFds = new Map<number, number>()

  constructor (storeDirectory: string, private readonly db: Database.Database) {
    this.directory = join(storeDirectory, 'packs')
  }

  /** False once the file system refused O_DIRECT: copying blocks into aligned memory buys nothing then. */
  get writesDirect (): boolean {
    return this.directIo
  }

  path (pack: number): string {
    return join(this.directory, `${String(pack).padStart(6, '0')}.pack`)
  }

  /** Cuts every pack back to its last indexed byte and forgets pack files the index does not know. */
  recover (): void {
    mkdirSync(this.directory, { recursive: true })
    const known = new Set<number>()
    const packs = this.db.prepare('SELECT id FROM packs').pluck().all() as number[]
    const indexedEnd = this.db.prepare('SELECT coalesce(max(offset + length), 0) FROM chunks WHERE pack = ?').pluck()
    for (const pack of packs) {
      known.add(pack)
      const file = this.path(pack)
      if (!existsSync(file)) {
        const referenced = indexedEnd.get(pack) as number
        if (referenced > 0) throw new StoreFormatError(`pack file ${file} is missing but ${referenced} bytes of chunks are recorded in it; 'hgmig image verify' lists the images affected`)
        closeSync(openSync(file, 'w'))
      }
      const end = indexedEnd.get(pack) as number
      const fd = openSync(file, 'r+')
      try {
        if (fstatSync(fd).size > end) ftruncateSync(fd, end)
      } finally {
        closeSync(fd)
      }
      this.db.prepare('UPDATE packs SET bytes = ? WHERE id = ?').run(end, pack)
    }
    for (const name of readdirSync(this.directory)) {
      const match = /^(\d+)\.pack$/.exec(name)
      // Created, but its row was never committed (crash between the two): nothing points into it.
      if (match !== null && !known.has(Number(match[1]))) unlinkSync(join(this.directory, name))
    }
  }

  /**
   * Appends a block; its bytes are durable after the next `sync()`. The block is not copied: it
   * must not change until written, so `holder` (if any) is held until then and released after.
   */
  append (block: Uint8Array, holder?: BufferHolder): BlockLocation {
    if (this.writeFailure !== undefined) throw this.writeFailure
    const stream: PackStream = this.directIo && isDirectIoAligned(block) ? 'direct' : 'buffered'
    let pack = this.active[stream]
    if (pack === undefined || (pack.end > 0 && pack.end + block.byteLength > PACK_LIMIT_BYTES)) pack = this.openNextPack(stream)
    const location = { pack: pack.id, offset: pack.end }
    // Chunks of one piece follow each other in memory: one iovec for the run, not one per chunk.
    const last = pack.buffer[pack.buffer.length - 1]
    if (last !== undefined && last.buffer === block.buffer && last.byteOffset + last.byteLength === block.byteOffset) {
      pack.buffer[pack.buffer.length - 1] = new Uint8Array(block.buffer, last.byteOffset, last.byteLength + block.byteLength)
    } else {
      pack.buffer.push(block)
    }
    if (holder !== undefined) {
      holder.hold()
      if (pack.holders[pack.holders.length - 1] !== holder) pack.distinctHolders++
      pack.holders.push(holder)
    }
    pack.bufferedBytes += block.byteLength
    pack.end += block.byteLength
    if (pack.bufferedBytes >= WRITE_BYTES || pack.distinctHolders >= MAX_HOLDERS_PER_WRITE) this.startWrite(pack)
    return location
  }

  /** True when the caller should `await drain()` before appending more (bounded memory). */
  get congested (): boolean {
    return this.inFlightBytes >= MAX_WRITES_IN_FLIGHT_BYTES || this.inFlightHolders >= MAX_HOLDERS_IN_FLIGHT
  }

  async drain (): Promise<void> {
    while (this.congested) await Promise.race(this.inFlight)
    if (this.writeFailure !== undefined) throw this.writeFailure
  }

  /** Writes and fsyncs everything appended so far. */
  async sync (): Promise<void> {
    for (const pack of this.activePacks()) this.startWrite(pack)
    await Promise.all(this.inFlight)
    if (this.writeFailure !== undefined) throw this.writeFailure
    const dirty = [...this.retired, ...this.activePacks().filter((pack) => pack.dirty)]
    await Promise.all(dirty.map(async (pack) => { await fsyncFd(pack.fd); pack.dirty = false }))
    for (const pack of this.retired.splice(0)) closePack(pack)
  }

  /**
   * Forgets what was appended since the last indexed block (after a failed import): the write side
   * is closed and the next `recover()` or append starts from the index again.
   */
  async abandon (): Promise<void> {
    await Promise.allSettled(this.inFlight)
    for (const pack of [...this.retired.splice(0), ...this.activePacks()]) closePack(pack)
    this.forgetActive()
    this.writeFailure = undefined
    this.inFlightBytes = 0
    this.inFlightHolders = 0
    this.recover()
  }

  /** Reads `length` bytes at `offset` of a pack; a short read (truncated file) returns fewer. */
  read (pack: number, offset: number, length: number): Uint8Array {
    let fd = this.readFds.get(pack)
    if (fd === undefined) {
      fd = openSync(this.path(pack), 'r')
      this.readFds.set(pack, fd)
    }
    const bytes = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const n = readSync(fd, bytes, done, length - done, offset + done)
      if (n === 0) break
      done += n
    }
    return done === length ? bytes : bytes.subarray(0, done)
  }

  /** Deletes a pack file (after compaction moved its live blocks). */
  remove (pack: number): void {
    const fd = this.readFds.get(pack)
    if (fd !== undefined) closeSync(fd)
    this.readFds.delete(pack)
    unlinkSync(this.path(pack))
  }

  /** Syncs and closes the pack being appended to, so that compaction may rewrite it too. */
  async closeActive (): Promise<void> {
    await this.sync()
    for (const pack of this.activePacks()) closePack(pack)
    this.forgetActive()
  }

  close (): void {
    for (const pack of [...this.retired.splice(0), ...this.activePacks()]) closePack(pack)
    this.forgetActive()
    for (const fd of this.readFds.values()) closeSync(fd)
    this.readFds.clear()
  }

  private activePacks (): WritablePack[] {
    return [this.active.direct, this.active.buffered].filter((pack) => pack !== undefined)
  }

  private forgetActive (): void {
    delete this.active.direct
    delete this.active.buffered
  }

  private openNextPack (stream: PackStream): WritablePack {
    const full = this.active[stream]
    if (full !== undefined) {
      this.startWrite(full)
      this.retired.push(full)
      delete this.active[stream]
    }
    // Reuse the newest pack that has room (a store that imports small images keeps few files): not
    // one with dead bytes (compaction may be about to rewrite and delete it), not the other
    // stream's, and for direct writes only one whose end is page-aligned.
    const recent = this.db.prepare('SELECT id FROM packs WHERE bytes < ? AND dead_bytes = 0 ORDER BY id DESC LIMIT 4').pluck().all(PACK_LIMIT_BYTES / 2) as number[]
    const taken = new Set([...this.retired, ...this.activePacks()].map((p) => p.id))
    let pack: WritablePack | undefined
    for (const id of recent.filter((id) => !taken.has(id))) {
      const fd = this.openForAppend(this.path(id), stream, 'reuse')
      const end = fstatSync(fd.fd).size
      if (stream === 'direct' && end % DIRECT_IO_ALIGNMENT !== 0) {
        closeSync(fd.fd)
        continue
      }
      pack = { id, ...fd, end, buffer: [], bufferedBytes: 0, holders: [], distinctHolders: 0, dirty: false }
      break
    }
    if (pack === undefined) {
      const id = Number(this.db.prepare('INSERT INTO packs DEFAULT VALUES').run().lastInsertRowid)
      pack = { id, ...this.openForAppend(this.path(id), stream, 'create'), end: 0, buffer: [], bufferedBytes: 0, holders: [], distinctHolders: 0, dirty: false }
    }
    this.active[stream] = pack
    return pack
  }

  /** Opens a pack to append to, with O_DIRECT for the direct stream unless the file system refuses it. */
  private openForAppend (path: string, stream: PackStream, how: 'create' | 'reuse'): { fd: number, direct: boolean } {
    const flags = constants.O_RDWR | (how === 'create' ? constants.O_CREAT | constants.O_TRUNC : 0)
    if (stream === 'direct' && this.directIo) {
      try {
        return { fd: openSync(path, flags | constants.O_DIRECT), direct: true }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        this.directIo = false
      }
    }
    return { fd: openSync(path, flags), direct: false }
  }

  /** The descriptor a write to this pack uses: the O_DIRECT one unless the kernel refused it. */
  private writeFd (pack: WritablePack): number {
    return pack.fallbackFd ?? pack.fd
  }

  /** After the kernel refused a direct write (alignment it wants and we could not know): the page cache from now on. */
  private fallBackToPageCache (pack: WritablePack): void {
    this.directIo = false
    pack.fallbackFd ??= openSync(this.path(pack.id), constants.O_RDWR)
  }

  private startWrite (pack: WritablePack): void {
    if (pack.bufferedBytes === 0) return
    const blocks = pack.buffer
    const holders = pack.holders
    const distinctHolders = pack.distinctHolders
    const length = pack.bufferedBytes
    const position = pack.end - length
    pack.buffer = []
    pack.holders = []
    pack.distinctHolders = 0
    pack.bufferedBytes = 0
    pack.dirty = true
    this.inFlightBytes += length
    this.inFlightHolders += distinctHolders
    const done = this.writeAll(pack, blocks, position)
      .catch((err: unknown) => { this.writeFailure ??= err })
      .finally(() => {
        this.inFlight.delete(done)
        this.inFlightBytes -= length
        this.inFlightHolders -= distinctHolders
        for (const holder of holders) holder.release()
      })
    this.inFlight.add(done)
  }

  /** One writev per batch of blocks (no copy into a bigger buffer); loops over short writes. */
  private async writeAll (pack: WritablePack, blocks: Uint8Array[], position: number): Promise<void> {
    let pending = blocks
    let at = position
    while (pending.length > 0) {
      let written: number
      try {
        written = await writevAt(this.writeFd(pack), pending.slice(0, IOV_MAX), at)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL' || !pack.direct || pack.fallbackFd !== undefined) throw err
        this.fallBackToPageCache(pack)
        continue
      }
      at += written
      if (pack.direct && pack.fallbackFd === undefined) this.written.direct += written
      else this.written.pageCache += written
      const rest: Uint8Array[] = []
      for (const block of pending) {
        if (written >= block.byteLength) { written -= block.byteLength; continue }
        rest.push(written > 0 ? block.subarray(written) : block)
        written = 0
      }
      pending = rest
    }
  }
}

function closePack (pack: WritablePack): void {
  closeSync(pack.fd)
  if (pack.fallbackFd !== undefined) closeSync(pack.fallbackFd)
}
