import type { FileHandle } from 'node:fs/promises'
import { Worker } from 'node:worker_threads'
import type { Chunker } from 'ipfs-unixfs-importer/chunker'
import { AlignedArena } from './aligned.js'
import type { HashedPiece, HashWorkerInput } from './hash-worker.js'

/** Pieces of about 4 MiB (whole chunks): few reads and messages, and a piece is hashed while the next is read. */
const PIECE_BYTES = 4 << 20
/** Pieces read but not yet consumed by the importer, at most: bounds memory to ~16 MiB. */
const PIECES_AHEAD = 4
/**
 * Page-aligned piece buffers per import, at most. Pieces live until the pack writes holding their
 * blocks complete (at most 4 pieces buffered and 8 in flight, see packs.ts) plus the read-ahead
 * (4) and the importer's leaves in progress: ~18. Beyond this, ordinary buffers (whose chunks are
 * written through the page cache) keep the import going.
 */
const ALIGNED_PIECES = 24

/**
 * One piece of the file: `holds` counts its chunks the importer has not yet stored plus its
 * blocks appended to a pack file but not yet written. At zero its buffer goes back to the pool.
 */
export class Piece {
  private holds: number

  constructor (readonly bytes: Uint8Array, chunks: number, private readonly pieceBytes: number, private readonly pool: Uint8Array[]) {
    this.holds = chunks
  }

  hold (): void {
    this.holds++
  }

  release (): void {
    // The whole buffer goes back (the file's last piece may be a shorter view of one). The pool
    // never outgrows the most pieces alive at once, which the read-ahead and the pack writes bound.
    if (--this.holds === 0) this.pool.push(new Uint8Array(this.bytes.buffer, this.bytes.byteOffset, this.pieceBytes))
  }
}

/** What an import session needs from the reader of its file, per leaf position. */
export interface LeafSource {
  /** The SHA-256 of chunk `position`, when a worker thread hashed it ahead (each is handed out once). */
  takeDigest: (position: number) => Uint8Array | undefined
  /** The piece holding chunk `position`'s bytes: hold it while a pack write needs them, release it when the leaf is stored. */
  pieceOf: (position: number) => Piece | undefined
}

/**
 * Reads an image file for the importer in chunk-aligned pieces from a small pool of reused buffers,
 * and cuts them into chunks itself (no copies: each chunk is a view of its piece). Reusing the
 * buffers matters: a fresh 4 MiB buffer per read is a gigabyte of external memory per gigabyte
 * imported, and V8 answers external memory pressure with full garbage collections (measured:
 * ~20 % of an import's CPU). The buffers are page-aligned shared memory (aligned.ts), so that
 * the chunks, views of them, are written to the pack files with O_DIRECT. With `hashInWorker`,
 * each piece goes to a worker thread (hash-worker.ts) that computes its chunks' SHA-256 while this
 * thread reads, chunks, writes and indexes; it reads the shared piece in place, never a copy.
 */
export class FileReader implements LeafSource {
  private readonly worker: Worker | undefined
  private readonly digests = new Map<number, Uint8Array>()
  private readonly pieces = new Map<number, Piece>()
  private readonly pool: Uint8Array[] = []
  private readonly arena: AlignedArena
  private readonly pieceBytes: number
  private readonly chunksPerPiece: number
  private readonly returned: Array<HashedPiece | Error> = []
  private wake: (() => void) | undefined
  private hashedChunks = 0

  constructor (private readonly file: FileHandle, private readonly chunkSize: number, hashInWorker: boolean) {
    this.chunksPerPiece = Math.max(1, Math.floor(PIECE_BYTES / chunkSize))
    this.pieceBytes = this.chunksPerPiece * chunkSize
    this.arena = new AlignedArena(this.pieceBytes, ALIGNED_PIECES)
    if (hashInWorker) {
      this.worker = new Worker(new URL('./hash-worker.js', import.meta.url), { workerData: { chunkSize } satisfies HashWorkerInput })
      this.worker.on('message', (piece: HashedPiece) => { this.returned.push(piece); this.wake?.() })
      this.worker.on('error', (err) => { this.returned.push(err); this.wake?.() })
    }
  }

