/**
 * The replicated state machine. Its only input is the consensus order of transactions, so every
 * site that applied the same order holds the same state and the same state hash. Nothing here
 * may depend on the local clock, the local configuration, or arrival order.
 *
 * Not persisted on its own: the Hashgraph replays its event log at every start and emits the
 * whole order again from position 0, which rebuilds this state exactly. `snapshot()` and
 * `SwarmState.fromSnapshot()` carry it whole (for a start from a consensus snapshot instead of the
 * whole history): a restored state applies the rest of the order exactly as the original would.
 *
 * Transactions are dag-cbor maps `{ type, ... }`. One that cannot be decoded, has an unknown type
 * or bad fields, or breaks a rule (a taken site name) is *rejected*: it changes nothing but the
 * counters and the state hash, the same way at every site.
 */
import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import type { ImageAnnouncement } from '../api/index.js'
import { MEMBERSHIP_DELAY_ROUNDS, type OrderedTransaction } from '../hashgraph/index.js'
import { InvalidStateSnapshotError, OrderGapError } from './errors.js'
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
  /**
   * A member approves a site that asked to join (by invite): it becomes a member, with the next
   * creator id, from MEMBERSHIP_DELAY_ROUNDS after the round this is ordered in. The peer id is an
   * Ed25519 one, so it carries the public key that will sign the new member's events.
   */
  | { type: 'member-add', peerId: string, name: string }
  /** A member removes a member (or itself: leaving), from MEMBERSHIP_DELAY_ROUNDS after this round. */
  | { type: 'member-remove', peerId: string }
  /** The creator holds this image (imported or fetched); every site learns its root CID and shape. */
  | { type: 'image-announce', image: AnnouncedImage }
  /** The creator no longer holds this image. */
  | { type: 'image-drop', rootCid: string }
  /** A migration the creator (its source) completed: every site's history shows it. */
  | MigrationRecordTransaction

export interface MigrationRecordTransaction {
  type: 'migration-record'
  migration: string
  vm: string
  from: string
  to: string
  strategy: string
  planHash: string
  bytesOnWire: number
  bytesSaved: number
  totalMs: number
  downtimeMs: number
}

/** A migration in the swarm's history, with the consensus position that recorded it. */
export interface MigrationRecord extends Omit<MigrationRecordTransaction, 'type'> {
  position: number
  recordedBy: number
}

/** The announcement's fields are the API's contract too (GET /v1/images shows them). */
export type AnnouncedImage = ImageAnnouncement

export type TransactionKind = SwarmTransaction['type']

export type RejectionReason = 'malformed' | 'too-large' | 'unknown-type' | 'invalid-field' | 'name-taken' | 'unknown-member' | 'already-member' | 'not-a-member' | 'last-member' | 'not-held'

export interface StateMember {
  /** Creator id in the hashgraph: genesis members first, then in the order they were added. Never reused. */
  index: number
  peerId: string
  name: string
  /** First round in which the member's events count (1 for genesis members). */
  fromRound: number
  /** First round without it, once removed (or leaving); null while it stays. */
  untilRound: number | null
}

/** An image some site announced, with the sites (member indexes) holding it now. */
export interface ImageRecord extends AnnouncedImage {
  /** Member that announced it first. */
  announcedBy: number
  holders: number[]
}

/** What an applied transaction changed in the member set, for the agent to tell the engine. */
export type MembershipChange =
  | { change: 'add', index: number, peerId: string, fromRound: number }
  | { change: 'remove', index: number, peerId: string, fromRound: number }

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
  membership?: MembershipChange
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
    case 'member-add': {
      const peerProblem = ed25519PeerIdProblem(value['peerId'])
      if (peerProblem !== undefined) return { reason: 'invalid-field', detail: `"peerId": ${peerProblem}` }
      const nameProblem = siteNameProblem(value['name'])
      if (nameProblem !== undefined) return { reason: 'invalid-field', detail: `"name": ${nameProblem}` }
      return onlyFields('type', 'peerId', 'name')
    }
    case 'member-remove': {
      if (typeof value['peerId'] !== 'string' || value['peerId'].length > 128) return { reason: 'invalid-field', detail: '"peerId" must be a peer id string' }
      return onlyFields('type', 'peerId')
    }
    case 'image-announce': {
      const problem = announcedImageProblem(value['image'])
      if (problem !== undefined) return { reason: 'invalid-field', detail: `"image": ${problem}` }
      return onlyFields('type', 'image')
    }
    case 'migration-record': {
      for (const field of ['migration', 'vm', 'from', 'to', 'strategy', 'planHash']) {
        const v = value[field]
        if (typeof v !== 'string' || v.length === 0 || v.length > 128) return { reason: 'invalid-field', detail: `"${field}" must be a string of 1 to 128 characters` }
      }
      for (const field of ['bytesOnWire', 'bytesSaved', 'totalMs', 'downtimeMs']) {
        const v = value[field]
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return { reason: 'invalid-field', detail: `"${field}" must be a non-negative integer` }
      }
      return onlyFields('type', 'migration', 'vm', 'from', 'to', 'strategy', 'planHash', 'bytesOnWire', 'bytesSaved', 'totalMs', 'downtimeMs')
    }
    case 'image-drop': {
      if (cidProblem(value['rootCid']) !== undefined) return { reason: 'invalid-field', detail: `"rootCid": ${cidProblem(value['rootCid'])!}` }
      return onlyFields('type', 'rootCid')
    }
    default:
      return { reason: 'unknown-type', detail: `unknown transaction type ${JSON.stringify(String(value['type']).slice(0, 64))}` }
  }
}

