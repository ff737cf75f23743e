/**
 * Swirlds hashgraph consensus (Baird, SWIRLDS-TR-2016-01): divideRounds, decideFame, findOrder,
 * computed incrementally as events arrive. Pure and deterministic: no clock, no I/O, no crypto
 * beyond what the caller hands in. The live engine (hashgraph.ts) and the replay command both run
 * this code; the choices the paper leaves open are written down in ./README.md.
 */
import { ConsensusInvariantError, EventRejectedError, MembershipPendingError, MissingParentsError } from './errors.js'
import { MEMBERSHIP_DELAY_ROUNDS, MembershipSchedule, type Membership, type MembershipChange } from './membership.js'

export interface ConsensusEventInput<P = undefined> {
  readonly id: string
  readonly creator: number
  readonly selfParent: string | null
  readonly otherParent: string | null
  /** Creator's claimed time in nanoseconds. */
  readonly timestamp: bigint
  readonly signature: Uint8Array
  /** Overrides the coin (middle bit of the signature); replay input only. */
  readonly coinBit?: 0 | 1 | undefined
  readonly payload: P
}

export interface ConsensusOptions<P> {
  /** Members at genesis (creator ids 0..n-1); later changes through addMember / removeMember. */
  members: number
  /**
   * Wait (MembershipPendingError) rather than compute for a round whose member set is not final
   * yet. Only a whole-graph replay, where membership never changes, turns this off.
   */
  holdForMembership?: boolean
  /** Every c-th voting round is a coin round (paper's c). */
  coinRoundFrequency?: number
  /**
   * An event still without a round received this many rounds after its own round is stale: it
   * will never be ordered, at any member (the rule depends only on consensus, so all agree).
   * Rounds one further back are dropped from memory.
   */
  staleAfterRounds?: number
  /** Events of pruned rounds stay resolvable as parents (round, generation, ancestry) this many rounds longer. */
  ancientWindowRounds?: number
  onOrdered?: (events: ReadonlyArray<ConsensusEvent<P>>, roundReceived: number) => void
  onStale?: (events: ReadonlyArray<ConsensusEvent<P>>) => void
  onFork?: (evidence: ForkEvidence) => void
  onAnomaly?: (message: string) => void
}

export interface ForkEvidence {
  creator: number
  seq: number
  eventIds: [string, string]
}

export interface EventStatus {
  id: string
  creator: number
  seq: number
  generation: number
  round: number
  witness: boolean
  /** null: not a witness, or fame not decided yet. */
  famous: boolean | null
  roundReceived: number | null
  consensusTimestamp: bigint | null
  /** Index of the event in the total order (0-based), null until ordered. */
  position: number | null
  stale: boolean
}

/**
 * Everything a Consensus needs to continue exactly as it would have: the events it still holds
 * (rounds not yet pruned, pruned events still resolvable as parents, each creator's newest event,
 * and the pruned events that held events still link to), each with its derived state, plus the
 * engine's counters and the member schedule. Plain data: dag-cbor can encode it when the payload
 * can be (the live engine would carry each event's wire bytes).
 */
export interface ConsensusFrontier<P> {
  readonly version: 1
  readonly coinRoundFrequency: number
  readonly staleAfterRounds: number
  readonly ancientWindowRounds: number
  readonly membership: { readonly genesis: number, readonly slots: number, readonly changes: readonly MembershipChange[] }
  readonly maxRound: number
  readonly nextRoundToOrder: number
  readonly orderedCount: number
  readonly prunedThrough: number
  readonly forkers: readonly number[]
  readonly forkEvidence: readonly ForkEvidence[]
  /** Every event the engine can reach, each once; links, votes and strongly-seen lists name events of this list. */
  readonly events: ReadonlyArray<FrontierEvent<P>>
  /** Rounds in memory, ascending, with their events in insertion order. */
  readonly rounds: ReadonlyArray<{ readonly round: number, readonly witnesses: readonly string[], readonly events: readonly string[], readonly pending: readonly string[], readonly undecided: number }>
  readonly ancientByRound: ReadonlyArray<readonly [number, readonly string[]]>
  readonly undecided: readonly string[]
  readonly creatorTips: ReadonlyArray<string | null>
  readonly chains: ReadonlyArray<{ readonly base: number, readonly held: readonly string[], readonly forkSiblings: ReadonlyArray<readonly [number, readonly string[]]> }>
}

export interface FrontierEvent<P> extends Pick<ConsensusEvent<P>, 'id' | 'creator' | 'seq' | 'generation' | 'timestamp' | 'signature' | 'payload' |
'round' | 'witness' | 'famous' | 'roundReceived' | 'consensusTimestamp' | 'position' | 'stale'> {
  readonly coin: boolean
  /** The links as the engine holds them: null once cut (the event was pruned) or for no parent. */
  readonly selfParent: string | null
  readonly otherParent: string | null
  readonly lastSeq: readonly number[]
  readonly forkSeen: readonly number[] | null
  /** Votes cast on this undecided witness, in the order they were cast. */
  readonly votes: ReadonlyArray<readonly [string, boolean]> | null
  readonly stronglySeenPrevious: readonly string[] | null
  readonly pruned: boolean
}

export const DEFAULT_COIN_ROUND_FREQUENCY = 10
export const DEFAULT_STALE_AFTER_ROUNDS = 26

/** Read-only view handed out to callers; the engine's bookkeeping stays private. */
export interface ConsensusEvent<P> {
  readonly id: string
  readonly creator: number
  readonly seq: number
  readonly generation: number
  readonly timestamp: bigint
  readonly signature: Uint8Array
  /**
   * The caller's payload. Released (undefined) once the event is pruned, unless it is its
   * creator's newest event: a pruned event only answers for its place in the graph, and its
   * payload (the wire bytes, for the live engine) would double what a member holds.
   */
  readonly payload: P
  readonly round: number
  readonly witness: boolean
  readonly famous: boolean | null
  readonly roundReceived: number | null
  readonly consensusTimestamp: bigint | null
  readonly position: number | null
  readonly stale: boolean
}

class EventNode<P> implements ConsensusEvent<P> {
  round = 0
  witness = false
  famous: boolean | null = null
  /** Votes cast on this witness's fame, by later witnesses. Dropped once decided. */
  votesOnMe: Map<EventNode<P>, boolean> | null = null
  /** For a witness: the previous round's witnesses it strongly sees (the voters it listens to). */
  stronglySeenPrevious: Array<EventNode<P>> | null = null
  roundReceived: number | null = null
  consensusTimestamp: bigint | null = null
  position: number | null = null
  stale = false
  pruned = false

