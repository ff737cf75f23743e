import { randomBytes } from 'node:crypto'
import { constants, createWriteStream, mkdirSync } from 'node:fs'
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { pipeline } from 'node:stream/promises'
import Database from 'better-sqlite3'
import { exporter, type ReadableStorage } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { CID } from 'multiformats/cid'
import { AdoptionBuffers } from './adoption.js'
import { blockMatches, isZeroLeafCid, zeroLeafCid, zeroLeafBlock, type DagProfile } from './blocks.js'
import {
  AbortError, AmbiguousImageError, CorruptChunkError, ImageExistsError, ImageInUseError, ImageNotFoundError,
  ImageStoreError, ImportSourceError, InvalidOptionError, LayerRuleError, MissingChunksError, RootMismatchError,
  StoreClosedError, StoreFormatError, StoreFullError
} from './errors.js'
import { FileReader } from './file-reader.js'
import { ImportSession, type AdoptedLeaf } from './import-session.js'
import { DirectoryLock } from './lock.js'
import { PackFiles } from './packs.js'
import { ProgressTracker, type ProgressOptions } from './progress.js'
import { PresentFilter } from './present-filter.js'
import { migrate } from './schema.js'
import {
  BASE_LAYER, LAYERS, type AbortOptions, type AddImageOptions, type AdoptedImage, type CorruptChunk, type ExportOptions, type ExportResult,
  type GcResult, type ImageDetails, type ImageInfo, type ImageStoreClient, type ImportSource, type Layer,
  type LayerSimilarity, type PresenceReport, type RemoteManifest, type RemoveResult, type SimilarityMatrix, type SimilarityReport,
  type StoreStats, type VerifyReport
} from './types.js'

/** Chunk size of a new store unless told otherwise; see README ("Choosing the chunk size") for the measurements. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024
/** kubo's `ipfs add` default (and the only size the 'ipfs' profile allows). */
export const IPFS_CHUNK_SIZE = 256 * 1024
const MIN_CHUNK_SIZE = 1024
const MAX_CHUNK_SIZE = 1024 * 1024
/** Blocks handed to the file writer but not yet written, at most: the exporter itself does not wait for its reader. */
const EXPORT_READ_AHEAD_BYTES = 32 << 20
/** A pack whose dead bytes reach this share is rewritten by gc. */
const COMPACT_DEAD_SHARE = 0.25

export interface ImageStoreInit {
  /** The store's own directory (the CLI uses `<data>/store`). Created if missing. */
  directory: string
  /**
   * Chunk size of a new store, in bytes (a power of two, 1 KiB to 1 MiB). A swarm-wide setting:
   * images chunked differently share nothing. An existing store keeps the size it was created with.
   */
  chunkSize?: number
  /** Read and hash imported files on a worker thread (default true); false keeps to one thread (benchmarks compare both). */
  hashInWorker?: boolean
}

interface ImageRow {
  id: number
  ref: string
  name: string
  layer: Layer
  base: number | null
  root_cid: string
  size: number
  chunk_size: number
  profile: DagProfile
  public: number
  created: number
  chunk_count: number
  zero_bytes: number
}

interface ChunkRow {
  id: number
  cid: Uint8Array
  length: number
  zero_data_length: number | null
  pack: number | null
  offset: number | null
}

/** js-libp2p style factory: the store is created closed; `open()` it, `close()` it when done. */
export function createImageStore (init: ImageStoreInit): ImageStore {
  return new ImageStore(init)
}

/**
 * The content-addressed image store: VM images as UnixFS DAGs over one deduplicated, reference-
 * counted block store (append-only pack files indexed in SQLite). Knows nothing of the network.
 */
export class ImageStore implements ImageStoreClient {
  readonly directory: string
  private readonly requestedChunkSize: number | undefined
  private db: Database.Database | undefined
  private packs: PackFiles | undefined
  private lock: DirectoryLock | undefined
  /** Operations that write (add, remove, gc) run one at a time, in call order. */
  private writeQueue: Promise<unknown> = Promise.resolve()
  private chunkSizeSetting = DEFAULT_CHUNK_SIZE
  private readonly hashInWorker: boolean
  /** Digests of the chunks stored here (a Bloom filter), built at the first import after open. */
  private presentFilter: PresentFilter | undefined
  private findChunkStatement: Database.Statement | undefined
  /** Page-aligned memory for adopted leaves (O_DIRECT), made at the first adoption. */
  private adoptionBuffers: AdoptionBuffers | undefined

  constructor (init: ImageStoreInit) {
    this.directory = resolve(init.directory)
    if (init.chunkSize !== undefined) validateChunkSize(init.chunkSize)
    this.requestedChunkSize = init.chunkSize
    this.hashInWorker = init.hashInWorker ?? true
  }

  get isOpen (): boolean {
    return this.db !== undefined
  }

  /** The swarm-wide chunk size this store imports with. */
  get chunkSize (): number {
    return this.chunkSizeSetting
  }

  /**
   * Bytes written to pack files since `open()`: with O_DIRECT (an imported file's leaves, where the
   * file system allows it) and through the page cache (everything else). For benchmarks and tests.
   */
  get packBytesWritten (): { direct: number, pageCache: number } {
    return { ...(this.packs?.written ?? { direct: 0, pageCache: 0 }) }
  }

  async open (): Promise<void> {
    if (this.db !== undefined) return
    mkdirSync(this.directory, { recursive: true })
    const lock = DirectoryLock.acquire(this.directory)
    try {
      const db = new Database(join(this.directory, 'index.sqlite'))
      try {
        db.pragma('journal_mode = WAL')
        // FULL: a committed transaction (an image registered, a batch of chunks indexed) survives power loss.
        db.pragma('synchronous = FULL')
        db.pragma('foreign_keys = ON')
        migrate(db)
        const stored = db.prepare("SELECT value FROM settings WHERE key = 'chunk_size'").pluck().get() as string | undefined
        if (stored === undefined) {
          this.chunkSizeSetting = this.requestedChunkSize ?? DEFAULT_CHUNK_SIZE
          db.prepare("INSERT INTO settings (key, value) VALUES ('chunk_size', ?)").run(String(this.chunkSizeSetting))
        } else {
          this.chunkSizeSetting = Number(stored)
          if (this.requestedChunkSize !== undefined && this.requestedChunkSize !== this.chunkSizeSetting) {
            throw new StoreFormatError(`the store in ${this.directory} chunks images at ${this.chunkSizeSetting} bytes, not ${this.requestedChunkSize}: chunk sizes cannot change (its chunks would share nothing with new ones)`)
          }
        }
        // Imports that were running when a process died: their manifests go, their chunks stay (refcount 0) for reuse.
        db.prepare('DELETE FROM pending_imports').run()
        const packs = new PackFiles(this.directory, db)
        packs.recover()
        this.db = db
        this.packs = packs
        this.lock = lock
      } catch (err) {
        db.close()
        throw err
      }
    } catch (err) {
      lock.release()
      throw err
    }
  }