function ed25519PeerIdProblem (value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 128) return 'must be a peer id string'
  try {
    const peer = peerIdFromString(value)
    if (peer.type !== 'Ed25519') return `must be an Ed25519 peer id (its key signs the member's events), got ${peer.type}`
  } catch (err) {
    return `not a peer id: ${(err as Error).message}`
  }
  return undefined
}

function cidProblem (value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 128) return 'must be a CID string'
  try {
    CID.parse(value)
  } catch (err) {
    return `not a CID: ${(err as Error).message}`
  }
  return undefined
}

const MAX_IMAGE_SIZE = 2 ** 50

function announcedImageProblem (value: unknown): string | undefined {
  if (!isPlainMap(value)) return 'must be a map'
  const allowed = ['rootCid', 'name', 'layer', 'base', 'size', 'chunkSize', 'chunkCount', 'public']
  const extra = Object.keys(value).find((k) => !allowed.includes(k))
  if (extra !== undefined) return `unknown field "${extra.slice(0, 64)}"`
  const root = cidProblem(value['rootCid'])
  if (root !== undefined) return `rootCid ${root}`
  const name = value['name']
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) return 'name must be a string of 1 to 255 characters'
  const layer = value['layer']
  if (layer !== 'os' && layer !== 'we' && layer !== 'ud') return 'layer must be "os", "we" or "ud"'
  const base = value['base']
  if (layer === 'os' ? base !== null : cidProblem(base) !== undefined) return layer === 'os' ? 'base must be null for an OS image' : `base must be the root CID of its ${layer === 'we' ? 'OS' : 'WE'} image`
  const size = value['size']
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > MAX_IMAGE_SIZE) return 'size must be a non-negative integer (bytes)'
  const chunkSize = value['chunkSize']
  if (typeof chunkSize !== 'number' || !Number.isSafeInteger(chunkSize) || chunkSize < 1024 || chunkSize > 64 * 1024 * 1024) return 'chunkSize must be an integer from 1024 to 67108864'
  const chunkCount = value['chunkCount']
  const expectedChunks = Math.ceil(size / chunkSize)
  if (typeof chunkCount !== 'number' || !(chunkCount === expectedChunks || (size === 0 && chunkCount === 1))) return `chunkCount must be ceil(size / chunkSize) = ${expectedChunks}`
  if (typeof value['public'] !== 'boolean') return 'public must be a boolean'
  return undefined
}

function isPlainMap (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array) && Object.getPrototypeOf(value) === Object.prototype
}

export class SwarmState {
  private readonly members: StateMember[]
  /** Member index by peer id (a key joins once, so ids are unique among all members ever). */
  private readonly indexByPeerId = new Map<string, number>()
  /** Lower-cased name → index of the member holding it (active or leaving). */
  private readonly names = new Map<string, number>()
  /** Root CID → the image and who holds it. Kept in first-announcement order (deterministic iteration). */
  private readonly images = new Map<string, ImageRecord>()
  private readonly migrationRecords: MigrationRecord[] = []
  private hash: Buffer
  private appliedCount = 0
  private readonly rejectedCounts = new Map<RejectionReason, number>()