  constructor (
    readonly id: string,
    readonly creator: number,
    readonly seq: number,
    readonly generation: number,
    readonly timestamp: bigint,
    /** The signature, copied into a shared slab (see Slabs): [signatureAt, signatureAt + signatureLength). */
    private readonly signatureSlab: Uint8Array,
    private readonly signatureAt: number,
    private readonly signatureLength: number,
    readonly coin: boolean,
    public payload: P,
    /** In-memory parents; cut to null when a parent is pruned so history can be collected. */
    public selfParent: EventNode<P> | null,
    public otherParent: EventNode<P> | null,
    /**
     * Per creator: highest sequence number among this event's ancestors (itself included), -1 if
     * none — the row [lastSeqAt, lastSeqAt + lastSeqLength) of a shared slab (see RowSlabs).
     */
    readonly lastSeqSlab: Int32Array,
    readonly lastSeqAt: number,
    readonly lastSeqLength: number,
    /** Creators of which this event's ancestry holds a fork (two events, neither a self-ancestor of the other). */
    public forkSeen: ReadonlySet<number> | null
  ) {}

  get signature (): Uint8Array {
    return this.signatureSlab.subarray(this.signatureAt, this.signatureAt + this.signatureLength)
  }

  /** The signature's byte at i, zero-extended on the left to `length` bytes (big-endian). */
  signatureByte (i: number, length: number): number {
    const pad = length - this.signatureLength
    return i < pad ? 0 : this.signatureSlab[this.signatureAt + i - pad]!
  }

  status (): EventStatus {
    return {
      id: this.id,
      creator: this.creator,
      seq: this.seq,
      generation: this.generation,
      round: this.round,
      witness: this.witness,
      famous: this.witness ? this.famous : null,
      roundReceived: this.roundReceived,
      consensusTimestamp: this.consensusTimestamp,
      position: this.position,
      stale: this.stale
    }
  }
}

/** A creator's events by sequence number; forks put extra events at an occupied number. */
class Chain<P> {
  /** Sequence number of slots[head]; everything below is pruned. */
  base = 0
  private head = 0
  private readonly slots: Array<EventNode<P>> = []
  readonly forkSiblings = new Map<number, Array<EventNode<P>>>()

  get nextSeq (): number { return this.base + this.slots.length - this.head }

  at (seq: number): EventNode<P> | undefined {
    return seq >= this.base ? this.slots[this.head + seq - this.base] : undefined
  }

  /** True when some event of this creator already has this sequence number (in memory or pruned). */
  occupied (seq: number): boolean {
    return seq < this.nextSeq
  }

  add (node: EventNode<P>): void {
    if (node.seq === this.nextSeq) {
      this.slots.push(node)
      return
    }
    // A fork: the chain keeps its first event at this number, the others are siblings.
    const siblings = this.forkSiblings.get(node.seq)
    if (siblings === undefined) this.forkSiblings.set(node.seq, [node])
    else siblings.push(node)
  }

  /** The events at base, base + 1, … (for a frontier export). */
  held (): Array<EventNode<P>> { return this.slots.slice(this.head) }

  static restore<P> (base: number, held: Array<EventNode<P>>, forkSiblings: Array<[number, Array<EventNode<P>>]>): Chain<P> {
    const chain = new Chain<P>()
    chain.base = base
    chain.slots.push(...held)
    for (const [seq, siblings] of forkSiblings) chain.forkSiblings.set(seq, siblings)
    return chain
  }

  candidatesAt (seq: number): Array<EventNode<P>> {
    const first = this.at(seq)
    const rest = this.forkSiblings.get(seq) ?? []
    return first === undefined ? rest : [first, ...rest]
  }

  dropPruned (): void {
    while (this.head < this.slots.length && this.slots[this.head]!.pruned) {
      this.slots[this.head] = undefined as unknown as EventNode<P> // let the pruned event be collected now
      this.head++
      this.base++
    }
    if (this.head > 64 && this.head * 2 > this.slots.length) {
      this.slots.splice(0, this.head)
      this.head = 0
    }
    for (const seq of this.forkSiblings.keys()) {
      if (seq < this.base) this.forkSiblings.delete(seq)
    }
  }
}

interface RoundState<P> {
  readonly round: number
  readonly witnesses: Array<EventNode<P>>
  /** Events of this round in memory (for pruning). */
  readonly events: Array<EventNode<P>>
  /** Events of this round not yet ordered nor stale. */
  readonly pending: Set<EventNode<P>>
  undecided: number
}

export class Consensus<P = undefined> {
  private schedule: MembershipSchedule
  private readonly holdForMembership: boolean
  /** The round whose events are being handed to onOrdered, while they are. */
  private orderingRound: number | null = null
  private readonly coinRoundFrequency: number
  private readonly staleAfterRounds: number
  private readonly ancientWindowRounds: number
  private readonly byId = new Map<string, EventNode<P>>()
  /** Pruned events kept resolvable as parents, by the round they were pruned with. */
  private readonly ancient = new Map<string, EventNode<P>>()
  private readonly ancientByRound = new Map<number, string[]>()
  private readonly rounds = new Map<number, RoundState<P>>()
  private chains: Array<Chain<P>>
  /** Each creator's newest event, kept even when pruned: it is the self-parent of their next one. */
  private creatorTip: Array<EventNode<P> | undefined>
  private readonly forkers = new Set<number>()
  private readonly forkEvidence: ForkEvidence[] = []
  private readonly rows = new Slabs((length) => new Int32Array(length), 8192)
  private readonly signatures = new Slabs((length) => new Uint8Array(length), 16384)
  /** Scratch space of stronglySeenWitnesses and consensusTimestamp (reused: no garbage per event). */
  private readonly scratchTips: Array<EventNode<P> | undefined> = []
  private readonly scratchSlabs: Int32Array[] = []
  private readonly scratchRowAt: number[] = []
  private readonly scratchRowLength: number[] = []
  private readonly scratchTimes: bigint[] = []
  private readonly undecided = new Set<EventNode<P>>()
  private maxRound = 0
  private nextRoundToOrder = 1
  private orderedCount = 0
  private prunedThrough = 0
  private readonly onOrdered: ConsensusOptions<P>['onOrdered']
  private readonly onStale: ConsensusOptions<P>['onStale']
  private readonly onFork: ConsensusOptions<P>['onFork']
  private readonly onAnomaly: ConsensusOptions<P>['onAnomaly']

