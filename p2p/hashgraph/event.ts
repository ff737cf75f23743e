/**
 * The signed hashgraph event: canonical dag-cbor encoding, SHA-256 identity, Ed25519 signature.
 *
 * Wire form: dag-cbor [body, signature], where body is the dag-cbor map
 * {creator, otherParent, selfParent, timestamp, transactions} exactly as the creator signed it.
 * The event's hash is SHA-256(body ‖ signature): it covers every signed byte and the signature, and
 * does not depend on how the outer array happened to be encoded.
 */
import { hash as oneShotHash, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { EventRejectedError } from './errors.js'

export const HASH_BYTES = 32
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
export const DEFAULT_MAX_TRANSACTIONS = 10_000

export interface EventBody {
  creator: number
  selfParent: Uint8Array | null
  otherParent: Uint8Array | null
  /** Creator's clock, nanoseconds since the Unix epoch. */
  timestamp: bigint
  transactions: Uint8Array[]
}

export interface SignedEvent extends EventBody {
  /** Hex of the hash; the id used everywhere in the engine. */
  readonly id: string
  readonly hash: Uint8Array
  readonly signature: Uint8Array
  /** The exact bytes the creator signed. */
  readonly signedBytes: Uint8Array
  /** The wire form, for gossip and the event log. */
  readonly bytes: Uint8Array
}

export interface EventLimits {
  maxEventBytes: number
  maxTransactions: number
}

export const DEFAULT_LIMITS: EventLimits = { maxEventBytes: DEFAULT_MAX_EVENT_BYTES, maxTransactions: DEFAULT_MAX_TRANSACTIONS }

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

function eventHash (signedBytes: Uint8Array, signature: Uint8Array): Uint8Array {
  return oneShotHash('sha256', Buffer.concat([signedBytes, signature]), 'buffer')
}

export function encodeBody (body: EventBody): Uint8Array {
  return dagCbor.encode({
    creator: body.creator,
    selfParent: body.selfParent,
    otherParent: body.otherParent,
    timestamp: body.timestamp,
    transactions: body.transactions
  })
}

/** Signs a body with the creator's key; the caller persists the result before showing it to anyone. */
export function signEvent (body: EventBody, signer: Signer): SignedEvent {
  const signedBytes = encodeBody(body)
  const signature = signer.sign(signedBytes)
  const hash = eventHash(signedBytes, signature)
  return { ...body, id: toHex(hash), hash, signature, signedBytes, bytes: dagCbor.encode([signedBytes, signature]) }
}

/**
 * Decodes wire bytes, checking shape and limits (not the signature: see Verifier).
 *
 * A well-formed event is decoded by a fixed-layout reader over the canonical encoding (the only
 * one dag-cbor accepts for these values), and the event keeps the wire bytes and offsets into
 * them: one buffer per event instead of a copy per field, which is what the engine holds for ~27
 * rounds. Anything else goes through the generic dag-cbor decoder, which either rejects it with
 * the precise reason or (were the reader ever to miss a valid form) accepts it as before.
 */
export function decodeEvent (bytes: Uint8Array, limits: EventLimits = DEFAULT_LIMITS): SignedEvent {
  if (bytes.byteLength > limits.maxEventBytes) {
    throw new EventRejectedError('too-large', '(undecodable)', `${bytes.byteLength} bytes exceeds the ${limits.maxEventBytes}-byte limit`)
  }
  return readCanonicalEvent(bytes, limits) ?? decodeEventGeneric(bytes, limits)
}

/**
 * The generic path: dag-cbor's strict decoder, then the shape checks. decodeEvent must agree with
 * it on every input (same event or same rejection); exported for the test that checks that.
 */
export function decodeEventWithDagCbor (bytes: Uint8Array, limits: EventLimits = DEFAULT_LIMITS): SignedEvent {
  if (bytes.byteLength > limits.maxEventBytes) {
    throw new EventRejectedError('too-large', '(undecodable)', `${bytes.byteLength} bytes exceeds the ${limits.maxEventBytes}-byte limit`)
  }
  return decodeEventGeneric(bytes, limits)
}

function decodeEventGeneric (bytes: Uint8Array, limits: EventLimits): SignedEvent {
  const unknownId = '(undecodable)'
  let outer: unknown
  try {
    outer = dagCbor.decode(bytes)
  } catch (err) {
    throw new EventRejectedError('malformed', unknownId, `not dag-cbor: ${(err as Error).message}`)
  }
  if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array) || !(outer[1] instanceof Uint8Array)) {
    throw new EventRejectedError('malformed', unknownId, 'expected [body bytes, signature bytes]')
  }
  const signedBytes: Uint8Array = outer[0]
  const signature: Uint8Array = outer[1]
  const hash = eventHash(signedBytes, signature)
  const id = toHex(hash)
  const malformed = (detail: string): never => { throw new EventRejectedError('malformed', id, detail) }
  let body: unknown
  try {
    body = dagCbor.decode(signedBytes)
  } catch (err) {
    return malformed(`body is not dag-cbor: ${(err as Error).message}`)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return malformed('body is not a map')
  const b = body as Record<string, unknown>
  if (Object.keys(b).length !== 5) malformed('body must have exactly creator, selfParent, otherParent, timestamp, transactions')
  if (typeof b.creator !== 'number' || !Number.isSafeInteger(b.creator) || b.creator < 0) malformed('creator must be a non-negative integer')
  const parent = (value: unknown, name: string): Uint8Array | null => {
    if (value === null) return null
    if (!(value instanceof Uint8Array) || value.byteLength !== HASH_BYTES) return malformed(`${name} must be null or a ${HASH_BYTES}-byte hash`)
    return value
  }
  const timestamp = typeof b.timestamp === 'bigint' ? b.timestamp : typeof b.timestamp === 'number' && Number.isSafeInteger(b.timestamp) ? BigInt(b.timestamp) : malformed('timestamp must be an integer')
  if (!Array.isArray(b.transactions)) return malformed('transactions must be an array')
  if (b.transactions.length > limits.maxTransactions) {
    throw new EventRejectedError('too-many-transactions', id, `${b.transactions.length} transactions exceeds the limit of ${limits.maxTransactions}`)
  }
  for (const tx of b.transactions) if (!(tx instanceof Uint8Array)) malformed('every transaction must be a byte string')
  return {
    creator: b.creator as number,
    selfParent: parent(b.selfParent, 'selfParent'),
    otherParent: parent(b.otherParent, 'otherParent'),
    timestamp,
    transactions: b.transactions as Uint8Array[],
    id,
    hash,
    signature,
    signedBytes,
    bytes
  }
}

