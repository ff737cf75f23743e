/**
 * Restart from the event log: clean stop and reopen, crash (no stop, unflushed events lost), and a
 * log that belongs to another swarm. Runs over simulated gossip (test/support/gossip-sim.ts).
 * Reproduce a failure with HGMIG_TEST_SEED=<seed printed in the message>.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fdatasync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { decodeEvent, EventLog, Hashgraph } from '../p2p/hashgraph/index.js'
import { GossipSim, memberKeys, testSeed, type SimMember } from './support/gossip-sim.js'

function tempDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'hgmig-restart-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** The member's newest own event: id and chain position. */
function ownTip (member: SimMember): { id: string, seq: number } {
  const tip = member.hg.lastEventOf(member.id)
  assert.ok(tip !== undefined, `member ${member.id} has no events`)
  const status = member.hg.status(tip.id)
  assert.ok(status !== undefined)
  return { id: tip.id, seq: status.seq }
}

function assertNoForks (sim: GossipSim, what: string): void {
  for (const m of sim.members) {
    assert.deepEqual(m.hg.forks, [], `${sim.tag}: member ${m.id} recorded a fork ${what}`)
    assert.deepEqual(m.forkReports, [], `${sim.tag}: member ${m.id} was told of a fork ${what}`)
  }
}

function flushAndCheck (sim: GossipSim, maxSteps: number): void {
  sim.submitTransactions = false
  const steps = sim.runUntil(() => sim.allHonestTransactionsOrdered(), maxSteps)
  sim.submitTransactions = true
  assert.notEqual(steps, -1, `${sim.tag}: transactions unordered after ${maxSteps} flush steps: ${sim.members.map((m) => sim.unordered(m).length)}`)
  const { violations, comparedPositions } = sim.checkAgreement()
  assert.deepEqual(violations, [], `${sim.tag}: members disagree`)
  assert.ok(comparedPositions > 0, `${sim.tag}: no running hashes compared`)
  for (const m of sim.members) assert.equal(m.orderedTxs.size, sim.submitted.size, `${sim.tag}: member ${m.id} ordered ${m.orderedTxs.size} of ${sim.submitted.size}`)
}

/**
 * Regression: the engine once saved the snapshot of round R under round R − 1 (emitOrdered runs
 * inside Consensus.orderRound, before lastOrderedRound counts R), so every replay of a log with two
 * or more ordered rounds failed with EventLogError "diverged at round 1".
 */
test('snapshots in the log are recorded under the round they complete', async (t) => {
  const s = testSeed(5140)
  const dir = tempDir(t)
  const sim = await GossipSim.create({ n: 4, seed: s, logDir: dir, persistent: [0] })
  sim.run(200)
  const member = sim.members[0]!
  const last = member.ordered.at(-1)
  assert.ok(last !== undefined, `${sim.tag}: nothing ordered`)
  const [position, , , roundReceived] = last.split('|').map(Number) as [number, number, number, number]
  const recorded = member.log!.snapshotAt(roundReceived)
  assert.ok(recorded !== undefined, `${sim.tag}: no snapshot recorded for round ${roundReceived}, the round of the last ordered transaction (position ${position}); recorded: ${JSON.stringify(member.log!.lastSnapshot())}`)
  assert.equal(recorded.round, roundReceived)
  assert.equal(recorded.transactionPosition, position + 1, `${sim.tag}: snapshot of round ${roundReceived} does not end at that round's last transaction`)
  assert.equal(recorded.runningHash, member.hashes.get(recorded.eventPosition), `${sim.tag}: recorded running hash differs from the live one`)
  sim.close()
})

