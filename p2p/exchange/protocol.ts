/**
 * The block protocol's wire format. Every message is one length-prefixed frame (unsigned varint
 * length, then the body); the body's first byte is the message type.
 *
 * Fetcher → server, on a stream it opened:
 *   HELLO  once, first: dag-cbor `{ x: context }` — why the blocks are wanted (migration or
 *          replication, which image, which migration), for the server's serving policy and priority.
 *   WANT   dag-cbor `{ c: [cid bytes, ...] }`: blocks to send, answered in this order.
 *   CANCEL dag-cbor `{ c: [cid bytes, ...] }`: drop these from the queue (another source sent them).
 * Server → fetcher, exactly one answer per wanted CID, in the order of the wants:
 *   BLOCK | DONT_HAVE | REFUSED (utf-8 reason) | CANCELLED.
 *   REJECT (utf-8 reason) instead of any answer when the stream itself is refused (not a member).
 *
 * One answer per want in order lets the fetcher match blocks to CIDs without echoing the CID
 * (every block is hashed against the CID it was asked for anyway); several streams per peer give
 * parallelism, and the fetcher's window of outstanding wants bounds what is in flight.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { ProtocolError } from './errors.js'

export const MESSAGE = {
  HELLO: 0x01,
  WANT: 0x02,
  CANCEL: 0x03,
  BLOCK: 0x10,
  DONT_HAVE: 0x11,
  REFUSED: 0x12,
  CANCELLED: 0x13,
  REJECT: 0x1f
} as const

/** The largest block the protocol carries: the store's largest chunk size (1 MiB) plus room for a dag-pb leaf's envelope. */
export const MAX_BLOCK_BYTES = 1024 * 1024 + 1024
/** Largest frame either side accepts: a block and its type byte. Bigger frames end the stream. */
export const MAX_FRAME_BYTES = MAX_BLOCK_BYTES + 1
/** Most CIDs in one WANT, and most wants a server queues per stream: a fetcher cannot make it buffer more. */
export const MAX_WANTS_PER_MESSAGE = 512
export const MAX_QUEUED_WANTS_PER_STREAM = 1024
/** Largest HELLO/WANT/CANCEL body (512 CIDs of ≤ 64 bytes, cbor framing). */
export const MAX_REQUEST_BYTES = 64 * 1024

export type Purpose = 'migration' | 'replication'

/**
 * Why a fetcher wants blocks. Sent to every source; the source's policy (`mayServe`) decides on it
 * (a private image's chunks go only to the target of a migration that needs them) and its rate
 * limiter gives migration traffic priority over replication.
 */
export interface TransferContext {
  purpose: Purpose
  /** Root CID of the image being fetched. */
  image?: string
  /** The migration this transfer belongs to (the agent's id for it), if any. */
  migration?: string
}

export function protocolId (swarmId: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(swarmId)) throw new ProtocolError(`swarm id "${swarmId}" cannot be part of a protocol id (letters, digits, . _ - only)`)
  return `/hgmig/${swarmId}/blocks/1.0.0`
}

function varint (value: number): Uint8Array {
  const bytes: number[] = []
  while (value >= 0x80) {
    bytes.push((value & 0x7f) | 0x80)
    value = Math.floor(value / 128)
  }
  bytes.push(value)
  return Uint8Array.from(bytes)
}

/** A frame's length prefix and type byte, to send before a body (the body is not copied). */
export function frameHeader (type: number, bodyLength: number): Uint8Array {
  const length = varint(bodyLength + 1)
  const header = new Uint8Array(length.byteLength + 1)
  header.set(length)
  header[length.byteLength] = type
  return header
}

export function frame (type: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const header = frameHeader(type, body.byteLength)
  const out = new Uint8Array(header.byteLength + body.byteLength)
  out.set(header)
  out.set(body, header.byteLength)
  return out
}

export function encodeHello (context: TransferContext): Uint8Array {
  const x: Record<string, string> = { p: context.purpose }
  if (context.image !== undefined) x.i = context.image
  if (context.migration !== undefined) x.m = context.migration
  return frame(MESSAGE.HELLO, dagCbor.encode({ x }))
}

