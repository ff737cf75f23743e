/**
 * Deterministic gossip simulation over real Hashgraph instances, for the property, Byzantine and
 * restart tests. Everything random comes from one seeded PRNG, keys are derived from the seed and
 * the clock is simulated, so a seed reproduces a run exactly (Ed25519 signatures are deterministic).
 *
 * Bookkeeping is incremental: every event ever created gets a global index (creation order, which is
 * a topological order); each member keeps the set of indices it holds plus, per creator, a low-water
 * mark into that creator's list of events below which it holds everything. An honest creator's
 * events form a chain and a member's knowledge is closed under ancestry, so the mark is exactly the
 * member's count of that creator's events and a sync scans only the events the receiver lacks.
 * (A forker's branches can leave holes above the mark; the scan still finds them.)
 */
import { createHash } from 'node:crypto'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import {
  EventLog, Hashgraph, ed25519Signer, signEvent,
  type ConsensusSnapshot, type ForkEvidence, type HashgraphInit, type OrderedTransaction, type SignedEvent, type Signer
} from '../../p2p/hashgraph/index.js'

// ---------------------------------------------------------------- randomness

/** mulberry32: small, fast, good enough to drive a simulation. */
export class Rng {
  private state: number
  constructor (readonly seed: number) { this.state = seed >>> 0 }
  next (): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Integer in [0, n). */
  int (n: number): number { return Math.floor(this.next() * n) }
  chance (p: number): boolean { return this.next() < p }
  pick<T> (items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[this.int(items.length)]!
  }

  shuffle<T> (items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const t = items[i]!; items[i] = items[j]!; items[j] = t
    }
    return items
  }

  bytes (n: number): Uint8Array {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = this.int(256)
    return out
  }
}

/** The seed a test uses: HGMIG_TEST_SEED overrides the test's default (to reproduce or explore). */
export function testSeed (fallback: number): number {
  const env = process.env.HGMIG_TEST_SEED
  if (env === undefined || env === '') return fallback
  const seed = Number(env)
  if (!Number.isSafeInteger(seed)) throw new Error(`HGMIG_TEST_SEED must be an integer, got ${env}`)
  return seed
}

/** Ed25519 keys derived from (seed, index): the same seed gives the same swarm. */
export async function memberKeys (n: number, seed: number, label = 'member'): Promise<PrivateKey[]> {
  const keys: PrivateKey[] = []
  for (let i = 0; i < n; i++) {
    const material = createHash('sha256').update(`hgmig-test:${label}:${seed}:${i}`).digest()
    keys.push(await generateKeyPairFromSeed('Ed25519', new Uint8Array(material)))
  }
  return keys
}

export const txText = (tx: Uint8Array): string => Buffer.from(tx).toString('utf8')

// ---------------------------------------------------------------- members

/** One ordered transaction as a comparable string: everything every honest member must agree on. */
export function orderedKey (t: OrderedTransaction): string {
  return `${t.position}|${t.eventId}|${t.creator}|${t.roundReceived}|${t.consensusTimestamp}|${txText(t.transaction)}`
}

export interface SimMember {
  readonly id: number
  readonly key: PrivateKey
  readonly signer: Signer
  /** Honest members run createEvent; Byzantine ones craft their events (see GossipSim.forkNext). */
  readonly byzantine: boolean
  hg: Hashgraph
  log: EventLog | null
  logPath: string | null
  /** Takes part in gossip (neither creates nor receives when false). */
  active: boolean
  /** The ordered transaction stream of the current Hashgraph instance (restarts from 0 on restart). */
  ordered: string[]
  /** Transactions (as text) ordered by the current instance. */
  orderedTxs: Set<string>
  /** Running hash by event position, over the member's whole life (restarts included). */
  hashes: Map<number, string>
  /** Positions where a later instance (after a restart) reported a different running hash. */
  hashConflicts: string[]
  stale: string[]
  anomalies: string[]
  forkReports: ForkEvidence[]
  /** Problems the callbacks saw (position gaps), reported by checkInvariants. */
  errors: string[]
  /** Global indices of the events this member holds. */
  known: Set<number>
  /** Per creator: index into GossipSim.byCreator[c] below which this member holds every event. */
  lo: Int32Array
  /** Global index of this member's newest event on the branch it builds on (-1: none yet). */
  tip: number
  txCounter: number
  lastNotedPosition: number
}

