/**
 * Picks the other-parent of a member's next event. Taking simply the newest event received lets
 * two members answer each other over and over while a third one's events are left out whenever
 * they happen to arrive first: with three members a round needs every member's events in the
 * ancestry (a supermajority of three is all three), so a pair that keeps answering itself stalls
 * the rounds. A simulation of the engine (three members, events arriving almost together) took
 * the p50 latency from 32 to 420–640 time units that way; at five and ten members it did not order at all
 * within the window. Instead: among the members whose newest event we have not referenced yet,
 * the one referenced least recently. Every member's events then enter our ancestry in turn.
 */
export class OtherParentChooser {
  /** Per creator: its newest event not yet taken as an other-parent. */
  private readonly unreferenced = new Map<number, { id: string, timestamp: bigint }>()
  /** Per creator: when (a counter) one of its events was last taken. */
  private readonly lastTaken = new Map<number, number>()
  private taken = 0
  /** The newest event received from another member: the fallback when nothing is new. */
  private newest: string | null = null

  /**
   * An event of another member is in the hashgraph. `timestamp`: its creator's clock, which grows
   * along the creator's chain (the engine refuses an event not later than its self-parent).
   */
  noteReceived (id: string, creator: number, timestamp: bigint): void {
    this.newest = id
    const known = this.unreferenced.get(creator)
    // A parked event released late may be older than one already noted.
    if (known !== undefined && known.timestamp >= timestamp) return
    this.unreferenced.set(creator, { id, timestamp })
  }

  /** Whether some member has an event that no own event references yet. */
  get hasNew (): boolean { return this.unreferenced.size > 0 }

  /**
   * The other-parent for the next own event (null: none received yet), taken: the next call
   * prefers another creator. `usable` says whether an id can still be a parent here.
   */
  take (usable: (id: string) => boolean = () => true): string | null {
    let best: number | null = null
    let bestTaken = Infinity
    for (const [creator, candidate] of this.unreferenced) {
      if (!usable(candidate.id)) {
        this.unreferenced.delete(creator)
        continue
      }
      const when = this.lastTaken.get(creator) ?? -1
      if (when < bestTaken) {
        best = creator
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