  constructor (genesisMembers: ReadonlyArray<{ peerId: string, name: string }>) {
    this.members = genesisMembers.map((m, index) => ({ index, peerId: m.peerId, name: m.name, fromRound: 1, untilRound: null }))
    for (const m of this.members) {
      this.names.set(siteNameKey(m.name), m.index)
      this.indexByPeerId.set(m.peerId, m.index)
    }
    // The starting hash covers the genesis members, so two swarms never share a state hash.
    this.hash = sha256(dagCbor.encode({ genesis: this.members.map((m) => ({ peerId: m.peerId, name: m.name })) }))
  }

  apply (ordered: Pick<OrderedTransaction, 'transaction' | 'creator' | 'position' | 'roundReceived'>): AppliedTransaction {
    // A skipped or repeated position means this site's state no longer follows the swarm's order.
    if (ordered.position !== this.nextPosition) throw new OrderGapError(this.nextPosition, ordered.position)
    const decoded = decodeTransaction(ordered.transaction)
    let result: { kind: string, reason?: RejectionReason, detail?: string, transaction?: SwarmTransaction, membership?: MembershipChange }
    if (!decoded.ok) result = decoded
    else if (this.members[ordered.creator] === undefined) result = { kind: decoded.transaction.type, reason: 'unknown-member', detail: `creator ${ordered.creator} is not a member` }
    else result = { kind: decoded.transaction.type, transaction: decoded.transaction, ...this.execute(decoded.transaction, ordered.creator, ordered.roundReceived) }

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
      ...(result.transaction === undefined ? {} : { transaction: result.transaction }),
      ...(result.membership === undefined ? {} : { membership: result.membership })
    }
  }

  /** Applies a valid transaction, or says why the rules refuse it (state unchanged). */
  private execute (transaction: SwarmTransaction, creator: number, round: number): { reason?: RejectionReason, detail?: string, membership?: MembershipChange } {
    switch (transaction.type) {
      case 'migration-record': {
        // Only the source records its migration (the engine calls record at the source).
        if (this.members[creator]?.name !== transaction.from) return { reason: 'invalid-field', detail: `member ${creator} recorded a migration from ${transaction.from}, not from itself` }
        const { type: _type, ...record } = transaction
        this.migrationRecords.push({ ...record, position: this.nextPosition, recordedBy: creator })
        return {}
      }
      case 'site-name': {
        const member = this.members[creator]!
        // A removed member's name was freed (another site may hold it now): it names nothing more.
        if (member.untilRound !== null) return { reason: 'not-a-member', detail: `member ${creator} (${member.name}) has been removed` }
        const key = siteNameKey(transaction.name)
        const holder = this.names.get(key)
        if (holder !== undefined && holder !== creator) return { reason: 'name-taken', detail: `${JSON.stringify(transaction.name)} is the name of member ${holder}` }
        this.names.delete(siteNameKey(member.name))
        member.name = transaction.name
        this.names.set(key, creator)
        return {}
      }
      case 'ping':
        return {}
      case 'member-add': {
        // A key joins once: creator ids are never reused, and a removed site rejoins with a new key.
        const existing = this.memberByPeerId(transaction.peerId)
        if (existing !== undefined) return { reason: 'already-member', detail: `${transaction.peerId} is ${existing.untilRound === null ? '' : 'a former '}member ${existing.index} (${existing.name})` }
        const holder = this.names.get(siteNameKey(transaction.name))
        if (holder !== undefined) return { reason: 'name-taken', detail: `${JSON.stringify(transaction.name)} is the name of member ${holder}` }
        const index = this.members.length
        const fromRound = round + MEMBERSHIP_DELAY_ROUNDS
        this.members.push({ index, peerId: transaction.peerId, name: transaction.name, fromRound, untilRound: null })
        this.indexByPeerId.set(transaction.peerId, index)
        this.names.set(siteNameKey(transaction.name), index)
        return { membership: { change: 'add', index, peerId: transaction.peerId, fromRound } }
      }
      case 'member-remove': {
        const index = this.indexByPeerId.get(transaction.peerId)
        const member = index === undefined ? undefined : this.members[index]!
        if (member === undefined || member.untilRound !== null) return { reason: 'not-a-member', detail: `${transaction.peerId} is not a current member` }
        if (this.activeMembers().length === 1) return { reason: 'last-member', detail: `${member.name} is the swarm's last member` }
        const fromRound = round + MEMBERSHIP_DELAY_ROUNDS
        member.untilRound = fromRound
        // Its name is free for a new site; its images are no longer held anywhere it could serve them.
        this.names.delete(siteNameKey(member.name))
        for (const image of this.images.values()) image.holders = image.holders.filter((h) => h !== member.index)
        return { membership: { change: 'remove', index: member.index, peerId: member.peerId, fromRound } }
      }
      case 'image-announce': {
        const announced = transaction.image
        const record = this.images.get(announced.rootCid)
        if (record === undefined) {
          this.images.set(announced.rootCid, { ...announced, announcedBy: creator, holders: [creator] })
        } else if (!record.holders.includes(creator)) {
          record.holders = [...record.holders, creator].sort((a, b) => a - b)
        }
        return {}
      }
      case 'image-drop': {
        const record = this.images.get(transaction.rootCid)
        if (record === undefined || !record.holders.includes(creator)) return { reason: 'not-held', detail: `member ${creator} does not hold ${transaction.rootCid}` }
        record.holders = record.holders.filter((h) => h !== creator)
        return {}
      }
    }
  }

  /**
   * The whole state as canonical dag-cbor: equal states give equal bytes, so sites can compare
   * snapshots by their hash. The running state hash is inside, so a restored state goes on
   * chaining from where this one stands.
   */
  snapshot (): Uint8Array {
    const snapshot: StateSnapshot = {
      version: STATE_SNAPSHOT_VERSION,
      hash: new Uint8Array(this.hash),
      applied: this.appliedCount,
      rejected: Object.fromEntries([...this.rejectedCounts].sort(([a], [b]) => a < b ? -1 : 1)),
      members: this.members.map((m) => ({ ...m })),
      images: [...this.images.values()].map((i) => ({ ...i, holders: [...i.holders] })),
      migrations: this.migrations()
    }
    return dagCbor.encode(snapshot)
  }

  /**
   * A state from `snapshot()`'s bytes. Everything is checked as an ordered transaction would be
   * (names, peer ids, image and migration fields, indexes): a snapshot that does not describe a
   * state this machine could have reached is refused with what is wrong, not half-loaded.
   */
  static fromSnapshot (bytes: Uint8Array): SwarmState {
    let decoded: unknown
    try {
      decoded = dagCbor.decode(bytes)
    } catch (err) {
      throw new InvalidStateSnapshotError(`not dag-cbor: ${(err as Error).message}`)
    }
    const snapshot = checkSnapshot(decoded)
    const state = new SwarmState([])
    state.members.push(...snapshot.members.map((m) => ({ ...m })))
    for (const m of state.members) {
      state.indexByPeerId.set(m.peerId, m.index)
      if (m.untilRound === null) state.names.set(siteNameKey(m.name), m.index)
    }
    for (const image of snapshot.images) state.images.set(image.rootCid, { ...image, holders: [...image.holders] })
    state.migrationRecords.push(...snapshot.migrations.map((m) => ({ ...m })))
    state.hash = Buffer.from(snapshot.hash)
    state.appliedCount = snapshot.applied
    for (const [reason, count] of Object.entries(snapshot.rejected)) state.rejectedCounts.set(reason as RejectionReason, count)
    return state
  }

  /** Hex SHA-256 chained over every ordered transaction's outcome since genesis. */
  get stateHash (): string { return this.hash.toString('hex') }
  /** Position in the consensus order of the next transaction to apply. */
  get nextPosition (): number { return this.appliedCount + this.rejected }
  get applied (): number { return this.appliedCount }
  get rejected (): number { return [...this.rejectedCounts.values()].reduce((a, b) => a + b, 0) }
  rejectedBy (reason: RejectionReason): number { return this.rejectedCounts.get(reason) ?? 0 }
  member (index: number): StateMember | undefined { return this.members[index] }
  /** Every member ever, removed ones included (their slots stay: creator ids are never reused). */
  memberList (): StateMember[] { return this.members.map((m) => ({ ...m })) }
  /** Members not removed (including those whose first round is still ahead). */
  activeMembers (): StateMember[] { return this.memberList().filter((m) => m.untilRound === null) }
  memberByName (name: string): StateMember | undefined {
    const index = this.names.get(siteNameKey(name))
    return index === undefined ? undefined : this.member(index)
  }
  memberByPeerId (peerId: string): StateMember | undefined {
    const index = this.indexByPeerId.get(peerId)
    return index === undefined ? undefined : { ...this.members[index]! }
  }
  /** Images announced and still held by at least one site (or all, with `includeDropped`). */
  imageList (options: { includeDropped?: boolean } = {}): ImageRecord[] {
    return [...this.images.values()].filter((i) => options.includeDropped === true || i.holders.length > 0).map((i) => ({ ...i, holders: [...i.holders] }))
  }
  /** Completed migrations in consensus order. */
  migrations (): MigrationRecord[] {
    return this.migrationRecords.map((m) => ({ ...m }))
  }

  image (rootCid: string): ImageRecord | undefined {
    const record = this.images.get(rootCid)
    return record === undefined ? undefined : { ...record, holders: [...record.holders] }
  }
}