export interface SimOptions {
  n: number
  seed: number
  verifySignatures?: boolean
  /** Probability that a sync is delivered in a random (non-topological) order. Default 0.5. */
  shuffleProbability?: number
  /** Creators that are Byzantine forkers: no own Hashgraph key, they craft events themselves. */
  byzantine?: readonly number[]
  /** For each Byzantine member: probability that one of its events is a fork. Default 0.1. */
  forkProbability?: number
  /** Members with an EventLog (files in logDir). */
  persistent?: readonly number[]
  logDir?: string
  /** Extra Hashgraph options shared by all members (coinRoundFrequency, staleAfterRounds, ...). */
  hashgraph?: Partial<Pick<HashgraphInit, 'coinRoundFrequency' | 'staleAfterRounds' | 'limits' | 'maxParkedEvents' | 'maxParkedBytes'>>
  keys?: PrivateKey[]
}

export interface SimStats {
  steps: number
  syncs: number
  delivered: number
  shuffledSyncs: number
  parkedOnArrival: number
  releasedFromPark: number
  forkEvents: number
  resubmitted: number
}

export class GossipSim {
  readonly n: number
  readonly seed: number
  readonly rng: Rng
  readonly members: SimMember[] = []
  readonly publicKeys: PublicKey[]
  /** Every event ever created, in creation order. */
  readonly events: SignedEvent[] = []
  readonly indexOf = new Map<string, number>()
  /** Per creator, the global indices of its events in creation order. */
  readonly byCreator: number[][]
  /** Transactions submitted (as text), by creator. */
  readonly submitted = new Map<string, number>()
  readonly stats: SimStats = { steps: 0, syncs: 0, delivered: 0, shuffledSyncs: 0, parkedOnArrival: 0, releasedFromPark: 0, forkEvents: 0, resubmitted: 0 }
  /** The creator of a stale transaction submits it again (see recordStale). */
  resubmitStale = true
  /** Submit a transaction with every new event (off during flush phases). */
  submitTransactions = true
  /** Simulated time, ns. Advances a random 0.5–1.5 ms per step. */
  now = 1_700_000_000_000_000_000n
  private readonly skew: bigint[]
  private readonly options: SimOptions

  private constructor (options: SimOptions, keys: PrivateKey[]) {
    this.options = options
    this.n = options.n
    this.seed = options.seed
    this.rng = new Rng(options.seed)
    this.publicKeys = keys.map((k) => k.publicKey)
    this.byCreator = Array.from({ length: this.n }, () => [])
    // Clocks disagree by up to ±2 ms: consensus timestamps must not care.
    this.skew = Array.from({ length: this.n }, () => BigInt(this.rng.int(4_000_000) - 2_000_000))
    const byzantine = new Set(options.byzantine ?? [])
    const persistent = new Set(options.persistent ?? [])
    for (let id = 0; id < this.n; id++) {
      const key = keys[id]!
      const member: SimMember = {
        id,
        key,
        signer: ed25519Signer(key),
        byzantine: byzantine.has(id),
        hg: undefined as unknown as Hashgraph,
        log: null,
        logPath: persistent.has(id) ? `${options.logDir ?? missingLogDir()}/member-${id}.sqlite` : null,
        active: true,
        ordered: [],
        orderedTxs: new Set(),
        hashes: new Map(),
        hashConflicts: [],
        stale: [],
        anomalies: [],
        forkReports: [],
        errors: [],
        known: new Set(),
        lo: new Int32Array(this.n),
        tip: -1,
        txCounter: 0,
        lastNotedPosition: 0
      }
      this.members.push(member)
      if (member.logPath !== null) member.log = new EventLog(member.logPath)
      member.hg = this.newHashgraph(member)
      member.hg.start()
    }
  }

