/**
 * Places hashgraph events for drawing: one column per member, and each event one row above the
 * higher of its parents (so every edge points down to an older event, and concurrent events of
 * different members share rows). Parents outside the fetched window count as the bottom.
 */
import type { HashgraphEventView } from './contract'

export interface PlacedEvent { event: HashgraphEventView, column: number, row: number }
export interface PlacedEdge { from: PlacedEvent, to: PlacedEvent, kind: 'self' | 'other' }
export interface HashgraphLayout { events: PlacedEvent[], edges: PlacedEdge[], rows: number }

export function layoutHashgraph (events: HashgraphEventView[]): HashgraphLayout {
  const byId = new Map(events.map((e) => [e.id, e]))
  const rows = new Map<string, number>()
  // Iterative depth-first: a long self-parent chain must not overflow the stack.
  const rowOf = (start: HashgraphEventView): number => {
    const stack: HashgraphEventView[] = [start]
    while (stack.length > 0) {
      const event = stack[stack.length - 1]!
      if (rows.has(event.id)) { stack.pop(); continue }
      const parents = [event.selfParent, event.otherParent].flatMap((id) => {
        const parent = id === null ? undefined : byId.get(id)
        return parent === undefined ? [] : [parent]
      })
      const missing = parents.filter((p) => !rows.has(p.id))
      if (missing.length > 0) { stack.push(...missing); continue }
      rows.set(event.id, parents.reduce((max, p) => Math.max(max, rows.get(p.id)! + 1), 0))
      stack.pop()
    }
    return rows.get(start.id)!
  }
  const placed = new Map<string, PlacedEvent>()
  for (const event of events) placed.set(event.id, { event, column: event.creator, row: rowOf(event) })
  const edges: PlacedEdge[] = []
  for (const p of placed.values()) {
    for (const [id, kind] of [[p.event.selfParent, 'self'], [p.event.otherParent, 'other']] as const) {
      const parent = id === null ? undefined : placed.get(id)
      if (parent !== undefined) edges.push({ from: p, to: parent, kind })
    }
  }
  const all = [...placed.values()]
  return { events: all, edges, rows: all.reduce((max, p) => Math.max(max, p.row + 1), 0) }
}

/** A round's colour: neighbouring rounds far apart on the hue circle. */
export function roundColour (round: number | null): string {
  if (round === null) return 'var(--undecided)'
  return `hsl(${(round * 137.508) % 360} 65% 50%)`
}

/** p-quantile (0..1) of a sorted list, nearest rank. */
export function quantile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}