  constructor (options: ConsensusOptions<P>) {
    this.schedule = new MembershipSchedule(options.members)
    this.holdForMembership = options.holdForMembership ?? true
    this.coinRoundFrequency = options.coinRoundFrequency ?? DEFAULT_COIN_ROUND_FREQUENCY
    if (!Number.isInteger(this.coinRoundFrequency) || this.coinRoundFrequency < 2) {
      throw new RangeError(`coinRoundFrequency must be an integer >= 2, got ${this.coinRoundFrequency}`)
    }
    this.staleAfterRounds = options.staleAfterRounds ?? DEFAULT_STALE_AFTER_ROUNDS
    if (!(this.staleAfterRounds >= 2)) throw new RangeError(`staleAfterRounds must be >= 2, got ${this.staleAfterRounds}`)
    this.ancientWindowRounds = options.ancientWindowRounds ?? this.staleAfterRounds
    this.chains = Array.from({ length: this.schedule.slots }, () => new Chain<P>())
    this.creatorTip = new Array(this.schedule.slots).fill(undefined)
    this.onOrdered = options.onOrdered
    this.onStale = options.onStale
    this.onFork = options.onFork
    this.onAnomaly = options.onAnomaly
  }

  // ---------------------------------------------------------------- queries

  get size (): number { return this.byId.size }
  get lastRound (): number { return this.maxRound }
  /** Highest round whose events have been given their round received (0 before the first). */
  get lastOrderedRound (): number { return this.nextRoundToOrder - 1 }
  get orderedEvents (): number { return this.orderedCount }
  get forkingCreators (): ReadonlySet<number> { return this.forkers }
  get forks (): readonly ForkEvidence[] { return this.forkEvidence }

  has (id: string): boolean {
    return this.byId.has(id) || this.ancient.has(id) || this.isCreatorTip(id)
  }

  status (id: string): EventStatus | undefined {
    return this.resolve(id)?.status()
  }

  event (id: string): ConsensusEvent<P> | undefined {
    return this.resolve(id)
  }

  /** Newest event of a creator (in memory or pruned), the self-parent of its next event. */
  lastEventOf (creator: number): ConsensusEvent<P> | undefined {
    return this.creatorTip[creator]
  }

  /** Events in memory, in insertion order per round; for the UI's graph view. */
  * recentEvents (): Iterable<ConsensusEvent<P>> {
    const rounds = [...this.rounds.keys()].sort((a, b) => a - b)
    for (const r of rounds) yield * this.rounds.get(r)!.events
  }

  /** Which of the ids are unknown here (neither in memory nor resolvable as an ancient parent). */
  missing (ids: ReadonlyArray<string | null>): string[] {
    const out: string[] = []
    for (const id of ids) if (id !== null && !this.has(id) && !out.includes(id)) out.push(id)
    return out
  }

  /**
   * Checks an event without changing anything; throws the EventRejectedError insert would throw.
   */
  validate (input: ConsensusEventInput<P>): void {
    this.prepare(input)
  }

  // ---------------------------------------------------------------- frontier

  /**
   * The frontier: what a fresh engine needs to continue exactly as this one (see fromFrontier).
   * Only between insertions (not while ordered events are handed out).
   */
  exportFrontier (): ConsensusFrontier<P> {
    if (this.orderingRound !== null) throw new ConsensusInvariantError('exportFrontier cannot run while ordered events are handed out')
    // Every event the engine can still reach: held ones, and what their links, strongly-seen
    // lists and votes name (votes and strongly-seen lists can name each other: no order is implied).
    const nodes = new Set<EventNode<P>>()
    const visit = (e: EventNode<P> | null | undefined): void => {
      if (e == null || nodes.has(e)) return
      const stack = [e]
      nodes.add(e)
      while (stack.length > 0) {
        const x = stack.pop()!
        for (const d of [x.selfParent, x.otherParent, ...(x.stronglySeenPrevious ?? []), ...(x.votesOnMe?.keys() ?? [])]) {
          if (d !== null && !nodes.has(d)) { nodes.add(d); stack.push(d) }
        }
      }
    }
    const rounds = [...this.rounds.values()].sort((a, b) => a.round - b.round)
    for (const state of rounds) for (const e of state.events) visit(e)
    for (const e of this.ancient.values()) visit(e)
    for (const e of this.creatorTip) visit(e)
    for (const chain of this.chains) {
      for (const e of chain.held()) visit(e)
      for (const siblings of chain.forkSiblings.values()) for (const e of siblings) visit(e)
    }
    for (const e of this.undecided) visit(e)
    const ids = (list: Iterable<EventNode<P>>): string[] => Array.from(list, (e) => e.id)
    return {
      version: 1,
      coinRoundFrequency: this.coinRoundFrequency,
      staleAfterRounds: this.staleAfterRounds,
      ancientWindowRounds: this.ancientWindowRounds,
      membership: { genesis: this.schedule.genesis, slots: this.schedule.slots, changes: this.schedule.changeList.map((c) => ({ ...c })) },
      maxRound: this.maxRound,
      nextRoundToOrder: this.nextRoundToOrder,
      orderedCount: this.orderedCount,
      prunedThrough: this.prunedThrough,
      forkers: [...this.forkers],
      forkEvidence: this.forkEvidence.map((f) => ({ ...f, eventIds: [...f.eventIds] as [string, string] })),
      events: Array.from(nodes, (e) => ({
        id: e.id,
        creator: e.creator,
        seq: e.seq,
        generation: e.generation,
        timestamp: e.timestamp,
        signature: Uint8Array.from(e.signature),
        coin: e.coin,
        payload: e.payload,
        selfParent: e.selfParent?.id ?? null,
        otherParent: e.otherParent?.id ?? null,
        lastSeq: Array.from(e.lastSeqSlab.subarray(e.lastSeqAt, e.lastSeqAt + e.lastSeqLength)),
        forkSeen: e.forkSeen === null ? null : [...e.forkSeen],
        round: e.round,
        witness: e.witness,
        famous: e.famous,
        votes: e.votesOnMe === null ? null : Array.from(e.votesOnMe, ([voter, vote]) => [voter.id, vote] as const),
        stronglySeenPrevious: e.stronglySeenPrevious === null ? null : ids(e.stronglySeenPrevious),
        roundReceived: e.roundReceived,
        consensusTimestamp: e.consensusTimestamp,
        position: e.position,
        stale: e.stale,
        pruned: e.pruned
      })),
      rounds: rounds.map((state) => ({ round: state.round, witnesses: ids(state.witnesses), events: ids(state.events), pending: ids(state.pending), undecided: state.undecided })),
      ancientByRound: [...this.ancientByRound].map(([round, list]) => [round, [...list]] as const),
      undecided: ids(this.undecided),
      creatorTips: this.creatorTip.map((e) => e?.id ?? null),
      chains: this.chains.map((chain) => ({
        base: chain.base,
        held: ids(chain.held()),
        forkSiblings: [...chain.forkSiblings].map(([seq, siblings]) => [seq, ids(siblings)] as const)
      }))
    }
  }