  static async create (options: SimOptions): Promise<GossipSim> {
    const keys = options.keys ?? await memberKeys(options.n, options.seed)
    return new GossipSim(options, keys)
  }

  /** "seed=… n=…" for assertion messages. */
  get tag (): string { return `seed=${this.seed} n=${this.n}` }

  clockOf (id: number): () => bigint {
    return () => this.now + this.skew[id]!
  }

  /** A Hashgraph for the member (its log, if any, must be open in member.log); not started. */
  newHashgraph (member: SimMember, overrides: Partial<HashgraphInit> = {}): Hashgraph {
    const hg: Hashgraph = new Hashgraph({
      members: this.publicKeys,
      self: member.byzantine ? undefined : { creator: member.id, key: member.key },
      verifySignatures: this.options.verifySignatures ?? true,
      ...this.options.hashgraph,
      log: member.log ?? undefined,
      clock: this.clockOf(member.id),
      onTransactions: (txs) => { this.recordOrdered(member, hg, txs) },
      onStaleTransactions: (txs) => { this.recordStale(member, hg, txs) },
      onFork: (evidence) => { member.forkReports.push(evidence) },
      onAnomaly: (message) => { member.anomalies.push(message) },
      ...overrides
    })
    return hg
  }

  private recordOrdered (member: SimMember, hg: Hashgraph, txs: OrderedTransaction[]): void {
    if (member.hg !== hg) return // a dropped (crashed) instance
    for (const t of txs) {
      if (t.position !== member.ordered.length) member.errors.push(`member ${member.id}: transaction position ${t.position}, expected ${member.ordered.length}`)
      member.ordered.push(orderedKey(t))
      member.orderedTxs.add(txText(t.transaction))
    }
    this.noteSnapshot(member, hg.snapshot())
  }

  /**
   * Stale transactions are never ordered anywhere; the application is told so it can submit them
   * again. The creator does (when resubmitStale is on), the way the real agent will.
   */
  private recordStale (member: SimMember, hg: Hashgraph, txs: Array<{ transaction: Uint8Array, eventId: string }>): void {
    if (member.hg !== hg) return
    for (const t of txs) {
      member.stale.push(`${t.eventId}:${txText(t.transaction)}`)
      const g = this.indexOf.get(t.eventId)
      if (this.resubmitStale && !member.byzantine && g !== undefined && this.events[g]!.creator === member.id) {
        member.hg.submit(t.transaction)
        this.stats.resubmitted++
      }
    }
  }

  noteSnapshot (member: SimMember, snapshot: ConsensusSnapshot = member.hg.snapshot()): void {
    member.lastNotedPosition = snapshot.eventPosition
    const previous = member.hashes.get(snapshot.eventPosition)
    if (previous === undefined) member.hashes.set(snapshot.eventPosition, snapshot.runningHash)
    else if (previous !== snapshot.runningHash) member.hashConflicts.push(`position ${snapshot.eventPosition}: ${previous} then ${snapshot.runningHash}`)
  }

  private noteIfOrdered (member: SimMember): void {
    if (member.hg.orderedEvents !== member.lastNotedPosition) this.noteSnapshot(member)
  }

  // ---------------------------------------------------------------- knowledge

  private register (event: SignedEvent): number {
    const g = this.events.length
    this.events.push(event)
    this.indexOf.set(event.id, g)
    this.byCreator[event.creator]!.push(g)
    return g
  }

  markKnown (member: SimMember, g: number): void {
    member.known.add(g)
    const c = this.events[g]!.creator
    const chain = this.byCreator[c]!
    let lo = member.lo[c]!
    while (lo < chain.length && member.known.has(chain[lo]!)) lo++
    member.lo[c] = lo
  }

