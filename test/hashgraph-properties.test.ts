/**
 * Safety and liveness of the hashgraph engine over simulated gossip (test/support/gossip-sim.ts):
 * random peers, random (often non-topological) delivery order, deterministic seeds.
 * Reproduce a failure with HGMIG_TEST_SEED=<seed printed in the message>.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Consensus, EventRejectedError, type ConsensusEventInput, type ConsensusOptions } from '../p2p/hashgraph/index.js'
import { GossipSim, Rng, testSeed, type SimMember } from './support/gossip-sim.js'

function assertAgreement (sim: GossipSim, members: readonly SimMember[] = sim.honestMembers(), minCompared = 1): void {
  const { violations, comparedPositions } = sim.checkAgreement(members)
  assert.deepEqual(violations, [], `${sim.tag}: honest members disagree`)
  assert.ok(comparedPositions >= minCompared, `${sim.tag}: only ${comparedPositions} running hashes compared (expected ≥ ${minCompared})`)
}

/** Flush: gossip without new transactions until every member ordered everything; the bound must not be hit. */
function flush (sim: GossipSim, members: readonly SimMember[], maxSteps: number): number {
  sim.submitTransactions = false
  const steps = sim.runUntil(() => sim.allHonestTransactionsOrdered(members), maxSteps)
  sim.submitTransactions = true
  const stuck = members.map((m) => `member ${m.id}: ${sim.unordered(m).length} unordered (e.g. ${sim.unordered(m).slice(0, 3).join(', ')})`)
  assert.notEqual(steps, -1, `${sim.tag}: transactions still unordered after ${maxSteps} flush steps: ${stuck.join('; ')}`)
  return steps
}

for (const [n, seed, events] of [[4, 4004, 2000], [7, 7007, 2100], [10, 10010, 2500]] as const) {
  test(`gossip n=${n}: every honest member's order is a prefix of the others', running hashes agree, every transaction is ordered`, async () => {
    const s = testSeed(seed)
    const sim = await GossipSim.create({ n, seed: s, shuffleProbability: 0.5 })
    const checkEvery = 60 * n
    let lastOrdered = 0
    while (sim.events.length < events) {
      sim.run(checkEvery)
      // Safety holds at every point of the run, not only at the end.
      assertAgreement(sim, sim.members, 0)
      const ordered = Math.max(...sim.members.map((m) => m.hg.orderedEvents))
      assert.ok(ordered > lastOrdered, `${sim.tag}: no event ordered during steps ${sim.stats.steps - checkEvery}..${sim.stats.steps}`)
      lastOrdered = ordered
    }
    const submitted = sim.submitted.size
    const flushSteps = flush(sim, sim.members, 40 * n * n)

    assertAgreement(sim, sim.members, 10)
    for (const m of sim.members) {
      assert.equal(m.orderedTxs.size, submitted, `${sim.tag}: member ${m.id} ordered ${m.orderedTxs.size} of ${submitted} transactions`)
      assert.deepEqual(m.stale, [], `${sim.tag}: member ${m.id} saw stale transactions in an all-honest run`)
      assert.deepEqual(m.hg.forks, [], `${sim.tag}: member ${m.id} recorded a fork in an all-honest run`)
      assert.equal(m.hg.parkedCount, 0, `${sim.tag}: member ${m.id} has parked events`)
    }
    // Same number of ordered events → identical snapshots (positions, round, running hash).
    const byPosition = new Map<number, SimMember>()
    let comparedSnapshots = 0
    for (const m of sim.members) {
      const other = byPosition.get(m.hg.orderedEvents)
      if (other === undefined) { byPosition.set(m.hg.orderedEvents, m); continue }
      assert.deepEqual(m.hg.snapshot(), other.hg.snapshot(), `${sim.tag}: members ${other.id} and ${m.id} ordered the same number of events but their snapshots differ`)
      comparedSnapshots++
    }
    // The run really exercised out-of-order delivery and parking.
    assert.ok(sim.stats.shuffledSyncs > 100, `${sim.tag}: only ${sim.stats.shuffledSyncs} shuffled syncs`)
    assert.ok(sim.stats.parkedOnArrival > 100 && sim.stats.releasedFromPark === sim.stats.parkedOnArrival,
      `${sim.tag}: parked ${sim.stats.parkedOnArrival}, released ${sim.stats.releasedFromPark}`)
    console.log(`# ${sim.tag}: ${sim.events.length} events, ${sim.stats.steps} steps (flush ${flushSteps}), ${submitted} transactions, ` +
      `${Math.max(...sim.members.map((m) => m.hg.orderedEvents))} events ordered, round ${Math.max(...sim.members.map((m) => m.hg.lastOrderedRound))}, ` +
      `${sim.stats.parkedOnArrival} parked on arrival, ${comparedSnapshots} equal snapshots compared`)
    sim.close()
  })
}

