/**
 * The live hashgraph of one member: validates and inserts signed events, parks events whose
 * parents have not arrived, creates this member's own events (durably stored before they may be
 * gossiped), persists everything to the event log and emits the consensus order.
 * Knows nothing of the network: the swarm hands it bytes and asks it for events.
 */
import { createHash, hash as oneShotHash } from 'node:crypto'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { Consensus, type ConsensusEvent, type EventStatus, type ForkEvidence } from './consensus.js'
import { EventLogError, EventRejectedError, HashgraphHaltedError, MembershipPendingError, MissingParentsError } from './errors.js'
import { DEFAULT_LIMITS, decodeEvent, ed25519Signer, fromHex, signEvent, toHex, Verifier, type EventLimits, type SignedEvent, type Signer } from './event.js'
import type { ConsensusSnapshot, EventLog } from './event-log.js'

export interface OrderedTransaction {
  transaction: Uint8Array
  consensusTimestamp: bigint
  roundReceived: number
  /** Index of this transaction in the swarm's total order of transactions (0-based). */
  position: number
  eventId: string
  creator: number
}

export interface HashgraphInit {
  /** Genesis member public keys (Ed25519); a member's index is its creator id. */
  members: readonly PublicKey[]
  /**
   * This site's key; omit for an observer that only receives. Its creator id is its key's index
   * among the members (given or found); a site that is not a member yet can create events once
   * addMember has added its key and the change has taken effect.
   */
  self?: { creator?: number, key: PrivateKey }
  coinRoundFrequency?: number
  staleAfterRounds?: number
  /** Off only for trusted replays and benchmarks of the bookkeeping. */
  verifySignatures?: boolean
  limits?: Partial<EventLimits>
  /** Events waiting for a parent: at most this many, and this many bytes; the oldest go first. */
  maxParkedEvents?: number
  maxParkedBytes?: number
  log?: EventLog
  /** Nanoseconds since the Unix epoch. */
  clock?: () => bigint
  /** Every event of a round received, in consensus order, as it is ordered (a replay's too): for an audit of the order. */
  onOrderedEvents?: (events: ReadonlyArray<ConsensusEvent<SignedEvent>>, roundReceived: number) => void
  onTransactions?: (transactions: OrderedTransaction[]) => void
  onStaleTransactions?: (transactions: Array<{ transaction: Uint8Array, eventId: string }>) => void
  onFork?: (evidence: ForkEvidence) => void
  onAnomaly?: (message: string) => void
}

export type ReceiveResult =
  | { status: 'inserted', event: SignedEvent, released: SignedEvent[] }
  | { status: 'parked', event: SignedEvent, missing: string[] }

interface Parked { event: SignedEvent, missing: Set<string> }

const wallClockBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()
/** Wall-clock nanoseconds that never go backwards within the process. */
export function monotonicWallClock (): bigint {
  return wallClockBase + process.hrtime.bigint()
}

export class Hashgraph {
  private readonly consensus: Consensus<SignedEvent>
  private readonly verifier: Verifier | null
  private readonly signer: Signer | null
  private selfCreator: number | null
  private readonly limits: EventLimits
  private readonly log: EventLog | null
  private readonly clock: () => bigint
  private readonly maxParkedEvents: number
  private readonly maxParkedBytes: number
  private readonly parked = new Map<string, Parked>()
  private readonly waitingOn = new Map<string, Set<string>>()
  private parkedBytes = 0
  private readonly queue: Uint8Array[] = []
  /** Events carrying transactions that are neither ordered nor stale yet. */
  private readonly unordered = new Set<string>()
  private transactionPosition = 0
  private runningHash: Uint8Array = new Uint8Array(32)
  private replaying = false
  private started = false
  private readonly init: HashgraphInit
  /** Public keys by creator id, genesis members first, then members added by consensus. */
  private readonly memberKeys: PublicKey[]
  /** Events whose round's member set is not final yet, waiting for consensus to advance. */
  private readonly deferred = new Map<string, SignedEvent>()
  private retrying = false
  private failure: Error | null = null
  /** First round of the latest membership change (0: none). */
  private latestChangeRound = 0

