/**
 * Where a fetcher keeps verified blocks until the image store has them: fixed slots carved out of
 * a few large buffers, reused block after block.
 *
 * Why: a received block is a view into the transport's buffers (a noise message, a yamux frame),
 * and it waits for its store batch (50 ms, then an fsync that takes hundreds of ms on a loaded
 * machine). Kept that long, those buffers outlive two young-generation collections, move to the
 * old generation, and only a full mark-compact of the whole heap frees them: measured with `perf`
 * on a 434 MiB fetch, major GC (concurrent marking, sweeping) was 36 % of the fetcher's CPU. One
 * copy into a slot here (memcpy: ~0.1 CPU s/GB) lets the transport's buffers die young, and the
 * slots themselves are allocated once per transfer and never become garbage.
 */

/** Slots per region: a region is one allocation of `regionSlots × slotBytes`. */
const REGION_SLOTS = 64

/** A copy of a block: `bytes` is valid until `release`. */
export interface ArenaBlock {
  readonly bytes: Uint8Array
  /** The arena's slot holding it, or undefined for a block copied into a buffer of its own. */
  readonly slot: Uint8Array | undefined
}

export class BlockArena {
  private readonly free: Uint8Array[] = []
  private allocated = 0

  /**
   * `slotBytes`: the largest block kept here (larger ones are copied into a buffer of their own);
   * `maxBytes`: the most the arena grows to (beyond it, blocks get buffers of their own too).
   */
  constructor (readonly slotBytes: number, private readonly maxBytes: number) {}

  /** Copies `block` into a free slot (a new region if none is free and the arena may grow). */
  copy (block: Uint8Array): ArenaBlock {
    const slot = block.byteLength <= this.slotBytes ? this.take() : undefined
    if (slot === undefined) return { bytes: Uint8Array.prototype.slice.call(block), slot: undefined }
    slot.set(block)
    return { bytes: slot.subarray(0, block.byteLength), slot }
  }

  /** Gives the slot back: the block's bytes may be overwritten from now on. */
  release (block: ArenaBlock): void {
    if (block.slot !== undefined) this.free.push(block.slot)
  }

  /** Bytes held in regions (in use or free). */
  get allocatedBytes (): number {
    return this.allocated
  }

  private take (): Uint8Array | undefined {
    const slot = this.free.pop()
    if (slot !== undefined) return slot
    const regionBytes = REGION_SLOTS * this.slotBytes
    if (this.allocated + regionBytes > this.maxBytes) return undefined
    const region = new Uint8Array(regionBytes)
    this.allocated += regionBytes
    for (let i = REGION_SLOTS - 1; i > 0; i--) this.free.push(region.subarray(i * this.slotBytes, (i + 1) * this.slotBytes))
    return region.subarray(0, this.slotBytes)
  }
}