  /**
   * An engine that continues from a frontier exactly as the engine that exported it: the same
   * rounds, fame, order and stale events for every event inserted from then on. `options` gives
   * the callbacks (and holdForMembership); the consensus parameters come from the frontier.
   */
  static fromFrontier<P> (frontier: ConsensusFrontier<P>, options: Omit<ConsensusOptions<P>, 'members' | 'coinRoundFrequency' | 'staleAfterRounds' | 'ancientWindowRounds'> = {}): Consensus<P> {
    if (frontier.version !== 1) throw new RangeError(`unknown frontier version ${String(frontier.version)}`)
    const engine = new Consensus<P>({
      ...options,
      members: frontier.membership.genesis,
      coinRoundFrequency: frontier.coinRoundFrequency,
      staleAfterRounds: frontier.staleAfterRounds,
      ancientWindowRounds: frontier.ancientWindowRounds
    })
    const schedule = MembershipSchedule.restore(frontier.membership.genesis, frontier.membership.slots, frontier.membership.changes)
    engine.schedule = schedule
    const nodes = new Map<string, EventNode<P>>()
    const node = (id: string, what: string): EventNode<P> => {
      const e = nodes.get(id)
      if (e === undefined) throw new RangeError(`frontier: ${what} names event ${id}, which is not in the frontier`)
      return e
    }
    // Two passes: the events first, then what links them (which may form cycles through votes).
    for (const f of frontier.events) {
      if (nodes.has(f.id)) throw new RangeError(`frontier: event ${f.id} appears twice`)
      const rowAt = engine.rows.allocate(f.lastSeq.length)
      engine.rows.slab.set(f.lastSeq, rowAt)
      const signatureAt = engine.signatures.allocate(f.signature.length)
      engine.signatures.slab.set(f.signature, signatureAt)
      nodes.set(f.id, new EventNode<P>(f.id, f.creator, f.seq, f.generation, f.timestamp, engine.signatures.slab, signatureAt, f.signature.length, f.coin, f.payload,
        null, null, engine.rows.slab, rowAt, f.lastSeq.length, f.forkSeen === null ? null : new Set(f.forkSeen)))
    }
    for (const f of frontier.events) {
      const e = nodes.get(f.id)!
      e.selfParent = f.selfParent === null ? null : node(f.selfParent, `${f.id}'s self-parent`)
      e.otherParent = f.otherParent === null ? null : node(f.otherParent, `${f.id}'s other-parent`)
      e.round = f.round
      e.witness = f.witness
      e.famous = f.famous
      e.votesOnMe = f.votes === null ? null : new Map(f.votes.map(([voter, vote]) => [node(voter, `a vote on ${f.id}`), vote]))
      e.stronglySeenPrevious = f.stronglySeenPrevious === null ? null : f.stronglySeenPrevious.map((id) => node(id, `${f.id}'s strongly seen witnesses`))
      e.roundReceived = f.roundReceived
      e.consensusTimestamp = f.consensusTimestamp
      e.position = f.position
      e.stale = f.stale
      e.pruned = f.pruned
    }
    const list = (ids: readonly string[], what: string): Array<EventNode<P>> => ids.map((id) => node(id, what))
    for (const r of frontier.rounds) {
      const events = list(r.events, `round ${r.round}`)
      engine.rounds.set(r.round, { round: r.round, witnesses: list(r.witnesses, `round ${r.round}`), events, pending: new Set(list(r.pending, `round ${r.round}`)), undecided: r.undecided })
      for (const e of events) engine.byId.set(e.id, e)
    }
    for (const [round, ids] of frontier.ancientByRound) {
      engine.ancientByRound.set(round, [...ids])
      for (const id of ids) engine.ancient.set(id, node(id, `ancient round ${round}`))
    }
    for (const e of list(frontier.undecided, 'the undecided witnesses')) engine.undecided.add(e)
    engine.creatorTip = frontier.creatorTips.map((id) => id === null ? undefined : node(id, 'a creator tip'))
    engine.chains = frontier.chains.map((c, creator) => Chain.restore(c.base, list(c.held, `creator ${creator}'s chain`),
      c.forkSiblings.map(([seq, ids]) => [seq, list(ids, `creator ${creator}'s forks`)])))
    if (engine.chains.length !== schedule.slots || engine.creatorTip.length !== schedule.slots) {
      throw new RangeError(`frontier: ${engine.chains.length} chains for ${schedule.slots} member slots`)
    }
    for (const m of frontier.forkers) engine.forkers.add(m)
    for (const f of frontier.forkEvidence) engine.forkEvidence.push({ ...f, eventIds: [...f.eventIds] as [string, string] })
    engine.maxRound = frontier.maxRound
    engine.nextRoundToOrder = frontier.nextRoundToOrder
    engine.orderedCount = frontier.orderedCount
    engine.prunedThrough = frontier.prunedThrough
    return engine
  }

  // ---------------------------------------------------------------- membership

  get membership (): Membership { return this.schedule }

  /** Highest round whose member set is final: changes ordered from now on govern later rounds. */
  get membershipFinalThrough (): number {
    return this.nextRoundToOrder - 1 + MEMBERSHIP_DELAY_ROUNDS
  }

  /**
   * Adds a member by consensus. Only callable while an ordered round is being handed out
   * (onOrdered), so that every site makes the change at the same point of the order; it takes
   * effect MEMBERSHIP_DELAY_ROUNDS after that round. Returns the new creator id and first round.
   */
  addMember (): { creator: number, fromRound: number } {
    const fromRound = this.changeRound('addMember')
    const creator = this.schedule.add(fromRound)
    this.chains.push(new Chain<P>())
    this.creatorTip.push(undefined)
    return { creator, fromRound }
  }

