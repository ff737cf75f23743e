/**
 * The replicated state machine. Its only input is the consensus order of transactions, so every
 * site that applied the same order holds the same state and the same state hash. Nothing here
 * may depend on the local clock, the local configuration, or arrival order.
 *
 * Not persisted on its own: the Hashgraph replays its event log at every start and emits the
 * whole order again from position 0, which rebuilds this state exactly.
 *
 * Transactions are dag-cbor maps `{ type, ... }`. One that cannot be decoded, has an unknown type
 * or bad fields, or breaks a rule (a taken site name) is *rejected*: it changes nothing but the
 * counters and the state hash, the same way at every site.
 */
import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import type { OrderedTransaction } from '../hashgraph/index.js'
import { OrderGapError } from './errors.js'
import { siteNameKey, siteNameProblem } from './site-name.js'

/** Larger transactions are rejected (the image announcements to come are far smaller). */
export const MAX_TRANSACTION_BYTES = 64 * 1024

export type SwarmTransaction =
  /** The creator announces its site name (unique in the swarm, ignoring case). */
  | { type: 'site-name', name: string }
  /**
   * A latency probe. `submittedAt` (ms since the epoch, the submitter's clock) lets other sites
   * estimate the latency at their end later; `nonce` makes every probe distinct.
   */
  | { type: 'ping', nonce: Uint8Array, submittedAt: number }

export type TransactionKind = SwarmTransaction['type']

export type RejectionReason = 'malformed' | 'too-large' | 'unknown-type' | 'invalid-field' | 'name-taken' | 'unknown-member'

export interface StateMember {
  index: number
  peerId: string
  name: string
}

export interface AppliedTransaction {
  position: number
  round: number
  creator: number
  /** The transaction's type, or "unknown" if it could not be read. */
  kind: string
  outcome: 'applied' | 'rejected'
  reason?: RejectionReason
  detail?: string
  stateHash: string
  transaction?: SwarmTransaction
}

export function encodeTransaction (transaction: SwarmTransaction): Uint8Array {
  const problem = transactionProblem(transaction as unknown as Record<string, unknown>)
  if (problem !== undefined) throw new TypeError(`cannot encode ${transaction.type} transaction: ${problem.detail}`)
  return dagCbor.encode(transaction)
}

type Decoded = { ok: true, transaction: SwarmTransaction } | { ok: false, kind: string, reason: RejectionReason, detail: string }

export function decodeTransaction (bytes: Uint8Array): Decoded {
  if (bytes.byteLength > MAX_TRANSACTION_BYTES) return { ok: false, kind: 'unknown', reason: 'too-large', detail: `${bytes.byteLength} bytes (limit ${MAX_TRANSACTION_BYTES})` }
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    return { ok: false, kind: 'unknown', reason: 'malformed', detail: `not dag-cbor: ${(err as Error).message}` }
  }
  if (!isPlainMap(value)) return { ok: false, kind: 'unknown', reason: 'malformed', detail: 'not a map' }
  const type = value['type']
  if (typeof type !== 'string') return { ok: false, kind: 'unknown', reason: 'malformed', detail: 'no string field "type"' }
  const kind = type.slice(0, 64)
  const problem = transactionProblem(value)
  if (problem !== undefined) return { ok: false, kind, ...problem }
  return { ok: true, transaction: value as unknown as SwarmTransaction }
}

/** Field checks per type; every field must be known, so two versions cannot read one transaction differently. */
function transactionProblem (value: Record<string, unknown>): { reason: RejectionReason, detail: string } | undefined {
  const onlyFields = (...allowed: string[]): { reason: RejectionReason, detail: string } | undefined => {
    const extra = Object.keys(value).find((k) => !allowed.includes(k))
    return extra === undefined ? undefined : { reason: 'invalid-field', detail: `unknown field "${extra.slice(0, 64)}"` }
  }
  switch (value['type']) {
    case 'site-name': {
      const problem = siteNameProblem(value['name'])
      if (problem !== undefined) return { reason: 'invalid-field', detail: `"name": ${problem}` }
      return onlyFields('type', 'name')
    }
    case 'ping': {
      const nonce = value['nonce']
      if (!(nonce instanceof Uint8Array) || nonce.byteLength < 8 || nonce.byteLength > 32) return { reason: 'invalid-field', detail: '"nonce" must be 8 to 32 bytes' }
      const at = value['submittedAt']
      if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) return { reason: 'invalid-field', detail: '"submittedAt" must be a non-negative integer (ms since the epoch)' }
      return onlyFields('type', 'nonce', 'submittedAt')
    }
    default:
      return { reason: 'unknown-type', detail: `unknown transaction type ${JSON.stringify(String(value['type']).slice(0, 64))}` }
  }
}