  /** Rebuilds a member's knowledge from scratch (after a crash): the ids its Hashgraph holds. */
  resetKnowledge (member: SimMember, ids: Iterable<string>): void {
    member.known = new Set()
    member.lo = new Int32Array(this.n)
    const indices: number[] = []
    for (const id of ids) {
      const g = this.indexOf.get(id)
      if (g === undefined) throw new Error(`${this.tag}: member ${member.id} holds unknown event ${id}`)
      indices.push(g)
    }
    indices.sort((a, b) => a - b)
    for (const g of indices) this.markKnown(member, g)
  }

  /** Global indices `from` holds and `to` lacks, in creation order. */
  missingAt (from: SimMember, to: SimMember): number[] {
    const diff: number[] = []
    for (let c = 0; c < this.n; c++) {
      const chain = this.byCreator[c]!
      for (let k = to.lo[c]!; k < chain.length; k++) {
        const g = chain[k]!
        if (from.known.has(g) && !to.known.has(g)) diff.push(g)
      }
    }
    return diff.sort((a, b) => a - b)
  }

  /**
   * `to` receives every event `from` holds that it lacks, as wire bytes, in creation order or (with
   * probability shuffleProbability) shuffled. Everything sent is closed under ancestry together with
   * what `to` holds, so nothing may stay parked afterwards.
   */
  sync (from: SimMember, to: SimMember, options: { exclude?: ReadonlySet<number>, shuffle?: boolean } = {}): number {
    let diff = this.missingAt(from, to)
    if (options.exclude !== undefined) diff = diff.filter((g) => !options.exclude!.has(g))
    const shuffle = options.shuffle ?? this.rng.chance(this.options.shuffleProbability ?? 0.5)
    if (shuffle && diff.length > 1) {
      this.rng.shuffle(diff)
      this.stats.shuffledSyncs++
    }
    this.stats.syncs++
    for (const g of diff) this.deliver(to, g)
    if (to.hg.parkedCount !== 0) {
      throw new Error(`${this.tag}: member ${to.id} still has ${to.hg.parkedCount} parked events after a complete sync from ${from.id}`)
    }
    this.noteIfOrdered(to)
    return diff.length
  }

  /** Hands one event (wire bytes) to a member and records what got inserted. */
  deliver (to: SimMember, g: number): void {
    if (to.known.has(g)) return
    const result = to.hg.receive(this.events[g]!.bytes)
    this.stats.delivered++
    if (result.status === 'parked') {
      this.stats.parkedOnArrival++
      return
    }
    this.markKnown(to, g)
    for (const released of result.released) {
      const r = this.indexOf.get(released.id)
      if (r === undefined) throw new Error(`${this.tag}: member ${to.id} released an event nobody created: ${released.id}`)
      this.markKnown(to, r)
      this.stats.releasedFromPark++
    }
  }

  // ---------------------------------------------------------------- creating

  private nextTransaction (member: SimMember): Uint8Array | null {
    if (!this.submitTransactions) return null
    const text = `tx:${member.id}:${member.txCounter++}`
    this.submitted.set(text, member.id)
    return new TextEncoder().encode(text)
  }

  /** The member's next event, with `otherParent` (a global index it holds) as other-parent. */
  createEvent (member: SimMember, otherParent: number | null): SignedEvent {
    if (member.byzantine) return this.forkNext(member, otherParent, null)
    const tx = this.nextTransaction(member)
    if (tx !== null) member.hg.submit(tx)
    const event = member.hg.createEvent({ otherParent: otherParent === null ? null : this.events[otherParent]!.id })
    const g = this.register(event)
    this.markKnown(member, g)
    member.tip = g
    this.noteIfOrdered(member)
    return event
  }

