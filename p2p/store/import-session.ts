import type Database from 'better-sqlite3'
import { UnixFS } from 'ipfs-unixfs'
import type { BufferImporter, BufferImporterResult, WritableStorage } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'
import { encodeLeaf, isAllZero, isZeroLeafCid, leafCid, zeroLeafCidOf, type DagProfile } from './blocks.js'
import { AbortError, ImageStoreError } from './errors.js'
import type { LeafSource } from './file-reader.js'
import type { BlockLocation, BufferHolder, PackFiles } from './packs.js'
import type { PresentFilter } from './present-filter.js'
import type { ProgressTracker } from './progress.js'

/** New blocks are indexed (after an fsync) at least every this many bytes: bounds what a crash redoes. */
const BATCH_BYTES = 64 << 20
/** ...or every this many blocks, which bounds memory at small chunk sizes. */
const BATCH_ENTRIES = 32_768
/** Manifest rows per INSERT statement at registration: one statement per row would cost more than the rows. */
const MANIFEST_ROWS_PER_INSERT = 128

/** A block first seen by this import: its chunk id is known once its batch is indexed. */
interface NewBlock {
  cid: Uint8Array
  length: number
  zeroDataLength: number | null
  location: BlockLocation | null
  id: number
}

interface Batch {
  /** Blocks not yet in the index, each once: a block repeated within the import is written once. */
  newBlocks: NewBlock[]
  /** Leaves and inner nodes whose chunk id waits for the indexing of this batch (or an earlier one). */
  leaves: Array<[position: number, block: NewBlock]>
  nodes: NewBlock[]
  /** Chunks already indexed that an adoption pins (with its new blocks) in this batch's transaction. */
  pins: number[]
  bytes: number
}

/** A leaf the caller received and checked against its CID (p2p/exchange): stored without hashing it again. */
export interface AdoptedLeaf {
  cid: CID
  block: Uint8Array
}

/**
 * One import's writes. The importer hands it leaves (through `bufferImporter`, in file order) and
 * inner nodes (through `put`). Blocks go to the pack files at once; every batch is fsynced, then
 * indexed in one SQLite transaction, so a crash leaves stored, indexed chunks (reused by the next
 * attempt) and no image. The manifest (each position's chunk id, and the inner nodes' ids) is
 * kept in memory — 8 bytes a chunk — and written once, straight into `image_chunks` and
 * `image_nodes`, by the registration transaction (`writeManifest`).
 */
export class ImportSession implements WritableStorage {
  private batch: Batch = emptyBatch()
  /** Blocks of this import not yet indexed (this batch and those committing), by CID. */
  private readonly unindexed = new Map<string, NewBlock>()
  private committing: Promise<void> = Promise.resolve()
  private readonly findPresent: Database.Statement<[Uint8Array], number>
  private readonly insertChunk: Database.Statement
  private readonly fillChunk: Database.Statement
  private readonly findChunk: Database.Statement<[Uint8Array], number>
  private readonly addDeadBytes: Database.Statement
  private readonly growPack: Database.Statement
  private readonly insertPin: Database.Statement | undefined
  /** Chunk id per leaf position (0 while its batch is not indexed). */
  private leafIds = new Float64Array(1024)
  private readonly nodeIds = new Set<number>()
  leafCount = 0
  zeroBytes = 0
  bytesRead = 0
  /** Positions `registeredLeaves` found neither stored nor all zeros. */
  readonly missing: number[] = []