function isPlainMap (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array) && Object.getPrototypeOf(value) === Object.prototype
}

export class SwarmState {
  private readonly members: StateMember[]
  /** Lower-cased name → member index. */
  private readonly names = new Map<string, number>()
  private hash: Buffer
  private appliedCount = 0
  private readonly rejectedCounts = new Map<RejectionReason, number>()

  constructor (genesisMembers: ReadonlyArray<{ peerId: string, name: string }>) {
    this.members = genesisMembers.map((m, index) => ({ index, peerId: m.peerId, name: m.name }))
    for (const m of this.members) this.names.set(siteNameKey(m.name), m.index)
    // The starting hash covers the genesis members, so two swarms never share a state hash.
    this.hash = sha256(dagCbor.encode({ genesis: this.members.map((m) => ({ peerId: m.peerId, name: m.name })) }))
  }

  apply (ordered: Pick<OrderedTransaction, 'transaction' | 'creator' | 'position' | 'roundReceived'>): AppliedTransaction {
    // A skipped or repeated position means this site's state no longer follows the swarm's order.
    if (ordered.position !== this.nextPosition) throw new OrderGapError(this.nextPosition, ordered.position)
    const decoded = decodeTransaction(ordered.transaction)
    let result: { kind: string, reason?: RejectionReason, detail?: string, transaction?: SwarmTransaction }
    if (!decoded.ok) result = decoded
    else if (this.members[ordered.creator] === undefined) result = { kind: decoded.transaction.type, reason: 'unknown-member', detail: `creator ${ordered.creator} is not a member` }
    else result = { kind: decoded.transaction.type, transaction: decoded.transaction, ...this.execute(decoded.transaction, ordered.creator) }

    const outcome = result.reason === undefined ? 'applied' : 'rejected'
    if (result.reason === undefined) this.appliedCount++
    else this.rejectedCounts.set(result.reason, (this.rejectedCounts.get(result.reason) ?? 0) + 1)
    this.hash = sha256(Buffer.concat([this.hash, dagCbor.encode({
      position: ordered.position,
      creator: ordered.creator,
      outcome,
      reason: result.reason ?? null,
      transaction: sha256(ordered.transaction)
    })]))
    return {
      position: ordered.position,
      round: ordered.roundReceived,
      creator: ordered.creator,
      kind: result.kind,
      outcome,
      ...(result.reason === undefined ? {} : { reason: result.reason, detail: result.detail }),
      stateHash: this.stateHash,
      ...(result.transaction === undefined ? {} : { transaction: result.transaction })
    }
  }

  /** Applies a valid transaction, or says why the rules refuse it (state unchanged). */
  private execute (transaction: SwarmTransaction, creator: number): { reason?: RejectionReason, detail?: string } {
    switch (transaction.type) {
      case 'site-name': {
        const key = siteNameKey(transaction.name)
        const holder = this.names.get(key)
        if (holder !== undefined && holder !== creator) return { reason: 'name-taken', detail: `${JSON.stringify(transaction.name)} is the name of member ${holder}` }
        const member = this.members[creator]!
        this.names.delete(siteNameKey(member.name))
        member.name = transaction.name
        this.names.set(key, creator)
        return {}
      }
      case 'ping':
        return {}
    }
  }

  /** Hex SHA-256 chained over every ordered transaction's outcome since genesis. */
  get stateHash (): string { return this.hash.toString('hex') }
  /** Position in the consensus order of the next transaction to apply. */
  get nextPosition (): number { return this.appliedCount + this.rejected }
  get applied (): number { return this.appliedCount }
  get rejected (): number { return [...this.rejectedCounts.values()].reduce((a, b) => a + b, 0) }
  rejectedBy (reason: RejectionReason): number { return this.rejectedCounts.get(reason) ?? 0 }
  member (index: number): StateMember | undefined { return this.members[index] }
  memberList (): StateMember[] { return this.members.map((m) => ({ ...m })) }
  memberByName (name: string): StateMember | undefined {
    const index = this.names.get(siteNameKey(name))
    return index === undefined ? undefined : this.member(index)
  }
}

function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}