  /** Removes a member by consensus (same rule as addMember). Returns the first round without it. */
  removeMember (creator: number): number {
    const fromRound = this.changeRound('removeMember')
    if (!this.schedule.isMember(creator, fromRound)) throw new RangeError(`creator ${creator} is not a member in round ${fromRound}`)
    this.schedule.remove(creator, fromRound)
    return fromRound
  }

  private changeRound (operation: string): number {
    if (this.orderingRound === null) {
      throw new ConsensusInvariantError(`${operation} must be called while ordered events are handed out, so that every site applies it at the same point`)
    }
    return this.orderingRound + MEMBERSHIP_DELAY_ROUNDS
  }

  // ---------------------------------------------------------------- insertion

  /**
   * Inserts an event whose parents are known. Throws EventRejectedError (graph unchanged) or
   * MissingParentsError. Consensus advances as far as the new event allows; ordered events are
   * reported through onOrdered before this returns. `beforeCommit` runs once the event is known
   * to be valid and before anything changes; if it throws, the event is not inserted.
   */
  insert (input: ConsensusEventInput<P>, beforeCommit?: () => void): ConsensusEvent<P> {
    const node = this.prepare(input)
    // The caller's durable write goes here: after every check, before any state changes, so a
    // failed write leaves both the log and the graph without the event.
    beforeCommit?.()
    this.commit(node)
    return node
  }

  private resolve (id: string): EventNode<P> | undefined {
    const node = this.byId.get(id) ?? this.ancient.get(id)
    if (node !== undefined) return node
    for (const tip of this.creatorTip) if (tip?.id === id) return tip
    return undefined
  }

  private isCreatorTip (id: string): boolean {
    return this.creatorTip.some((tip) => tip?.id === id)
  }

  /** Computes everything about the new event without mutating the engine. */
  private prepare (input: ConsensusEventInput<P>): EventNode<P> {
    const { id, creator } = input
    const reject = (reason: ConstructorParameters<typeof EventRejectedError>[0], detail: string): never => {
      throw new EventRejectedError(reason, id, detail)
    }
    if (this.has(id)) reject('duplicate', 'already in the hashgraph')
    if (!Number.isInteger(creator) || creator < 0 || creator >= this.schedule.slots) {
      reject('unknown-creator', `creator ${creator} is not a member (members are 0..${this.schedule.slots - 1})`)
    }
    if (input.selfParent !== null && input.selfParent === input.otherParent) {
      reject('other-parent-same-creator', 'self-parent and other-parent are the same event')
    }
    const selfParent = input.selfParent === null ? null : this.resolve(input.selfParent)
    const otherParent = input.otherParent === null ? null : this.resolve(input.otherParent)
    if (selfParent === undefined || otherParent === undefined) {
      throw new MissingParentsError(id, this.missing([input.selfParent, input.otherParent]))
    }
    if (selfParent !== null && selfParent.creator !== creator) {
      reject('self-parent-creator-mismatch', `self-parent ${selfParent.id} was created by ${selfParent.creator}, not ${creator}`)
    }
    if (otherParent !== null && otherParent.creator === creator) {
      reject('other-parent-same-creator', `other-parent ${otherParent.id} has the same creator ${creator}`)
    }
    if (selfParent !== null && input.timestamp <= selfParent.timestamp) {
      reject('timestamp-not-after-self-parent', `timestamp ${input.timestamp} is not after the self-parent's ${selfParent.timestamp}`)
    }
    if (input.signature.length === 0) reject('malformed', 'empty signature')

    const parentRound = Math.max(selfParent?.round ?? 0, otherParent?.round ?? 0)
    if (parentRound > 0 && parentRound <= this.prunedThrough) {
      reject('ancient', `its parents are in round ${parentRound}, older than the rounds still undecided (pruned through ${this.prunedThrough})`)
    }

    // Nothing is computed for a round whose member set could still change: that is what makes
    // membership changes by consensus safe. Such an event waits (the caller parks it).
    const highestRound = parentRound + 1
    if (this.holdForMembership && highestRound > this.membershipFinalThrough) {
      throw new MembershipPendingError(id, highestRound, this.membershipFinalThrough)
    }

    const seq = selfParent === null ? 0 : selfParent.seq + 1
    const generation = 1 + Math.max(selfParent?.generation ?? 0, otherParent?.generation ?? 0)
    const slots = this.schedule.slots
    const at = this.rows.allocate(slots)
    const lastSeq = this.rows.slab
    lastSeq.fill(-1, at, at + slots)
    // Parents created before a member joined have shorter vectors: the rest stays -1.
    if (selfParent !== null) {
      const theirs = selfParent.lastSeqSlab
      for (let m = 0, from = selfParent.lastSeqAt; m < selfParent.lastSeqLength; m++) lastSeq[at + m] = theirs[from + m]!
    }
    if (otherParent !== null) {
      const theirs = otherParent.lastSeqSlab
      for (let m = 0, from = otherParent.lastSeqAt; m < otherParent.lastSeqLength; m++) {
        if (theirs[from + m]! > lastSeq[at + m]!) lastSeq[at + m] = theirs[from + m]!
      }
    }
    if (seq > lastSeq[at + creator]!) lastSeq[at + creator] = seq

    const isFork = this.chains[creator]!.occupied(seq)
    const forkers = isFork && !this.forkers.has(creator) ? new Set([...this.forkers, creator]) : this.forkers
    const coin = input.coinBit !== undefined ? input.coinBit === 1 : middleBit(input.signature)
    // forkSeen is computed from the node's own ancestry links, so it is filled in once they exist.
    const signatureAt = this.signatures.allocate(input.signature.length)
    this.signatures.slab.set(input.signature, signatureAt)
    const node = new EventNode<P>(id, creator, seq, generation, input.timestamp, this.signatures.slab, signatureAt, input.signature.length, coin, input.payload,
      selfParent, otherParent, lastSeq, at, slots, null)
    node.forkSeen = this.computeForkSeen(node, forkers)

    // divideRounds
    let round = parentRound === 0 ? 1 : parentRound
    let stronglySeen: Array<EventNode<P>> | null = null
    if (parentRound > 0) {
      const state = this.rounds.get(parentRound)
      if (state === undefined) throw new ConsensusInvariantError(`round ${parentRound} of a parent of ${id} is not in memory`)
      const seen = this.stronglySeenWitnesses(node, state.witnesses, forkers)
      // x strongly sees at most one witness per creator (it must see it, so that creator's events
      // in its ancestry form one chain, which holds one witness per round): count = creators.
      if (isSupermajority(seen.length, this.schedule.count(parentRound))) {
        round = parentRound + 1
        stronglySeen = seen
      }
    }
    node.round = round
    // A member whose removal takes effect in this round still creates events in it, never
    // witnesses: they carry what it saw of the round before (where it still counts) to the members
    // that stay. Without them a member set of three could never form its first round of two.
    const leaving = !this.schedule.isMember(creator, round) && round > 1 && this.schedule.isMember(creator, round - 1)
    node.witness = !leaving && (selfParent === null || round > selfParent.round)
    if (node.witness && round > 1) {
      if (stronglySeen === null) {
        const previous = this.rounds.get(round - 1)
        stronglySeen = previous === undefined ? [] : this.stronglySeenWitnesses(node, previous.witnesses, forkers)
      }
      node.stronglySeenPrevious = stronglySeen
    }
    if (round <= this.nextRoundToOrder - 1 - this.staleAfterRounds) {
      reject('ancient', `its round ${round} is stale: consensus has ordered through round ${this.nextRoundToOrder - 1}`)
    }
    if (!leaving && !this.schedule.isMember(creator, round)) reject('not-a-member', `creator ${creator} is not a member in round ${round}`)
    return node
  }

