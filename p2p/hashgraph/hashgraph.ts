/**
 * The live hashgraph of one member: validates and inserts signed events, parks events whose
 * parents have not arrived, creates this member's own events (durably stored before they may be
 * gossiped), persists everything to the event log and emits the consensus order.
 * Knows nothing of the network: the swarm hands it bytes and asks it for events.
 */
import { createHash, hash as oneShotHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { Consensus, DEFAULT_COIN_ROUND_FREQUENCY, DEFAULT_STALE_AFTER_ROUNDS, type ConsensusEvent, type ConsensusFrontier, type ConsensusOptions, type EventStatus, type ForkEvidence, type FrontierEvent } from './consensus.js'
import { EventLogError, EventRejectedError, HashgraphHaltedError, InvalidFrontierError, MembershipPendingError, MissingParentsError } from './errors.js'
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
  /**
   * Start from a frontier (Hashgraph.exportFrontier's bytes, from this site's checkpoint or a
   * member's) instead of genesis: the engine continues exactly as the exporting one, and start()
   * replays only the log's events after `frontierLogPosition`. Checked whole before anything is
   * built (InvalidFrontierError names what is wrong).
   */
  frontier?: Uint8Array
  /**
   * The log's position (EventLog.position()) when the frontier was exported; 0 (default) for a log
   * that starts after the frontier (a site that joined from a member's checkpoint).
   */
  frontierLogPosition?: number
  /** Nanoseconds since the Unix epoch. */
  clock?: () => bigint
  /** Every event of a round received, in consensus order, as it is ordered (a replay's too): for an audit of the order. */
  onOrderedEvents?: (events: ReadonlyArray<ConsensusEvent<SignedEvent>>, roundReceived: number) => void
  onTransactions?: (transactions: OrderedTransaction[]) => void
  /** After each ordered round (empty ones too; replayed ones too), once its transactions were handed out. */
  onRoundOrdered?: (snapshot: ConsensusSnapshot) => void
  /**
   * After an insertion (received, own or replayed) that ordered one or more rounds, once the engine
   * is between insertions again: the place where exportFrontier() may run.
   */
  onSettled?: (lastOrderedRound: number) => void
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
  /** Events start() replayed from the log (after the frontier, when started from one). */
  private replayedCount = 0
  /** While start() replays: the log position of the last event inserted. */
  private replayPosition = 0
  /** lastOrderedRound when onSettled was last called. */
  private settledRound = 0
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
    const restored = init.frontier === undefined ? null : decodeFrontier(init.frontier)
    if (restored !== null) checkFrontierGenesis(restored, init)
    this.memberKeys = restored === null ? [...init.members] : restored.memberKeys
    this.verifier = init.verifySignatures === false ? null : new Verifier(this.memberKeys)
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
    const callbacks: Omit<ConsensusOptions<SignedEvent>, 'members'> = {
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
    }
    if (restored === null) {
      this.consensus = new Consensus<SignedEvent>({ ...callbacks, members: init.members.length, coinRoundFrequency: init.coinRoundFrequency, staleAfterRounds: init.staleAfterRounds })
    } else {
      this.consensus = this.restoreConsensus(restored, callbacks)
      this.transactionPosition = restored.transactionPosition
      this.runningHash = restored.runningHash
      this.latestChangeRound = Math.max(0, ...restored.consensus.membership.changes.map((c) => c.round))
    }
  }

  /** The engine of a decoded frontier, every payload re-decoded from its wire bytes and (unless off) its signature verified. */
  private restoreConsensus (restored: DecodedFrontier, callbacks: Omit<ConsensusOptions<SignedEvent>, 'members'>): Consensus<SignedEvent> {
    const events: Array<FrontierEvent<SignedEvent>> = []
    for (const f of restored.consensus.events) {
      let payload: SignedEvent | undefined
      if (f.payload !== null) {
        try {
          payload = decodeEvent(f.payload, { maxEventBytes: Infinity, maxTransactions: Infinity })
        } catch (err) {
          throw new InvalidFrontierError(`event ${f.id}: its wire bytes do not decode (${(err as Error).message})`)
        }
        if (payload.id !== f.id) throw new InvalidFrontierError(`event ${f.id}: its wire bytes hash to ${payload.id}`)
        if (payload.creator !== f.creator || payload.timestamp !== f.timestamp || !equalBytes(payload.signature, f.signature)) {
          throw new InvalidFrontierError(`event ${f.id}: creator, timestamp or signature differ from its wire bytes`)
        }
        if (this.verifier !== null && !this.verifier.verify(payload)) throw new InvalidFrontierError(`event ${f.id}: signature does not verify with member ${f.creator}'s key`)
        if (payload.transactions.length > 0 && f.roundReceived === null && !f.stale) this.unordered.add(f.id)
      }
      events.push({ ...f, payload: payload as SignedEvent })
    }
    try {
      return Consensus.fromFrontier<SignedEvent>({ ...restored.consensus, events }, callbacks)
    } catch (err) {
      throw new InvalidFrontierError((err as Error).message.replace(/^frontier: /, ''), { cause: err })
    }
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
    const after = this.init.frontier === undefined ? 0 : (this.init.frontierLogPosition ?? 0)
    if (after > 0) {
      // The frontier must have been exported from this log: its last event then is one the frontier holds.
      const last = log.eventAt(after)
      if (last === undefined || !this.consensus.has(toHex(last))) {
        throw new EventLogError(`event log ${log.path} does not continue the frontier: ${last === undefined ? `it has no event at position ${after}` : `its event at position ${after} (${toHex(last)}) is not in the frontier`}`)
      }
    }
    this.replayPosition = after
    this.replaying = true
    try {
      let index = after
      for (const { position, hash, bytes } of log.events(1000, after)) {
        const event = decodeEvent(bytes, { maxEventBytes: Infinity, maxTransactions: Infinity })
        if (event.id !== toHex(hash)) throw new EventLogError(`event log ${log.path}: entry ${index} does not hash to its recorded id ${toHex(hash)}`)
        this.insert(event, 'no')
        this.replayPosition = position
        this.replayedCount++
        index++
        this.settled()
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
    const { events: [event], durable } = this.createPendingEvents([options.otherParent ?? null])
    return { event: event!, durable }
  }

  /**
   * Like createPendingEvent, one own event per other-parent given, in that order (each the
   * self-parent of the next; the first carries the queued transactions), all made durable by one
   * sync. How a member answers several members' new events at once: its last event has every one
   * of them in its ancestry, for the price of one disk flush. If the first cannot be created, the
   * error is thrown; if a later one cannot (an other-parent unknown here), the events before it
   * are returned (they exist, and must be gossiped once durable) and the rest are not created.
   * `onCommitted`: called once the events are signed, inserted and committed, before the disk
   * flush starts (which the default 'inline' sync mode runs before this returns): for profiling.
   */
  createPendingEvents (otherParents: ReadonlyArray<string | null>, onCommitted?: () => void): { events: SignedEvent[], durable: Promise<void> } {
    if (otherParents.length === 0) throw new RangeError('createPendingEvents needs at least one other-parent (null for none)')
    const events: SignedEvent[] = []
    for (const otherParent of otherParents) {
      try {
        events.push(this.newOwnEvent(otherParent, 'later'))
      } catch (err) {
        if (events.length === 0) throw err
        break
      }
    }
    onCommitted?.()
    if (this.log === null) return { events, durable: Promise.resolve() }
    const durable = this.log.whenDurable().catch((err: Error) => {
      this.failure ??= err
      throw err
    })
    return { events, durable }
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
    this.settled()
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
    // Before the signature check: an event id hashes the signature too, so an event already held
    // was verified when it came first (a member gets most events twice: pushed and by sync).
    if (this.consensus.has(event.id)) throw new EventRejectedError('duplicate', event.id, 'already in the hashgraph')
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
    this.settled()
    return { status: 'inserted', event, released }
  }

  /** Tells the application that rounds were ordered, now that the engine is between insertions. */
  private settled (): void {
    const round = this.consensus.lastOrderedRound
    if (round === this.settledRound) return
    this.settledRound = round
    this.init.onSettled?.(round)
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
    this.init.onRoundOrdered?.(snapshot)
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

  /**
   * The engine's frontier as bytes (see HashgraphInit.frontier and ./README.md): everything
   * Consensus holds, each event's payload as its wire bytes, the member keys, and this engine's
   * transaction position and running hash, in a versioned dag-cbor envelope with a SHA-256 of the
   * body. Only between insertions (onSettled is such a place), not while ordered rounds are
   * handed out.
   */
  exportFrontier (): Uint8Array {
    const consensus = this.consensus.exportFrontier()
    const body = {
      round: this.consensus.lastOrderedRound,
      eventPosition: this.consensus.orderedEvents,
      transactionPosition: this.transactionPosition,
      runningHash: Uint8Array.from(this.runningHash),
      memberKeys: this.memberKeys.map((k) => publicKeyToProtobuf(k)),
      consensus: { ...consensus, events: consensus.events.map((e) => ({ ...e, payload: e.payload === undefined ? null : e.payload.bytes })) }
    }
    const bodyBytes = dagCbor.encode(body)
    return dagCbor.encode({ format: FRONTIER_FORMAT, version: FRONTIER_VERSION, body: bodyBytes, sha256: Uint8Array.from(oneShotHash('sha256', bodyBytes, 'buffer')) })
  }

  /** Events start() replayed from the log (only those after the frontier, when started from one). */
  get replayedEvents (): number { return this.replayedCount }

  /**
   * The log position of what this engine holds (what a checkpoint taken now must name): during
   * start()'s replay the position of the last event replayed, not the log's end; afterwards the
   * log's end, once what is queued is written. 0 without a log.
   */
  logPosition (): number {
    if (this.log === null) return 0
    return this.replaying ? this.replayPosition : this.log.position()
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

// ------------------------------------------------------------------ frontier encoding

/** Format tag and version of Hashgraph.exportFrontier()'s envelope. */
export const FRONTIER_FORMAT = 'hgmig/hashgraph-frontier'
export const FRONTIER_VERSION = 1
/**
 * Largest frontier accepted. A frontier holds about 27 rounds plus the ancient window (~3,600
 * events at n = 16, ~8,500 at n = 32: a few MB with payloads); this leaves room for 1 MiB events.
 */
export const MAX_FRONTIER_BYTES = 256 * 1024 * 1024

/** What a frontier says of the order it continues (readable without building an engine). */
export interface FrontierSummary {
  /** Last ordered round. */
  round: number
  eventPosition: number
  transactionPosition: number
  /** Hex running hash of the order through `round` (as ConsensusSnapshot.runningHash). */
  runningHash: string
  memberSlots: number
  events: number
  /** Hex SHA-256 of the body (the envelope carries it; a damaged body does not match). */
  hash: string
}

interface DecodedFrontier {
  summary: FrontierSummary
  consensus: ConsensusFrontier<Uint8Array | null>
  memberKeys: PublicKey[]
  transactionPosition: number
  runningHash: Uint8Array
}

/** Decodes and checks a frontier's envelope and body (not the engine's consistency: fromFrontier does that). */
export function readFrontier (bytes: Uint8Array): FrontierSummary {
  return decodeFrontier(bytes).summary
}

function decodeFrontier (bytes: Uint8Array): DecodedFrontier {
  if (!(bytes instanceof Uint8Array)) throw new InvalidFrontierError('not a byte array')
  if (bytes.byteLength > MAX_FRONTIER_BYTES) throw new InvalidFrontierError(`${bytes.byteLength} bytes, more than the limit of ${MAX_FRONTIER_BYTES}`)
  const envelope = map(cbor(bytes, 'the envelope'), 'the envelope')
  if (envelope.format !== FRONTIER_FORMAT) throw new InvalidFrontierError(`format ${show(envelope.format)}, expected ${FRONTIER_FORMAT}`)
  if (envelope.version !== FRONTIER_VERSION) throw new InvalidFrontierError(`version ${show(envelope.version)}, this build reads version ${FRONTIER_VERSION}`)
  const body = bytesOf(envelope.body, 'body')
  const expected = bytesOf(envelope.sha256, 'sha256', 32)
  const actual = oneShotHash('sha256', body, 'buffer')
  if (!equalBytes(actual, expected)) throw new InvalidFrontierError(`damaged: its body hashes to ${actual.toString('hex').slice(0, 16)}…, the envelope says ${Buffer.from(expected).toString('hex').slice(0, 16)}…`)
  const b = map(cbor(body, 'the body'), 'the body')
  const c = map(b.consensus, 'consensus')
  const membership = map(c.membership, 'consensus.membership')
  const genesis = int(membership.genesis, 'membership.genesis', 1)
  const slots = int(membership.slots, 'membership.slots', genesis)
  const events = list(c.events, 'consensus.events').map((value, i) => frontierEvent(value, `consensus.events[${i}]`, slots))
  const ids = (value: unknown, what: string): string[] => list(value, what).map((id, i) => eventId(id, `${what}[${i}]`))
  const consensus: ConsensusFrontier<Uint8Array | null> = {
    version: c.version === 1 ? 1 : fail(`consensus.version ${show(c.version)}, this build reads 1`),
    coinRoundFrequency: int(c.coinRoundFrequency, 'consensus.coinRoundFrequency', 2),
    staleAfterRounds: int(c.staleAfterRounds, 'consensus.staleAfterRounds', 2),
    ancientWindowRounds: int(c.ancientWindowRounds, 'consensus.ancientWindowRounds', 0),
    membership: {
      genesis,
      slots,
      changes: list(membership.changes, 'membership.changes').map((value, i) => {
        const m = map(value, `membership.changes[${i}]`)
        return { round: int(m.round, `membership.changes[${i}].round`, 1), creator: creatorOf(m.creator, `membership.changes[${i}].creator`, slots), member: bool(m.member, `membership.changes[${i}].member`) }
      })
    },
    maxRound: int(c.maxRound, 'consensus.maxRound'),
    nextRoundToOrder: int(c.nextRoundToOrder, 'consensus.nextRoundToOrder', 1),
    orderedCount: int(c.orderedCount, 'consensus.orderedCount'),
    prunedThrough: int(c.prunedThrough, 'consensus.prunedThrough'),
    forkers: list(c.forkers, 'consensus.forkers').map((v, i) => creatorOf(v, `consensus.forkers[${i}]`, slots)),
    forkEvidence: list(c.forkEvidence, 'consensus.forkEvidence').map((value, i) => {
      const f = map(value, `consensus.forkEvidence[${i}]`)
      const pair = ids(f.eventIds, `consensus.forkEvidence[${i}].eventIds`)
      if (pair.length !== 2) fail(`consensus.forkEvidence[${i}].eventIds must name two events`)
      return { creator: creatorOf(f.creator, `consensus.forkEvidence[${i}].creator`, slots), seq: int(f.seq, `consensus.forkEvidence[${i}].seq`), eventIds: [pair[0]!, pair[1]!] as [string, string] }
    }),
    events,
    rounds: list(c.rounds, 'consensus.rounds').map((value, i) => {
      const r = map(value, `consensus.rounds[${i}]`)
      const what = `consensus.rounds[${i}]`
      return { round: int(r.round, `${what}.round`, 1), witnesses: ids(r.witnesses, `${what}.witnesses`), events: ids(r.events, `${what}.events`), pending: ids(r.pending, `${what}.pending`), undecided: int(r.undecided, `${what}.undecided`) }
    }),
    ancientByRound: list(c.ancientByRound, 'consensus.ancientByRound').map((value, i) => {
      const pair = list(value, `consensus.ancientByRound[${i}]`)
      if (pair.length !== 2) fail(`consensus.ancientByRound[${i}] must be [round, ids]`)
      return [int(pair[0], `consensus.ancientByRound[${i}][0]`, 1), ids(pair[1], `consensus.ancientByRound[${i}][1]`)] as const
    }),
    undecided: ids(c.undecided, 'consensus.undecided'),
    creatorTips: list(c.creatorTips, 'consensus.creatorTips').map((v, i) => v === null ? null : eventId(v, `consensus.creatorTips[${i}]`)),
    chains: list(c.chains, 'consensus.chains').map((value, i) => {
      const chain = map(value, `consensus.chains[${i}]`)
      return {
        base: int(chain.base, `consensus.chains[${i}].base`),
        held: ids(chain.held, `consensus.chains[${i}].held`),
        forkSiblings: list(chain.forkSiblings, `consensus.chains[${i}].forkSiblings`).map((sv, j) => {
          const pair = list(sv, `consensus.chains[${i}].forkSiblings[${j}]`)
          if (pair.length !== 2) fail(`consensus.chains[${i}].forkSiblings[${j}] must be [seq, ids]`)
          return [int(pair[0], `consensus.chains[${i}].forkSiblings[${j}][0]`), ids(pair[1], `consensus.chains[${i}].forkSiblings[${j}][1]`)] as const
        })
      }
    })
  }
  if (consensus.chains.length !== slots || consensus.creatorTips.length !== slots) fail(`${consensus.chains.length} chains and ${consensus.creatorTips.length} creator tips for ${slots} member slots`)
  const byId = new Map(events.map((e) => [e.id, e]))
  for (const tip of consensus.creatorTips) {
    if (tip !== null && byId.get(tip)?.payload === null) fail(`creator tip ${tip} has no wire bytes (a member builds its next event on its tip)`)
  }
  const memberKeys = list(b.memberKeys, 'memberKeys').map((value, i) => {
    try {
      return publicKeyFromProtobuf(bytesOf(value, `memberKeys[${i}]`))
    } catch (err) {
      if (err instanceof InvalidFrontierError) throw err
      return fail(`memberKeys[${i}] is not a public key (${(err as Error).message})`)
    }
  })
  if (memberKeys.length !== slots) fail(`${memberKeys.length} member keys for ${slots} member slots`)
  const round = int(b.round, 'round')
  const eventPosition = int(b.eventPosition, 'eventPosition')
  if (round !== consensus.nextRoundToOrder - 1) fail(`round ${round}, but the engine's last ordered round is ${consensus.nextRoundToOrder - 1}`)
  if (eventPosition !== consensus.orderedCount) fail(`eventPosition ${eventPosition}, but the engine ordered ${consensus.orderedCount} events`)
  const runningHash = bytesOf(b.runningHash, 'runningHash', 32)
  const transactionPosition = int(b.transactionPosition, 'transactionPosition')
  return {
    summary: { round, eventPosition, transactionPosition, runningHash: toHex(runningHash), memberSlots: slots, events: events.length, hash: actual.toString('hex') },
    consensus,
    memberKeys,
    transactionPosition,
    runningHash
  }
}

function frontierEvent (value: unknown, what: string, slots: number): FrontierEvent<Uint8Array | null> {
  const e = map(value, what)
  const nullable = <T>(v: unknown, read: (v: unknown) => T): T | null => v === null ? null : read(v)
  const id = eventId(e.id, `${what}.id`)
  const at = `event ${id.slice(0, 12)}…`
  return {
    id,
    creator: creatorOf(e.creator, `${at} creator`, slots),
    seq: int(e.seq, `${at} seq`),
    generation: int(e.generation, `${at} generation`, 1),
    timestamp: bigIntOf(e.timestamp, `${at} timestamp`),
    signature: bytesOf(e.signature, `${at} signature`),
    coin: bool(e.coin, `${at} coin`),
    payload: nullable(e.payload, (v) => bytesOf(v, `${at} payload`)),
    selfParent: nullable(e.selfParent, (v) => eventId(v, `${at} selfParent`)),
    otherParent: nullable(e.otherParent, (v) => eventId(v, `${at} otherParent`)),
    lastSeq: list(e.lastSeq, `${at} lastSeq`).map((v, i) => int(v, `${at} lastSeq[${i}]`, -1)),
    forkSeen: nullable(e.forkSeen, (v) => list(v, `${at} forkSeen`).map((c, i) => creatorOf(c, `${at} forkSeen[${i}]`, slots))),
    round: int(e.round, `${at} round`, 1),
    witness: bool(e.witness, `${at} witness`),
    famous: nullable(e.famous, (v) => bool(v, `${at} famous`)),
    votes: nullable(e.votes, (v) => list(v, `${at} votes`).map((vote, i) => {
      const pair = list(vote, `${at} votes[${i}]`)
      if (pair.length !== 2) fail(`${at} votes[${i}] must be [voter, vote]`)
      return [eventId(pair[0], `${at} votes[${i}][0]`), bool(pair[1], `${at} votes[${i}][1]`)] as const
    })),
    stronglySeenPrevious: nullable(e.stronglySeenPrevious, (v) => list(v, `${at} stronglySeenPrevious`).map((s, i) => eventId(s, `${at} stronglySeenPrevious[${i}]`))),
    roundReceived: nullable(e.roundReceived, (v) => int(v, `${at} roundReceived`, 1)),
    consensusTimestamp: nullable(e.consensusTimestamp, (v) => bigIntOf(v, `${at} consensusTimestamp`)),
    position: nullable(e.position, (v) => int(v, `${at} position`)),
    stale: bool(e.stale, `${at} stale`),
    pruned: bool(e.pruned, `${at} pruned`)
  }
}

function fail (detail: string): never { throw new InvalidFrontierError(detail) }

function show (value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 40 ? `${text.slice(0, 40)}…` : text
}

function cbor (bytes: Uint8Array, what: string): unknown {
  try {
    return dagCbor.decode(bytes)
  } catch (err) {
    return fail(`${what} is not dag-cbor (${(err as Error).message})`)
  }
}

function map (value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) fail(`${what} must be a map, got ${show(value)}`)
  return value as Record<string, unknown>
}

function list (value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) fail(`${what} must be a list, got ${show(value)}`)
  return value as unknown[]
}

function int (value: unknown, what: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) fail(`${what} must be an integer >= ${min}, got ${show(value)}`)
  return value as number
}

function creatorOf (value: unknown, what: string, slots: number): number {
  const creator = int(value, what)
  if (creator >= slots) fail(`${what} is ${creator}, but there are ${slots} member slots`)
  return creator
}

function bigIntOf (value: unknown, what: string): bigint {
  if (typeof value === 'bigint') return value
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value)
  return fail(`${what} must be an integer, got ${show(value)}`)
}