  async close (): Promise<void> {
    if (this.db === undefined) return
    await this.writeQueue.catch(() => {})
    this.packs?.close()
    this.db.close()
    this.lock?.release()
    this.db = undefined
    this.packs = undefined
    this.lock = undefined
    this.presentFilter = undefined
    this.findChunkStatement = undefined
  }

  // ---------------------------------------------------------------- import

  async add (source: ImportSource, options: AddImageOptions): Promise<ImageInfo> {
    return await this.exclusive(async () => await this.importImage(source, options))
  }

  private async importImage (source: ImportSource, options: AddImageOptions): Promise<ImageInfo> {
    const db = this.openDb()
    const packs = this.packs as PackFiles
    const profile = options.profile ?? 'hgmig'
    if (profile !== 'hgmig' && profile !== 'ipfs') throw new InvalidOptionError(`unknown profile "${String(profile)}" (hgmig or ipfs)`)
    const chunkSize = profile === 'ipfs' ? IPFS_CHUNK_SIZE : this.chunkSizeSetting
    const name = options.name ?? (typeof source === 'string' ? basename(source) : source.description)
    const base = this.checkLayerRules(options.layer, options.base)
    this.checkNameFree(name)
    throwIfAborted(options.signal, 'import cancelled')

    const opened = await openSource(source)
    const { size, description, closeSource } = opened
    // A file is read in chunk-aligned pieces from reused buffers. Raw leaves: a worker thread
    // hashes them while this one reads, so that two cores share the work. (kubo's dag-pb leaves
    // hash the wrapped block, which this thread builds: no worker then.)
    const fileReader = 'handle' in opened ? new FileReader(opened.handle, chunkSize, profile === 'hgmig' && this.hashInWorker) : undefined
    const content = 'content' in opened ? opened.content : (fileReader as FileReader).content()
    const importId = Number(db.prepare('INSERT INTO pending_imports (source, started) VALUES (?, ?)').run(description, Date.now()).lastInsertRowid)
    const tracker = new ProgressTracker('import', size, options.onProgress)
    if (this.presentFilter === undefined || this.presentFilter.full) this.presentFilter = PresentFilter.build(db)
    const session = new ImportSession(db, packs, importId, profile, tracker, options.signal, this.presentFilter, fileReader)
    try {
      let root: CID | undefined
      const entries = importer([{ content }], session, {
        chunker: fileReader?.chunker() ?? fixedSize({ chunkSize }),
        bufferImporter: session.bufferImporter(),
        ...dagOptions(profile)
      })
      for await (const entry of entries) root = entry.cid
      await session.flush()
      if (root === undefined || session.bytesRead === 0) throw new ImportSourceError(`${description} is empty (0 bytes): a VM disk image is never empty`)
      if (session.bytesRead !== size) throw new ImportSourceError(`${description}: read ${session.bytesRead} bytes, but it has ${size}; was it changed during the import?`)
      // The last chance to cancel: after this the image exists.
      throwIfAborted(options.signal, 'import cancelled')
      return this.register(session, { importId, name, layer: options.layer, base, root, size: session.bytesRead, chunkSize, profile, isPublic: options.private !== true, chunkCount: session.leafCount, zeroBytes: session.zeroBytes })
    } catch (err) {
      await packs.abandon()
      db.prepare('DELETE FROM pending_imports WHERE id = ?').run(importId)
      throw translateImportError(err, description)
    } finally {
      await fileReader?.close()
      await closeSource()
    }
  }

