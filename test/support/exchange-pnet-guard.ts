/**
 * A guard for @libp2p/pnet's xsalsa20 cipher, for the test and benchmark processes that still run
 * @libp2p/pnet (interop with the swarm's own protector, and the baseline in bench/exchange.ts).
 * The swarm itself no longer uses pnet (p2p/swarm/private-network.ts). Import it before pnet runs.
 */
import { createRequire } from 'node:module'

// @libp2p/pnet (3.0.27) runs every read and write of a private-network connection through
// xsalsa20's WebAssembly cipher in one call. An input larger than the module's memory (640 KiB)
// grows that memory, which leaves every other cipher in the process with a stale view of it; each
// of them then grows the memory again on its next call, until WebAssembly.Memory.grow throws
// "Maximum memory size exceeded" from a socket callback and the process dies. Any member could
// crash the others with one large message. (Fixed upstream in js-libp2p PR #3585, not in the
// published release.) The cipher is a stream cipher with state across calls, so feeding it in
// pieces gives the same bytes; pieces of 32 KiB never grow its memory.
const XSALSA20_PIECE_BYTES = 32 * 1024

interface XSalsa20Prototype {
  update: (input: Uint8Array, output?: Uint8Array) => Uint8Array
  __hgmigChunked?: boolean
}

/** The WebAssembly state behind one cipher: a cached view of the memory all ciphers share. */
interface XorState {
  _memory?: Uint8Array
}

function chunkXSalsa20 (): void {
  let XSalsa20: { prototype: XSalsa20Prototype }
  try {
    XSalsa20 = createRequire(import.meta.url)('xsalsa20') as { prototype: XSalsa20Prototype }
  } catch {
    return // not installed (no pnet in this build): nothing to guard
  }
  const proto = XSalsa20.prototype
  if (proto.__hgmigChunked === true) return
  const update = proto.update
  // Pieces keep the memory from growing; should it grow anyway (every new cipher takes 64 bytes
  // of it for good, as pnet never finalizes them), a cipher whose view went stale is handed the
  // live one, so it never "grows" the memory again by its whole input.
  let liveView: Uint8Array | undefined
  proto.update = function (this: XSalsa20Prototype & { _xor?: XorState | null }, input: Uint8Array, output?: Uint8Array): Uint8Array {
    const out = output ?? new Uint8Array(input.length)
    for (let offset = 0; offset < input.length || offset === 0; offset += XSALSA20_PIECE_BYTES) {
      const state = this._xor
      if (state?._memory !== undefined && state._memory.byteLength === 0 && liveView !== undefined && liveView.byteLength > 0) state._memory = liveView
      const end = Math.min(offset + XSALSA20_PIECE_BYTES, input.length)
      update.call(this, input.subarray(offset, end), out.subarray(offset, end))
      if (state?._memory !== undefined && state._memory.byteLength > 0) liveView = state._memory
      if (input.length === 0) break
    }
    return out
  }
  proto.__hgmigChunked = true
}

chunkXSalsa20()