/**
 * A decoded event that keeps only its wire bytes and where each field lies in them; the fields
 * are views made on access. Events live for ~27 rounds, long enough to reach V8's old generation:
 * a copy (and an ArrayBuffer) per field made the old generation grow several times faster.
 */
class WireEvent implements SignedEvent {
  constructor (
    readonly bytes: Uint8Array,
    readonly id: string,
    readonly creator: number,
    readonly timestamp: bigint,
    private readonly bodyStart: number,
    private readonly bodyEnd: number,
    private readonly signatureStart: number,
    /** Offsets of the parents' 32 bytes, -1 for null. */
    private readonly selfParentAt: number,
    private readonly otherParentAt: number,
    /** Offset of the first transaction's header, and the count. */
    private readonly transactionsAt: number,
    private readonly transactionCount: number
  ) {}

  get signedBytes (): Uint8Array { return this.bytes.subarray(this.bodyStart, this.bodyEnd) }
  get signature (): Uint8Array { return this.bytes.subarray(this.signatureStart) }
  get hash (): Uint8Array { return fromHex(this.id) }
  get selfParent (): Uint8Array | null { return this.selfParentAt < 0 ? null : this.bytes.subarray(this.selfParentAt, this.selfParentAt + HASH_BYTES) }
  get otherParent (): Uint8Array | null { return this.otherParentAt < 0 ? null : this.bytes.subarray(this.otherParentAt, this.otherParentAt + HASH_BYTES) }
  get transactions (): Uint8Array[] {
    const out = new Array<Uint8Array>(this.transactionCount)
    const reader = new CanonicalReader(this.bytes, this.transactionsAt, this.bodyEnd)
    for (let i = 0; i < out.length; i++) {
      const length = reader.header(MAJOR_BYTES)
      out[i] = this.bytes.subarray(reader.at, reader.at + length)
      reader.at += length
    }
    return out
  }
}

