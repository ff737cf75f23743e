/**
 * Hashes fixed-size chunks on a second thread, so that SHA-256 and the rest of an import (reading,
 * chunking, the DAG, pack writes, SQLite) run on two cores. The main thread sends pieces of the
 * file (whole chunks, except the file's last piece) in shared memory (or transferred, never
 * copied); each comes back, in order, with the SHA-256 digests of its chunks (all-zero chunks are
 * not hashed: their digest is known by their length).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { chunkDigest } from './zeros.js'

export interface HashWorkerInput {
  chunkSize: number
}

export interface HashedPiece {
  bytes: Uint8Array
  digests: Uint8Array
}

const { chunkSize } = workerData as HashWorkerInput
const port = parentPort
if (port === null) throw new Error('hash-worker runs as a worker thread')

port.on('message', (bytes: Uint8Array) => {
  const chunks = Math.ceil(bytes.byteLength / chunkSize)
  const digests = new Uint8Array(32 * chunks)
  for (let i = 0; i < chunks; i++) {
    digests.set(chunkDigest(bytes.subarray(i * chunkSize, Math.min(bytes.byteLength, (i + 1) * chunkSize))), 32 * i)
  }
  // A piece in shared (arena) memory is not transferred: both threads see it already.
  port.postMessage({ bytes, digests } satisfies HashedPiece, bytes.buffer instanceof ArrayBuffer ? [bytes.buffer, digests.buffer] : [digests.buffer])
})