  constructor (init: HashgraphInit) {
    this.init = init
    this.memberKeys = [...init.members]
    this.verifier = init.verifySignatures === false ? null : new Verifier(init.members)
    this.signer = init.self === undefined ? null : ed25519Signer(init.self.key)
    this.selfCreator = init.self === undefined ? null : this.memberKeys.findIndex((k) => k.equals(init.self!.key.publicKey))
    if (this.selfCreator === -1) this.selfCreator = null
    if (init.self?.creator !== undefined && init.self.creator !== this.selfCreator) {
      throw new RangeError(`self creator ${init.self.creator} does not hold this site's key (its key is ${this.selfCreator === null ? 'not a member' : `member ${this.selfCreator}`})`)
    }
    this.limits = { ...DEFAULT_LIMITS, ...init.limits }
    this.log = init.log ?? null
    this.clock = init.clock ?? monotonicWallClock
    this.maxParkedEvents = init.maxParkedEvents ?? 10_000
    this.maxParkedBytes = init.maxParkedBytes ?? 64 * 1024 * 1024
    this.consensus = new Consensus<SignedEvent>({
      members: init.members.length,
      coinRoundFrequency: init.coinRoundFrequency,
      staleAfterRounds: init.staleAfterRounds,
      onOrdered: (events, round) => {
        try {
          this.emitOrdered(events, round)
        } catch (err) {
          // Fail-stop: part of this round may have reached the application or the log, and the
          // engine cannot hand it out again; going on would leave a hole in the order.
          this.failure ??= err instanceof Error ? err : new Error(String(err))
          throw err
        }
      },
      onStale: (events) => {
        for (const e of events) this.unordered.delete(e.id)
        if (this.replaying) return
        init.onStaleTransactions?.(events.flatMap((e) => e.payload.transactions.map((transaction) => ({ transaction, eventId: e.id }))))
      },
      onFork: init.onFork,
      onAnomaly: init.onAnomaly
    })
  }

  /** Fingerprint of the swarm's genesis: the member keys and consensus parameters. */
  get genesisId (): string {
    const h = createHash('sha256')
    for (const key of this.init.members) h.update(key.raw)
    h.update(`c=${this.init.coinRoundFrequency ?? 'default'};stale=${this.init.staleAfterRounds ?? 'default'}`)
    return h.digest('hex')
  }

  /** Replays the event log (if any) to the state the member had before it stopped. */
  start (): void {
    if (this.started) return
    this.started = true
    const log = this.log
    if (log === null) return
    const genesis = log.getMeta('genesis')
    if (genesis === undefined) log.setMeta('genesis', this.genesisId)
    else if (genesis !== this.genesisId) throw new EventLogError(`event log ${log.path} belongs to another swarm genesis (${genesis.slice(0, 12)}…, expected ${this.genesisId.slice(0, 12)}…)`)
    this.replaying = true
    try {
      let index = 0
      for (const { hash, bytes } of log.events()) {
        const event = decodeEvent(bytes, { maxEventBytes: Infinity, maxTransactions: Infinity })
        if (event.id !== toHex(hash)) throw new EventLogError(`event log ${log.path}: entry ${index} does not hash to its recorded id ${toHex(hash)}`)
        this.insert(event, 'no')
        index++
      }
    } catch (err) {
      if (err instanceof EventRejectedError) throw new EventLogError(`event log ${log.path} holds an event the engine refuses: ${err.message}`)
      throw err
    } finally {
      this.replaying = false
    }
  }

  /** Writes anything queued to the log. The log itself is closed by whoever opened it. */
  stop (): void {
    this.log?.flush()
    this.started = false
  }

  /** Set once the engine has halted (see HashgraphHaltedError); null while healthy. */
  get halted (): Error | null { return this.failure }

  private assertRunning (): void {
    if (this.failure !== null) throw new HashgraphHaltedError(this.failure)
  }

  /** Queues a transaction for this member's next event. */
  submit (transaction: Uint8Array): void {
    if (transaction.byteLength > this.limits.maxEventBytes - 1024) {
      throw new RangeError(`transaction of ${transaction.byteLength} bytes cannot fit in an event (limit ${this.limits.maxEventBytes} bytes)`)
    }
    this.queue.push(transaction)
  }

  get pendingTransactions (): number { return this.queue.length }

  /**
   * Creates, signs, stores (durably, before returning) and inserts this member's next event, with
   * as many queued transactions as fit. Returns it for gossip.
   */
  createEvent (options: { otherParent?: string | null } = {}): SignedEvent {
    return this.newOwnEvent(options.otherParent ?? null, 'now')
  }