test('clean restart: replay reaches the same snapshot and re-emits the same order; the member continues its chain', async (t) => {
  const s = testSeed(5150)
  const dir = tempDir(t)
  const sim = await GossipSim.create({ n: 4, seed: s, logDir: dir, persistent: [0, 1] })
  const member = sim.members[0]!
  const witness = sim.members[3]! // never restarts
  for (const [round, steps] of [[1, 500], [2, 37], [3, 400]] as const) {
    sim.run(steps)
    const tip = ownTip(member)
    assert.ok(member.ordered.length > 0 || round === 2, `${sim.tag}: nothing ordered before restart ${round}`)
    const { before, beforeOrdered, replayed } = sim.restart(member, 'clean')
    const tag = `${sim.tag} restart ${round} (after ${sim.stats.steps} steps)`
    assert.deepEqual(member.hg.snapshot(), before, `${tag}: snapshot after replay differs`)
    assert.deepEqual(replayed, beforeOrdered, `${tag}: the replayed transaction stream differs from the original`)
    assert.deepEqual(ownTip(member), tip, `${tag}: own chain tip lost`)
    assert.equal(member.hg.parkedCount, 0)
    // Its next event continues the chain.
    sim.gossip(member, sim.members[1 + sim.rng.int(3)]!)
    const next = sim.events[member.tip]!
    assert.equal(next.selfParent === null ? null : Buffer.from(next.selfParent).toString('hex'), tip.id, `${tag}: new event not on the old tip`)
    assert.equal(member.hg.status(next.id)?.seq, tip.seq + 1, `${tag}: new event's seq does not continue the chain`)
    assertNoForks(sim, `after ${tag}`)
  }
  // Member 1 restarts too, right after creating an event.
  sim.run(100)
  sim.gossip(sim.members[1]!, witness)
  const r1 = sim.restart(sim.members[1]!, 'clean')
  assert.deepEqual(sim.members[1]!.hg.snapshot(), r1.before, `${sim.tag}: member 1's snapshot after replay differs`)
  sim.run(300)
  flushAndCheck(sim, 2000)
  // The restarted member's order (replayed + continued) equals the never-restarted member's.
  const common = Math.min(member.ordered.length, witness.ordered.length)
  assert.ok(common >= sim.submitted.size, `${sim.tag}: only ${common} transactions to compare`)
  assert.deepEqual(member.ordered.slice(0, common), witness.ordered.slice(0, common), `${sim.tag}: restarted member's order differs`)
  if (member.hg.orderedEvents === witness.hg.orderedEvents) {
    assert.deepEqual(member.hg.snapshot(), witness.hg.snapshot(), `${sim.tag}: equal positions, different snapshots`)
  }
  assertNoForks(sim, 'at the end')
  sim.close()
})

test('crash without stop: own events survive, lost received events are re-synced, nobody sees a self-fork', async (t) => {
  const s = testSeed(6160)
  const dir = tempDir(t)
  const sim = await GossipSim.create({ n: 4, seed: s, logDir: dir, persistent: [0, 1, 2] })
  let crashes = 0
  let lostEvents = 0
  for (let k = 0; k < 12; k++) {
    sim.run(40 + sim.rng.int(80))
    const member = sim.members[sim.rng.int(3)]!
    // Sometimes crash right after a sync (received events queued, not yet written), sometimes right
    // after an own event (everything written).
    const peer = sim.members[3]!
    if (sim.rng.chance(0.5)) sim.sync(peer, member)
    else sim.gossip(member, peer)
    const tip = ownTip(member)
    const heldBefore = member.known.size
    const { beforeOrdered, replayed } = sim.restart(member, 'crash')
    crashes++
    lostEvents += heldBefore - member.known.size
    const tag = `${sim.tag} crash ${k} of member ${member.id} (after ${sim.stats.steps} steps)`
    assert.deepEqual(ownTip(member), tip, `${tag}: own event lost in the crash`)
    assert.ok(member.known.size <= heldBefore)
    assert.deepEqual(replayed, beforeOrdered.slice(0, replayed.length), `${tag}: replayed order is not a prefix of the original`)
    assert.equal(member.hg.parkedCount, 0)
    assertNoForks(sim, `after ${tag}`)
  }
  assert.ok(lostEvents > 0, `${sim.tag}: no crash lost a received event (the scenario did not exercise re-syncing)`)
  sim.run(200)
  flushAndCheck(sim, 2000)
  assertNoForks(sim, 'at the end')
  console.log(`# ${sim.tag}: ${crashes} crashes, ${lostEvents} received events lost and re-synced`)
  sim.close()
})

test('a log written by another swarm is refused with EventLogError', async (t) => {
  const s = testSeed(7170)
  const dir = tempDir(t)
  const sim = await GossipSim.create({ n: 4, seed: s, logDir: dir, persistent: [0] })
  sim.run(100)
  const member = sim.members[0]!
  member.hg.stop()
  member.log!.close()
  const file = member.logPath!
  const isEventLogError = (err: unknown): boolean => {
    assert.ok(err instanceof Error)
    assert.equal(err.name, 'EventLogError', `threw ${err.name}: ${err.message}`)
    return true
  }
  const others = await memberKeys(4, s, 'another-swarm')
  const attempts: Array<[string, ConstructorParameters<typeof Hashgraph>[0]]> = [
    ['different member keys', { members: others.map((k) => k.publicKey), self: { creator: 0, key: others[0]! } }],
    ['one member fewer', { members: sim.publicKeys.slice(0, 3), self: { creator: 0, key: member.key } }],
    ['another coin round frequency', { members: sim.publicKeys, self: { creator: 0, key: member.key }, coinRoundFrequency: 7 }]
  ]
  for (const [what, init] of attempts) {
    const log = new EventLog(file)
    const count = log.count()
    try {
      const hg = new Hashgraph({ ...init, log })
      assert.throws(() => { hg.start() }, isEventLogError, `${sim.tag}: ${what}: the log was accepted`)
      assert.equal(log.count(), count, `${sim.tag}: ${what}: the log changed`)
    } finally {
      log.close()
    }
  }
  // (That the right swarm reopens it is the clean-restart test.)
  for (const m of sim.members.slice(1)) m.hg.stop()
})

