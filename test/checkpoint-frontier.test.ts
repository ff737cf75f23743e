/**
 * Hashgraph.exportFrontier() / HashgraphInit.frontier: the frontier as bytes (wire bytes of every
 * event, member keys, transaction position and running hash), an engine started from it, a restart
 * that replays only the log after it, and damaged or foreign frontiers refused by name.
 * Runs over simulated gossip (test/support/gossip-sim.ts) with a forking member.
 * Reproduce a failure with HGMIG_TEST_SEED=<seed printed in the message>.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { createHash } from 'node:crypto'
import { EventLog, EventLogError, Hashgraph, InvalidFrontierError, readFrontier, type OrderedTransaction } from '../p2p/hashgraph/index.js'
import { GossipSim, memberKeys, orderedKey, testSeed } from './support/gossip-sim.js'

function tempDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'hgmig-frontier-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** An observer engine that records what it orders. */
function observer (sim: GossipSim, init: Partial<ConstructorParameters<typeof Hashgraph>[0]> = {}): { hg: Hashgraph, ordered: string[] } {
  const ordered: string[] = []
  const hg = new Hashgraph({ members: sim.publicKeys, onTransactions: (txs: OrderedTransaction[]) => { for (const t of txs) ordered.push(orderedKey(t)) }, ...init })
  return { hg, ordered }
}

/** A decoded frontier body, edited freely by the tests below (any shape they want to try). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = Record<string, any>

/** Re-encodes a frontier after `edit` changed its decoded body, with a matching hash (a consistent lie, not damage). */
function rewrite (frontier: Uint8Array, edit: (body: Body) => void): Uint8Array {
  const envelope = dagCbor.decode(frontier) as Body
  const body = dagCbor.decode(envelope.body as Uint8Array) as Body
  edit(body)
  const bodyBytes = dagCbor.encode(body)
  return dagCbor.encode({ ...envelope, body: bodyBytes, sha256: new Uint8Array(createHash('sha256').update(bodyBytes).digest()) })
}

test('an engine started from a frontier orders what follows exactly as the member that exported it, and re-exports the same bytes', async (t) => {
  const seed = testSeed(7310)
  const dir = tempDir(t)
  const sim = await GossipSim.create({ n: 5, seed, logDir: dir, persistent: [0], byzantine: [4] })
  sim.run(600)
  const member = sim.members[0]!
  const frontier = member.hg.exportFrontier()
  const at = member.hg.snapshot()
  const logPosition = member.log!.position()
  const summary = readFrontier(frontier)
  assert.deepEqual({ round: summary.round, eventPosition: summary.eventPosition, transactionPosition: summary.transactionPosition, runningHash: summary.runningHash },
    { round: at.round, eventPosition: at.eventPosition, transactionPosition: at.transactionPosition, runningHash: at.runningHash }, `${sim.tag}: the summary is not the member's snapshot`)
  assert.ok(at.round > 5 && summary.events > 0, `${sim.tag}: too little history to test (${at.round} rounds)`)
  assert.ok(sim.stats.forkEvents > 0, `${sim.tag}: the Byzantine member forked nothing`)

  const resumed = observer(sim, { frontier })
  resumed.hg.start()
  assert.deepEqual(resumed.hg.snapshot(), at, `${sim.tag}: a fresh engine from the frontier has another snapshot`)
  assert.deepEqual(resumed.hg.knownCounts(), member.hg.knownCounts(), `${sim.tag}: known counts differ (peers would send the wrong events)`)
  assert.ok(Buffer.from(resumed.hg.exportFrontier()).equals(frontier), `${sim.tag}: re-exported frontier differs`)

  const orderedBefore = member.ordered.length
  sim.run(600)
  let fed = 0
  for (const { bytes } of member.log!.events(1000, logPosition)) {
    resumed.hg.receive(bytes)
    fed++
  }
  assert.ok(fed > 100, `${sim.tag}: only ${fed} events after the frontier`)
  const after = member.ordered.slice(orderedBefore)
  assert.ok(after.length > 20, `${sim.tag}: only ${after.length} transactions ordered after the frontier`)
  assert.deepEqual(resumed.ordered, after, `${sim.tag}: the resumed engine ordered differently`)
  assert.deepEqual(resumed.hg.snapshot(), member.hg.snapshot(), `${sim.tag}: snapshots differ at the end`)
  assert.ok(Buffer.from(resumed.hg.exportFrontier()).equals(member.hg.exportFrontier()), `${sim.tag}: frontiers differ at the end`)
  sim.close()
})