  /**
   * Like createEvent, without waiting for the disk on this thread: the event is inserted at once
   * (the next one can build on it), and `durable` resolves once it is on disk. Only then may it be
   * gossiped — a member that showed an event a crash could lose would build a second event on
   * the same self-parent after restarting (a self-fork). Events created while a sync is in
   * flight share the next one. A failed sync halts the engine (HashgraphHaltedError).
   */
  createPendingEvent (options: { otherParent?: string | null } = {}): { event: SignedEvent, durable: Promise<void> } {
    const event = this.newOwnEvent(options.otherParent ?? null, 'later')
    if (this.log === null) return { event, durable: Promise.resolve() }
    const durable = this.log.whenDurable().catch((err: Error) => {
      this.failure ??= err
      throw err
    })
    return { event, durable }
  }

  private newOwnEvent (otherParent: string | null, durability: 'now' | 'later'): SignedEvent {
    this.assertRunning()
    if (this.signer === null) throw new Error('this hashgraph has no key: it can only receive')
    if (this.selfCreator === null) throw new Error('this site is not a member of the swarm (yet): it can only receive')
    const selfParent = this.consensus.lastEventOf(this.selfCreator)
    if (otherParent !== null && !this.consensus.has(otherParent)) {
      throw new EventRejectedError('unknown-parent', '(own event)', `other-parent ${otherParent} is not in this hashgraph`)
    }
    const taken = this.takeTransactions()
    const now = this.clock()
    const timestamp = selfParent !== undefined && now <= selfParent.timestamp ? selfParent.timestamp + 1n : now
    const event = signEvent({
      creator: this.selfCreator,
      selfParent: selfParent === undefined ? null : selfParent.payload.hash,
      otherParent: otherParent === null ? null : fromHex(otherParent),
      timestamp,
      transactions: taken
    }, this.signer)
    try {
      this.insert(event, durability === 'now' ? 'own' : 'own-later')
    } catch (err) {
      this.queue.unshift(...taken)
      throw err
    }
    this.release(event.id, [])
    this.retryDeferred([])
    return event
  }

  private takeTransactions (): Uint8Array[] {
    const budget = this.limits.maxEventBytes - 1024
    let bytes = 0
    let count = 0
    while (count < this.queue.length && count < this.limits.maxTransactions) {
      const size = this.queue[count]!.byteLength + 9
      if (bytes + size > budget) break
      bytes += size
      count++
    }
    return this.queue.splice(0, count)
  }

  /**
   * Validates and inserts an event received from another member. Throws EventRejectedError (the
   * graph unchanged) for an invalid event; parks one whose parents are missing.
   */
  receive (input: Uint8Array | SignedEvent): ReceiveResult {
    this.assertRunning()
    const event = input instanceof Uint8Array ? decodeEvent(input, this.limits) : input
    if (this.parked.has(event.id) || this.deferred.has(event.id)) throw new EventRejectedError('duplicate', event.id, 'already waiting')
    if (event.creator >= this.memberCount) {
      throw new EventRejectedError('unknown-creator', event.id, `creator ${event.creator} is not a member (members are 0..${this.memberCount - 1})`)
    }
    if (this.verifier !== null && !this.verifier.verify(event)) {
      throw new EventRejectedError('bad-signature', event.id, `signature does not verify with member ${event.creator}'s key`)
    }
    const prepared = toInput(event)
    const missing = this.consensus.missing([prepared.selfParent, prepared.otherParent])
    if (missing.length > 0) {
      if (this.consensus.has(event.id)) throw new EventRejectedError('duplicate', event.id, 'already in the hashgraph')
      this.park(event, missing)
      return { status: 'parked', event, missing }
    }
    try {
      this.insert(event, 'received', prepared)
    } catch (err) {
      if (!(err instanceof MembershipPendingError)) throw err
      this.defer(event)
      return { status: 'parked', event, missing: [] }
    }
    const released: SignedEvent[] = []
    this.release(event.id, released)
    this.retryDeferred(released)
    return { status: 'inserted', event, released }
  }

  private defer (event: SignedEvent): void {
    this.deferred.set(event.id, event)
    while (this.deferred.size > this.maxParkedEvents) this.deferred.delete(this.deferred.keys().next().value as string)
  }

  /** Inserts deferred events whose rounds now have a final member set (and what waited on them). */
  private retryDeferred (released: SignedEvent[]): void {
    if (this.retrying || this.deferred.size === 0) return
    this.retrying = true
    try {
      let progress = true
      while (progress) {
        progress = false
        for (const [id, event] of this.deferred) {
          try {
            this.insertReceived(event)
          } catch (err) {
            if (err instanceof MembershipPendingError) continue
            this.deferred.delete(id)
            if (!(err instanceof EventRejectedError)) throw err
            continue
          }
          this.deferred.delete(id)
          released.push(event)
          this.release(id, released)
          progress = true
        }
      }
    } finally {
      this.retrying = false
    }
  }

