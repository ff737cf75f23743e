/**
 * Checking received blocks against the CIDs they were asked for, and turning a leaf block into
 * the file data it carries (raw leaves are the data; kubo-profile leaves are UnixFS 'file' nodes).
 */
import { createHash } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'

export const RAW_CODEC = 0x55
export const DAG_PB_CODEC = 0x70
const SHA2_256 = 0x12

/** True when the block hashes (SHA-256) to the CID's digest. Other hash functions are refused. */
export function blockMatches (cid: CID, block: Uint8Array): boolean {
  if (cid.multihash.code !== SHA2_256) return false
  const digest = createHash('sha256').update(block).digest()
  return digest.equals(cid.multihash.digest)
}

/** The file data of a leaf block, or undefined when the block is not a leaf this store writes. */
export function leafData (cid: CID, block: Uint8Array): Uint8Array | undefined {
  if (cid.code === RAW_CODEC) return block
  if (cid.code !== DAG_PB_CODEC) return undefined
  try {
    const node = dagPb.decode(block)
    if (node.Links.length > 0 || node.Data === undefined) return undefined
    const unixfs = UnixFS.unmarshal(node.Data)
    if (unixfs.type !== 'file' && unixfs.type !== 'raw') return undefined
    return unixfs.data ?? new Uint8Array(0)
  } catch {
    return undefined
  }
}

/**
 * CIDs (as strings) of all-zero leaves of the given data lengths, in both profiles: positions
 * with these CIDs are holes in the partial file and are never fetched.
 */
export function zeroLeafCids (lengths: number[]): Set<string> {
  const out = new Set<string>()
  for (const length of new Set(lengths)) {
    if (length <= 0) continue
    const data = new Uint8Array(length)
    out.add(CID.createV1(RAW_CODEC, createDigest(SHA2_256, createHash('sha256').update(data).digest())).toString())
    const node = dagPb.encode({ Data: new UnixFS({ type: 'file', data }).marshal(), Links: [] })
    out.add(CID.createV0(createDigest(SHA2_256, createHash('sha256').update(node).digest()) as never).toString())
  }
  return out
}