  constructor (
    private readonly db: Database.Database,
    private readonly packs: PackFiles,
    readonly importId: number,
    private readonly profile: DagProfile,
    private readonly tracker: ProgressTracker,
    private readonly signal: AbortSignal | undefined,
    /** What the store holds already, roughly: a "no" spares the SQLite lookup. */
    private readonly present: PresentFilter,
    /** The file reader, when the content comes from one: digests hashed ahead, and the pieces' buffers to release. */
    private readonly leafSource?: LeafSource,
    /** An adoption (`adoptions.id`): every block this session stores or finds through `adoptLeaf` is pinned by it. */
    private readonly adoption?: number
  ) {
    this.findPresent = db.prepare<[Uint8Array], number>('SELECT id FROM chunks WHERE cid = ? AND present = 1').pluck()
    // A plain insert gives the new row's id; on a conflict the row exists without its bytes
    // (present = 0: known from a remote manifest, not fetched) and is filled in.
    this.insertChunk = db.prepare('INSERT INTO chunks (cid, length, zero_data_length, pack, offset) VALUES (?, ?, ?, ?, ?) ON CONFLICT (cid) DO NOTHING')
    this.fillChunk = db.prepare('UPDATE chunks SET zero_data_length = ?, pack = ?, offset = ?, present = 1 WHERE cid = ? AND present = 0 RETURNING id').pluck()
    this.findChunk = db.prepare<[Uint8Array], number>('SELECT id FROM chunks WHERE cid = ?').pluck()
    this.addDeadBytes = db.prepare('UPDATE packs SET dead_bytes = dead_bytes + ? WHERE id = ?')
    this.growPack = db.prepare('UPDATE packs SET bytes = max(bytes, ?) WHERE id = ?')
    this.insertPin = adoption === undefined ? undefined : db.prepare('INSERT OR IGNORE INTO adoption_chunks (chunk, adoption) VALUES (?, ?)')
  }

  /** The importer's leaf stage: our own so that leaves are hashed synchronously, checked for zeros and recorded in order. */
  bufferImporter (): BufferImporter {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const session = this
    return async function * leaves (file) {
      let position = 0
      for await (const data of file.content) {
        const index = position++
        yield async () => await session.storeLeaf(index, data)
      }
    }
  }

  async storeLeaf (position: number, data: Uint8Array): Promise<BufferImporterResult> {
    this.throwIfAborted()
    const { block, unixfs } = encodeLeaf(data, this.profile)
    const digest = this.leafSource?.takeDigest(position)
    const zero = isAllZero(data)
    // An all-zero leaf's CID depends only on its length: known without hashing (nor is it stored).
    const cid = zero ? zeroLeafCidOf(data.byteLength, this.profile) : leafCid(block, this.profile, digest)
    if (zero) this.zeroBytes += data.byteLength
    // A raw leaf is a view of the reader's buffer: the pack write holds that buffer until written.
    const piece = this.leafSource?.pieceOf(position)
    const chunk = this.record(cid, block, zero ? data.byteLength : null, block === data ? piece : undefined)
    piece?.release()
    this.placeLeaf(position, chunk, data.byteLength)
    await this.afterAppend()
    return { cid, size: BigInt(block.byteLength), block, ...(unixfs === undefined ? {} : { unixfs }) }
  }

  /**
   * Stores a leaf block the caller has checked against its CID, without hashing it again (or finds
   * it stored already), and pins it for this session's adoption. Not part of a manifest: the
   * image is registered later from its leaf CIDs (`registeredLeaves`).
   */
  async adoptLeaf (leaf: AdoptedLeaf, holder?: BufferHolder): Promise<void> {
    this.throwIfAborted()
    const chunk = this.record(leaf.cid, leaf.block, null, holder)
    if (typeof chunk === 'number') this.batch.pins.push(chunk)
    await this.afterAppend()
  }

  /**
   * The importer's leaf stage for an image whose leaves are stored already (adopted): it yields
   * each leaf's CID and size from the manifest, reading no data, so that the importer builds and
   * stores only the inner nodes — the same DAG `storeLeaf` would give for the same bytes.
   * All-zero leaves (never stored) are recorded by their CID; any other leaf not stored goes to
   * `missing`.
   */
  registeredLeaves (cids: CID[], size: number, chunkSize: number): BufferImporter {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const session = this
    // kubo leaves: the layout reads each leaf's data length from its UnixFS node (a view of zeros does).
    const zeros = this.profile === 'ipfs' ? new Uint8Array(chunkSize) : undefined
    const blockLengths = new Map<number, number>()
    return async function * leaves () {
      for (let position = 0; position < cids.length; position++) {
        const dataLength = position === cids.length - 1 ? size - position * chunkSize : chunkSize
        let blockLength = blockLengths.get(dataLength)
        if (blockLength === undefined) {
          blockLength = session.profile === 'hgmig' ? dataLength : encodeLeaf(new Uint8Array(dataLength), 'ipfs').block.byteLength
          blockLengths.set(dataLength, blockLength)
        }
        const cid = cids[position] as CID
        const length = blockLength
        yield async () => {
          await session.registerLeaf(position, cid, dataLength, length)
          const result: BufferImporterResult = { cid, size: BigInt(length), block: new Uint8Array(0) }
          if (zeros !== undefined) result.unixfs = new UnixFS({ type: 'file', data: zeros.subarray(0, dataLength) })
          return result
        }
      }
    }
  }