test('restart from a frontier replays only the log after it and reaches the full replay\'s snapshot', async (t) => {
  const seed = testSeed(7320)
  const dir = tempDir(t)
  const sim = await GossipSim.create({ n: 4, seed, logDir: dir, persistent: [0] })
  sim.run(500)
  const member = sim.members[0]!
  const frontier = member.hg.exportFrontier()
  const position = member.log!.position()
  sim.run(400)
  const final = member.hg.snapshot()
  sim.close()

  const log = new EventLog(member.logPath!)
  t.after(() => { log.close() })
  const total = log.position()
  // A frontier taken while the replay runs (at a quiet point) names the replay's position, not the log's end.
  let duringReplay: { frontier: Uint8Array, position: number } | null = null
  const full: { hg: Hashgraph, ordered: string[] } = observer(sim, {
    log,
    onSettled: (round) => { if (duringReplay === null && round >= 5) duringReplay = { frontier: full.hg.exportFrontier(), position: full.hg.logPosition() } }
  })
  full.hg.start()
  full.hg.stop()
  assert.ok(duringReplay !== null, `${sim.tag}: the replay never reached round 5`)
  const taken = duringReplay as { frontier: Uint8Array, position: number }
  assert.ok(taken.position > 0 && taken.position < total, `${sim.tag}: frontier taken during the replay names position ${taken.position} of ${total}`)
  const fromReplayFrontier = observer(sim, { log, frontier: taken.frontier, frontierLogPosition: taken.position })
  fromReplayFrontier.hg.start()
  assert.deepEqual(fromReplayFrontier.hg.snapshot(), full.hg.snapshot(), `${sim.tag}: a restart from the frontier taken during the replay ends elsewhere`)
  const fromFrontier = observer(sim, { log, frontier, frontierLogPosition: position, self: { creator: 0, key: member.key } })
  fromFrontier.hg.start()
  assert.equal(full.hg.replayedEvents, total, `${sim.tag}: the full replay did not read the whole log`)
  assert.equal(fromFrontier.hg.replayedEvents, total - position, `${sim.tag}: the restart replayed ${fromFrontier.hg.replayedEvents} events, expected the ${total - position} after the frontier`)
  assert.deepEqual(fromFrontier.hg.snapshot(), full.hg.snapshot(), `${sim.tag}: snapshots differ`)
  assert.deepEqual(full.hg.snapshot(), final, `${sim.tag}: the full replay is not where the member stopped`)
  assert.deepEqual(fromFrontier.ordered, full.ordered.slice(full.ordered.length - fromFrontier.ordered.length), `${sim.tag}: the tail of the order differs`)
  assert.ok(Buffer.from(fromFrontier.hg.exportFrontier()).equals(full.hg.exportFrontier()), `${sim.tag}: frontiers differ after the restart`)
  // The member goes on: its next event builds on its own tip, as after a full replay.
  const next = fromFrontier.hg.createEvent()
  assert.equal(Buffer.from(next.selfParent!).toString('hex'), full.hg.lastEventOf(0)!.id)

  // A frontier that the log does not continue (a position whose event the frontier lacks) is refused.
  const elsewhere = observer(sim, { log, frontier, frontierLogPosition: total + 1 })
  assert.throws(() => { elsewhere.hg.start() }, (err: unknown) => err instanceof EventLogError && /does not continue the frontier/.test(err.message))
})

test('damaged, inconsistent or foreign frontiers are refused with InvalidFrontierError naming the problem', async () => {
  const seed = testSeed(7330)
  const sim = await GossipSim.create({ n: 4, seed })
  sim.run(300)
  const frontier = sim.members[1]!.hg.exportFrontier()
  const refused = (bytes: Uint8Array, pattern: RegExp, keys = sim.publicKeys): void => {
    assert.throws(() => new Hashgraph({ members: keys, frontier: bytes }), (err: unknown) => {
      assert.ok(err instanceof InvalidFrontierError, `expected InvalidFrontierError, got ${String(err)}`)
      assert.match(err.message, pattern)
      return true
    })
  }
  const flipped = Uint8Array.from(frontier)
  flipped[Math.floor(flipped.length * 0.6)]! ^= 0x40
  refused(flipped, /damaged: its body hashes to|not dag-cbor/)
  refused(frontier.subarray(0, frontier.length - 100), /not dag-cbor/)
  refused(dagCbor.encode({ ...(dagCbor.decode(frontier) as object), version: 2 }), /version 2, this build reads version 1/)
  refused(dagCbor.encode([1, 2]), /the envelope must be a map/)
  const otherKeys = (await memberKeys(4, seed + 1)).map((k) => k.publicKey)
  refused(frontier, /member 0's key differs from this swarm's genesis/, otherKeys)
  refused(rewrite(frontier, (b) => { b.consensus.events[0].payload = b.consensus.events[1].payload }), /wire bytes hash to/)
  refused(rewrite(frontier, (b) => { b.consensus.events[3].signature = new Uint8Array(64) }), /signature differ/)
  refused(rewrite(frontier, (b) => { b.consensus.events.pop() }), /names event [0-9a-f]+, which is not in the frontier/)
  refused(rewrite(frontier, (b) => { b.consensus.events[2].round = 'one' }), /round must be an integer >= 1, got "one"/)
  refused(rewrite(frontier, (b) => { b.eventPosition = 1 + Number(b.eventPosition) }), /eventPosition \d+, but the engine ordered/)
  refused(rewrite(frontier, (b) => { b.memberKeys.pop() }), /3 member keys for 4 member slots/)
  // Nothing was half-built: the original still starts an engine.
  assert.deepEqual(new Hashgraph({ members: sim.publicKeys, frontier }).snapshot(), sim.members[1]!.hg.snapshot())
  sim.close()
})
