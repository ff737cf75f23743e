/**
 * Who is a member in which round. Creator ids are dense (0..slots-1) and never reused: adding a
 * member opens a new slot, removing one closes it from a round on. Changes are made by consensus
 * and take effect MEMBERSHIP_DELAY_ROUNDS after the round in which they were ordered; the engine
 * computes nothing for a round whose member set is not final yet (see Consensus), so every site
 * uses the same member set for every round.
 */
export interface Membership {
  readonly slots: number
  isMember: (creator: number, round: number) => boolean
  count: (round: number) => number
}

/**
 * Rounds between the round in which a membership change is ordered and the first round it
 * governs. It must exceed the rounds fame can take to be decided, or a swarm would wait for itself:
 * decisions take 2–4 rounds, and a coin round comes every c = 10, so 32 leaves three coin rounds.
 */
export const MEMBERSHIP_DELAY_ROUNDS = 32

export interface MembershipChange { readonly round: number, readonly creator: number, readonly member: boolean }
type Change = MembershipChange

export class MembershipSchedule implements Membership {
  private slotCount: number
  private readonly changes: Change[] = []
  private readonly countCache = new Map<number, number>()

  constructor (private readonly genesisMembers: number) {
    if (!Number.isInteger(genesisMembers) || genesisMembers < 1) throw new RangeError(`member count must be a positive integer, got ${genesisMembers}`)
    this.slotCount = genesisMembers
  }

  get slots (): number { return this.slotCount }
  get genesis (): number { return this.genesisMembers }
  /** Every change made so far, in the order they apply (for a frontier export). */
  get changeList (): readonly MembershipChange[] { return this.changes }

  /** The schedule a frontier recorded: the genesis members, then the same changes in the same order. */
  static restore (genesisMembers: number, slots: number, changes: readonly MembershipChange[]): MembershipSchedule {
    const schedule = new MembershipSchedule(genesisMembers)
    if (!Number.isInteger(slots) || slots < genesisMembers) throw new RangeError(`slot count ${slots} is below the ${genesisMembers} genesis members`)
    schedule.slotCount = slots
    for (const change of changes) {
      if (!Number.isInteger(change.creator) || change.creator < 0 || change.creator >= slots) throw new RangeError(`membership change for creator ${change.creator} names no slot`)
      schedule.changes.push({ ...change })
    }
    return schedule
  }

  isMember (creator: number, round: number): boolean {
    if (!Number.isInteger(creator) || creator < 0 || creator >= this.slotCount) return false
    // Genesis members belong from round 1; slots opened later only from their change's round.
    let member = creator < this.genesisMembers
    for (const change of this.changes) {
      if (change.round > round) break
      if (change.creator === creator) member = change.member
    }
    return member
  }

  count (round: number): number {
    let count = this.countCache.get(round)
    if (count === undefined) {
      count = 0
      for (let c = 0; c < this.slotCount; c++) if (this.isMember(c, round)) count++
      this.countCache.set(round, count)
    }
    return count
  }

  /** Opens a new creator slot, a member from `fromRound` on. */
  add (fromRound: number): number {
    const creator = this.slotCount++
    this.record({ round: fromRound, creator, member: true })
    return creator
  }

  remove (creator: number, fromRound: number): void {
    if (!Number.isInteger(creator) || creator < 0 || creator >= this.slotCount) throw new RangeError(`creator ${creator} is not a member slot`)
    this.record({ round: fromRound, creator, member: false })
  }

  private record (change: Change): void {
    this.changes.push(change)
    // Stable sort: changes of one round apply in the order they were made.
    this.changes.sort((a, b) => a.round - b.round)
    for (const round of [...this.countCache.keys()]) if (round >= change.round) this.countCache.delete(round)
  }
}