const MAJOR_UNSIGNED = 0
const MAJOR_NEGATIVE = 1
const MAJOR_BYTES = 2
const MAJOR_ARRAY = 4
const CBOR_NULL = 0xf6
/** The body's keys in dag-cbor's canonical order (shorter first, then bytewise), with their text headers. */
const KEY_CREATOR = keyBytes('creator')
const KEY_TIMESTAMP = keyBytes('timestamp')
const KEY_SELF_PARENT = keyBytes('selfParent')
const KEY_OTHER_PARENT = keyBytes('otherParent')
const KEY_TRANSACTIONS = keyBytes('transactions')

function keyBytes (key: string): Uint8Array {
  return Uint8Array.from([0x60 + key.length, ...Buffer.from(key, 'latin1')])
}

/** Thrown inside the fixed-layout reader only: "not the canonical layout, let dag-cbor judge". */
class NotCanonical extends Error {}
const notCanonical = new NotCanonical()

/**
 * Reads CBOR heads as dag-cbor's strict decoder does (shortest form only, no indefinite lengths)
 * within [at, end).
 */
class CanonicalReader {
  constructor (private readonly bytes: Uint8Array, public at: number, private readonly end: number) {}

  /** Argument of a head of the given major type, as a number (heads beyond 2^32 - 1 are not canonical here). */
  header (major: number): number {
    const value = this.argument(major)
    if (typeof value !== 'number') throw notCanonical
    return value
  }

  /** Argument of a head of the given major type; bigint only for 8-byte arguments. */
  argument (major: number): number | bigint {
    const bytes = this.bytes
    if (this.at >= this.end) throw notCanonical
    const initial = bytes[this.at]!
    if (initial >> 5 !== major) throw notCanonical
    const info = initial & 0x1f
    const at = this.at + 1
    if (info < 24) { this.at = at; return info }
    let value: number | bigint
    let width: number
    if (info === 24) { width = 1; value = at < this.end ? bytes[at]! : -1; if (value < 24) throw notCanonical } else if (info === 25) {
      width = 2
      value = at + 2 <= this.end ? (bytes[at]! << 8) | bytes[at + 1]! : -1
      if (value < 0x100) throw notCanonical
    } else if (info === 26) {
      width = 4
      value = at + 4 <= this.end ? ((bytes[at]! << 24) >>> 0) + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) : -1
      if (value < 0x10000) throw notCanonical
    } else if (info === 27) {
      width = 8
      if (at + 8 > this.end) throw notCanonical
      let v = 0n
      for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(bytes[at + i]!)
      if (v < 0x100000000n) throw notCanonical
      value = v
    } else {
      throw notCanonical
    }
    this.at = at + width
    return value
  }

  /** Skips exactly these bytes, or fails. */
  expect (expected: Uint8Array): void {
    if (this.at + expected.length > this.end) throw notCanonical
    for (let i = 0; i < expected.length; i++) if (this.bytes[this.at + i] !== expected[i]) throw notCanonical
    this.at += expected.length
  }

  /** A 32-byte hash or null: the offset of its bytes, or -1. */
  parent (): number {
    if (this.bytes[this.at] === CBOR_NULL && this.at < this.end) { this.at++; return -1 }
    if (this.header(MAJOR_BYTES) !== HASH_BYTES || this.at + HASH_BYTES > this.end) throw notCanonical
    this.at += HASH_BYTES
    return this.at - HASH_BYTES
  }

  byteString (): number {
    const length = this.header(MAJOR_BYTES)
    if (this.at + length > this.end) throw notCanonical
    this.at += length
    return length
  }
}