function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

export const STATE_SNAPSHOT_VERSION = 1

interface StateSnapshot {
  version: number
  hash: Uint8Array
  applied: number
  rejected: Record<string, number>
  members: StateMember[]
  images: ImageRecord[]
  migrations: MigrationRecord[]
}

const REJECTION_REASONS: readonly RejectionReason[] = ['malformed', 'too-large', 'unknown-type', 'invalid-field', 'name-taken', 'unknown-member', 'already-member', 'not-a-member', 'last-member', 'not-held']

function isCount (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

/** The snapshot's fields, each checked; throws InvalidStateSnapshotError naming the first bad one. */
function checkSnapshot (value: unknown): StateSnapshot {
  const fail = (detail: string): never => { throw new InvalidStateSnapshotError(detail) }
  if (!isPlainMap(value)) return fail('not a map')
  if (value['version'] !== STATE_SNAPSHOT_VERSION) fail(`version ${String(value['version'])}, this agent reads version ${STATE_SNAPSHOT_VERSION}`)
  const { hash, applied, rejected, members, images, migrations } = value
  if (!(hash instanceof Uint8Array) || hash.byteLength !== 32) fail('hash: not 32 bytes')
  if (!isCount(applied)) fail('applied: not a count')
  if (!isPlainMap(rejected) || !Object.entries(rejected).every(([reason, count]) => REJECTION_REASONS.includes(reason as RejectionReason) && isCount(count))) fail('rejected: not a map of rejection reasons to counts')
  if (!Array.isArray(members) || !Array.isArray(images) || !Array.isArray(migrations)) return fail('members, images and migrations must be lists')
  const names = new Set<string>()
  const peerIds = new Set<string>()
  members.forEach((m: unknown, index) => {
    if (!isPlainMap(m)) return fail(`members[${index}]: not a map`)
    const where = `members[${index}]`
    if (m['index'] !== index) fail(`${where}.index: ${String(m['index'])}, expected ${index}`)
    if (typeof m['peerId'] !== 'string' || peerIds.has(m['peerId'])) fail(`${where}.peerId: missing or repeated`)
    if (typeof m['name'] !== 'string' || siteNameProblem(m['name']) !== undefined) fail(`${where}.name: not a site name`)
    if (!isCount(m['fromRound']) || m['fromRound'] < 1) fail(`${where}.fromRound: not a round`)
    if (m['untilRound'] !== null && (!isCount(m['untilRound']) || m['untilRound'] <= (m['fromRound'] as number))) fail(`${where}.untilRound: not null or a round after fromRound`)
    if (Object.keys(m).length !== 5) fail(`${where}: unexpected fields`)
    peerIds.add(m['peerId'] as string)
    if (m['untilRound'] === null) {
      const key = siteNameKey(m['name'] as string)
      if (names.has(key)) fail(`${where}.name: ${JSON.stringify(m['name'])} is taken by another member`)
      names.add(key)
    }
  })
  const roots = new Set<string>()
  images.forEach((i: unknown, index) => {
    const where = `images[${index}]`
    if (!isPlainMap(i)) return fail(`${where}: not a map`)
    const { announcedBy, holders, ...announced } = i
    const problem = transactionProblem({ type: 'image-announce', image: announced })
    if (problem !== undefined) fail(`${where}: ${problem.detail}`)
    if (roots.has(announced['rootCid'] as string)) fail(`${where}.rootCid: repeated`)
    roots.add(announced['rootCid'] as string)
    if (!isCount(announcedBy) || announcedBy >= members.length) fail(`${where}.announcedBy: not a member index`)
    if (!Array.isArray(holders) || !holders.every((h, k) => isCount(h) && h < members.length && (k === 0 || h > (holders[k - 1] as number)))) fail(`${where}.holders: not ascending member indexes`)
  })
  migrations.forEach((m: unknown, index) => {
    const where = `migrations[${index}]`
    if (!isPlainMap(m)) return fail(`${where}: not a map`)
    const { position, recordedBy, ...record } = m
    const problem = transactionProblem({ type: 'migration-record', ...record })
    if (problem !== undefined) fail(`${where}: ${problem.detail}`)
    if (!isCount(position) || !isCount(recordedBy) || recordedBy >= members.length) fail(`${where}: position or recordedBy out of range`)
  })
  return value as unknown as StateSnapshot
}