  private register (session: ImportSession, image: { importId: number, name: string, layer: Layer, base: ImageRow | undefined, root: CID, size: number, chunkSize: number, profile: DagProfile, isPublic: boolean, chunkCount: number, zeroBytes: number, adoption?: number }): ImageInfo {
    const db = this.openDb()
    const ref = this.newImageRef()
    const id = db.transaction(() => {
      // Checked again inside the transaction: the rules held at the start, but another API call could have run meanwhile.
      this.checkNameFree(image.name)
      const rowid = Number(db.prepare(`INSERT INTO images (ref, name, layer, base, root_cid, size, chunk_size, profile, public, created, chunk_count, zero_bytes)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(ref, image.name, image.layer, image.base?.id ?? null, image.root.toString(), image.size,
        image.chunkSize, image.profile, image.isPublic ? 1 : 0, Date.now(), image.chunkCount, image.zeroBytes).lastInsertRowid)
      // The manifest is written once, here: an import's batches keep it in memory, not in pending_* tables.
      const positions = session.writeManifest(rowid)
      db.prepare(`UPDATE chunks SET refcount = refcount + 1 WHERE id IN (
        SELECT chunk FROM image_chunks WHERE image = ? UNION SELECT chunk FROM image_nodes WHERE image = ?)`).run(rowid, rowid)
      db.prepare('DELETE FROM pending_imports WHERE id = ?').run(image.importId)
      // The image's refcounts hold the adopted leaves now: their pins go.
      if (image.adoption !== undefined) this.releasePins(image.adoption)
      if (positions !== image.chunkCount) throw new ImageStoreError(`internal error: ${positions} manifest entries recorded for ${image.chunkCount} chunks`)
      return rowid
    }).immediate()
    return toInfo(this.imageRow(id), this.refOf.bind(this))
  }

  // ---------------------------------------------------------------- adopted leaves (p2p/exchange)

  /**
   * Stores leaf blocks the caller has already checked against their CIDs (the exchange hashes
   * every block it receives), once and without hashing them again: straight into the pack files
   * (page-sized blocks copied into aligned memory and written with O_DIRECT), fsynced, then indexed
   * with refcount 0 and pinned by `adoption` (a name the caller chooses, e.g. one per transfer),
   * so that neither gc nor the removal of another image deletes them before `registerAdopted`
   * makes them an image's. A leaf stored already is not written again, only pinned. When the
   * promise resolves the leaves survive a crash (`synchronous = NORMAL` for this commit: a power
   * cut may take the last call back, as with an import's batches; `pinLeaves` tells what is here).
   */
  async adoptLeaves (adoption: string, leaves: AdoptedLeaf[], options: AbortOptions = {}): Promise<void> {
    if (leaves.length === 0) return
    await this.exclusive(async () => {
      throwIfAborted(options.signal, 'adoption cancelled')
      const packs = this.packs as PackFiles
      const session = this.adoptionSession(this.adoptionId(adoption), options.signal)
      try {
        if (packs.writesDirect) {
          this.adoptionBuffers ??= new AdoptionBuffers()
          for (const { leaf, holder } of this.adoptionBuffers.aligned(leaves)) await session.adoptLeaf(leaf, holder)
        } else {
          for (const leaf of leaves) await session.adoptLeaf(leaf)
        }
        await session.flush()
      } catch (err) {
        await packs.abandon()
        throw translateImportError(err, `leaves adopted for ${adoption}`)
      }
    })
  }

  /**
   * Pins, for `adoption`, the leaves of `cids` that are stored here already (by any image, an
   * earlier call of `adoptLeaves`, or an unfinished import), so that they stay until the image is
   * registered; says per CID: 'absent' (to be fetched), 'pinned' (here, pinned now) or 'adopted'
   * (pinned by this adoption before: it stored or found it in an earlier run).
   */
  async pinLeaves (adoption: string, cids: CID[]): Promise<Array<'absent' | 'pinned' | 'adopted'>> {
    return await this.exclusive(async () => {
      const db = this.openDb()
      const id = this.adoptionId(adoption)
      const find = db.prepare('SELECT id FROM chunks WHERE cid = ? AND present = 1').pluck()
      const pin = db.prepare('INSERT OR IGNORE INTO adoption_chunks (chunk, adoption) VALUES (?, ?)')
      return db.transaction(() => cids.map((cid) => {
        const chunk = find.get(cid.bytes) as number | undefined
        if (chunk === undefined) return 'absent'
        return pin.run(chunk, id).changes === 1 ? 'pinned' : 'adopted'
      })).immediate()
    })
  }

  /**
   * Registers an image whose leaves are all here (adopted, or in other images; all-zero leaves are
   * known by their CID) from its manifest: builds and stores only the DAG's inner nodes, with the
   * importer `add` uses, so the image — root CID, layers, chunk list, refcounts — is exactly what
   * `add` of the same bytes gives. The root must come out as `image.rootCid`, else
   * `RootMismatchError`; leaves not here give `MissingChunksError` (nothing registered either way).
   * On success the adoption's pins go (the image's refcounts hold its chunks now).
   */
  async registerAdopted (adoption: string, image: AdoptedImage, options: ProgressOptions & AbortOptions = {}): Promise<ImageInfo> {
    return await this.exclusive(async () => {
      const db = this.openDb()
      const packs = this.packs as PackFiles
      const expected = typeof image.rootCid === 'string' ? CID.parse(image.rootCid) : image.rootCid
      const profile = image.profile ?? (expected.version === 0 ? 'ipfs' : 'hgmig')
      if (profile !== 'hgmig' && profile !== 'ipfs') throw new InvalidOptionError(`unknown profile "${String(profile)}" (hgmig or ipfs)`)
      const chunkSize = profile === 'ipfs' ? IPFS_CHUNK_SIZE : this.chunkSizeSetting
      const expectedChunks = Math.ceil(image.size / chunkSize)
      if (!Number.isSafeInteger(image.size) || image.size <= 0 || image.chunks.length !== expectedChunks) {
        throw new InvalidOptionError(`${expected.toString()}: ${image.chunks.length} leaves for ${image.size} bytes at ${chunkSize} per chunk (expected ${expectedChunks})`)
      }
      const name = image.name ?? expected.toString()
      const base = this.checkLayerRules(image.layer, image.base)
      this.checkNameFree(name)
      throwIfAborted(options.signal, 'registration cancelled')
      const adoptionId = this.adoptionId(adoption)
      // No pending_imports row (id 0): the leaves are pinned by the adoption already, and the inner
      // nodes a crash leaves unregistered are orphans like an import's; one fsync less.
      const importId = 0
      const tracker = new ProgressTracker('import', image.size, options.onProgress)
      if (this.presentFilter === undefined || this.presentFilter.full) this.presentFilter = PresentFilter.build(db)
      const session = new ImportSession(db, packs, importId, profile, tracker, options.signal, this.presentFilter)
      try {
        let root: CID | undefined
        // The leaves come from the manifest, not from content: the importer is handed none.
        const entries = importer([{ content: [] }], session, {
          chunker: async function * () {},
          bufferImporter: session.registeredLeaves(image.chunks, image.size, chunkSize),
          ...dagOptions(profile)
        })
        for await (const entry of entries) root = entry.cid
        await session.flush()
        if (session.missing.length > 0) throw new MissingChunksError(expected.toString(), session.missing)
        if (root === undefined || !root.equals(expected)) throw new RootMismatchError(expected.toString(), root?.toString() ?? 'nothing')
        throwIfAborted(options.signal, 'registration cancelled')
        return this.register(session, { importId, name, layer: image.layer, base, root, size: image.size, chunkSize, profile, isPublic: image.private !== true, chunkCount: session.leafCount, zeroBytes: session.zeroBytes, adoption: adoptionId })
      } catch (err) {
        await packs.abandon()
        throw translateImportError(err, `the image ${expected.toString()}`)
      }
    })
  }

  /**
   * Forgets an adoption (a transfer cancelled for good): its pins go, and the leaves it stored that
   * no image and no other adoption uses are deleted (their pack bytes are reclaimed by `gc`).
   */
  async releaseAdoption (adoption: string): Promise<RemoveResult> {
    return await this.exclusive(async () => {
      const db = this.openDb()
      const id = db.prepare('SELECT id FROM adoptions WHERE key = ?').pluck().get(adoption) as number | undefined
      if (id === undefined) return { image: adoption, name: adoption, freedChunks: 0, freedBytes: 0 }
      const freed = db.transaction(() => this.releasePins(id)).immediate()
      return { image: adoption, name: adoption, freedChunks: freed.chunks, freedBytes: freed.bytes }
    })
  }

  /** The adoptions recorded here (each a caller's name), oldest first: a caller may release those it no longer knows. */
  async adoptions (): Promise<string[]> {
    return this.openDb().prepare('SELECT key FROM adoptions ORDER BY id').pluck().all() as string[]
  }

  /** Deletes adoption `id` and the chunks only it kept (inside the caller's transaction). */
  private releasePins (id: number): { chunks: number, bytes: number } {
    const db = this.openDb()
    const unused = db.prepare(`SELECT c.id, c.pack, c.length FROM adoption_chunks a JOIN chunks c ON c.id = a.chunk
      WHERE a.adoption = ? AND c.refcount = 0 AND NOT EXISTS (SELECT 1 FROM adoption_chunks o WHERE o.chunk = c.id AND o.adoption <> a.adoption)`).all(id) as Array<{ id: number, pack: number | null, length: number }>
    db.prepare('DELETE FROM adoptions WHERE id = ?').run(id)
    const deleteChunk = db.prepare('DELETE FROM chunks WHERE id = ?')
    const addDead = db.prepare('UPDATE packs SET dead_bytes = dead_bytes + ? WHERE id = ?')
    let bytes = 0
    for (const chunk of unused) {
      deleteChunk.run(chunk.id)
      if (chunk.pack === null) continue
      addDead.run(chunk.length, chunk.pack)
      bytes += chunk.length
    }
    return { chunks: unused.length, bytes }
  }

  private adoptionId (adoption: string): number {
    if (typeof adoption !== 'string' || adoption === '') throw new InvalidOptionError('an adoption needs a name')
    const db = this.openDb()
    // Looked up first: an insert is a commit (and an fsync) of its own, and every batch asks.
    const id = db.prepare('SELECT id FROM adoptions WHERE key = ?').pluck().get(adoption) as number | undefined
    return id ?? Number(db.prepare('INSERT INTO adoptions (key, created) VALUES (?, ?)').run(adoption, Date.now()).lastInsertRowid)
  }

  private adoptionSession (adoptionId: number, signal: AbortSignal | undefined): ImportSession {
    const db = this.openDb()
    if (this.presentFilter === undefined || this.presentFilter.full) this.presentFilter = PresentFilter.build(db)
    // Not an import: no pending_imports row (id 0), no manifest; the profile does not matter for stored blocks.
    return new ImportSession(db, this.packs as PackFiles, 0, 'hgmig', new ProgressTracker('import', 0, undefined), signal, this.presentFilter, undefined, adoptionId)
  }

  private checkLayerRules (layer: Layer, baseRef: string | undefined): ImageRow | undefined {
    if (!LAYERS.includes(layer)) throw new LayerRuleError(`unknown layer "${String(layer)}": use os, we or ud`)
    const wanted = BASE_LAYER[layer]
    if (wanted === undefined) {
      if (baseRef !== undefined) throw new LayerRuleError('an OS image has no base: drop --base')
      return undefined
    }
    if (baseRef === undefined) throw new LayerRuleError(`${layerArticle(layer)} image needs a base (--base): the ${wanted.toUpperCase()} image it is built on`)
    const base = this.resolveRow(baseRef)
    if (base.layer !== wanted) {
      throw new LayerRuleError(`the base of ${layerArticle(layer)} image must be ${layerArticle(wanted)} image, but ${base.name} (${base.ref}) is ${layerArticle(base.layer)} image`)
    }
    return base
  }

  private checkNameFree (name: string): void {
    if (name.trim() === '') throw new InvalidOptionError('an image name cannot be empty')
    const taken = this.openDb().prepare('SELECT ref FROM images WHERE name = ?').pluck().get(name) as string | undefined
    if (taken !== undefined) throw new ImageExistsError(`an image named "${name}" already exists (${taken}); choose another --name`)
  }

  private newImageRef (): string {
    const db = this.openDb()
    for (;;) {
      const ref = randomBytes(6).toString('hex')
      if (db.prepare('SELECT 1 FROM images WHERE ref = ?').get(ref) === undefined) return ref
    }
  }

  // ---------------------------------------------------------------- lookup

  async list (): Promise<ImageInfo[]> {
    const rows = this.openDb().prepare('SELECT * FROM images ORDER BY created, id').all() as ImageRow[]
    return rows.map((row) => toInfo(row, this.refOf.bind(this)))
  }

  /** Finds an image by name, id (or a unique prefix of at least 4 characters) or root CID. */
  async resolve (reference: string): Promise<ImageInfo> {
    return toInfo(this.resolveRow(reference), this.refOf.bind(this))
  }

  async show (reference: string): Promise<ImageDetails> {
    const db = this.openDb()
    const row = this.resolveRow(reference)
    const dependents = db.prepare('SELECT name FROM images WHERE base = ? ORDER BY name').pluck().all(row.id) as string[]
    const distinctChunks = db.prepare('SELECT count(DISTINCT chunk) FROM image_chunks WHERE image = ?').pluck().get(row.id) as number
    const exclusiveStoredBytes = db.prepare(`SELECT coalesce(sum(length), 0) FROM chunks WHERE refcount = 1 AND pack IS NOT NULL AND id IN (
      SELECT chunk FROM image_chunks WHERE image = ? UNION SELECT chunk FROM image_nodes WHERE image = ?)`).pluck().get(row.id, row.id) as number
    const presence = this.presenceOf(row)
    return {
      ...toInfo(row, this.refOf.bind(this)),
      baseName: row.base === null ? null : this.imageRow(row.base).name,
      dependents,
      distinctChunks,
      sharedBytes: presence.presentBytes,
      exclusiveStoredBytes
    }
  }

  private resolveRow (reference: string): ImageRow {
    const db = this.openDb()
    const exact = db.prepare('SELECT * FROM images WHERE ref = ? OR name = ?').all(reference, reference) as ImageRow[]
    if (exact.length === 1) return exact[0] as ImageRow
    let matches = exact
    if (matches.length === 0) matches = db.prepare('SELECT * FROM images WHERE root_cid = ?').all(normaliseCid(reference)) as ImageRow[]
    if (matches.length === 0 && /^[0-9a-f]{4,}$/.test(reference)) {
      matches = db.prepare("SELECT * FROM images WHERE substr(ref, 1, length(?)) = ?").all(reference, reference) as ImageRow[]
    }
    if (matches.length === 1) return matches[0] as ImageRow
    if (matches.length > 1) throw new AmbiguousImageError(reference, matches.map(describe))
    const all = db.prepare('SELECT * FROM images ORDER BY name LIMIT 50').all() as ImageRow[]
    throw new ImageNotFoundError(reference, all.map(describe))
  }

  private imageRow (id: number): ImageRow {
    return this.openDb().prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow
  }

  private refOf (id: number): string {
    return this.openDb().prepare('SELECT ref FROM images WHERE id = ?').pluck().get(id) as string
  }

  // ---------------------------------------------------------------- reading

  /**
   * A read-only blockstore over the local blocks, for ipfs-unixfs-exporter (and, later, for serving
   * blocks to peers). Every block is checked against its CID: a corrupt block throws, it is never returned.
   */
  blockstore (): { get: (cid: CID, options?: AbortOptions) => Generator<Uint8Array>, has: (cid: CID) => boolean } {
    return {
      get: (cid) => (function * (store) { yield store.readBlock(cid) })(this),
      has: (cid) => this.findChunk(cid.bytes) !== undefined
    }
  }

  /**
   * The checked bytes of one block. `verify: false` skips the hash check, for serving peers only:
   * they hash every block they receive (p2p/exchange), so checking it here too would hash it twice.
   * Every local read (export, read, verify, compaction) is checked.
   */
  readBlock (cid: CID, options: { verify?: boolean } = {}): Uint8Array {
    const row = this.findChunk(cid.bytes)
    if (row === undefined) throw new CorruptChunkError(cid.toString(), 'missing from the store')
    return this.readChunk(cid, row, options.verify ?? true)
  }

  private findChunk (cid: Uint8Array): ChunkRow | undefined {
    // Prepared once per open database: this runs per block served and per block exported.
    this.findChunkStatement ??= this.openDb().prepare('SELECT id, cid, length, zero_data_length, pack, offset FROM chunks WHERE cid = ? AND present = 1')
    return this.findChunkStatement.get(cid) as ChunkRow | undefined
  }

  private readChunk (cid: CID, row: ChunkRow, verify = true): Uint8Array {
    if (row.zero_data_length !== null) {
      const block = zeroLeafBlock(cid, row.zero_data_length)
      // The usual zero leaves are recognised by their CID; anything else is hashed.
      if (!isZeroLeafCid(cid, row.zero_data_length) && !blockMatches(cid, block)) throw new CorruptChunkError(cid.toString(), 'recorded as an all-zero chunk, but zeros do not hash to its CID')
      return block
    }
    const block = (this.packs as PackFiles).read(row.pack as number, row.offset as number, row.length)
    if (block.byteLength !== row.length) throw new CorruptChunkError(cid.toString(), `pack ${row.pack as number} is truncated: read ${block.byteLength} of ${row.length} bytes`)
    if (verify && !blockMatches(cid, block)) throw new CorruptChunkError(cid.toString(), 'its bytes do not hash to its CID')
    return block
  }

  /** The image's bytes, streamed through ipfs-unixfs-exporter, with bounded memory. */
  async * read (reference: string, options: AbortOptions = {}): AsyncGenerator<Uint8Array> {
    const row = this.resolveRow(reference)
    yield * this.readRow(row, options, undefined)
  }

  private async * readRow (row: ImageRow, options: AbortOptions, tracker: ProgressTracker | undefined): AsyncGenerator<Uint8Array> {
    // The exporter fetches blocks ahead of its reader without limit; this gate holds its block
    // reads while more than EXPORT_READ_AHEAD_BYTES wait to be consumed.
    let fetched = 0
    let consumed = 0
    let waiting: Array<() => void> = []
    const gatedStore: ReadableStorage = {
      get: (cid: CID) => (async function * (store: ImageStore) {
        while (fetched - consumed > EXPORT_READ_AHEAD_BYTES) await new Promise<void>((resolve) => { waiting.push(resolve) })
        if (options.signal?.aborted === true) throw new AbortError('export cancelled')
        const block = store.readBlock(cid)
        fetched += block.byteLength
        yield block
      })(this)
    }
    try {
      const entry = await exporter(CID.parse(row.root_cid), gatedStore, { signal: options.signal })
      if (entry.type !== 'file' && entry.type !== 'raw') throw new ImageStoreError(`image ${row.name}: root ${row.root_cid} is not a file`)
      for await (const data of entry.content({ signal: options.signal, blockReadConcurrency: 4 })) {
        consumed += data.byteLength
        if (waiting.length > 0 && fetched - consumed <= EXPORT_READ_AHEAD_BYTES) {
          for (const wake of waiting) wake()
          waiting = []
        }
        tracker?.advance(data.byteLength)
        yield data
      }
    } catch (err) {
      throw this.locateCorruption(err, row)
    }
  }

  /** Adds image, chunk index and byte offset to a CorruptChunkError raised while reading an image. */
  private locateCorruption (err: unknown, row: ImageRow): unknown {
    if (!(err instanceof CorruptChunkError) || err.location !== undefined) return err
    const position = this.openDb().prepare(`SELECT ic.position FROM image_chunks ic JOIN chunks c ON c.id = ic.chunk
      WHERE ic.image = ? AND c.cid = ? ORDER BY ic.position LIMIT 1`).pluck().get(row.id, CID.parse(err.cid).bytes) as number | undefined
    if (position === undefined) return new CorruptChunkError(err.cid, `${err.detail} (an inner DAG node of image ${row.name})`)
    return new CorruptChunkError(err.cid, err.detail, { image: row.name, chunkIndex: position, byteOffset: position * row.chunk_size })
  }

  async export (reference: string, out: string, options: ExportOptions = {}): Promise<ExportResult> {
    throwIfAborted(options.signal, 'export cancelled')
    const row = this.resolveRow(reference)
    const target = resolve(out)
    if (options.overwrite !== true && await exists(target)) throw new InvalidOptionError(`${out} already exists; remove it or choose another path`)
    // Written beside the target and renamed at the end: a failed export never leaves a partial OUT.
    const partial = `${target}.hgmig-partial-${process.pid}`
    const tracker = new ProgressTracker('export', row.size, options.onProgress)
    try {
      await pipeline(this.readRow(row, options, tracker), createWriteStream(partial), { signal: options.signal })
      const handle = await open(partial, 'r')
      try { await handle.sync() } finally { await handle.close() }
      await rename(partial, target)
    } catch (err) {
      await rm(partial, { force: true })
      if (isAbort(err)) throw new AbortError('export cancelled')
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new StoreFullError(`no space left to write ${out}; nothing was written`)
      throw err
    }
    return { image: row.ref, path: target, bytes: row.size }
  }

  // ---------------------------------------------------------------- verify

  async verify (reference: string, options: ProgressOptions & AbortOptions = {}): Promise<VerifyReport> {
    throwIfAborted(options.signal, 'verify cancelled')
    const db = this.openDb()
    const row = this.resolveRow(reference)
    const tracker = new ProgressTracker('verify', row.size, options.onProgress)
    const corrupt: CorruptChunk[] = []
    const zeroVerdicts = new Map<number, string | undefined>()
    let chunksChecked = 0
    const leaves = db.prepare(`SELECT ic.position, c.id, c.cid, c.length, c.zero_data_length, c.pack, c.offset
      FROM image_chunks ic JOIN chunks c ON c.id = ic.chunk WHERE ic.image = ? ORDER BY ic.position`)
    for (const leaf of leaves.iterate(row.id) as Iterable<ChunkRow & { position: number }>) {
      const cid = CID.decode(leaf.cid)
      // All-zero chunks repeat by the thousand: their verdict is the same each time.
      let reason: string | undefined
      if (leaf.zero_data_length !== null && zeroVerdicts.has(leaf.id)) {
        reason = zeroVerdicts.get(leaf.id)
      } else {
        reason = this.checkChunk(cid, leaf)
        if (leaf.zero_data_length !== null) zeroVerdicts.set(leaf.id, reason)
      }
      if (reason !== undefined) corrupt.push({ image: row.name, chunkIndex: leaf.position, byteOffset: leaf.position * row.chunk_size, cid: cid.toString(), reason })
      chunksChecked++
      tracker.advance(Math.min(row.chunk_size, row.size - leaf.position * row.chunk_size))
      if (chunksChecked % 256 === 0) await yieldToEventLoop(options.signal, 'verify cancelled')
    }
    const corruptNodes: VerifyReport['corruptNodes'] = []
    const nodes = db.prepare(`SELECT c.id, c.cid, c.length, c.zero_data_length, c.pack, c.offset FROM image_nodes n JOIN chunks c ON c.id = n.chunk WHERE n.image = ?`).all(row.id) as ChunkRow[]
    for (const node of nodes) {
      const cid = CID.decode(node.cid)
      const reason = this.checkChunk(cid, node)
      if (reason !== undefined) corruptNodes.push({ cid: cid.toString(), reason })
    }
    return { image: row.ref, name: row.name, chunksChecked, bytesChecked: tracker.bytesDone, innerNodesChecked: nodes.length, corrupt, corruptNodes }
  }

  private checkChunk (cid: CID, row: ChunkRow): string | undefined {
    try {
      this.readChunk(cid, row)
      return undefined
    } catch (err) {
      if (err instanceof CorruptChunkError) return err.detail
      return `unreadable: ${(err as Error).message}`
    }
  }

  // ---------------------------------------------------------------- similarity

  async similarity (a: string, b: string): Promise<SimilarityReport> {
    const rowA = this.resolveRow(a)
    const rowB = this.resolveRow(b)
    const layers: LayerSimilarity[] = []
    const chainA = this.baseChain(rowA)
    const chainB = this.baseChain(rowB)
    for (const layer of LAYERS) {
      const x = chainA.get(layer)
      const y = chainB.get(layer)
      if (x !== undefined && y !== undefined) layers.push(this.pairSimilarity(x, y))
    }
    return { ...this.pairSimilarity(rowA, rowB), chunkSize: rowA.chunk_size, layers }
  }

  async similarityMatrix (references?: string[]): Promise<SimilarityMatrix> {
    const rows = references === undefined
      ? this.openDb().prepare('SELECT * FROM images ORDER BY created, id').all() as ImageRow[]
      : references.map((ref) => this.resolveRow(ref))
    const ratios = rows.map((x) => rows.map((y) => x.id === y.id ? 1 : this.sharedBytes(x, y).all / x.size))
    return { images: rows.map((r) => ({ id: r.ref, name: r.name, layer: r.layer })), ratios }
  }

  /** How much of a local image is already here in other local images (or is zeros): the neighbourhood reuse. */
  async presence (reference: string): Promise<PresenceReport> {
    return this.presenceOf(this.resolveRow(reference))
  }

  /** The leaves' CIDs of a local image, in file order: what the swarm gossips about it. */
  async * manifest (reference: string): AsyncGenerator<CID> {
    const row = this.resolveRow(reference)
    const leaves = this.openDb().prepare('SELECT c.cid FROM image_chunks ic JOIN chunks c ON c.id = ic.chunk WHERE ic.image = ? ORDER BY ic.position').pluck()
    let count = 0
    for (const cid of leaves.iterate(row.id) as Iterable<Uint8Array>) {
      yield CID.decode(cid)
      if (++count % 4096 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /** Records (or replaces) another site's manifest; kept apart from local images, its chunks need not be here. */
  async addRemoteManifest (manifest: RemoteManifest): Promise<void> {
    const db = this.openDb()
    if (!LAYERS.includes(manifest.layer)) throw new InvalidOptionError(`unknown layer "${String(manifest.layer)}"`)
    const expected = Math.ceil(manifest.size / manifest.chunkSize)
    if (manifest.chunks.length !== expected) throw new InvalidOptionError(`remote manifest ${manifest.rootCid} from ${manifest.site}: ${manifest.chunks.length} chunks for ${manifest.size} bytes at ${manifest.chunkSize} per chunk (expected ${expected})`)
    db.transaction(() => {
      db.prepare('DELETE FROM remote_images WHERE site = ? AND root_cid = ?').run(manifest.site, manifest.rootCid)
      const id = Number(db.prepare(`INSERT INTO remote_images (site, root_cid, name, layer, base_root_cid, size, chunk_size, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(manifest.site, manifest.rootCid, manifest.name ?? null, manifest.layer, manifest.baseRootCid ?? null, manifest.size, manifest.chunkSize, Date.now()).lastInsertRowid)
      const insert = db.prepare('INSERT INTO remote_image_chunks (remote_image, position, cid) VALUES (?, ?, ?)')
      manifest.chunks.forEach((cid, position) => insert.run(id, position, cid instanceof Uint8Array ? cid : cid.bytes))
    }).immediate()
  }

  /** A recorded manifest of this root CID (any site's: the chunk list is the same for one root), or undefined. */
  async remoteManifest (rootCid: string): Promise<RemoteManifest | undefined> {
    const db = this.openDb()
    const remote = db.prepare('SELECT id, site, root_cid, name, layer, base_root_cid, size, chunk_size FROM remote_images WHERE root_cid = ? ORDER BY received DESC LIMIT 1').get(rootCid) as
      { id: number, site: string, root_cid: string, name: string | null, layer: Layer, base_root_cid: string | null, size: number, chunk_size: number } | undefined
    if (remote === undefined) return undefined
    const chunks = (db.prepare('SELECT cid FROM remote_image_chunks WHERE remote_image = ? ORDER BY position').pluck().all(remote.id) as Uint8Array[]).map((bytes) => CID.decode(bytes))
    return { site: remote.site, rootCid: remote.root_cid, name: remote.name ?? undefined, layer: remote.layer, baseRootCid: remote.base_root_cid ?? undefined, size: remote.size, chunkSize: remote.chunk_size, chunks }
  }

  /** Whether some site's manifest of this root CID is recorded. */
  async hasRemoteManifest (rootCid: string): Promise<boolean> {
    return this.openDb().prepare('SELECT 1 FROM remote_images WHERE root_cid = ? LIMIT 1').get(rootCid) !== undefined
  }

  /**
   * How much of another site's image is already here, in the chunks of any local image (or is all
   * zeros, which never cross the network): the neighbourhood reuse for migrating that image here.
   */
  async remotePresence (site: string, rootCid: string): Promise<PresenceReport> {
    const db = this.openDb()
    const remote = db.prepare('SELECT id, size, chunk_size FROM remote_images WHERE site = ? AND root_cid = ?').get(site, rootCid) as { id: number, size: number, chunk_size: number } | undefined
    if (remote === undefined) throw new ImageNotFoundError(`${rootCid} at ${site}`, db.prepare("SELECT site || ' ' || root_cid FROM remote_images ORDER BY site LIMIT 50").pluck().all() as string[])
    // All-zero leaves are here whether or not a local image has one: their CIDs, per length, are known.
    const zeroCids = [remote.chunk_size, remote.size - (Math.ceil(remote.size / remote.chunk_size) - 1) * remote.chunk_size]
      .flatMap((length) => [zeroLeafCid(length, 'hgmig'), zeroLeafCid(length, 'ipfs')])
    const totals = db.prepare(`SELECT
        coalesce(sum(CASE WHEN c.id IS NOT NULL OR r.cid IN (@z0, @z1, @z2, @z3) THEN min(@chunkSize, @size - r.position * @chunkSize) END), 0) AS present,
        coalesce(sum(CASE WHEN c.zero_data_length IS NOT NULL OR r.cid IN (@z0, @z1, @z2, @z3) THEN min(@chunkSize, @size - r.position * @chunkSize) END), 0) AS zero
      FROM remote_image_chunks r LEFT JOIN chunks c ON c.cid = r.cid AND c.present = 1 AND (c.refcount > 0 OR c.zero_data_length IS NOT NULL)
      WHERE r.remote_image = @id`).get({ id: remote.id, chunkSize: remote.chunk_size, size: remote.size, z0: zeroCids[0], z1: zeroCids[1], z2: zeroCids[2], z3: zeroCids[3] }) as { present: number, zero: number }
    return { image: rootCid, size: remote.size, presentBytes: totals.present, zeroBytes: totals.zero, ratio: totals.present / remote.size }
  }

  private presenceOf (row: ImageRow): PresenceReport {
    const db = this.openDb()
    const totals = db.prepare(`SELECT
        coalesce(sum(CASE WHEN c.refcount > 1 OR c.zero_data_length IS NOT NULL THEN min(@chunkSize, @size - ic.position * @chunkSize) END), 0) AS present,
        coalesce(sum(CASE WHEN c.zero_data_length IS NOT NULL THEN min(@chunkSize, @size - ic.position * @chunkSize) END), 0) AS zero
      FROM image_chunks ic JOIN chunks c ON c.id = ic.chunk WHERE ic.image = @image`).get({ chunkSize: row.chunk_size, size: row.size, image: row.id }) as { present: number, zero: number }
    return { image: row.ref, size: row.size, presentBytes: totals.present, zeroBytes: totals.zero, ratio: totals.present / row.size }
  }

  private baseChain (row: ImageRow): Map<Layer, ImageRow> {
    const chain = new Map<Layer, ImageRow>()
    for (let current: ImageRow | undefined = row; current !== undefined; current = current.base === null ? undefined : this.imageRow(current.base)) {
      chain.set(current.layer, current)
    }
    return chain
  }

  private pairSimilarity (a: ImageRow, b: ImageRow): LayerSimilarity {
    const shared = this.sharedBytes(a, b)
    const dataBytes = a.size - a.zero_bytes
    return {
      layer: a.layer,
      a: a.ref,
      b: b.ref,
      sharedBytes: shared.all,
      ratio: shared.all / a.size,
      reverseRatio: this.sharedBytes(b, a).all / b.size,
      sharedDataBytes: shared.data,
      dataRatio: dataBytes === 0 ? 0 : shared.data / dataBytes
    }
  }

  /** Bytes of a whose chunk also occurs in b, all and non-zero only (cached by root CIDs: images never change). */
  private sharedBytes (a: ImageRow, b: ImageRow): { all: number, data: number } {
    const db = this.openDb()
    if (a.chunk_size !== b.chunk_size || a.profile !== b.profile) return { all: 0, data: 0 }
    const cached = db.prepare('SELECT shared_bytes AS "all", shared_data_bytes AS data FROM similarity_cache WHERE a = ? AND b = ?').get(a.root_cid, b.root_cid) as { all: number, data: number | null } | undefined
    if (cached !== undefined && cached.data !== null) return { all: cached.all, data: cached.data }
    const shared = db.prepare(`SELECT
        coalesce(sum(min(@chunkSize, @size - ic.position * @chunkSize)), 0) AS "all",
        coalesce(sum(CASE WHEN c.zero_data_length IS NULL THEN min(@chunkSize, @size - ic.position * @chunkSize) END), 0) AS data
      FROM image_chunks ic JOIN chunks c ON c.id = ic.chunk
      WHERE ic.image = @a AND ic.chunk IN (SELECT chunk FROM image_chunks WHERE image = @b)`).get({ chunkSize: a.chunk_size, size: a.size, a: a.id, b: b.id }) as { all: number, data: number }
    db.prepare('INSERT OR REPLACE INTO similarity_cache (a, b, shared_bytes, shared_data_bytes, computed) VALUES (?, ?, ?, ?, ?)').run(a.root_cid, b.root_cid, shared.all, shared.data, Date.now())
    return shared
  }

  // ---------------------------------------------------------------- removal and space

  async remove (reference: string): Promise<RemoveResult> {
    return await this.exclusive(async () => {
      const db = this.openDb()
      const row = this.resolveRow(reference)
      const dependents = db.prepare('SELECT name FROM images WHERE base = ? ORDER BY name').pluck().all(row.id) as string[]
      if (dependents.length > 0) throw new ImageInUseError(row.name, dependents)
      return db.transaction(() => {
        db.prepare(`UPDATE chunks SET refcount = refcount - 1 WHERE id IN (
          SELECT chunk FROM image_chunks WHERE image = @image UNION SELECT chunk FROM image_nodes WHERE image = @image)`).run({ image: row.id })
        db.prepare('DELETE FROM images WHERE id = ?').run(row.id)
        const freed = this.deleteUnreferencedChunks()
        const rootStillUsed = db.prepare('SELECT 1 FROM images WHERE root_cid = ?').get(row.root_cid) !== undefined
        if (!rootStillUsed) db.prepare('DELETE FROM similarity_cache WHERE a = @root OR b = @root').run({ root: row.root_cid })
        return { image: row.ref, name: row.name, freedChunks: freed.chunks, freedBytes: freed.bytes }
      }).immediate()
    })
  }

  /** Deletes every chunk no image uses (inside the caller's transaction); their pack bytes become dead. */
  private deleteUnreferencedChunks (): { chunks: number, bytes: number } {
    const db = this.openDb()
    // Chunks an adoption pins (leaves of a transfer not yet registered) are kept: they are in use.
    const unpinned = 'refcount = 0 AND NOT EXISTS (SELECT 1 FROM adoption_chunks a WHERE a.chunk = chunks.id)'
    const perPack = db.prepare(`SELECT pack, count(*) AS n, coalesce(sum(length), 0) AS bytes FROM chunks WHERE ${unpinned} AND pack IS NOT NULL GROUP BY pack`).all() as Array<{ pack: number, n: number, bytes: number }>
    for (const { pack, bytes } of perPack) db.prepare('UPDATE packs SET dead_bytes = dead_bytes + ? WHERE id = ?').run(bytes, pack)
    const deleted = db.prepare(`DELETE FROM chunks WHERE ${unpinned}`).run().changes
    return { chunks: deleted, bytes: perPack.reduce((sum, p) => sum + p.bytes, 0) }
  }

  /**
   * Deletes chunks left by imports that never finished, then rewrites pack files whose dead share
   * is at least 25 %, so that removed images give their disk space back.
   */
  async gc (options: ProgressOptions & AbortOptions = {}): Promise<GcResult> {
    return await this.exclusive(async () => {
      throwIfAborted(options.signal, 'gc cancelled')
      const db = this.openDb()
      const packs = this.packs as PackFiles
      const orphans = db.transaction(() => this.deleteUnreferencedChunks()).immediate()
      let packsCompacted = 0
      let bytesReclaimed = 0
      await packs.closeActive()
      const candidates = (db.prepare('SELECT id, bytes, dead_bytes FROM packs WHERE dead_bytes > 0 ORDER BY id').all() as Array<{ id: number, bytes: number, dead_bytes: number }>)
        .filter((pack) => pack.dead_bytes >= pack.bytes * COMPACT_DEAD_SHARE)
      // Progress counts the live bytes copied: what compaction costs.
      const tracker = new ProgressTracker('gc', candidates.reduce((sum, pack) => sum + pack.bytes - pack.dead_bytes, 0), options.onProgress)
      for (const pack of candidates) {
        await yieldToEventLoop(options.signal, 'gc cancelled')
        bytesReclaimed += await this.compactPack(pack.id, pack.bytes, tracker, options.signal)
        packsCompacted++
      }
      return { orphansDeleted: orphans.chunks, packsCompacted, bytesReclaimed }
    })
  }

  /** Copies a pack's live blocks to the pack being appended to, repoints them, deletes the old file. */
  private async compactPack (pack: number, packBytes: number, tracker: ProgressTracker, signal: AbortSignal | undefined): Promise<number> {
    const db = this.openDb()
    const packs = this.packs as PackFiles
    const live = db.prepare('SELECT id, cid, length, zero_data_length, pack, offset FROM chunks WHERE pack = ? ORDER BY offset').all(pack) as ChunkRow[]
    const moves: Array<{ id: number, pack: number, offset: number }> = []
    let liveBytes = 0
    for (const row of live) {
      // readChunk checks the hash: a corrupt block is not copied as if it were good; it stays where verify can report it.
      const block = this.readChunk(CID.decode(row.cid), row)
      const location = packs.append(block)
      moves.push({ id: row.id, ...location })
      liveBytes += row.length
      tracker.advance(row.length)
      if (packs.congested) await packs.drain()
      // Cancelling mid-pack leaves it as it was: the copies appended so far are cut off as unindexed at the next open.
      if (signal?.aborted === true) {
        await packs.abandon()
        throw new AbortError('gc cancelled')
      }
    }
    await packs.sync()
    db.transaction(() => {
      const move = db.prepare('UPDATE chunks SET pack = ?, offset = ? WHERE id = ?')
      const ends = new Map<number, number>()
      for (const m of moves) {
        move.run(m.pack, m.offset, m.id)
        const length = (live.find((r) => r.id === m.id) as ChunkRow).length
        ends.set(m.pack, Math.max(ends.get(m.pack) ?? 0, m.offset + length))
      }
      for (const [id, end] of ends) db.prepare('UPDATE packs SET bytes = max(bytes, ?) WHERE id = ?').run(end, id)
      db.prepare('DELETE FROM packs WHERE id = ?').run(pack)
    }).immediate()
    packs.remove(pack)
    return packBytes - liveBytes
  }

  async stats (): Promise<StoreStats> {
    const db = this.openDb()
    const chunks = db.prepare(`SELECT count(*) AS chunks, count(zero_data_length) AS zero, coalesce(sum(CASE WHEN pack IS NOT NULL THEN length END), 0) AS stored FROM chunks`).get() as { chunks: number, zero: number, stored: number }
    const packs = db.prepare('SELECT count(*) AS files, coalesce(sum(dead_bytes), 0) AS dead FROM packs').get() as { files: number, dead: number }
    const images = db.prepare('SELECT count(*) FROM images').pluck().get() as number
    const storedLeafBytes = db.prepare('SELECT coalesce(sum(length), 0) FROM chunks WHERE pack IS NOT NULL AND id IN (SELECT chunk FROM image_chunks)').pluck().get() as number
    return { images, chunks: chunks.chunks, zeroChunks: chunks.zero, storedBytes: chunks.stored, storedLeafBytes, deadBytes: packs.dead, packFiles: packs.files, chunkSize: this.chunkSizeSetting }
  }

  // ---------------------------------------------------------------- plumbing

  private openDb (): Database.Database {
    if (this.db === undefined) throw new StoreClosedError(`the image store in ${this.directory} is not open`)
    return this.db
  }

  private async exclusive<T> (operation: () => Promise<T>): Promise<T> {
    this.openDb()
    const run = this.writeQueue.catch(() => {}).then(operation)
    this.writeQueue = run
    return await run
  }
}

/** The importer's DAG options per profile: `add` and `registerAdopted` must build the same DAG. */
function dagOptions (profile: DagProfile): { profile: 'unixfs-v0-2015' } | { cidVersion: 1, rawLeaves: true } {
  return profile === 'ipfs' ? { profile: 'unixfs-v0-2015' } : { cidVersion: 1, rawLeaves: true }
}

/** "an OS", "a WE", "a UD": the article goes by how the letters are spoken. */
function layerArticle (layer: Layer): string {
  return `${layer === 'os' ? 'an' : 'a'} ${layer.toUpperCase()}`
}

function validateChunkSize (size: number): void {
  if (!Number.isInteger(size) || size < MIN_CHUNK_SIZE || size > MAX_CHUNK_SIZE || (size & (size - 1)) !== 0) {
    throw new InvalidOptionError(`chunk size ${size} is not a power of two between ${MIN_CHUNK_SIZE} and ${MAX_CHUNK_SIZE} bytes`)
  }
}

function toInfo (row: ImageRow, refOf: (id: number) => string): ImageInfo {
  return {
    id: row.ref,
    name: row.name,
    layer: row.layer,
    base: row.base === null ? null : refOf(row.base),
    rootCid: row.root_cid,
    size: row.size,
    chunkSize: row.chunk_size,
    profile: row.profile,
    public: row.public === 1,
    created: new Date(row.created).toISOString(),
    chunkCount: row.chunk_count,
    zeroBytes: row.zero_bytes
  }
}

function describe (row: ImageRow): string {
  return `${row.name} (${row.ref}, ${row.layer}, ${row.root_cid})`
}

function normaliseCid (text: string): string {
  try {
    return CID.parse(text).toString()
  } catch {
    return text
  }
}

/** An open file (read by a FileReader) or the caller's byte stream. */
type OpenedSource = {
  size: number
  description: string
  closeSource: () => Promise<void>
} & ({ handle: FileHandle } | { content: AsyncIterable<Uint8Array> | Iterable<Uint8Array> })

async function openSource (source: ImportSource): Promise<OpenedSource> {
  if (typeof source !== 'string') {
    if (!(source.size > 0)) throw new ImportSourceError(`${source.description} is empty (0 bytes): a VM disk image is never empty`)
    return { content: source.content, size: source.size, description: source.description, closeSource: async () => {} }
  }
  let handle
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever; it is
    // refused below as not a regular file. (It changes nothing for regular files.)
    handle = await open(source, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    throw new ImportSourceError(`cannot read ${source}: ${describeFsError(err)}`)
  }
  const info = await handle.stat()
  if (!info.isFile()) {
    await handle.close()
    throw new ImportSourceError(`${source} is not a regular file${info.isDirectory() ? ' (it is a directory)' : ''}`)
  }
  if (info.size === 0) {
    await handle.close()
    throw new ImportSourceError(`${source} is empty (0 bytes): a VM disk image is never empty`)
  }
  return { handle, size: info.size, description: source, closeSource: async () => { await handle.close() } }
}

function translateImportError (err: unknown, description: string): unknown {
  if (err instanceof ImageStoreError) return err
  if (isAbort(err)) return new AbortError('import cancelled')
  const code = (err as { code?: string }).code
  if (code === 'ENOSPC' || code === 'SQLITE_FULL' || code === 'EDQUOT') {
    return new StoreFullError('no space left on the store\'s disk: the import was rolled back (chunks stored before stay for the next attempt); free space and run it again')
  }
  if (code === 'EIO' || code === 'EISDIR' || code === 'EACCES') return new ImportSourceError(`cannot read ${description}: ${describeFsError(err)}`)
  return err
}

function describeFsError (err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  switch (code) {
    case 'ENOENT': return 'no such file'
    case 'EACCES': case 'EPERM': return 'permission denied'
    case 'EISDIR': return 'it is a directory'
    case 'EIO': return 'I/O error reading it'
    default: return (err as Error).message
  }
}

function isAbort (err: unknown): boolean {
  return (err as { name?: string }).name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR'
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

function throwIfAborted (signal: AbortSignal | undefined, message: string): void {
  if (signal?.aborted === true) throw new AbortError(message)
}

async function yieldToEventLoop (signal: AbortSignal | undefined, message: string): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
  throwIfAborted(signal, message)
}