test('liveness threshold n=4: with 2 of 4 stopped nothing is ordered; when they return ordering resumes and the partition\'s transactions are ordered', async () => {
  const s = testSeed(4242)
  const sim = await GossipSim.create({ n: 4, seed: s })
  sim.run(300)
  const [a, b, c, d] = sim.members as [SimMember, SimMember, SimMember, SimMember]
  assert.ok(a.hg.orderedEvents > 0, `${sim.tag}: nothing ordered before the partition`)
  const submittedBefore = new Set(sim.submitted.keys())

  c.active = false
  d.active = false
  // Events in flight may still be decided right after the stop: let that settle first.
  sim.run(100)
  const settled = [a.hg.orderedEvents, b.hg.orderedEvents]
  const settledRound = Math.max(a.hg.lastRound, b.hg.lastRound)
  const eventsBefore = sim.events.length
  for (let k = 0; k < 10; k++) {
    sim.run(60)
    assert.deepEqual([a.hg.orderedEvents, b.hg.orderedEvents], settled,
      `${sim.tag}: 2 of 4 members ordered more events (${settled} → ${a.hg.orderedEvents},${b.hg.orderedEvents}) after ${(k + 1) * 60} partition steps`)
  }
  assert.equal(Math.max(a.hg.lastRound, b.hg.lastRound), settledRound, `${sim.tag}: rounds advanced with 2 of 4 members`)
  assert.equal(sim.events.length - eventsBefore, 600, `${sim.tag}: the two live members kept creating events`)
  const partitionTxs = [...sim.submitted.keys()].filter((tx) => !submittedBefore.has(tx))
  assert.ok(partitionTxs.length >= 600)
  assert.ok(partitionTxs.every((tx) => !a.orderedTxs.has(tx) && !b.orderedTxs.has(tx)), `${sim.tag}: a partition transaction was ordered`)

  // The stopped members come back and catch up.
  c.active = true
  d.active = true
  sim.sync(a, c)
  sim.sync(b, d)
  sim.submitTransactions = false
  const steps = sim.runUntil(() => sim.allHonestTransactionsOrdered(), 2000)
  assert.notEqual(steps, -1, `${sim.tag}: partition transactions not ordered after the members returned: ${sim.members.map((m) => sim.unordered(m).length)}`)
  for (const m of sim.members) {
    for (const tx of partitionTxs) assert.ok(m.orderedTxs.has(tx), `${sim.tag}: member ${m.id} never ordered ${tx}`)
    assert.ok(m.hg.orderedEvents > settled[0]!, `${sim.tag}: member ${m.id} did not resume ordering`)
  }
  const { violations, comparedPositions } = sim.checkAgreement()
  assert.deepEqual(violations, [])
  assert.ok(comparedPositions > 0)
  sim.close()
})