  /**
   * A Byzantine member's event, crafted and signed by hand on its current tip. With `forkTo` (a
   * split of the honest members in two), it also crafts a second event on the same self-parent and
   * sends each honest half one of the two (with whatever ancestors they lack); it keeps building on
   * the first. Its own Hashgraph (an observer) takes both.
   */
  forkNext (member: SimMember, otherParent: number | null, forkTo: [SimMember[], SimMember[]] | null): SignedEvent {
    const selfParent = member.tip < 0 ? null : this.events[member.tip]!
    const craft = (): SignedEvent => {
      const tx = this.nextTransaction(member)
      const now = this.clockOf(member.id)() + BigInt(this.rng.int(1000))
      return signEvent({
        creator: member.id,
        selfParent: selfParent?.hash ?? null,
        otherParent: otherParent === null ? null : this.events[otherParent]!.hash,
        timestamp: selfParent !== null && now <= selfParent.timestamp ? selfParent.timestamp + 1n : now,
        transactions: tx === null ? [] : [tx]
      }, member.signer)
    }
    const first = craft()
    const g1 = this.register(first)
    this.deliverOwn(member, g1)
    member.tip = g1
    if (forkTo !== null) {
      const second = craft()
      const g2 = this.register(second)
      this.deliverOwn(member, g2)
      this.stats.forkEvents++
      for (const to of forkTo[0]) if (to.active) this.sync(member, to, { exclude: new Set([g2]) })
      for (const to of forkTo[1]) if (to.active) this.sync(member, to, { exclude: new Set([g1]) })
    }
    this.noteIfOrdered(member)
    return first
  }

  private deliverOwn (member: SimMember, g: number): void {
    const result = member.hg.receive(this.events[g]!.bytes)
    if (result.status !== 'inserted') throw new Error(`${this.tag}: Byzantine member ${member.id}'s own event was parked`)
    this.markKnown(member, g)
  }

  // ---------------------------------------------------------------- gossip

  activeMembers (): SimMember[] { return this.members.filter((m) => m.active) }
  honestMembers (): SimMember[] { return this.members.filter((m) => !m.byzantine) }

  /**
   * One gossip step between two distinct active members chosen at random: i syncs everything j
   * holds, then creates an event with j's newest event as other-parent. A Byzantine i forks with
   * probability forkProbability, splitting the honest members at random.
   */
  step (): void {
    const active = this.activeMembers()
    if (active.length < 2) throw new Error(`${this.tag}: fewer than two active members`)
    const i = this.rng.pick(active)
    let j = this.rng.pick(active)
    while (j === i) j = this.rng.pick(active)
    this.gossip(i, j)
  }

  gossip (i: SimMember, j: SimMember): void {
    this.now += 500_000n + BigInt(this.rng.int(1_000_000))
    this.stats.steps++
    this.sync(j, i)
    const otherParent = j.tip >= 0 ? j.tip : null
    if (i.byzantine && this.rng.chance(this.options.forkProbability ?? 0.1)) {
      const honest = this.rng.shuffle(this.honestMembers().filter((m) => m.active))
      const half = Math.ceil(honest.length / 2)
      this.forkNext(i, otherParent, [honest.slice(0, half), honest.slice(half)])
    } else {
      this.createEvent(i, otherParent)
    }
  }

  run (steps: number): void {
    for (let s = 0; s < steps; s++) this.step()
  }

  /** Gossips until `done()` holds (checked every `every` steps); returns the steps taken, or -1 at the bound. */
  runUntil (done: () => boolean, maxSteps: number, every = 10): number {
    for (let s = 0; s < maxSteps; s += every) {
      if (done()) return s
      this.run(every)
    }
    return done() ? maxSteps : -1
  }

  /** True when every given member has ordered every submitted transaction by an honest creator. */
  allHonestTransactionsOrdered (members: readonly SimMember[] = this.honestMembers()): boolean {
    const honest = new Set(this.honestMembers().map((m) => m.id))
    for (const m of members) {
      for (const [tx, creator] of this.submitted) {
        if (honest.has(creator) && !m.orderedTxs.has(tx)) return false
      }
    }
    return true
  }

  /** Submitted transactions of honest creators that `member` has not ordered. */
  unordered (member: SimMember): string[] {
    const honest = new Set(this.honestMembers().map((m) => m.id))
    return [...this.submitted].filter(([tx, creator]) => honest.has(creator) && !member.orderedTxs.has(tx)).map(([tx]) => tx)
  }