  private insertReceived (event: SignedEvent): void {
    this.insert(event, 'received')
  }

  /** Inserts into consensus; the log write happens after validation and before any state changes. */
  private insert (event: SignedEvent, persist: 'own' | 'own-later' | 'received' | 'no', prepared = toInput(event)): void {
    const inserted = this.consensus.insert(prepared, () => {
      if (this.log === null || persist === 'no') return
      const selfParent = event.selfParent === null ? undefined : this.consensus.event(toHex(event.selfParent))
      const seq = selfParent === undefined ? 0 : selfParent.seq + 1
      if (persist === 'own' || persist === 'own-later') this.log.appendOwn(event.hash, event.creator, seq, event.bytes, persist === 'own' ? 'now' : 'later')
      else this.log.appendReceived(event.hash, event.creator, seq, event.bytes)
    })
    if (inserted.payload.transactions.length > 0 && inserted.roundReceived === null && !inserted.stale) this.unordered.add(inserted.id)
  }

  private park (event: SignedEvent, missing: string[]): void {
    this.parked.set(event.id, { event, missing: new Set(missing) })
    this.parkedBytes += event.bytes.byteLength
    for (const id of missing) {
      let waiting = this.waitingOn.get(id)
      if (waiting === undefined) this.waitingOn.set(id, waiting = new Set())
      waiting.add(event.id)
    }
    while (this.parked.size > this.maxParkedEvents || this.parkedBytes > this.maxParkedBytes) {
      const oldest = this.parked.keys().next().value as string
      this.unpark(oldest)
    }
  }

  private unpark (id: string): Parked | undefined {
    const entry = this.parked.get(id)
    if (entry === undefined) return undefined
    this.parked.delete(id)
    this.parkedBytes -= entry.event.bytes.byteLength
    for (const parent of entry.missing) {
      const waiting = this.waitingOn.get(parent)
      waiting?.delete(id)
      if (waiting?.size === 0) this.waitingOn.delete(parent)
    }
    return entry
  }

  /** Inserts parked events that were waiting only for `arrived` (and, in turn, their children). */
  private release (arrived: string, released: SignedEvent[]): void {
    const ready = [arrived]
    while (ready.length > 0) {
      const id = ready.pop()!
      const waiting = this.waitingOn.get(id)
      if (waiting === undefined) continue
      this.waitingOn.delete(id)
      for (const childId of waiting) {
        const child = this.parked.get(childId)
        if (child === undefined) continue
        child.missing.delete(id)
        if (child.missing.size > 0) continue
        this.unpark(childId)
        try {
          this.insertReceived(child.event)
          released.push(child.event)
          ready.push(childId)
        } catch (err) {
          // A parked event that turns out invalid is dropped, as it would have been on arrival.
          if (!(err instanceof EventRejectedError)) throw err
          if (err instanceof MissingParentsError) this.park(child.event, err.missing)
          if (err instanceof MembershipPendingError) this.defer(child.event)
        }
      }
    }
  }

  private emitOrdered (events: ReadonlyArray<ConsensusEvent<SignedEvent>>, round: number): void {
    const out: OrderedTransaction[] = []
    for (const e of events) {
      this.unordered.delete(e.id)
      this.runningHash = oneShotHash('sha256', Buffer.concat([this.runningHash, e.payload.hash], 64), 'buffer')
      for (const transaction of e.payload.transactions) {
        out.push({ transaction, consensusTimestamp: e.consensusTimestamp!, roundReceived: round, position: this.transactionPosition++, eventId: e.id, creator: e.creator })
      }
    }
    // Called while round `round` is being ordered, before the engine counts it as ordered.
    const snapshot = { ...this.snapshot(), round }
    if (this.log !== null) {
      if (this.replaying) {
        const recorded = this.log.snapshotAt(round)
        if (recorded !== undefined && recorded.runningHash !== snapshot.runningHash) {
          throw new EventLogError(`replay of ${this.log.path} diverged at round ${round}: running hash ${snapshot.runningHash.slice(0, 16)}…, recorded ${recorded.runningHash.slice(0, 16)}…`)
        }
      } else {
        this.log.saveSnapshot(snapshot)
      }
    }
    if (events.length > 0) this.init.onOrderedEvents?.(events, round)
    if (out.length > 0) this.init.onTransactions?.(out)
  }

  // ---------------------------------------------------------------- membership

  /** Creator slots so far (genesis members plus those added); creator ids are 0..memberCount-1. */
  get memberCount (): number { return this.consensus.membership.slots }

