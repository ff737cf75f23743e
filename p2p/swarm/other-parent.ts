/**
 * Picks the other-parent of a member's next event (HashgraphGossip's `otherParent: 'rotate'`), or
 * of each event of an answer (`'each'`: takeEach).
 * Among the members whose newest event no own event references yet: the event with the highest
 * generation (the longest ancestry, so the most the own event learns), and between equals the
 * member taken least recently.
 *
 * Why: with the newest event received as the other-parent (the default), events that arrive
 * together make the last to arrive come from the same member each time, and two members then
 * answer each other while a third one's events stay out of their ancestry — with three members a
 * round needs all three (a supermajority of three is three), so the rounds stall. With the real
 * engine in lock-step (test/swarm-other-parent.test.ts) the newest-received choice ordered
 * nothing in 200 steps at 3–7 members, this one in 12–23; in a simulation with CPU costs and
 * jittered delivery it was never worse and much better where CPU is plentiful (3 members on 3
 * cores: p50 31 vs 420 time units). On the shared 2-core machine of bench/RESULTS.md (issue 4,
 * session 5), where every member is starved of CPU, it was not measurably better (hops per
 * ordering 14.5–16.3 vs 14.0), so it is not the default yet.
 */
export class OtherParentChooser {
  /** Per creator: its newest event not yet taken as an other-parent, with its generation. */
  private readonly unreferenced = new Map<number, { id: string, generation: number }>()
  /** Per creator: when (a counter) one of its events was last taken. */
  private readonly lastTaken = new Map<number, number>()
  private taken = 0
  /** The newest event received from another member: the fallback when nothing is new. */
  private newest: string | null = null

  /**
   * An event of another member is in the hashgraph. `generation`: one more than its parents'
   * highest (it grows along each creator's chain).
   */
  noteReceived (id: string, creator: number, generation: number): void {
    this.newest = id
    const known = this.unreferenced.get(creator)
    // A parked event released late may be older than one already noted.
    if (known !== undefined && known.generation >= generation) return
    this.unreferenced.set(creator, { id, generation })
  }

  /** The newest event received from another member (null: none yet). */
  get newestReceived (): string | null { return this.newest }

  /** Whether some member has an event that no own event references yet. */
  get hasNew (): boolean { return this.unreferenced.size > 0 }

  /**
   * The other-parents of an answer of one own event per member with a new event (HashgraphGossip's
   * `otherParent: 'each'`): up to `max`, each taken as take() would, so that the last own event of
   * the answer has every new event in its ancestry. Nothing new: one, the newest received (null:
   * none received yet).
   */
  takeEach (max: number, usable: (id: string) => boolean = () => true): Array<string | null> {
    const parents: string[] = []
    while (parents.length < max && this.hasNew) {
      const id = this.take(usable)
      if (id === null) break
      parents.push(id)
    }
    return parents.length > 0 ? parents : [this.take(usable)]
  }

  /**
   * The other-parent for the next own event (null: none received yet), taken: the next call
   * prefers another creator. `usable` says whether an id can still be a parent here.
   */
  take (usable: (id: string) => boolean = () => true): string | null {
    let best: number | null = null
    let bestGeneration = -Infinity
    let bestTaken = Infinity
    for (const [creator, candidate] of this.unreferenced) {
      if (!usable(candidate.id)) {
        this.unreferenced.delete(creator)
        continue
      }
      const when = this.lastTaken.get(creator) ?? -1
      if (candidate.generation > bestGeneration || (candidate.generation === bestGeneration && when < bestTaken)) {
        best = creator
        bestGeneration = candidate.generation
        bestTaken = when
      }
    }
    if (best === null) return this.newest !== null && usable(this.newest) ? this.newest : null
    const { id } = this.unreferenced.get(best)!
    this.unreferenced.delete(best)
    this.lastTaken.set(best, ++this.taken)
    return id
  }
}
