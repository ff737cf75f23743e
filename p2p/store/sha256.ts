import * as crypto from 'node:crypto'

/**
 * SHA-256 through node:crypto directly: synchronous, so a leaf's CID costs no promise round trip
 * (multiformats' sha256.digest is async and the importer would await it per block). crypto.hash
 * (Node 20.12 and later) needs no Hash object per call: fewer objects for the garbage collector at
 * one digest per chunk; createHash where it is missing. Kept apart from blocks.ts so that the hash
 * worker loads nothing else.
 */
export const sha256Digest: (bytes: Uint8Array) => Uint8Array = typeof crypto.hash === 'function'
  ? (bytes) => crypto.hash('sha256', bytes, 'buffer')
  : (bytes) => crypto.createHash('sha256').update(bytes).digest()