function bool (value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') fail(`${what} must be true or false, got ${show(value)}`)
  return value as boolean
}

function bytesOf (value: unknown, what: string, length?: number): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(`${what} must be bytes, got ${show(value)}`)
  const bytes = value as Uint8Array
  if (length !== undefined && bytes.byteLength !== length) fail(`${what} must be ${length} bytes, got ${bytes.byteLength}`)
  return bytes
}

function eventId (value: unknown, what: string): string {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) fail(`${what} must be an event id (64 hex digits), got ${show(value)}`)
  return value as string
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0
}

/** A frontier is only for the swarm it came from: same genesis members, same consensus parameters. */
function checkFrontierGenesis (restored: DecodedFrontier, init: HashgraphInit): void {
  const c = restored.consensus
  if (c.membership.genesis !== init.members.length) fail(`it has ${c.membership.genesis} genesis members, this swarm ${init.members.length}`)
  for (let i = 0; i < init.members.length; i++) {
    if (!restored.memberKeys[i]!.equals(init.members[i]!)) fail(`member ${i}'s key differs from this swarm's genesis`)
  }
  const coin = init.coinRoundFrequency ?? DEFAULT_COIN_ROUND_FREQUENCY
  const stale = init.staleAfterRounds ?? DEFAULT_STALE_AFTER_ROUNDS
  if (c.coinRoundFrequency !== coin || c.staleAfterRounds !== stale) fail(`its parameters (c = ${c.coinRoundFrequency}, stale after ${c.staleAfterRounds}) differ from this swarm's (c = ${coin}, stale after ${stale})`)
}
