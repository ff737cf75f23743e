/**
 * Memory for adopted leaves on their way to the pack files. A block received from the network is
 * a view of the transport's buffers, not page-aligned, so it could only go through the page cache;
 * copied into page-aligned memory (aligned.ts) it is written with O_DIRECT like an imported file's
 * leaves. The copy (memcpy into non-shared memory, ~0.15 CPU s per GB) is cheaper than the page
 * cache's copy, page allocation and writeback it replaces (~0.5 CPU s per GiB, bench/RESULTS.md
 * issue 3). Slots are pooled: an adoption's blocks are written and
 * fsynced before the call returns, so a few slots serve every transfer.
 */
import { AlignedArena, DIRECT_IO_ALIGNMENT } from './aligned.js'
import type { AdoptedLeaf } from './import-session.js'
import type { BufferHolder } from './packs.js'

/** 4 MiB slots: 64 leaves of 64 KiB gathered into one write run. */
const SLOT_BYTES = 4 << 20
/** At most this many slots (64 MiB of address space); beyond it leaves go through the page cache. */
const MAX_SLOTS = 16

/** One slot: held while its blocks wait for their pack write; back to the pool once all are written. */
class Slot implements BufferHolder {
  private holds = 1
  used = 0

  constructor (readonly bytes: Uint8Array, private readonly pool: Uint8Array[]) {}

  hold (): void {
    this.holds++
  }

  release (): void {
    if (--this.holds === 0) this.pool.push(this.bytes)
  }
}

export class AdoptionBuffers {
  /** Not shared: no worker reads these, and copies into shared memory are slow. */
  private readonly arena = new AlignedArena(SLOT_BYTES, MAX_SLOTS, false)
  private readonly pool: Uint8Array[] = []

  private take (): Slot | undefined {
    const bytes = this.pool.pop() ?? this.arena.allocate()
    return bytes === undefined ? undefined : new Slot(bytes, this.pool)
  }

  /**
   * The leaves with each page-sized block copied into aligned memory, and the slot holding it
   * (appending a block holds its slot until written); the last slot is let go when the caller has
   * taken every leaf.
   */
  * aligned (leaves: AdoptedLeaf[]): Generator<{ leaf: AdoptedLeaf, holder: BufferHolder | undefined }> {
    let slot: Slot | undefined
    try {
      for (const leaf of leaves) {
        const length = leaf.block.byteLength
        if (length % DIRECT_IO_ALIGNMENT !== 0 || length > SLOT_BYTES) {
          yield { leaf, holder: undefined }
          continue
        }
        if (slot === undefined || slot.used + length > SLOT_BYTES) {
          slot?.release()
          slot = this.take()
        }
        if (slot === undefined) {
          yield { leaf, holder: undefined }
          continue
        }
        const view = slot.bytes.subarray(slot.used, slot.used + length)
        view.set(leaf.block)
        slot.used += length
        yield { leaf: { cid: leaf.cid, block: view }, holder: slot }
      }
    } finally {
      slot?.release()
    }
  }
}
