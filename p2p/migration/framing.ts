/**
 * Little-endian fixed fields over a DuplexByteStream: what the synthetic driver's disk and memory
 * streams are made of. (A QEMU driver needs none of this: QEMU's own streams are opaque bytes.)
 */
import type { DuplexByteStream } from './driver.js'
import { ProtocolError } from './errors.js'

export class FrameReader {
  constructor (private readonly stream: DuplexByteStream, private readonly what: string) {}

  async bytes (count: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (count === 0) return new Uint8Array(0)
    const data = await this.stream.read({ bytes: count, signal })
    if (data === null || data.byteLength !== count) throw new ProtocolError(`${this.what} stream ended in the middle of a frame`)
    return data
  }

  /** The next frame's type byte, or null at a clean end of stream. */
  async type (signal?: AbortSignal): Promise<number | null> {
    const data = await this.stream.read({ bytes: 1, signal }).catch((err: unknown) => {
      if ((err as Error).name === 'UnexpectedEOFError') return null
      throw err
    })
    return data === null ? null : data[0] as number
  }

  async u32 (signal?: AbortSignal): Promise<number> {
    const b = await this.bytes(4, signal)
    return Buffer.from(b.buffer, b.byteOffset, 4).readUInt32LE(0)
  }
}

/** A frame: a type byte, then u32 fields, then an optional payload (concatenated, not copied twice). */
export function frame (type: number, fields: number[], payload: Uint8Array[] = []): Uint8Array {
  const head = Buffer.allocUnsafe(1 + fields.length * 4)
  head[0] = type
  fields.forEach((value, i) => head.writeUInt32LE(value, 1 + i * 4))
  return payload.length === 0 ? head : Buffer.concat([head, ...payload])
}

export const FRAME = {
  /** Memory: a batch of pages. Disk: a batch of blocks. */
  batch: 0x42,
  /** Disk: a batch of dirty sectors (the UD copy's rounds after its snapshot). */
  sectors: 0x53,
  /** End of a pre-copy pass / disk round. */
  roundEnd: 0x52,
  /** End of the stop-and-copy: nothing follows. */
  final: 0x46
} as const

/**
 * Reads batch frames (of `types`) until the final one, handing each batch (its count read) to
 * `onBatch`; round ends are skipped. Throws if the stream ends before the final frame.
 */
export async function receiveBatches (stream: DuplexByteStream, what: string, signal: AbortSignal, onBatch: (reader: FrameReader, count: number, type: number) => Promise<void>, types: number[] = [FRAME.batch]): Promise<void> {
  const reader = new FrameReader(stream, what)
  for (;;) {
    const type = await reader.type(signal)
    if (type === null) throw new ProtocolError(`the ${what} stream ended before the source finished the copy`)
    if (type === FRAME.final) return
    if (type === FRAME.roundEnd) { await reader.u32(signal); continue }
    if (!types.includes(type)) throw new ProtocolError(`unknown ${what} frame type ${type}`)
    await onBatch(reader, await reader.u32(signal), type)
  }
}
