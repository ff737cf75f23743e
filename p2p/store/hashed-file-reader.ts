import type { FileHandle } from 'node:fs/promises'
import { Worker } from 'node:worker_threads'
import type { HashedPiece, HashWorkerInput } from './hash-worker.js'

/** Pieces of about 4 MiB (whole chunks): few messages, and a piece is hashed while the next is read. */
const PIECE_BYTES = 4 << 20
/** Pieces read but not yet consumed by the importer, at most: bounds memory to ~16 MiB. */
const PIECES_AHEAD = 4

/**
 * The file content for the importer, with each chunk's SHA-256 computed ahead on a worker thread
 * (hash-worker.ts). This thread reads; the worker hashes. The importer's fixed-size chunker cuts
 * the pieces at the offsets the worker hashed, so chunk k's digest waits under position k when
 * the leaf stage asks for it.
 */
export class HashedFileReader {
  private readonly worker: Worker
  private readonly digests = new Map<number, Uint8Array>()
  private readonly pieceBytes: number
  private readonly returned: Array<HashedPiece | Error> = []
  private wake: (() => void) | undefined
  private hashedChunks = 0

  constructor (private readonly file: FileHandle, private readonly chunkSize: number) {
    this.pieceBytes = Math.max(chunkSize, Math.floor(PIECE_BYTES / chunkSize) * chunkSize)
    this.worker = new Worker(new URL('./hash-worker.js', import.meta.url), { workerData: { chunkSize } satisfies HashWorkerInput })
    this.worker.on('message', (piece: HashedPiece) => { this.returned.push(piece); this.wake?.() })
    this.worker.on('error', (err) => { this.returned.push(err); this.wake?.() })
  }

  async * content (): AsyncGenerator<Uint8Array> {
    let position = 0
    let inFlight = 0
    let ended = false
    for (;;) {
      while (!ended && inFlight < PIECES_AHEAD) {
        const piece = await this.readPiece(position)
        if (piece.byteLength === 0) { ended = true; break }
        const length = piece.byteLength
        position += length
        inFlight++
        // Transferred: `piece` is empty (detached) from here on.
        this.worker.postMessage(piece, [piece.buffer as ArrayBuffer])
        if (length < this.pieceBytes) ended = true
      }
      if (inFlight === 0) return
      while (this.returned.length === 0) await new Promise<void>((resolve) => { this.wake = resolve })
      this.wake = undefined
      const hashed = this.returned.shift() as HashedPiece | Error
      if (hashed instanceof Error) throw hashed
      inFlight--
      for (let i = 0; i < hashed.digests.byteLength / 32; i++) this.digests.set(this.hashedChunks++, hashed.digests.subarray(32 * i, 32 * (i + 1)))
      yield hashed.bytes
    }
  }

  /** The SHA-256 of chunk `position` (each is handed out once). */
  takeDigest (position: number): Uint8Array | undefined {
    const digest = this.digests.get(position)
    this.digests.delete(position)
    return digest
  }

  async close (): Promise<void> {
    await this.worker.terminate()
  }

  private async readPiece (position: number): Promise<Uint8Array> {
    // Not zero-filled: only bytes read from the file are handed on.
    const bytes = new Uint8Array(Buffer.allocUnsafeSlow(this.pieceBytes).buffer, 0, this.pieceBytes)
    let filled = 0
    while (filled < this.pieceBytes) {
      const { bytesRead } = await this.file.read(bytes, filled, this.pieceBytes - filled, position + filled)
      if (bytesRead === 0) break
      filled += bytesRead
    }
    return filled === this.pieceBytes ? bytes : bytes.slice(0, filled)
  }
}