  private commit (node: EventNode<P>): void {
    const chain = this.chains[node.creator]!
    if (chain.occupied(node.seq)) this.recordFork(node, chain)
    chain.add(node)
    this.byId.set(node.id, node)
    const tip = this.creatorTip[node.creator]
    if (tip === undefined || node.seq > tip.seq) {
      this.creatorTip[node.creator] = node
      if (tip?.pruned === true) tip.payload = undefined as P // no longer the newest: released like any pruned event
    }

    const state = this.roundState(node.round)
    state.events.push(node)
    state.pending.add(node)
    if (node.round > this.maxRound) this.maxRound = node.round

    if (node.witness) {
      state.witnesses.push(node)
      // decideFame: the new witness votes on every undecided witness of an earlier round.
      for (const candidate of [...this.undecided]) {
        if (candidate.round < node.round) this.castVote(node, candidate)
      }
      node.votesOnMe = new Map()
      this.undecided.add(node)
      state.undecided++
      // A witness that arrives after later rounds exist: those rounds' witnesses vote on it now,
      // in round order, exactly as they would have if it had arrived first.
      for (let r = node.round + 1; r <= this.maxRound && node.famous === null; r++) {
        for (const voter of this.rounds.get(r)?.witnesses ?? []) {
          this.castVote(voter, node)
          if (node.famous !== null) break
        }
      }
    }
    this.orderDecidedRounds()
  }

  private roundState (round: number): RoundState<P> {
    let state = this.rounds.get(round)
    if (state === undefined) {
      state = { round, witnesses: [], events: [], pending: new Set(), undecided: 0 }
      this.rounds.set(round, state)
    }
    return state
  }

  private recordFork (node: EventNode<P>, chain: Chain<P>): void {
    const other = chain.at(node.seq) ?? chain.forkSiblings.get(node.seq)?.[0]
    const evidence: ForkEvidence = { creator: node.creator, seq: node.seq, eventIds: [other?.id ?? '(pruned)', node.id] }
    this.forkers.add(node.creator)
    this.forkEvidence.push(evidence)
    this.onFork?.(evidence)
  }

  // ---------------------------------------------------------------- ancestry

  /** Is a an ancestor of b (a === b counts)? Exact, forks included. */
  private isAncestor (a: EventNode<P>, b: EventNode<P>, forkers: ReadonlySet<number> = this.forkers): boolean {
    if (a === b) return true
    if (b.generation <= a.generation) return false
    if (lastSeqOf(b, a.creator) < a.seq) return false
    if (!forkers.has(a.creator)) return true
    // a's creator forked: sequence numbers no longer identify events, search b's ancestry.
    const stack: Array<EventNode<P>> = [b]
    const visited = new Set<EventNode<P>>()
    while (stack.length > 0) {
      const e = stack.pop()!
      if (e === a) return true
      if (visited.has(e) || e.generation <= a.generation || lastSeqOf(e, a.creator) < a.seq || e.pruned) continue
      visited.add(e)
      if (e.selfParent !== null) stack.push(e.selfParent)
      if (e.otherParent !== null) stack.push(e.otherParent)
    }
    return false
  }

  /** Paper: x sees y iff y is an ancestor of x and x's ancestry holds no fork by y's creator. */
  private sees (x: EventNode<P>, y: EventNode<P>, forkers: ReadonlySet<number> = this.forkers): boolean {
    if (x.forkSeen?.has(y.creator) === true) return false
    return this.isAncestor(y, x, forkers)
  }

  /**
   * The newest event of creator m among x's ancestors, given that they form a chain
   * (m not in x.forkSeen). Undefined when there is none, or it has been pruned.
   */
  private tip (x: EventNode<P>, m: number, forkers: ReadonlySet<number>): EventNode<P> | undefined {
    if (x.creator === m) return x
    const seq = lastSeqOf(x, m)
    if (seq < 0) return undefined
    const chain = this.chains[m]!
    if (!forkers.has(m)) return chain.at(seq)
    for (const candidate of chain.candidatesAt(seq)) {
      if (this.isAncestor(candidate, x, forkers)) return candidate
    }
    return undefined
  }

  private isSelfAncestor (a: EventNode<P>, b: EventNode<P>): boolean | undefined {
    let e: EventNode<P> | null = b
    while (e !== null && e.seq > a.seq) e = e.pruned ? null : e.selfParent
    if (e === null) return undefined
    return e === a
  }

  private computeForkSeen (node: EventNode<P>, forkers: ReadonlySet<number>): ReadonlySet<number> | null {
    const sp = node.selfParent
    const op = node.otherParent
    let seen: Set<number> | null = null
    const inherited = (from: EventNode<P> | null): void => {
      if (from?.forkSeen == null) return
      if (seen === null) seen = new Set(from.forkSeen)
      else for (const m of from.forkSeen) seen.add(m)
    }
    inherited(sp)
    inherited(op)
    for (const m of forkers) {
      if ((seen as Set<number> | null)?.has(m) === true) continue
      const tips: Array<EventNode<P>> = []
      if (sp !== null && !sp.pruned) { const t = this.tip(sp, m, forkers); if (t !== undefined) tips.push(t) }
      if (op !== null && !op.pruned) { const t = this.tip(op, m, forkers); if (t !== undefined) tips.push(t) }
      if (node.creator === m) tips.push(node)
      if (hasIncomparablePair(tips, (a, b) => this.isSelfAncestor(a, b))) {
        if (seen === null) seen = new Set()
        ;(seen as Set<number>).add(m)
      }
    }
    return seen
  }