/**
 * The fixed-layout reader: [bytes(body), bytes(signature)] with body the canonical map
 * {creator, timestamp, selfParent, otherParent, transactions}. Returns null for anything that is
 * not exactly a valid event in that layout (the generic decoder then decides and explains).
 */
function readCanonicalEvent (bytes: Uint8Array, limits: EventLimits): WireEvent | null {
  try {
    const outer = new CanonicalReader(bytes, 0, bytes.length)
    if (outer.header(MAJOR_ARRAY) !== 2) return null
    const bodyLength = outer.header(MAJOR_BYTES)
    const bodyStart = outer.at
    const bodyEnd = bodyStart + bodyLength
    if (bodyEnd > bytes.length) return null
    outer.at = bodyEnd
    const signatureLength = outer.byteString()
    if (outer.at !== bytes.length) return null
    const signatureStart = bytes.length - signatureLength

    const body = new CanonicalReader(bytes, bodyStart, bodyEnd)
    if (bytes[body.at] !== 0xa5 || body.at >= bodyEnd) return null
    body.at++
    body.expect(KEY_CREATOR)
    const creator = body.header(MAJOR_UNSIGNED)
    body.expect(KEY_TIMESTAMP)
    const major = bytes[body.at]! >> 5
    if (major !== MAJOR_UNSIGNED && major !== MAJOR_NEGATIVE) return null
    const argument = body.argument(major)
    const timestamp = major === MAJOR_UNSIGNED ? BigInt(argument) : -1n - BigInt(argument)
    body.expect(KEY_SELF_PARENT)
    const selfParentAt = body.parent()
    body.expect(KEY_OTHER_PARENT)
    const otherParentAt = body.parent()
    body.expect(KEY_TRANSACTIONS)
    const transactionCount = body.header(MAJOR_ARRAY)
    if (transactionCount > limits.maxTransactions) return null
    const transactionsAt = body.at
    for (let i = 0; i < transactionCount; i++) body.byteString()
    if (body.at !== bodyEnd) return null
    const id = oneShotHash('sha256', Buffer.concat([bytes.subarray(bodyStart, bodyEnd), bytes.subarray(signatureStart)]), 'hex')
    return new WireEvent(bytes, id, creator, timestamp, bodyStart, bodyEnd, signatureStart, selfParentAt, otherParentAt, transactionsAt, transactionCount)
  } catch (err) {
    if (err === notCanonical) return null
    throw err
  }
}

export interface Signer {
  sign: (message: Uint8Array) => Uint8Array
}

/**
 * Ed25519 through node's crypto with the key object built once: @libp2p/crypto rebuilds it from
 * JWK on every call (~30 µs extra per call measured here). Keys stay @libp2p/crypto keys.
 */
export function ed25519Signer (key: PrivateKey): Signer {
  if (key.type !== 'Ed25519') throw new TypeError(`event keys must be Ed25519, got ${key.type}`)
  const raw = key.raw
  const keyObject = createPrivateKey({
    format: 'jwk',
    key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw.subarray(0, 32)).toString('base64url'), x: Buffer.from(raw.subarray(32, 64)).toString('base64url') }
  })
  return { sign: (message) => new Uint8Array(nodeSign(null, message, keyObject)) }
}

export class Verifier {
  private readonly keys: KeyObject[] = []
  constructor (publicKeys: readonly PublicKey[]) {
    for (const key of publicKeys) this.add(key)
  }

  /** Adds the key of the next creator id. */
  add (key: PublicKey): void {
    if (key.type !== 'Ed25519') throw new TypeError(`member keys must be Ed25519, got ${key.type}`)
    this.keys.push(createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.raw).toString('base64url') } }))
  }

  verify (event: SignedEvent): boolean {
    const key = this.keys[event.creator]
    if (key === undefined) return false
    return nodeVerify(null, event.signedBytes, key, event.signature)
  }
}