  private async registerLeaf (position: number, cid: CID, dataLength: number, blockLength: number): Promise<void> {
    this.throwIfAborted()
    const zero = isZeroLeafCid(cid, dataLength)
    let chunk = this.lookup(cid)
    if (chunk === undefined && zero) {
      chunk = { cid: cid.bytes, length: blockLength, zeroDataLength: dataLength, location: null, id: 0 }
      this.present.add(cid.multihash.digest)
      this.unindexed.set(cidKey(cid), chunk)
      this.batch.newBlocks.push(chunk)
    }
    if (zero) this.zeroBytes += dataLength
    if (chunk !== undefined) {
      this.placeLeaf(position, chunk, dataLength)
    } else {
      this.missing.push(position)
      this.leafCount++
      this.bytesRead += dataLength
    }
    await this.afterAppend()
  }

  private placeLeaf (position: number, chunk: number | NewBlock, dataLength: number): void {
    if (position >= this.leafIds.length) this.growLeafIds(position)
    if (typeof chunk === 'number') this.leafIds[position] = chunk
    else this.batch.leaves.push([position, chunk])
    this.leafCount++
    this.bytesRead += dataLength
    this.tracker.advance(dataLength)
  }

  /** Inner DAG nodes (and nothing else: leaves come through `storeLeaf`). */
  async put (cid: CID, block: Uint8Array): Promise<CID> {
    this.throwIfAborted()
    const chunk = this.record(cid, block, null)
    if (typeof chunk === 'number') this.nodeIds.add(chunk)
    else this.batch.nodes.push(chunk)
    await this.afterAppend()
    return cid
  }

  /** The block's chunk id if it is indexed already, else its (possibly just appended) unindexed block. */
  private record (cid: CID, block: Uint8Array, zeroDataLength: number | null, holder?: BufferHolder): number | NewBlock {
    const known = this.lookup(cid)
    if (known !== undefined) return known
    this.present.add(cid.multihash.digest)
    const location = zeroDataLength === null ? this.packs.append(block, holder) : null
    const fresh: NewBlock = { cid: cid.bytes, length: block.byteLength, zeroDataLength, location, id: 0 }
    this.unindexed.set(cidKey(cid), fresh)
    this.batch.newBlocks.push(fresh)
    if (location !== null) this.batch.bytes += block.byteLength
    return fresh
  }

  /** The chunk id of a stored block, its block if this session stored it and it is not indexed yet, or undefined. */
  private lookup (cid: CID): number | NewBlock | undefined {
    const pending = this.unindexed.get(cidKey(cid))
    if (pending !== undefined) return pending
    if (!this.present.mightHold(cid.multihash.digest)) return undefined
    return this.findPresent.get(cid.bytes)
  }

  private growLeafIds (position: number): void {
    const grown = new Float64Array(Math.max(position + 1, this.leafIds.length * 2))
    grown.set(this.leafIds)
    this.leafIds = grown
  }

  private async afterAppend (): Promise<void> {
    if (this.packs.congested) await this.packs.drain()
    if (this.batch.bytes >= BATCH_BYTES || this.batch.newBlocks.length + this.batch.leaves.length >= BATCH_ENTRIES) {
      // The new batch's fsync and transaction overlap the hashing of the next one; waiting for the
      // one before keeps at most two batches in memory.
      const older = this.committing
      void this.commitBatch().catch(() => { /* seen by the next await of this.committing */ })
      await older
    }
  }

  /** Makes everything so far durable and indexed. */
  async flush (): Promise<void> {
    await this.committing
    await this.commitBatch()
  }