  /**
   * Witnesses among `witnesses` that x strongly sees: x sees w, and events by a supermajority
   * of members lie on paths from w to x (each seen by x, each seeing w).
   */
  private stronglySeenWitnesses (x: EventNode<P>, witnesses: ReadonlyArray<EventNode<P>>, forkers: ReadonlySet<number>): Array<EventNode<P>> {
    const seen: Array<EventNode<P>> = []
    if (witnesses.length === 0) return seen
    const round = witnesses[0]!.round
    const slots = this.schedule.slots
    // The tips are shared by every witness tested: compute them once.
    const tips = this.scratchTips
    tips.length = slots
    for (let m = 0; m < slots; m++) {
      tips[m] = (x.forkSeen?.has(m) === true || !this.schedule.isMember(m, round)) ? undefined : this.tip(x, m, forkers)
    }
    const needed = this.schedule.count(round)
    if (forkers.size === 0 && x.forkSeen === null) {
      // No forks: "a is an ancestor of b" is lastSeqOf(b, a.creator) >= a.seq, a tight loop over the
      // tips' rows. A tip older than w's creator's slot (a shorter row) cannot have w as an ancestor.
      const slabs = this.scratchSlabs
      const rowAt = this.scratchRowAt
      const rowLength = this.scratchRowLength
      slabs.length = 0
      rowAt.length = 0
      rowLength.length = 0
      for (let m = 0; m < slots; m++) {
        const t = tips[m]
        if (t !== undefined) { slabs.push(t.lastSeqSlab); rowAt.push(t.lastSeqAt); rowLength.push(t.lastSeqLength) }
      }
      for (const w of witnesses) {
        const c = w.creator
        const s = w.seq
        if (lastSeqOf(x, c) < s) continue
        let count = 0
        for (let k = 0; k < slabs.length; k++) if (c < rowLength[k]! && slabs[k]![rowAt[k]! + c]! >= s) count++
        if (isSupermajority(count, needed)) seen.push(w)
      }
      return seen
    }
    for (const w of witnesses) {
      if (!this.sees(x, w, forkers)) continue
      let count = 0
      let left = slots
      for (let m = 0; m < slots; m++, left--) {
        const t = tips[m]
        if (t !== undefined && this.isAncestor(w, t, forkers)) count++
        if (isSupermajority(count, needed) || !isSupermajority(count + left - 1, needed)) break
      }
      if (isSupermajority(count, needed)) seen.push(w)
    }
    return seen
  }

  // ---------------------------------------------------------------- decideFame

  private castVote (voter: EventNode<P>, candidate: EventNode<P>): void {
    const votes = candidate.votesOnMe
    if (votes === null || candidate.famous !== null) return
    const distance = voter.round - candidate.round
    if (distance === 1) {
      votes.set(voter, this.sees(voter, candidate))
      return
    }
    let yes = 0
    let no = 0
    for (const s of voter.stronglySeenPrevious ?? []) {
      const v = votes.get(s)
      if (v === undefined) throw new ConsensusInvariantError(`witness ${s.id} has no vote on ${candidate.id}`)
      if (v) yes++; else no++
    }
    const majority = yes >= no
    const tally = majority ? yes : no
    const decisive = isSupermajority(tally, this.schedule.count(voter.round - 1))
    if (distance % this.coinRoundFrequency !== 0) {
      votes.set(voter, majority)
      if (decisive) this.decide(candidate, majority)
    } else {
      votes.set(voter, decisive ? majority : voter.coin)
    }
  }

  private decide (witness: EventNode<P>, famous: boolean): void {
    witness.famous = famous
    witness.votesOnMe = null
    this.undecided.delete(witness)
    const state = this.rounds.get(witness.round)
    if (state !== undefined) state.undecided--
    if (witness.round < this.nextRoundToOrder && famous) {
      this.onAnomaly?.(`witness ${witness.id} of already ordered round ${witness.round} was decided famous`)
    }
  }

  // ---------------------------------------------------------------- findOrder

  private orderDecidedRounds (): void {
    for (;;) {
      const state = this.rounds.get(this.nextRoundToOrder)
      if (state === undefined || state.undecided > 0 || this.nextRoundToOrder >= this.maxRound) return
      this.orderRound(state)
      this.nextRoundToOrder++
      this.retireOldRounds()
    }
  }

  private orderRound (state: RoundState<P>): void {
    const famous = state.witnesses.filter((w) => w.famous === true)
    const perCreator = new Map<number, number>()
    for (const w of famous) perCreator.set(w.creator, (perCreator.get(w.creator) ?? 0) + 1)
    const unique = famous.filter((w) => perCreator.get(w.creator) === 1)
    if (unique.length === 0) return

    const received: Array<EventNode<P>> = []
    for (let r = this.prunedThrough + 1; r <= state.round; r++) {
      const pending = this.rounds.get(r)?.pending
      if (pending === undefined) continue
      for (const x of pending) {
        if (unique.every((w) => this.isAncestor(x, w))) received.push(x)
      }
    }
    if (received.length === 0) return

    const whitener = xorAll(unique.map((w) => w.signature))
    for (const x of received) {
      x.roundReceived = state.round
      x.consensusTimestamp = this.consensusTimestamp(x, unique)
      this.rounds.get(x.round)!.pending.delete(x)
    }
    received.sort((a, b) =>
      compareBigInt(a.consensusTimestamp!, b.consensusTimestamp!) ||
      a.generation - b.generation ||
      compareWhitened(a, b, whitener) ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    for (const x of received) x.position = this.orderedCount++
    this.orderingRound = state.round
    try {
      this.onOrdered?.(received, state.round)
    } finally {
      this.orderingRound = null
    }
  }

  /** Median over the unique famous witnesses w of: the time of w's earliest self-ancestor that has x as an ancestor. */
  private consensusTimestamp (x: EventNode<P>, unique: ReadonlyArray<EventNode<P>>): bigint {
    const times = this.scratchTimes
    times.length = 0
    for (const w of unique) times.push(this.earliestSelfAncestorWith(x, w).timestamp)
    // The element a sort would put at index length >> 1 (the upper middle for an even count).
    return selectKth(times, times.length >> 1)
  }

  private earliestSelfAncestorWith (x: EventNode<P>, w: EventNode<P>): EventNode<P> {
    if (!this.forkers.has(w.creator)) {
      // Along an honest chain "has x as an ancestor" is monotone: binary search by sequence number.
      const chain = this.chains[w.creator]!
      let lo = Math.max(chain.base, 0)
      let hi = w.seq
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        const e = chain.at(mid)
        if (e !== undefined && this.isAncestor(x, e)) hi = mid
        else lo = mid + 1
      }
      return chain.at(lo) ?? w
    }
    let z = w
    while (z.selfParent !== null && !z.selfParent.pruned && this.isAncestor(x, z.selfParent)) z = z.selfParent
    return z
  }