  /** The file as pieces of whole chunks (only the last may end in a partial chunk). */
  async * content (): AsyncGenerator<Uint8Array> {
    if (this.worker === undefined) {
      for (let position = 0; ; position += this.pieceBytes) {
        const piece = await this.readPiece(position)
        if (piece.byteLength > 0) yield piece
        if (piece.byteLength < this.pieceBytes) return
      }
    }
    yield * this.hashedContent(this.worker)
  }

  /** The importer's chunker: the pieces are chunk-aligned, so chunks are views of them, with no list to keep. */
  chunker (): Chunker {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const reader = this
    return async function * chunks (source) {
      let pieceIndex = 0
      for await (const piece of source) {
        const chunks = Math.ceil(piece.byteLength / reader.chunkSize)
        reader.pieces.set(pieceIndex++, new Piece(piece, chunks, reader.pieceBytes, reader.pool))
        for (let offset = 0; offset < piece.byteLength; offset += reader.chunkSize) {
          yield piece.subarray(offset, Math.min(piece.byteLength, offset + reader.chunkSize))
        }
      }
    }
  }

  takeDigest (position: number): Uint8Array | undefined {
    const digest = this.digests.get(position)
    this.digests.delete(position)
    return digest
  }

  pieceOf (position: number): Piece | undefined {
    const index = Math.floor(position / this.chunksPerPiece)
    const piece = this.pieces.get(index)
    // Each chunk asks once, in order: the piece's last chunk is the last to ask.
    if ((position + 1) % this.chunksPerPiece === 0) this.pieces.delete(index)
    return piece
  }

  async close (): Promise<void> {
    await this.worker?.terminate()
  }

  private async * hashedContent (worker: Worker): AsyncGenerator<Uint8Array> {
    let position = 0
    let ended = false
    // The pieces sent, in order: a shared (arena) piece comes back as a view of a new buffer
    // object, which pack writes would not know as aligned memory, so the view sent is yielded.
    const sent: Uint8Array[] = []
    for (;;) {
      while (!ended && sent.length < PIECES_AHEAD) {
        const piece = await this.readPiece(position)
        if (piece.byteLength === 0) { ended = true; break }
        const length = piece.byteLength
        position += length
        sent.push(piece)
        // Arena memory is shared with the worker; an ordinary buffer is transferred (`piece` is
        // empty, detached, from here on) and comes back with the digests.
        worker.postMessage(piece, piece.buffer instanceof ArrayBuffer ? [piece.buffer] : [])
        if (length < this.pieceBytes) ended = true
      }
      const piece = sent.shift()
      if (piece === undefined) return
      while (this.returned.length === 0) await new Promise<void>((resolve) => { this.wake = resolve })
      this.wake = undefined
      const hashed = this.returned.shift() as HashedPiece | Error
      if (hashed instanceof Error) throw hashed
      for (let i = 0; i < hashed.digests.byteLength / 32; i++) this.digests.set(this.hashedChunks++, hashed.digests.subarray(32 * i, 32 * (i + 1)))
      yield piece.buffer instanceof ArrayBuffer ? hashed.bytes : piece
    }
  }

  /** Reads the piece at `position` into a pooled buffer; only bytes read from the file are handed on. */
  private async readPiece (position: number): Promise<Uint8Array> {
    const bytes = this.pool.pop() ?? this.arena.allocate() ?? new Uint8Array(Buffer.allocUnsafeSlow(this.pieceBytes).buffer, 0, this.pieceBytes)
    let filled = 0
    while (filled < this.pieceBytes) {
      const { bytesRead } = await this.file.read(bytes, filled, this.pieceBytes - filled, position + filled)
      if (bytesRead === 0) break
      filled += bytesRead
    }
    return filled === this.pieceBytes ? bytes : bytes.subarray(0, filled)
  }
}
