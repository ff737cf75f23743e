import type Database from 'better-sqlite3'
import { CID } from 'multiformats/cid'

/** Bits per chunk when the filter is built: ~0.2 % false positives with 4 probes; rebuilt at half that. */
const BITS_PER_CHUNK = 16
const MIN_BITS = 1 << 20
const PROBES = 4

/**
 * A Bloom filter over the SHA-256 digests of the chunks stored here (present = 1). An import asks
 * it before the "already stored?" lookup in SQLite, so a chunk new to the store — every chunk of a
 * first import — costs no statement at all; "maybe" (stored, or a false positive) still asks
 * SQLite, so dedup is exact. The probes are words of the digest itself: SHA-256 output is uniform
 * already. Deleted chunks stay in it (more false positives, never a wrong answer) until it is
 * rebuilt because it filled up.
 */
export class PresentFilter {
  private readonly bits: Uint32Array
  private readonly mask: number
  private entries = 0

  private constructor (bitCount: number) {
    this.bits = new Uint32Array(bitCount / 32)
    this.mask = bitCount - 1
  }

  /** Built from every chunk the store holds (one pass over the index). */
  static build (db: Database.Database): PresentFilter {
    const count = db.prepare('SELECT count(*) FROM chunks WHERE present = 1').pluck().get() as number
    let bitCount = MIN_BITS
    while (bitCount < count * BITS_PER_CHUNK) bitCount *= 2
    const filter = new PresentFilter(bitCount)
    for (const cid of db.prepare('SELECT cid FROM chunks WHERE present = 1').pluck().iterate() as IterableIterator<Uint8Array>) {
      filter.add(CID.decode(cid).multihash.digest)
    }
    return filter
  }

  /** True when it holds so many entries that false positives grow: build a new one. */
  get full (): boolean {
    return this.entries * BITS_PER_CHUNK / 2 > this.mask + 1
  }

  add (digest: Uint8Array): void {
    if (digest.byteLength < 4 * PROBES) return
    const view = new DataView(digest.buffer, digest.byteOffset, digest.byteLength)
    for (let probe = 0; probe < PROBES; probe++) {
      const bit = view.getUint32(4 * probe) & this.mask
      this.bits[bit >>> 5] = (this.bits[bit >>> 5] as number) | (1 << (bit & 31))
    }
    this.entries++
  }

  /** False: certainly not stored here. True: maybe (ask the index). */
  mightHold (digest: Uint8Array): boolean {
    if (digest.byteLength < 4 * PROBES) return true
    const view = new DataView(digest.buffer, digest.byteOffset, digest.byteLength)
    for (let probe = 0; probe < PROBES; probe++) {
      const bit = view.getUint32(4 * probe) & this.mask
      if (((this.bits[bit >>> 5] as number) & (1 << (bit & 31))) === 0) return false
    }
    return true
  }
}
