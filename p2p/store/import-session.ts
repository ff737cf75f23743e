import type Database from 'better-sqlite3'
import type { BufferImporter, BufferImporterResult, WritableStorage } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'
import { encodeLeaf, isAllZero, leafCid, type DagProfile } from './blocks.js'
import { AbortError } from './errors.js'
import type { LeafSource } from './file-reader.js'
import type { BlockLocation, BufferHolder, PackFiles } from './packs.js'
import type { ProgressTracker } from './progress.js'

/** New blocks are indexed (after an fsync) at least every this many bytes: bounds what a crash redoes. */
const BATCH_BYTES = 64 << 20
/** ...or every this many manifest entries, which bounds memory at small chunk sizes. */
const BATCH_ENTRIES = 32_768

interface NewBlock {
  cid: Uint8Array
  length: number
  zeroDataLength: number | null
  location: BlockLocation | null
}

interface Batch {
  /** Blocks not yet in the index, by CID (base64): a block repeated within a batch is written once. */
  newBlocks: Map<string, NewBlock>
  leaves: Array<[position: number, cid: Uint8Array]>
  nodes: Uint8Array[]
  bytes: number
}

/**
 * One import's writes. The importer hands it leaves (through `bufferImporter`, in file order) and
 * inner nodes (through `put`). Blocks go to the pack files at once; every batch is fsynced, then
 * indexed in one SQLite transaction together with the import's manifest so far, which lives in
 * `pending_*` tables until the image is registered. So a crash leaves stored, indexed chunks
 * (reused by the next attempt) and no image.
 */
export class ImportSession implements WritableStorage {
  private batch: Batch = emptyBatch()
  /** Blocks of batches swapped out but not yet indexed: still "new", yet must not be written twice. */
  private readonly committingBlocks = new Set<Map<string, NewBlock>>()
  private committing: Promise<void> = Promise.resolve()
  private readonly findPresent: Database.Statement<[Uint8Array], number>
  private readonly upsertChunk: Database.Statement
  private readonly addLeaf: Database.Statement
  private readonly addNode: Database.Statement
  private readonly growPack: Database.Statement
  leafCount = 0
  zeroBytes = 0
  bytesRead = 0

  constructor (
    private readonly db: Database.Database,
    private readonly packs: PackFiles,
    readonly importId: number,
    private readonly profile: DagProfile,
    private readonly tracker: ProgressTracker,
    private readonly signal: AbortSignal | undefined,
    /** The file reader, when the content comes from one: digests hashed ahead, and the pieces' buffers to release. */
    private readonly leafSource?: LeafSource
  ) {
    this.findPresent = db.prepare<[Uint8Array], number>('SELECT id FROM chunks WHERE cid = ? AND present = 1').pluck()
    // A row may exist without its bytes (present = 0: known from a remote manifest): fill it in.
    this.upsertChunk = db.prepare(`INSERT INTO chunks (cid, length, zero_data_length, pack, offset) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (cid) DO UPDATE SET zero_data_length = excluded.zero_data_length, pack = excluded.pack, offset = excluded.offset, present = 1 WHERE present = 0`)
    this.addLeaf = db.prepare('INSERT INTO pending_chunks (import, position, chunk) SELECT ?, ?, id FROM chunks WHERE cid = ?')
    this.addNode = db.prepare('INSERT OR IGNORE INTO pending_nodes (import, chunk) SELECT ?, id FROM chunks WHERE cid = ?')
    this.growPack = db.prepare('UPDATE packs SET bytes = max(bytes, ?) WHERE id = ?')
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
    const cid = leafCid(block, this.profile, this.leafSource?.takeDigest(position))
    const zero = isAllZero(data)
    if (zero) this.zeroBytes += data.byteLength
    // A raw leaf is a view of the reader's buffer: the pack write holds that buffer until written.
    const piece = this.leafSource?.pieceOf(position)
    this.record(cid, block, zero ? data.byteLength : null, block === data ? piece : undefined)
    piece?.release()
    this.batch.leaves.push([position, cid.bytes])
    this.leafCount++
    this.bytesRead += data.byteLength
    this.tracker.advance(data.byteLength)
    await this.afterAppend()
    return { cid, size: BigInt(block.byteLength), block, ...(unixfs === undefined ? {} : { unixfs }) }
  }

  /** Inner DAG nodes (and nothing else: leaves come through `storeLeaf`). */
  async put (cid: CID, block: Uint8Array): Promise<CID> {
    this.throwIfAborted()
    this.record(cid, block, null)
    this.batch.nodes.push(cid.bytes)
    await this.afterAppend()
    return cid
  }

  private record (cid: CID, block: Uint8Array, zeroDataLength: number | null, holder?: BufferHolder): void {
    const key = Buffer.from(cid.bytes).toString('base64')
    if (this.batch.newBlocks.has(key) || [...this.committingBlocks].some((blocks) => blocks.has(key))) return
    if (this.findPresent.get(cid.bytes) !== undefined) return
    const location = zeroDataLength === null ? this.packs.append(block, holder) : null
    this.batch.newBlocks.set(key, { cid: cid.bytes, length: block.byteLength, zeroDataLength, location })
    if (location !== null) this.batch.bytes += block.byteLength
  }

  private async afterAppend (): Promise<void> {
    if (this.packs.congested) await this.packs.drain()
    if (this.batch.bytes >= BATCH_BYTES || this.batch.leaves.length + this.batch.nodes.length >= BATCH_ENTRIES) {
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

  private async commitBatch (): Promise<void> {
    // Batches commit in order, one at a time; the importer keeps filling the next one meanwhile.
    const batch = this.batch
    this.batch = emptyBatch()
    this.committingBlocks.add(batch.newBlocks)
    const previous = this.committing
    const current = (async () => {
      await previous
      await this.packs.sync()
      const packEnds = new Map<number, number>()
      // synchronous = NORMAL for this one transaction: its WAL fsync would block the event loop at
      // every batch, and nothing depends on a batch surviving a power cut — a batch lost with it
      // only means its chunks are stored again by the next attempt (its pack bytes are cut off at
      // open as unindexed). The registration commit is FULL and makes all earlier batches durable.
      this.db.pragma('synchronous = NORMAL')
      try {
        this.indexBatch(batch, packEnds)
      } finally {
        this.db.pragma('synchronous = FULL')
      }
    })().finally(() => this.committingBlocks.delete(batch.newBlocks))
    this.committing = current
    await current
  }

  private indexBatch (batch: Batch, packEnds: Map<number, number>): void {
    this.db.transaction(() => {
      for (const block of batch.newBlocks.values()) {
        this.upsertChunk.run(block.cid, block.length, block.zeroDataLength, block.location?.pack ?? null, block.location?.offset ?? null)
        if (block.location !== null) {
          const end = block.location.offset + block.length
          packEnds.set(block.location.pack, Math.max(end, packEnds.get(block.location.pack) ?? 0))
        }
      }
      for (const [pack, end] of packEnds) this.growPack.run(end, pack)
      for (const [position, cid] of batch.leaves) this.addLeaf.run(this.importId, position, cid)
      for (const cid of batch.nodes) this.addNode.run(this.importId, cid)
    })()
  }

  private throwIfAborted (): void {
    if (this.signal?.aborted === true) throw new AbortError('import cancelled')
  }
}

function emptyBatch (): Batch {
  return { newBlocks: new Map(), leaves: [], nodes: [], bytes: 0 }
}
