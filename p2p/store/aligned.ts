/**
 * Page-aligned memory for the pieces of an imported file, so that their chunks can go to the pack
 * files with O_DIRECT: a direct write skips the page cache, whose copy, page allocation and
 * writeback cost about 0.5 CPU s per GiB written (measured: 0.48–0.61 buffered + fsync, 0.08
 * direct; bench/RESULTS.md, issue 3). O_DIRECT wants the buffer's address, the file offset and
 * the length aligned to the device's block size, and Node has no aligned allocator; but a
 * WebAssembly memory is mapped from whole pages, so its offsets are its alignment. The memory is
 * shared (a SharedArrayBuffer), so the hash worker reads the same pieces without a transfer.
 */

/** Direct writes use this alignment for address, offset and length: a page, which covers every block size Linux devices report. */
export const DIRECT_IO_ALIGNMENT = 4096
const WASM_PAGE_BYTES = 65536

interface WasmMemory { readonly buffer: ArrayBufferLike, grow: (pages: number) => number }
type WasmMemoryConstructor = new (descriptor: { initial: number, maximum: number, shared: boolean }) => WasmMemory
const WasmMemoryApi = (globalThis as unknown as { WebAssembly?: { Memory?: WasmMemoryConstructor } }).WebAssembly?.Memory

/** Every buffer object handed out by an arena (a shared memory gets a new one each time it grows). */
const alignedBuffers = new WeakSet<ArrayBufferLike>()

/** True when a direct write may take this view as it is: page-aligned start and length in arena memory. */
export function isDirectIoAligned (view: Uint8Array): boolean {
  return view.byteLength % DIRECT_IO_ALIGNMENT === 0 && view.byteOffset % DIRECT_IO_ALIGNMENT === 0 && alignedBuffers.has(view.buffer)
}

/**
 * Up to `maxSlots` page-aligned slots of `slotBytes` each, in one shared WebAssembly memory that
 * grows a slot at a time (address space is reserved up front; memory is used as slots are taken).
 * Slots are never given back one by one: the caller pools them, and the arena goes as a whole.
 */
export class AlignedArena {
  private readonly memory: WasmMemory | undefined
  private readonly slotPages: number
  private slots = 0

  /**
   * `shared: false` when no other thread reads the slots: copying into shared memory runs at a
   * third of memcpy's speed (measured: 2.2 against 6.4 GB/s), so each slot is then a memory of
   * its own (a non-shared memory cannot grow without detaching the views already handed out).
   */
  constructor (readonly slotBytes: number, readonly maxSlots: number, private readonly shared = true) {
    this.slotPages = Math.ceil(slotBytes / WASM_PAGE_BYTES)
    try {
      this.memory = WasmMemoryApi === undefined || !shared ? undefined : new WasmMemoryApi({ initial: 0, maximum: this.slotPages * maxSlots, shared: true })
    } catch {
      // No shared WebAssembly memory here (or no address space for it): callers fall back to ordinary buffers.
      this.memory = undefined
    }
  }

  /** A fresh slot, or undefined when the arena is used up or unavailable (take an ordinary buffer then). */
  allocate (): Uint8Array | undefined {
    if (this.slots >= this.maxSlots) return undefined
    if (!this.shared) {
      let own: WasmMemory
      try {
        if (WasmMemoryApi === undefined) return undefined
        own = new WasmMemoryApi({ initial: this.slotPages, maximum: this.slotPages, shared: false })
      } catch {
        return undefined
      }
      this.slots++
      alignedBuffers.add(own.buffer)
      return new Uint8Array(own.buffer, 0, this.slotBytes)
    }
    if (this.memory === undefined) return undefined
    const firstPage = this.memory.grow(this.slotPages)
    this.slots++
    const buffer = this.memory.buffer
    alignedBuffers.add(buffer)
    return new Uint8Array(buffer, firstPage * WASM_PAGE_BYTES, this.slotBytes)
  }
}