async function until (what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

test('own events created pending: sync holds them back until their sync to disk returns; events created meanwhile share the next sync; a crash before it loses none', async (t) => {
  const s = testSeed(8180)
  const dir = tempDir(t)
  const keys = await memberKeys(2, s)
  const members = keys.map((k) => k.publicKey)
  const file = path.join(dir, 'member-0.sqlite')
  // Each sync reaches the disk for real, then waits for the test to let it return.
  const held: Array<() => void> = []
  let syncs = 0
  const log = new EventLog(file, { syncMode: 'pool', syncFile: (fd, done) => { syncs++; fdatasync(fd, (err) => { held.push(() => { done(err) }) }) } })
  const hg = new Hashgraph({ members, self: { key: keys[0]! }, log })
  hg.start()
  const other = new Hashgraph({ members, self: { key: keys[1]! } })
  other.start()
  const ids = (list: Uint8Array[]): string[] => list.map((bytes) => decodeEvent(bytes).id)
  const durable: string[] = []

  const first = hg.createPendingEvent()
  void first.durable.then(() => { durable.push('first') })
  assert.deepEqual(ids(hg.eventsAfter([0, 0])), [], `seed ${s}: an own event not on disk yet was served by sync`)
  await until('the first sync reached the disk', () => held.length === 1)
  const theirs = other.createEvent()
  hg.receive(theirs.bytes)
  const second = hg.createPendingEvent({ otherParent: theirs.id })
  const third = hg.createPendingEvent()
  void second.durable.then(() => { durable.push('second') })
  void third.durable.then(() => { durable.push('third') })
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(syncs, 1, `seed ${s}: a second sync started while one was in flight`)
  assert.deepEqual(durable, [], `seed ${s}: an event was reported durable before its sync returned`)
  assert.deepEqual(ids(hg.eventsAfter([0, 0])), [theirs.id], `seed ${s}: sync served own events not on disk (or lost the received one)`)

  held.shift()!()
  await until('the second sync reached the disk', () => held.length === 1)
  assert.deepEqual(durable, ['first'])
  assert.equal(syncs, 2)
  assert.deepEqual(ids(hg.eventsAfter([0, 0])), [first.event.id, theirs.id], `seed ${s}: the durable event is not served, or a pending one is`)

  // Crash now (the process killed): what was committed survives; the restarted member syncs the
  // log before serving anything and continues its chain on the newest own event, not beside it.
  const restartedLog = new EventLog(file)
  const restarted = new Hashgraph({ members, self: { key: keys[0]! }, log: restartedLog })
  restarted.start()
  assert.equal(restarted.lastEventOf(0)?.id, third.event.id, `seed ${s}: the restart lost own events`)
  assert.deepEqual(ids(restarted.eventsAfter([0, 0])), [first.event.id, theirs.id, second.event.id, third.event.id])
  const next = restarted.createPendingEvent()
  assert.equal(Buffer.from(next.event.selfParent!).toString('hex'), third.event.id, `seed ${s}: the restarted member forked its chain`)
  await next.durable
  assert.deepEqual(restarted.forks, [])

  // The old instance's group commit completes: both pending events at once.
  held.shift()!()
  await until('the second sync returned', () => durable.length === 3)
  assert.deepEqual(durable, ['first', 'second', 'third'])
  assert.equal(syncs, 2, `seed ${s}: three events took ${syncs} syncs`)
  restartedLog.close()
  log.close()
})

test('inline sync mode (the default): a pending own event is synced on the calling thread before createPendingEvent returns', async (t) => {
  const s = testSeed(8190)
  const dir = tempDir(t)
  const keys = await memberKeys(2, s)
  const log = new EventLog(path.join(dir, 'inline.sqlite'))
  const hg = new Hashgraph({ members: keys.map((k) => k.publicKey), self: { key: keys[0]! }, log })
  hg.start()
  assert.equal(log.durableOwnSequence, -1)
  const { event, durable } = hg.createPendingEvent()
  assert.equal(log.durableOwnSequence, 0, `seed ${s}: not on disk when createPendingEvent returned`)
  assert.deepEqual(hg.eventsAfter([0, 0]).map((bytes) => decodeEvent(bytes).id), [event.id])
  await durable
  assert.throws(() => new EventLog(path.join(dir, 'bad.sqlite'), { syncMode: 'later' as 'pool' }), /sync mode must be 'pool' or 'inline'/)
  log.close()
})