  // ---------------------------------------------------------------- bounded memory

  private retireOldRounds (): void {
    const ordered = this.nextRoundToOrder - 1
    const staleRound = ordered - this.staleAfterRounds
    const stale: Array<EventNode<P>> = []
    for (let r = this.prunedThrough + 1; r <= staleRound; r++) {
      const pending = this.rounds.get(r)?.pending
      if (pending === undefined) continue
      for (const x of pending) { x.stale = true; stale.push(x) }
      pending.clear()
    }
    if (stale.length > 0) this.onStale?.(stale)

    const pruneThrough = staleRound - 1
    for (let r = this.prunedThrough + 1; r <= pruneThrough; r++) {
      const state = this.rounds.get(r)
      if (state === undefined) continue
      const ids: string[] = []
      for (const e of state.events) {
        e.pruned = true
        if (this.creatorTip[e.creator] !== e) e.payload = undefined as P
        e.selfParent = null
        e.otherParent = null
        e.votesOnMe = null
        e.stronglySeenPrevious = null
        if (e.famous === null && e.witness) this.undecided.delete(e)
        this.byId.delete(e.id)
        this.ancient.set(e.id, e)
        ids.push(e.id)
      }
      this.ancientByRound.set(r, ids)
      this.rounds.delete(r)
      this.prunedThrough = r
    }
    if (pruneThrough > 0) for (const chain of this.chains) chain.dropPruned()
    for (const [r, ids] of this.ancientByRound) {
      if (r > this.prunedThrough - this.ancientWindowRounds) break
      for (const id of ids) this.ancient.delete(id)
      this.ancientByRound.delete(r)
    }
  }
}

// ---------------------------------------------------------------- helpers

/** Highest sequence number of creator m among e's ancestors; -1 for none (or m joined after e). */
function lastSeqOf (e: { readonly lastSeqSlab: Int32Array, readonly lastSeqAt: number, readonly lastSeqLength: number }, m: number): number {
  return m < e.lastSeqLength ? e.lastSeqSlab[e.lastSeqAt + m]! : -1
}

/** 3k > 2n, the paper's "more than two thirds". */
export function isSupermajority (k: number, n: number): boolean {
  return 3 * k > 2 * n
}

/** The coin: (sig[len/2] >> 7) & 1. */
export function middleBit (signature: Uint8Array): boolean {
  return ((signature[signature.length >> 1]! >> 7) & 1) === 1
}

function hasIncomparablePair<T> (items: readonly T[], isAncestor: (a: T, b: T) => boolean | undefined): boolean {
  for (let i = 0; i < items.length; i++) {
    for (let j = i + 1; j < items.length; j++) {
      const a = items[i]!
      const b = items[j]!
      if (a === b) continue
      // Unknown (history pruned) counts as comparable: forks older than memory are not re-detected.
      if (isAncestor(a, b) === false && isAncestor(b, a) === false) return true
    }
  }
  return false
}

function compareBigInt (a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** XOR of big-endian unsigned integers: shorter operands are zero-extended on the left. */
function xorBytes (a: Uint8Array, b: Uint8Array): Uint8Array {
  const length = Math.max(a.length, b.length)
  const out = new Uint8Array(length)
  for (let i = 1; i <= length; i++) {
    out[length - i] = (a[a.length - i] ?? 0) ^ (b[b.length - i] ?? 0)
  }
  return out
}

function xorAll (items: readonly Uint8Array[]): Uint8Array {
  let acc: Uint8Array = new Uint8Array(0)
  for (const item of items) acc = xorBytes(acc, item)
  return acc
}

/**
 * Compares (a XOR w) with (b XOR w) as big-endian unsigned integers (shorter operands zero-extended
 * on the left), byte by byte, without materialising either whitened signature.
 */
function compareWhitened (a: EventNode<unknown>, b: EventNode<unknown>, w: Uint8Array): number {
  const length = Math.max(a.signature.length, b.signature.length, w.length)
  const padW = length - w.length
  for (let i = 0; i < length; i++) {
    const mask = i < padW ? 0 : w[i - padW]!
    const x = a.signatureByte(i, length) ^ mask
    const y = b.signatureByte(i, length) ^ mask
    if (x !== y) return x - y
  }
  return 0
}

/**
 * The k-th smallest (0-based) of the values, as sorting them ascending and taking index k would
 * give; reorders the array in place (Hoare's quickselect, no allocation).
 */
function selectKth (values: bigint[], k: number): bigint {
  let lo = 0
  let hi = values.length - 1
  while (lo < hi) {
    const pivot = values[(lo + hi) >> 1]!
    let i = lo
    let j = hi
    while (i <= j) {
      while (values[i]! < pivot) i++
      while (values[j]! > pivot) j--
      if (i <= j) {
        const t = values[i]!
        values[i] = values[j]!
        values[j] = t
        i++
        j--
      }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else return values[k]!
  }
  return values[k]!
}

/**
 * Per-event arrays (ancestry rows, signatures) cut from shared slabs: an array of its own would be
 * an ArrayBuffer (and, beyond 64 bytes, a malloc'd backing store) per event, and a view a heap
 * object per event, all promoted to V8's old generation since events live for ~27 rounds. Events
 * die roughly in insertion order, so a slab is freed once its events are; each creator's newest
 * event pins at most one slab.
 */
class Slabs<T extends Int32Array | Uint8Array> {
  /** The slab of the space handed out last. */
  slab: T
  private used = 0

  /** `entriesPerSlab`: 32 KiB of rows (256 events at n = 32), 16 KiB of signatures (256 Ed25519 ones). */
  constructor (private readonly create: (length: number) => T, private readonly entriesPerSlab: number) {
    this.slab = create(0)
  }

  /** Room for `length` entries in `slab`, from the returned offset. */
  allocate (length: number): number {
    if (this.used + length > this.slab.length) {
      this.slab = this.create(Math.max(length, this.entriesPerSlab))
      this.used = 0
    }
    const at = this.used
    this.used += length
    return at
  }
}