test('liveness n=7: with 2 of 7 stopped ordering continues; the stopped pair rejoins after many rounds', async () => {
  const s = testSeed(7171)
  const sim = await GossipSim.create({ n: 7, seed: s })
  sim.run(300)
  const stopped = [sim.members[5]!, sim.members[6]!]
  const live = sim.members.slice(0, 5)
  // A live member gossips with each before they go, so their newest events are referenced by an
  // event of a live member (an event nobody builds on is never ordered: it goes stale).
  for (const m of stopped) sim.gossip(live[0]!, m)
  for (const m of stopped) m.active = false
  const orderedAtStop = live.map((m) => m.hg.orderedEvents)
  const roundAtStop = live[0]!.hg.lastOrderedRound
  const submittedBefore = new Set(sim.submitted.keys())
  sim.run(800)
  for (const [k, m] of live.entries()) {
    assert.ok(m.hg.orderedEvents > orderedAtStop[k]! + 400, `${sim.tag}: member ${m.id} ordered only ${m.hg.orderedEvents - orderedAtStop[k]!} events with 5 of 7 live`)
  }
  assert.ok(live[0]!.hg.lastOrderedRound > roundAtStop + 10, `${sim.tag}: rounds ordered ${roundAtStop} → ${live[0]!.hg.lastOrderedRound}`)
  const partitionTxs = [...sim.submitted.keys()].filter((tx) => !submittedBefore.has(tx))
  assert.ok(flushOk(sim, live), `${sim.tag}: live members did not order the partition's transactions: ${live.map((m) => sim.unordered(m).length)}`)
  for (const m of live) for (const tx of partitionTxs) assert.ok(m.orderedTxs.has(tx), `${sim.tag}: member ${m.id} never ordered ${tx}`)

  // They come back: catch up on hundreds of events and build on their old (pruned) tips.
  for (const m of stopped) { m.active = true; sim.sync(live[0]!, m) }
  sim.run(200)
  assert.ok(flushOk(sim, sim.members), `${sim.tag}: not everything ordered after the rejoin: ${sim.members.map((m) => sim.unordered(m).length)}`)
  const { violations, comparedPositions } = sim.checkAgreement()
  assert.deepEqual(violations, [])
  assert.ok(comparedPositions > 0)
  for (const m of sim.members) assert.deepEqual(m.hg.forks, [], `${sim.tag}: member ${m.id} recorded a fork`)
  // Events the returning pair built only on each other's old tips belong to a long-ordered round:
  // they go stale, identically everywhere, and their creator submits the transactions again.
  const stale = sim.members.map((m) => [...m.stale].sort().join(','))
  assert.ok(stale.every((x) => x === stale[0]), `${sim.tag}: members disagree on stale transactions: ${stale.join(' / ')}`)
  console.log(`# ${sim.tag}: ${sim.members[0]!.stale.length} stale transactions after the rejoin, resubmitted ${sim.stats.resubmitted}`)
  sim.close()
})

function flushOk (sim: GossipSim, members: readonly SimMember[]): boolean {
  sim.submitTransactions = false
  const steps = sim.runUntil(() => sim.allHonestTransactionsOrdered(members), 3000)
  sim.submitTransactions = true
  return steps !== -1
}

// ---------------------------------------------------------------- catching up from a frontier

/**
 * A random gossip graph (each step a random member builds on its newest event and another
 * member's newest), with forks by `forker` (an event on an older self-parent) — in creation order.
 */
function randomGraph (n: number, events: number, rng: Rng, forker: number | null): Array<ConsensusEventInput<number>> {
  const newest: Array<string | null> = new Array<string | null>(n).fill(null)
  const previous: Array<string | null> = new Array<string | null>(n).fill(null)
  const time = new Map<string, bigint>()
  const out: Array<ConsensusEventInput<number>> = []
  for (let k = 0; k < events; k++) {
    const creator = k < n ? k : rng.int(n)
    let other = -1
    if (k >= n) { other = rng.int(n - 1); if (other >= creator) other++ }
    const forks = creator === forker && previous[creator] !== null && rng.next() < 0.04
    const selfParent = forks ? previous[creator]! : newest[creator]!
    const id = `e${k}`
    const timestamp = (selfParent === null ? 0n : time.get(selfParent)!) + BigInt(1 + rng.int(5))
    time.set(id, timestamp)
    out.push({
      id, creator, selfParent, otherParent: other < 0 ? null : newest[other]!, timestamp,
      signature: createHash('sha256').update(id).digest(), coinBit: rng.int(2) as 0 | 1, payload: k
    })
    previous[creator] = selfParent
    newest[creator] = id
  }
  return out
}

interface Observed { ordered: string[], stale: string[], forks: string[], rejected: Map<string, string> }

