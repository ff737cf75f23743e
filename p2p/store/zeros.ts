import { sha256Digest } from './sha256.js'

/**
 * All-zero chunks: found with memcmp and hashed once per length. Zero regions of disk images run
 * to gigabytes; comparing with zeros is ~20× faster than SHA-256, so an import neither hashes nor
 * stores them. Kept apart from blocks.ts so that the hash worker loads nothing else.
 */

let zeros = new Uint8Array(0)

export function isAllZero (data: Uint8Array): boolean {
  // memcmp against a buffer of zeros: a byte loop in JS is ~10x slower than this.
  if (zeros.byteLength < data.byteLength) zeros = new Uint8Array(data.byteLength)
  return Buffer.compare(data, zeros.subarray(0, data.byteLength)) === 0
}

const zeroDigests = new Map<number, Uint8Array>()

/** The SHA-256 of `length` zero bytes (computed once per length). */
export function zeroDigest (length: number): Uint8Array {
  let digest = zeroDigests.get(length)
  if (digest === undefined) {
    digest = sha256Digest(new Uint8Array(length))
    zeroDigests.set(length, digest)
  }
  return digest
}

/** The SHA-256 of a chunk, with all-zero chunks answered from `zeroDigest`. */
export function chunkDigest (chunk: Uint8Array): Uint8Array {
  return isAllZero(chunk) ? zeroDigest(chunk.byteLength) : sha256Digest(chunk)
}