  /**
   * Writes the manifest into `image_chunks` and `image_nodes` for image `imageId`, inside the
   * caller's (registration) transaction, after `flush()`. Returns how many leaf rows it wrote.
   */
  writeManifest (imageId: number): number {
    const rows = MANIFEST_ROWS_PER_INSERT
    const insertMany = this.db.prepare(`INSERT INTO image_chunks (image, position, chunk) VALUES ${Array(rows).fill('(?, ?, ?)').join(', ')}`)
    const insertOne = this.db.prepare('INSERT INTO image_chunks (image, position, chunk) VALUES (?, ?, ?)')
    const params = new Array<number>(3 * rows)
    let position = 0
    for (; position + rows <= this.leafCount; position += rows) {
      for (let i = 0; i < rows; i++) {
        params[3 * i] = imageId
        params[3 * i + 1] = position + i
        params[3 * i + 2] = this.leafId(position + i)
      }
      insertMany.run(params)
    }
    for (; position < this.leafCount; position++) insertOne.run(imageId, position, this.leafId(position))
    const insertNode = this.db.prepare('INSERT INTO image_nodes (image, chunk) VALUES (?, ?)')
    for (const id of this.nodeIds) insertNode.run(imageId, id)
    return position
  }

  private leafId (position: number): number {
    const id = this.leafIds[position] as number
    if (id === 0) throw new ImageStoreError(`internal error: leaf ${position} has no chunk id after the import's last batch`)
    return id
  }

  private async commitBatch (): Promise<void> {
    // Batches commit in order, one at a time; the importer keeps filling the next one meanwhile.
    const batch = this.batch
    this.batch = emptyBatch()
    const previous = this.committing
    const current = (async () => {
      await previous
      await this.packs.sync()
      // synchronous = NORMAL for this one transaction: its WAL fsync would block the event loop at
      // every batch, and nothing depends on a batch surviving a power cut — a batch lost with it
      // only means its chunks are stored again by the next attempt (its pack bytes are cut off at
      // open as unindexed). The registration commit is FULL and makes all earlier batches durable.
      this.db.pragma('synchronous = NORMAL')
      try {
        this.indexBatch(batch)
      } finally {
        this.db.pragma('synchronous = FULL')
      }
      for (const [position, block] of batch.leaves) this.leafIds[position] = block.id
      for (const block of batch.nodes) this.nodeIds.add(block.id)
      for (const block of batch.newBlocks) this.unindexed.delete(bytesKey(block.cid))
    })()
    this.committing = current
    await current
  }

  private indexBatch (batch: Batch): void {
    const packEnds = new Map<number, number>()
    this.db.transaction(() => {
      for (const block of batch.newBlocks) {
        const pack = block.location?.pack ?? null
        const offset = block.location?.offset ?? null
        const inserted = this.insertChunk.run(block.cid, block.length, block.zeroDataLength, pack, offset)
        if (inserted.changes === 1) {
          block.id = Number(inserted.lastInsertRowid)
        } else {
          const filled = this.fillChunk.get(block.zeroDataLength, pack, offset, block.cid) as number | undefined
          // Present already (not by this store's imports, which looked first): the bytes just written are dead.
          if (filled === undefined && pack !== null) this.addDeadBytes.run(block.length, pack)
          block.id = filled ?? this.findChunk.get(block.cid) as number
        }
        if (block.location !== null) {
          const end = block.location.offset + block.length
          packEnds.set(block.location.pack, Math.max(end, packEnds.get(block.location.pack) ?? 0))
        }
      }
      for (const [pack, end] of packEnds) this.growPack.run(end, pack)
      if (this.insertPin !== undefined) {
        for (const block of batch.newBlocks) this.insertPin.run(block.id, this.adoption)
        for (const id of batch.pins) this.insertPin.run(id, this.adoption)
      }
    })()
  }

  private throwIfAborted (): void {
    if (this.signal?.aborted === true) throw new AbortError('import cancelled')
  }
}

function emptyBatch (): Batch {
  return { newBlocks: [], leaves: [], nodes: [], pins: [], bytes: 0 }
}

function bytesKey (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

function cidKey (cid: CID): string {
  return bytesKey(cid.bytes)
}