  // ---------------------------------------------------------------- restart

  /**
   * Restarts a persistent member from its log. Clean: stop() and close() first. Crash: the old
   * instance and its connection are simply abandoned (whatever it had not written is lost).
   * Returns the transactions the new instance emitted while replaying, and the old instance's stream.
   */
  restart (member: SimMember, mode: 'clean' | 'crash'): { before: ConsensusSnapshot, beforeOrdered: string[], replayed: string[] } {
    if (member.logPath === null || member.log === null) throw new Error(`member ${member.id} has no event log`)
    const before = member.hg.snapshot()
    const beforeOrdered = member.ordered
    if (mode === 'clean') {
      member.hg.stop()
      member.log.close()
    }
    member.log = new EventLog(member.logPath)
    member.ordered = []
    member.orderedTxs = new Set()
    member.hg = this.newHashgraph(member)
    member.lastNotedPosition = 0
    member.hg.start()
    this.noteSnapshot(member)
    if (mode === 'crash') {
      // Received events not yet flushed are gone; the log tells what survived.
      const ids: string[] = []
      for (const { hash } of member.log.events()) ids.push(Buffer.from(hash).toString('hex'))
      this.resetKnowledge(member, ids)
      const last = member.hg.lastEventOf(member.id)
      member.tip = last === undefined ? -1 : this.indexOf.get(last.id)!
    }
    return { before, beforeOrdered, replayed: [...member.ordered] }
  }

  /** Stops and closes every member's log. */
  close (): void {
    for (const m of this.members) {
      m.hg.stop()
      m.log?.close()
    }
  }

  // ---------------------------------------------------------------- checks

  /**
   * The safety properties every honest member must satisfy; returns a list of violations (empty when
   * all hold) and how much was actually compared, so a test can also insist the check was not vacuous.
   */
  checkAgreement (members: readonly SimMember[] = this.honestMembers()): { violations: string[], comparedPositions: number, longest: number } {
    const violations: string[] = []
    let longest: SimMember | undefined
    for (const m of members) if (longest === undefined || m.ordered.length > longest.ordered.length) longest = m
    if (longest === undefined) return { violations, comparedPositions: 0, longest: 0 }
    for (const m of members) {
      for (let k = 0; k < m.ordered.length; k++) {
        if (m.ordered[k] !== longest.ordered[k]) {
          violations.push(`${this.tag}: member ${m.id}'s order is not a prefix of member ${longest.id}'s: first difference at transaction ${k}: ${m.ordered[k]} vs ${longest.ordered[k]}`)
          break
        }
      }
      const seen = new Set<string>()
      for (const tx of m.ordered) {
        const text = tx.slice(tx.lastIndexOf('|') + 1)
        if (seen.has(text)) { violations.push(`${this.tag}: member ${m.id} ordered ${text} twice`); break }
        seen.add(text)
      }
      for (const e of m.errors) violations.push(`${this.tag}: ${e}`)
      for (const c of m.hashConflicts) violations.push(`${this.tag}: member ${m.id} running hash changed at ${c}`)
      for (const a of m.anomalies) violations.push(`${this.tag}: member ${m.id} anomaly: ${a}`)
    }
    const reference = new Map<number, { hash: string, member: number }>()
    let comparedPositions = 0
    for (const m of members) {
      for (const [position, hash] of m.hashes) {
        const ref = reference.get(position)
        if (ref === undefined) { reference.set(position, { hash, member: m.id }); continue }
        comparedPositions++
        if (ref.hash !== hash) violations.push(`${this.tag}: running hash at event position ${position}: member ${ref.member} has ${ref.hash}, member ${m.id} has ${hash}`)
      }
    }
    return { violations, comparedPositions, longest: longest.ordered.length }
  }
}

function missingLogDir (): never {
  throw new Error('persistent members need SimOptions.logDir')
}
