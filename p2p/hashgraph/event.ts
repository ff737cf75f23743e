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

/** Decodes wire bytes, checking shape and limits (not the signature: see Verifier). */
export function decodeEvent (bytes: Uint8Array, limits: EventLimits = DEFAULT_LIMITS): SignedEvent {
  const unknownId = '(undecodable)'
  if (bytes.byteLength > limits.maxEventBytes) {
    throw new EventRejectedError('too-large', unknownId, `${bytes.byteLength} bytes exceeds the ${limits.maxEventBytes}-byte limit`)
  }
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