export function decodeHello (body: Uint8Array): TransferContext {
  const value = decodeCbor(body, 'HELLO') as { x?: { p?: unknown, i?: unknown, m?: unknown } }
  const x = value.x
  if (x === undefined || x === null || typeof x !== 'object') throw new ProtocolError('HELLO without a context')
  if (x.p !== 'migration' && x.p !== 'replication') throw new ProtocolError(`HELLO: unknown purpose ${String(x.p)}`)
  const context: TransferContext = { purpose: x.p }
  if (typeof x.i === 'string' && x.i.length <= 128) context.image = x.i
  if (typeof x.m === 'string' && x.m.length <= 128) context.migration = x.m
  return context
}

export function encodeCids (type: typeof MESSAGE.WANT | typeof MESSAGE.CANCEL, cids: CID[]): Uint8Array {
  return frame(type, dagCbor.encode({ c: cids.map((cid) => cid.bytes) }))
}

export function decodeCids (body: Uint8Array, what: string): CID[] {
  const value = decodeCbor(body, what) as { c?: unknown }
  if (!Array.isArray(value.c) || value.c.length > MAX_WANTS_PER_MESSAGE) throw new ProtocolError(`${what}: expected at most ${MAX_WANTS_PER_MESSAGE} CIDs`)
  return value.c.map((bytes) => {
    if (!(bytes instanceof Uint8Array) || bytes.byteLength > 128) throw new ProtocolError(`${what}: a CID is not bytes`)
    try {
      return CID.decode(bytes)
    } catch {
      throw new ProtocolError(`${what}: malformed CID`)
    }
  })
}

function decodeCbor (body: Uint8Array, what: string): unknown {
  if (body.byteLength > MAX_REQUEST_BYTES) throw new ProtocolError(`${what} of ${body.byteLength} bytes exceeds ${MAX_REQUEST_BYTES}`)
  try {
    return dagCbor.decode(body)
  } catch {
    throw new ProtocolError(`malformed ${what}`)
  }
}

/**
 * Splits a byte stream into frames without copying a frame that arrived in one piece. Frames
 * larger than `maxFrameBytes` are a protocol error (the stream is then aborted by the caller).
 */
export class FrameDecoder {
  private pending: Uint8Array[] = []
  private pendingBytes = 0

  constructor (private readonly maxFrameBytes: number = MAX_FRAME_BYTES) {}

  /** Feeds received bytes; returns the complete frames (type, body) they finish. */
  push (chunk: Uint8Array): Array<{ type: number, body: Uint8Array }> {
    this.pending.push(chunk)
    this.pendingBytes += chunk.byteLength
    const frames: Array<{ type: number, body: Uint8Array }> = []
    for (;;) {
      const header = this.peekLength()
      if (header === undefined) break
      const { length, prefixBytes } = header
      if (length === 0 || length > this.maxFrameBytes) throw new ProtocolError(`frame of ${length} bytes (limit ${this.maxFrameBytes})`)
      if (this.pendingBytes < prefixBytes + length) break
      const bytes = this.take(prefixBytes + length)
      frames.push({ type: bytes[prefixBytes] as number, body: bytes.subarray(prefixBytes + 1) })
    }
    return frames
  }

  private peekLength (): { length: number, prefixBytes: number } | undefined {
    let value = 0
    let multiplier = 1
    let index = 0
    for (const chunk of this.pending) {
      for (const byte of chunk) {
        value += (byte & 0x7f) * multiplier
        index++
        if ((byte & 0x80) === 0) return { length: value, prefixBytes: index }
        multiplier *= 128
        if (index >= 4) throw new ProtocolError('frame length prefix longer than 4 bytes')
      }
    }
    return undefined
  }

  /** The first n pending bytes, as a view when they sit in one chunk, else copied together. */
  private take (n: number): Uint8Array {
    const first = this.pending[0] as Uint8Array
    let out: Uint8Array
    if (first.byteLength >= n) {
      out = first.subarray(0, n)
      if (first.byteLength === n) this.pending.shift()
      else this.pending[0] = first.subarray(n)
    } else {
      out = new Uint8Array(n)
      let filled = 0
      while (filled < n) {
        const chunk = this.pending[0] as Uint8Array
        const part = Math.min(chunk.byteLength, n - filled)
        out.set(chunk.subarray(0, part), filled)
        filled += part
        if (part === chunk.byteLength) this.pending.shift()
        else this.pending[0] = chunk.subarray(part)
      }
    }
    this.pendingBytes -= n
    return out
  }
}