function observedEngine (make: (options: ConsensusOptions<number>) => Consensus<number>, n: number): { engine: Consensus<number>, seen: Observed } {
  const seen: Observed = { ordered: [], stale: [], forks: [], rejected: new Map() }
  const engine = make({
    members: n,
    holdForMembership: false,
    coinRoundFrequency: 4,
    // Short memory, so that each frontier holds a small part of the history.
    staleAfterRounds: 6,
    onOrdered: (events, round) => { for (const e of events) seen.ordered.push(`${e.id}@${round}:${e.consensusTimestamp}#${e.position}`) },
    onStale: (events) => { for (const e of events) seen.stale.push(e.id) },
    onFork: (f) => { seen.forks.push(f.eventIds.join('/')) }
  })
  return { engine, seen }
}

function feed (engine: Consensus<number>, seen: Observed, input: ConsensusEventInput<number>): void {
  try {
    engine.insert(input)
  } catch (err) {
    if (!(err instanceof EventRejectedError)) throw err
    seen.rejected.set(input.id, err.reason)
  }
}

for (const [n, seed, events, forker] of [[4, 40404, 3000, 3], [7, 70707, 4000, null], [10, 10101, 6000, 9]] as const) {
  test(`frontier n=${n}${forker === null ? '' : ', one forker'}: an engine started from an exported frontier orders exactly as the one that saw the whole history`, () => {
    const s = testSeed(seed)
    const tag = `seed=${s}`
    const graph = randomGraph(n, events, new Rng(s), forker)
    const full = observedEngine((o) => new Consensus(o), n)
    const cuts = [Math.floor(events * 0.4), Math.floor(events * 0.6), Math.floor(events * 0.85)]
    const resumed: Array<{ at: number, engine: Consensus<number>, seen: Observed, orderedBefore: number, staleBefore: number, forksBefore: number }> = []
    for (const [k, input] of graph.entries()) {
      if (cuts.includes(k)) {
        const frontier = full.engine.exportFrontier()
        const started = observedEngine((o) => Consensus.fromFrontier(frontier, o), n)
        assert.equal(started.engine.lastOrderedRound, full.engine.lastOrderedRound, `${tag}: frontier at ${k} starts at another round`)
        assert.ok(frontier.events.length < k, `${tag}: the frontier at ${k} holds the whole history (${frontier.events.length} events)`)
        resumed.push({ at: k, ...started, orderedBefore: full.seen.ordered.length, staleBefore: full.seen.stale.length, forksBefore: full.seen.forks.length })
      }
      feed(full.engine, full.seen, input)
      for (const r of resumed) feed(r.engine, r.seen, input)
    }
    assert.ok(full.engine.lastOrderedRound > 40, `${tag}: only ${full.engine.lastOrderedRound} rounds ordered`)
    if (forker !== null) assert.ok(full.seen.forks.length > 0, `${tag}: no fork was made`)
    for (const r of resumed) {
      const what = `${tag}, frontier at event ${r.at}`
      assert.deepEqual(r.seen.ordered, full.seen.ordered.slice(r.orderedBefore), `${what}: a different order`)
      assert.ok(r.seen.ordered.length > 100, `${what}: only ${r.seen.ordered.length} events ordered after the frontier`)
      assert.deepEqual(r.seen.stale, full.seen.stale.slice(r.staleBefore), `${what}: different stale events`)
      assert.deepEqual(r.seen.forks, full.seen.forks.slice(r.forksBefore), `${what}: different forks reported`)
      assert.deepEqual([...r.seen.rejected].filter(([id]) => Number(id.slice(1)) >= r.at), [...full.seen.rejected].filter(([id]) => Number(id.slice(1)) >= r.at), `${what}: different events refused`)
      for (const input of graph.slice(r.at)) assert.deepEqual(r.engine.status(input.id), full.engine.status(input.id), `${what}: status of ${input.id}`)
      assert.equal(r.engine.orderedEvents, full.engine.orderedEvents)
      assert.deepEqual(r.engine.forks, full.engine.forks, `${what}: fork evidence`)
      // Same state, not only the same output so far: the two frontiers now are the same.
      assert.deepEqual(r.engine.exportFrontier(), full.engine.exportFrontier(), `${what}: the engines' frontiers differ at the end`)
    }
    console.log(`# ${tag} n=${n}: ${full.seen.ordered.length} events ordered, ${full.seen.forks.length} forks; ` +
      `resumed from frontiers at ${cuts.join(', ')} (${resumed.map((r) => r.seen.ordered.length).join(', ')} events ordered after each, identical)`)
  })
}
