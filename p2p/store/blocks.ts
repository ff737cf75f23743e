import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { sha256Digest } from './sha256.js'
import { isAllZero, zeroDigest } from './zeros.js'

export { isAllZero, sha256Digest }

/** How leaves and the DAG are encoded: the project's format, or `ipfs add`'s (kubo) defaults. */
export type DagProfile = 'hgmig' | 'ipfs'


export function cidOf (block: Uint8Array, version: 0 | 1, codec: number): CID {
  return CID.create(version, codec, createDigest(sha256.code, sha256Digest(block)))
}

/** The block a leaf's file data becomes: the data itself (raw leaves), or a UnixFS 'file' node (kubo). */
export function encodeLeaf (data: Uint8Array, profile: DagProfile): { block: Uint8Array, unixfs?: UnixFS } {
  if (profile === 'hgmig') return { block: data }
  const unixfs = new UnixFS({ type: 'file', data })
  return { block: dagPb.encode({ Data: unixfs.marshal(), Links: [] }), unixfs }
}

export function leafCid (block: Uint8Array, profile: DagProfile, sha256Precomputed?: Uint8Array): CID {
  if (profile === 'ipfs') return cidOf(block, 0, dagPb.code)
  return CID.create(1, raw.code, createDigest(sha256.code, sha256Precomputed ?? sha256Digest(block)))
}

/** True when the block's bytes hash to the CID's SHA-256 digest. */
export function blockMatches (cid: CID, block: Uint8Array): boolean {
  if (cid.multihash.code !== sha256.code) return false
  return Buffer.from(sha256Digest(block)).equals(cid.multihash.digest)
}

/** Rebuilds the block of an all-zero leaf (never stored) from its CID's codec and its data length. */
export function zeroLeafBlock (cid: CID, dataLength: number): Uint8Array {
  const data = new Uint8Array(dataLength)
  return cid.code === raw.code ? data : encodeLeaf(data, 'ipfs').block
}

const zeroLeafCids = new Map<string, CID>()

/** The CID of an all-zero leaf of `length` bytes in a profile (computed once per length and profile). */
export function zeroLeafCidOf (length: number, profile: DagProfile): CID {
  const key = `${profile}:${length}`
  let cid = zeroLeafCids.get(key)
  if (cid === undefined) {
    cid = profile === 'hgmig'
      ? CID.create(1, raw.code, createDigest(sha256.code, zeroDigest(length)))
      : leafCid(encodeLeaf(new Uint8Array(length), profile).block, profile)
    zeroLeafCids.set(key, cid)
  }
  return cid
}

/** True when `cid` is the CID of an all-zero leaf of `length` bytes (compared with the known CIDs: no hashing). */
export function isZeroLeafCid (cid: CID, length: number): boolean {
  return cid.equals(zeroLeafCidOf(length, cid.code === raw.code ? 'hgmig' : 'ipfs'))
}

/** The CID (bytes) of an all-zero leaf of `length` bytes in a profile. */
export function zeroLeafCid (length: number, profile: DagProfile): Uint8Array {
  return zeroLeafCidOf(length, profile).bytes
}