  /** Members whose events count in `round` (default: the last ordered round). */
  membersIn (round = Math.max(1, this.consensus.lastOrderedRound)): number[] {
    const members: number[] = []
    for (let c = 0; c < this.memberCount; c++) if (this.consensus.membership.isMember(c, round)) members.push(c)
    return members
  }

  publicKeyOf (creator: number): PublicKey | undefined { return this.memberKeys[creator] }

  /**
   * Adds a member by consensus: call it from onTransactions while applying the ordered transaction
   * that approves it, so every site adds it at the same point. Returns its creator id and the
   * first round in which its events count.
   */
  addMember (key: PublicKey): { creator: number, fromRound: number } {
    if (this.memberKeys.some((k) => k.equals(key))) throw new RangeError('that key is already a member')
    const added = this.consensus.addMember()
    this.latestChangeRound = Math.max(this.latestChangeRound, added.fromRound)
    this.memberKeys.push(key)
    this.verifier?.add(key)
    if (this.signer !== null && this.selfCreator === null && this.init.self?.key.publicKey.equals(key) === true) this.selfCreator = added.creator
    return added
  }

  /** Removes a member by consensus (same rule as addMember); returns the first round without it. */
  removeMember (creator: number): number {
    const fromRound = this.consensus.removeMember(creator)
    this.latestChangeRound = Math.max(this.latestChangeRound, fromRound)
    return fromRound
  }

  /**
   * A membership change is ordered but its first round is not decided yet. Until it is, members
   * must keep creating events even with nothing else to order, or the swarm would never reach
   * the round from which a new member can take part.
   */
  get awaitingMembershipChange (): boolean { return this.consensus.lastOrderedRound < this.latestChangeRound }

  get selfId (): number | null { return this.selfCreator }

  // ---------------------------------------------------------------- queries

  snapshot (): ConsensusSnapshot {
    return {
      round: this.consensus.lastOrderedRound,
      members: this.membersIn().length,
      eventPosition: this.consensus.orderedEvents,
      transactionPosition: this.transactionPosition,
      runningHash: toHex(this.runningHash)
    }
  }

  status (id: string): EventStatus | undefined { return this.consensus.status(id) }
  has (id: string): boolean { return this.consensus.has(id) || this.parked.has(id) }
  /** The signed event, if still in memory (recent rounds). */
  event (id: string): SignedEvent | undefined { return this.consensus.event(id)?.payload }
  lastEventOf (creator: number): SignedEvent | undefined { return this.consensus.lastEventOf(creator)?.payload }
  /** True while some event carrying transactions awaits its place in the order: keep gossiping. */
  get hasUnorderedTransactions (): boolean { return this.unordered.size > 0 || this.queue.length > 0 }
  /** Per creator, how many of its events this member holds (the next sequence number it expects). */
  knownCounts (): number[] {
    return Array.from({ length: this.memberCount }, (_, c) => {
      const last = this.consensus.lastEventOf(c)
      return last === undefined ? 0 : last.seq + 1
    })
  }

  /** Events a peer with `known` (see knownCounts) lacks, in a topological order, as wire bytes. */
  eventsAfter (known: readonly number[], limit = 10_000): Uint8Array[] {
    if (this.log !== null) return this.log.eventsAfter(known, limit)
    return [...this.consensus.recentEvents()]
      .filter((e) => e.seq >= (known[e.creator] ?? 0))
      .sort((a, b) => a.generation - b.generation)
      .slice(0, limit)
      .map((e) => e.payload.bytes)
  }

  get parkedCount (): number { return this.parked.size + this.deferred.size }
  get lastRound (): number { return this.consensus.lastRound }
  get lastOrderedRound (): number { return this.consensus.lastOrderedRound }
  get orderedEvents (): number { return this.consensus.orderedEvents }
  get eventsInMemory (): number { return this.consensus.size }
  get forks (): readonly ForkEvidence[] { return this.consensus.forks }
  recentEvents (): Iterable<ConsensusEvent<SignedEvent>> { return this.consensus.recentEvents() }
}

function parentId (hash: Uint8Array | null): string | null {
  return hash === null ? null : toHex(hash)
}

function toInput (event: SignedEvent): { id: string, creator: number, selfParent: string | null, otherParent: string | null, timestamp: bigint, signature: Uint8Array, payload: SignedEvent } {
  return {
    id: event.id,
    creator: event.creator,
    selfParent: parentId(event.selfParent),
    otherParent: parentId(event.otherParent),
    timestamp: event.timestamp,
    signature: event.signature,
    payload: event
  }
}
