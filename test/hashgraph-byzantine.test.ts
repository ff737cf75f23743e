/**
 * Byzantine behaviour: forking members (f < n/3) over simulated gossip, and every kind of invalid
 * event a peer can send, each of which must be refused with the graph left exactly as it was.
 * Reproduce a failure with HGMIG_TEST_SEED=<seed printed in the message>.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import {
  EventRejectedError, Hashgraph, decodeEvent, ed25519Signer, encodeBody, signEvent, type EventBody, type RejectReason, type SignedEvent, type Signer
} from '../p2p/hashgraph/index.js'
import { decodeEventWithDagCbor } from '../p2p/hashgraph/event.js'
import { GossipSim, Rng, memberKeys, testSeed } from './support/gossip-sim.js'

// ---------------------------------------------------------------- forks over gossip

for (const [n, forkers, seed, events] of [[4, [3], 40401, 1500], [7, [5, 6], 70702, 2000]] as const) {
  test(`forks n=${n} f=${forkers.length}: honest members agree, record the forkers, and keep ordering`, async () => {
    const s = testSeed(seed)
    const sim = await GossipSim.create({ n, seed: s, byzantine: forkers, forkProbability: 0.15 })
    const honest = sim.honestMembers()
    let lastOrdered = 0
    while (sim.events.length < events) {
      sim.run(250)
      const { violations } = sim.checkAgreement(honest)
      assert.deepEqual(violations, [], `${sim.tag}: honest members disagree after ${sim.stats.steps} steps`)
      const ordered = Math.min(...honest.map((m) => m.hg.orderedEvents))
      assert.ok(ordered > lastOrdered, `${sim.tag}: ordering stalled at ${ordered} events after ${sim.stats.steps} steps (${sim.stats.forkEvents} forks so far)`)
      lastOrdered = ordered
    }
    assert.ok(sim.stats.forkEvents >= 10, `${sim.tag}: only ${sim.stats.forkEvents} forks were made`)

    sim.submitTransactions = false
    const steps = sim.runUntil(() => sim.allHonestTransactionsOrdered(honest), 40 * n * n)
    assert.notEqual(steps, -1, `${sim.tag}: honest transactions unordered after the flush: ${honest.map((m) => sim.unordered(m).length)}`)

    const { violations, comparedPositions } = sim.checkAgreement(honest)
    assert.deepEqual(violations, [], `${sim.tag}: honest members disagree`)
    assert.ok(comparedPositions >= 5, `${sim.tag}: only ${comparedPositions} running hashes compared`)
    for (const m of honest) {
      const forkingCreators = new Set(m.hg.forks.map((f) => f.creator))
      assert.deepEqual([...forkingCreators].sort(), [...forkers].sort(), `${sim.tag}: member ${m.id} recorded forks by ${[...forkingCreators]}`)
      assert.ok(m.forkReports.length >= forkers.length, `${sim.tag}: member ${m.id}: onFork called ${m.forkReports.length} times`)
      for (const f of m.hg.forks) {
        assert.equal(f.eventIds.length, 2)
        assert.notEqual(f.eventIds[0], f.eventIds[1])
        for (const id of f.eventIds) {
          const g = sim.indexOf.get(id)
          if (g !== undefined) assert.equal(sim.events[g]!.creator, f.creator, `${sim.tag}: fork evidence names an event by someone else`)
        }
      }
      assert.equal(m.hg.parkedCount, 0)
    }
    console.log(`# ${sim.tag} forkers=${forkers}: ${sim.events.length} events, ${sim.stats.forkEvents} forks, ` +
      `${Math.min(...honest.map((m) => m.hg.orderedEvents))} events ordered at every honest member, round ${honest[0]!.hg.lastOrderedRound}`)
    sim.close()
  })
}

// ---------------------------------------------------------------- invalid events

interface State {
  snapshot: ReturnType<Hashgraph['snapshot']>
  lastRound: number
  lastOrderedRound: number
  orderedEvents: number
  eventsInMemory: number
  parkedCount: number
  forks: number
  tips: Array<string | undefined>
}

function stateOf (hg: Hashgraph, n: number): State {
  return {
    snapshot: hg.snapshot(),
    lastRound: hg.lastRound,
    lastOrderedRound: hg.lastOrderedRound,
    orderedEvents: hg.orderedEvents,
    eventsInMemory: hg.eventsInMemory,
    parkedCount: hg.parkedCount,
    forks: hg.forks.length,
    tips: Array.from({ length: n }, (_, c) => hg.lastEventOf(c)?.id)
  }
}

function wire (signedBytes: Uint8Array, signature: Uint8Array): Uint8Array {
  return dagCbor.encode([signedBytes, signature])
}

function craft (signer: Signer, body: EventBody): SignedEvent {
  return signEvent(body, signer)
}

/** receive() must throw EventRejectedError with `reason`, and leave everything as it was. */
function assertRejected (hg: Hashgraph, n: number, input: Uint8Array | SignedEvent, reason: RejectReason, what: string, id?: string): void {
  const before = stateOf(hg, n)
  assert.throws(() => hg.receive(input), (err: unknown) => {
    assert.ok(err instanceof EventRejectedError, `${what}: threw ${String(err)}`)
    assert.equal(err.reason, reason, `${what}: rejected as ${err.reason}: ${err.message}`)
    return true
  }, `${what}: was accepted`)
  assert.deepEqual(stateOf(hg, n), before, `${what}: the graph changed on rejection`)
  if (id !== undefined) {
    assert.equal(hg.status(id), undefined, `${what}: rejected event has a status`)
    if (reason !== 'duplicate') assert.equal(hg.has(id), false, `${what}: rejected event is known`)
  }
}

/** A small honest swarm whose member 0 is the target of the invalid events. */
async function fixture (seed: number) {
  const sim = await GossipSim.create({
    n: 4,
    seed,
    hashgraph: { limits: { maxEventBytes: 4096, maxTransactions: 8 }, staleAfterRounds: 6 }
  })
  sim.run(300)
  const target = sim.members[0]!
  const hg = target.hg
  const rng = new Rng(seed ^ 0x5eed)
  // A valid next event by `creator` as the target sees it (parents in the target's graph).
  const next = (creator: number, overrides: Partial<EventBody> = {}): SignedEvent => {
    const selfParent = hg.lastEventOf(creator)
    const other = hg.lastEventOf((creator + 1) % 4)!
    return craft(sim.members[creator]!.signer, {
      creator,
      selfParent: selfParent?.hash ?? null,
      otherParent: other.hash,
      timestamp: (selfParent?.timestamp ?? 0n) + 1_000n,
      transactions: [new TextEncoder().encode(`crafted:${creator}:${rng.int(1e9)}`)],
      ...overrides
    })
  }
  return { sim, target, hg, rng, next }
}

test('invalid signatures are refused as bad-signature and change nothing', async () => {
  const s = testSeed(11)
  const { sim, hg, next } = await fixture(s)
  const tag = `${sim.tag} (bad-signature)`
  assert.ok(hg.orderedEvents > 0 && hg.lastRound > 3, `${tag}: fixture too small`)
  const good = next(1)
  for (const index of [0, 31, 32, 63]) {
    const signature = Uint8Array.from(good.signature)
    signature[index] = signature[index]! ^ 0x01
    const bytes = wire(good.signedBytes, signature)
    assertRejected(hg, 4, bytes, 'bad-signature', `${tag}: signature byte ${index} flipped`, idOf(bytes))
  }
  // The body changed under a valid signature.
  const tampered = encodeBody({ ...good, transactions: [new TextEncoder().encode('tampered')] })
  assertRejected(hg, 4, wire(tampered, good.signature), 'bad-signature', `${tag}: body changed after signing`, idOf(wire(tampered, good.signature)))
  // Signed by member 2 while claiming to be member 1.
  const impostor = craft(sim.members[2]!.signer, { creator: 1, selfParent: good.selfParent, otherParent: good.otherParent, timestamp: good.timestamp, transactions: [] })
  assertRejected(hg, 4, impostor.bytes, 'bad-signature', `${tag}: signed with another member's key`, impostor.id)
  // An unparseable-as-Ed25519 signature (wrong length).
  assertRejected(hg, 4, wire(good.signedBytes, good.signature.subarray(0, 63)), 'bad-signature', `${tag}: 63-byte signature`)
  // Bad signatures on events with unknown parents are refused too, never parked.
  const orphan = next(1, { otherParent: new Uint8Array(32).fill(7) })
  const flipped = Uint8Array.from(orphan.signature); flipped[5] = flipped[5]! ^ 0x80
  assertRejected(hg, 4, wire(orphan.signedBytes, flipped), 'bad-signature', `${tag}: bad signature and unknown parent`)
  assert.equal(hg.parkedCount, 0)

  // The genuine event is still accepted afterwards.
  const result = hg.receive(good.bytes)
  assert.equal(result.status, 'inserted', `${tag}: the genuine event was not inserted`)
  assert.ok(hg.has(good.id) && hg.status(good.id) !== undefined)
  sim.close()
})

test('events with unknown parents are parked (bounded), never inserted without them, and inserted when they arrive', async () => {
  const s = testSeed(12)
  const { sim, hg, next } = await fixture(s)
  const tag = `${sim.tag} (parking)`

  // One missing other-parent.
  const x = next(2)
  const p = next(1, { otherParent: x.hash })
  const before = stateOf(hg, 4)
  const parked = hg.receive(p.bytes)
  assert.equal(parked.status, 'parked', `${tag}: event with an unknown parent was ${parked.status}`)
  assert.deepEqual(parked.status === 'parked' ? parked.missing : [], [x.id], `${tag}: wrong missing list`)
  assert.equal(hg.parkedCount, 1)
  assert.equal(hg.status(p.id), undefined, `${tag}: parked event has a consensus status`)
  assert.deepEqual({ ...stateOf(hg, 4), parkedCount: 0 }, before, `${tag}: parking changed the graph`)
  assertRejected(hg, 4, p.bytes, 'duplicate', `${tag}: the parked event again`, p.id)
  // Other traffic does not release it.
  const other = next(3)
  assert.equal(hg.receive(other.bytes).status, 'inserted')
  assert.equal(hg.status(p.id), undefined, `${tag}: parked event inserted without its parent`)
  assert.equal(hg.parkedCount, 1)
  // The parent arrives: both inserted, p reported as released.
  const arrived = hg.receive(x.bytes)
  assert.equal(arrived.status, 'inserted')
  assert.deepEqual(arrived.status === 'inserted' ? arrived.released.map((e) => e.id) : [], [p.id], `${tag}: parked child not released`)
  assert.equal(hg.parkedCount, 0)
  assert.notEqual(hg.status(p.id), undefined)
  assert.equal(hg.lastEventOf(1)?.id, p.id)

  // A chain delivered backwards: everything parks, then the first releases the rest in order.
  const chain: SignedEvent[] = []
  let tip = hg.lastEventOf(3)!
  for (let k = 0; k < 5; k++) {
    const e = craft(sim.members[3]!.signer, { creator: 3, selfParent: tip.hash, otherParent: null, timestamp: tip.timestamp + 10n, transactions: [] })
    chain.push(e)
    tip = e
  }
  for (const e of [...chain].reverse().slice(0, 4)) assert.equal(hg.receive(e.bytes).status, 'parked', `${tag}: backwards chain`)
  assert.equal(hg.parkedCount, 4)
  const first = hg.receive(chain[0]!.bytes)
  assert.equal(first.status, 'inserted')
  assert.deepEqual(first.status === 'inserted' ? first.released.map((e) => e.id).sort() : [], chain.slice(1).map((e) => e.id).sort())
  assert.equal(hg.lastEventOf(3)?.id, chain[4]!.id)
  assert.equal(hg.parkedCount, 0)
  sim.close()
})

test('the parking buffer is bounded by count and bytes, oldest evicted first', async () => {
  const s = testSeed(13)
  const sim = await GossipSim.create({ n: 4, seed: s })
  sim.run(150)
  const tag = `${sim.tag} (park bound)`
  const bound = 40
  // An observer holding the swarm's graph, with a small parking buffer.
  const observer = new Hashgraph({ members: sim.publicKeys, maxParkedEvents: bound, maxParkedBytes: 1 << 20 })
  observer.start()
  for (const e of sim.events) assert.equal(observer.receive(e.bytes).status, 'inserted')
  const rng = new Rng(s)
  const signer = sim.members[1]!.signer
  const lastOf1 = observer.lastEventOf(1)!
  // A real but withheld parent, and a flood of its (and of random, nonexistent) children.
  const withheld = craft(sim.members[2]!.signer, { creator: 2, selfParent: observer.lastEventOf(2)!.hash, otherParent: null, timestamp: observer.lastEventOf(2)!.timestamp + 5n, transactions: [] })
  const flood: SignedEvent[] = []
  for (let k = 0; k < 3 * bound; k++) {
    const parent = k < bound / 2 ? withheld.hash : rng.bytes(32)
    flood.push(craft(signer, { creator: 1, selfParent: lastOf1.hash, otherParent: parent, timestamp: lastOf1.timestamp + BigInt(k + 1), transactions: [] }))
  }
  const before = stateOf(observer, 4)
  for (const [k, e] of flood.entries()) {
    assert.equal(observer.receive(e.bytes).status, 'parked')
    assert.ok(observer.parkedCount <= bound, `${tag}: ${observer.parkedCount} parked after ${k + 1} (bound ${bound})`)
  }
  assert.equal(observer.parkedCount, bound)
  assert.deepEqual({ ...stateOf(observer, 4), parkedCount: 0 }, before, `${tag}: the flood changed the graph`)
  // The oldest went first: the children of the withheld event are gone, the newest are kept.
  for (const e of flood.slice(0, 2 * bound)) assert.equal(observer.has(e.id), false, `${tag}: evicted event still known`)
  for (const e of flood.slice(2 * bound)) assert.equal(observer.has(e.id), true, `${tag}: newest parked event missing`)
  // Their parent arrives: nothing evicted comes back.
  const arrived = observer.receive(withheld.bytes)
  assert.deepEqual(arrived.status === 'inserted' ? arrived.released : null, [], `${tag}: evicted children were inserted`)
  assert.equal(observer.parkedCount, bound)

  // Bytes bound: 2 KiB events in a 10 KiB buffer.
  const small = new Hashgraph({ members: sim.publicKeys, maxParkedEvents: 1000, maxParkedBytes: 10 * 1024 })
  small.start()
  let largest = 0
  for (let k = 0; k < 30; k++) {
    const e = craft(signer, { creator: 1, selfParent: rng.bytes(32), otherParent: null, timestamp: BigInt(k + 1), transactions: [rng.bytes(2048)] })
    largest = Math.max(largest, e.bytes.byteLength)
    assert.equal(small.receive(e.bytes).status, 'parked')
    assert.ok(small.parkedCount <= Math.floor(10 * 1024 / 2048), `${tag}: ${small.parkedCount} events of ${largest} bytes parked in 10 KiB`)
  }
  assert.ok(small.parkedCount >= 1)
  sim.close()
})

test('malformed, oversized, duplicate, out-of-range and inconsistent events are refused and change nothing', async () => {
  const s = testSeed(14)
  const { sim, hg, rng, next } = await fixture(s)
  const tag = `${sim.tag} (validation)`
  const enc = (text: string): Uint8Array => new TextEncoder().encode(text)

  // too-large / too-many-transactions (limits 4096 bytes, 8 transactions).
  const big = next(1, { transactions: [rng.bytes(5000)] })
  assertRejected(hg, 4, big.bytes, 'too-large', `${tag}: 5000-byte transaction`, big.id)
  const many = next(1, { transactions: Array.from({ length: 9 }, (_, k) => enc(`t${k}`)) })
  assertRejected(hg, 4, many.bytes, 'too-many-transactions', `${tag}: 9 transactions`, many.id)
  const eight = next(1, { transactions: Array.from({ length: 8 }, (_, k) => enc(`t${k}`)) })
  // (the limit itself is fine: checked at the end, once the graph has moved on)

  // malformed
  assertRejected(hg, 4, rng.bytes(200), 'malformed', `${tag}: random bytes`)
  assertRejected(hg, 4, new Uint8Array(0), 'malformed', `${tag}: empty input`)
  assertRejected(hg, 4, dagCbor.encode({ a: 1 }), 'malformed', `${tag}: a CBOR map`)
  assertRejected(hg, 4, dagCbor.encode([new Uint8Array(3)]), 'malformed', `${tag}: one-element array`)
  assertRejected(hg, 4, wire(rng.bytes(50), rng.bytes(64)), 'malformed', `${tag}: body not CBOR`)
  const good = next(1)
  const bodyOf = (fields: Record<string, unknown>): Uint8Array => dagCbor.encode({ creator: 1, selfParent: good.selfParent, otherParent: good.otherParent, timestamp: good.timestamp, transactions: [], ...fields })
  const badBodies: Array<[string, Uint8Array]> = [
    ['creator -1', bodyOf({ creator: -1 })],
    ['creator a string', bodyOf({ creator: '1' })],
    ['selfParent of 31 bytes', bodyOf({ selfParent: new Uint8Array(31) })],
    ['timestamp a string', bodyOf({ timestamp: '5' })],
    ['transactions not an array', bodyOf({ transactions: enc('x') })],
    ['a transaction not bytes', bodyOf({ transactions: [5] })],
    ['an extra field', bodyOf({ extra: 1 })],
    ['a missing field', dagCbor.encode({ creator: 1, selfParent: null, otherParent: null, timestamp: 5 })]
  ]
  for (const [what, body] of badBodies) {
    const bytes = wire(body, sim.members[1]!.signer.sign(body))
    assertRejected(hg, 4, bytes, 'malformed', `${tag}: ${what}`, idOf(bytes))
  }

  // duplicate: an event already in the graph, as bytes and as an object.
  const known = hg.lastEventOf(2)!
  assertRejected(hg, 4, known.bytes, 'duplicate', `${tag}: known event again`)
  const recent = [...hg.recentEvents()][0]!.payload
  assertRejected(hg, 4, recent.bytes, 'duplicate', `${tag}: the oldest event still in memory again`)
  // An event long pruned from memory is no longer known as such: it is refused for its stale round.
  assertRejected(hg, 4, sim.events[0]!.bytes, 'ancient', `${tag}: the very first event again, long after its round`)

  // unknown-creator: creator 4 in a swarm of 4 (validly signed with some key).
  const outsider = (await memberKeys(1, s, 'outsider'))[0]!
  const stranger = craft(ed25519Signer(outsider), { creator: 4, selfParent: null, otherParent: known.hash, timestamp: 1n, transactions: [] })
  assertRejected(hg, 4, stranger.bytes, 'unknown-creator', `${tag}: creator 4`, stranger.id)
  const far = craft(sim.members[1]!.signer, { creator: 1_000_000, selfParent: null, otherParent: null, timestamp: 1n, transactions: [] })
  assertRejected(hg, 4, far.bytes, 'unknown-creator', `${tag}: creator 1000000`, far.id)

  // self-parent-creator-mismatch: member 1's event on member 2's event.
  const mismatch = next(1, { selfParent: hg.lastEventOf(2)!.hash, otherParent: hg.lastEventOf(3)!.hash, timestamp: hg.lastEventOf(2)!.timestamp + 1n })
  assertRejected(hg, 4, mismatch.bytes, 'self-parent-creator-mismatch', `${tag}: self-parent by another creator`, mismatch.id)

  // other-parent-same-creator: own earlier event as other-parent; self-parent == other-parent.
  const own = hg.lastEventOf(1)!
  const ownEarlier = own.selfParent!
  const sameCreator = next(1, { otherParent: ownEarlier })
  assertRejected(hg, 4, sameCreator.bytes, 'other-parent-same-creator', `${tag}: other-parent by the creator`, sameCreator.id)
  const twice = next(1, { otherParent: own.hash })
  assertRejected(hg, 4, twice.bytes, 'other-parent-same-creator', `${tag}: self-parent as other-parent`, twice.id)

  // timestamp-not-after-self-parent: equal, and earlier.
  const equal = next(1, { timestamp: own.timestamp })
  assertRejected(hg, 4, equal.bytes, 'timestamp-not-after-self-parent', `${tag}: timestamp equal to the self-parent's`, equal.id)
  const earlier = next(1, { timestamp: own.timestamp - 1_000_000n })
  assertRejected(hg, 4, earlier.bytes, 'timestamp-not-after-self-parent', `${tag}: timestamp before the self-parent's`, earlier.id)

  // ancient: built on an event of a pruned round (still resolvable as a parent).
  const rounds = [...hg.recentEvents()].map((e) => e.round)
  const prunedThrough = Math.min(...rounds) - 1
  assert.ok(prunedThrough >= 1, `${tag}: nothing pruned yet (fixture too short)`)
  const old = sim.byCreator[1]!.map((g) => sim.events[g]!).find((e) => { const st = hg.status(e.id); return st !== undefined && st.round <= prunedThrough && st.round >= 1 && hg.has(e.id) })
  assert.ok(old !== undefined, `${tag}: no resolvable event of a pruned round`)
  const ancient = next(1, { selfParent: old.hash, otherParent: null, timestamp: old.timestamp + 1n })
  assertRejected(hg, 4, ancient.bytes, 'ancient', `${tag}: parents in pruned round ${hg.status(old.id)!.round}`, ancient.id)

  // After all that, valid events are still accepted: the 8-transaction one first (at the limit).
  const ok = hg.receive(eight.bytes)
  assert.equal(ok.status, 'inserted', `${tag}: event at the transaction limit refused`)
  assert.equal(hg.receive(next(2).bytes).status, 'inserted')
  assert.deepEqual(hg.forks, [], `${tag}: a refused event left fork evidence`)
  sim.close()
})

function idOf (bytes: Uint8Array): string {
  // The id decodeEvent would give: SHA-256(body ‖ signature) of the outer [body, signature].
  const outer = dagCbor.decode(bytes) as [Uint8Array, Uint8Array]
  return createHash('sha256').update(outer[0]).update(outer[1]).digest('hex')
}

// ---------------------------------------------------------------- the fixed-layout decoder

test('decodeEvent agrees with the generic dag-cbor decoder on valid, non-canonical and corrupted events', () => {
  const seed = testSeed(20202)
  const rng = new Rng(seed)
  const tag = `seed=${seed}`
  const hash = (k: number): Uint8Array => createHash('sha256').update(`parent ${k}`).digest()
  const bytesOf = (length: number): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 31 + length) & 0xff)
  const bodies: EventBody[] = []
  const creators = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1]
  const timestamps = [0n, 1n, 23n, 24n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 1_700_000_000_123_456_789n, 2n ** 64n - 1n, -1n, -25n, -(2n ** 40n), -(2n ** 64n)]
  const transactionSets = [[], [bytesOf(0)], [bytesOf(23), bytesOf(24)], [bytesOf(64), bytesOf(255), bytesOf(256)], [bytesOf(70_000)], Array.from({ length: 30 }, (_, i) => bytesOf(i))]
  for (let i = 0; i < 40; i++) {
    bodies.push({
      creator: creators[i % creators.length]!,
      selfParent: i % 3 === 0 ? null : hash(i),
      otherParent: i % 4 === 1 ? null : hash(i + 1000),
      timestamp: timestamps[i % timestamps.length]!,
      transactions: transactionSets[i % transactionSets.length]!
    })
  }
  const signatures = [bytesOf(64), bytesOf(0), bytesOf(23), bytesOf(300)]
  const limits = { maxEventBytes: 1024 * 1024, maxTransactions: 20 }

  const outcome = (decode: typeof decodeEvent, input: Uint8Array): unknown => {
    try {
      const e = decode(input, limits)
      return {
        id: e.id, creator: e.creator, timestamp: e.timestamp, selfParent: copy(e.selfParent), otherParent: copy(e.otherParent),
        transactions: e.transactions.map(copy), signature: copy(e.signature), signedBytes: copy(e.signedBytes), hash: copy(e.hash), bytes: copy(e.bytes)
      }
    } catch (err) {
      if (!(err instanceof EventRejectedError)) throw err
      return { rejected: err.reason, message: err.message }
    }
  }
  const agree = (input: Uint8Array, what: string): unknown => {
    const reference = outcome(decodeEventWithDagCbor, input)
    assert.deepEqual(outcome(decodeEvent, input), reference, `${tag}: ${what}`)
    return reference
  }

  let valid = 0
  let refused = 0
  const inputs: Array<[Uint8Array, string]> = []
  for (const [i, body] of bodies.entries()) {
    const input = wire(encodeBody(body), signatures[i % signatures.length]!)
    const result = agree(input, `valid body ${i}`) as { rejected?: string }
    if (result.rejected === undefined) {
      valid++
      // The fixed-layout reader took it: the fields are views of the wire bytes, not copies.
      assert.equal(decodeEvent(input, limits).signature.buffer, input.buffer, `${tag}: body ${i} went through the generic decoder`)
    } else {
      assert.equal(result.rejected, 'too-many-transactions', `${tag}: valid body ${i} refused as ${result.rejected}`)
    }
    inputs.push([input, `body ${i}`])
  }
  assert.ok(valid >= 30, `${tag}: only ${valid} valid bodies`)

  // Same values, not the canonical layout: keys out of order, an extra key, integers and lengths
  // in more bytes than needed, an indefinite-length array, trailing bytes.
  const body = bodies[1]!
  const canonical = encodeBody(body)
  const variants: Array<[Uint8Array, string]> = [
    [wire(reorderedBody(body), bytesOf(64)), 'keys out of canonical order'],
    [wire(dagCbor.encode({ ...body, extra: 1 }), bytesOf(64)), 'an extra key'],
    [wire(Uint8Array.from([...canonical, 0]), bytesOf(64)), 'a trailing byte in the body'],
    [Uint8Array.from([...wire(canonical, bytesOf(64)), 0]), 'a trailing byte after the event'],
    [Uint8Array.from([0x9f, ...wire(canonical, bytesOf(64)).subarray(1), 0xff]), 'an indefinite-length outer array'],
    [Uint8Array.from([0x82, 0x5a, ...u32(canonical.length), ...canonical, 0x58, 64, ...bytesOf(64)]), 'a body length in 4 bytes'],
    [wire(withWideCreator(canonical), bytesOf(64)), 'the creator in 2 bytes']
  ]
  for (const [input, what] of variants) {
    const result = agree(input, what) as { rejected?: string }
    if (result.rejected !== undefined) refused++
    inputs.push([input, what])
  }

  // Random corruption of every input: flipped, inserted and deleted bytes, truncation.
  for (const [input, what] of inputs) {
    for (let k = 0; k < 60; k++) {
      const mutated = Array.from(input)
      const at = rng.int(mutated.length)
      const kind = rng.int(4)
      if (kind === 0) mutated[at] = mutated[at]! ^ (1 << rng.int(8))
      else if (kind === 1) mutated.splice(at, 0, rng.int(256))
      else if (kind === 2) mutated.splice(at, 1)
      else mutated.length = at
      const result = agree(Uint8Array.from(mutated), `${what}, mutation ${k} (kind ${kind} at ${at})`) as { rejected?: string }
      if (result.rejected !== undefined) refused++
    }
  }
  assert.ok(refused > 500, `${tag}: only ${refused} corrupted inputs were refused`)
  console.log(`# ${tag}: ${valid} valid events decoded identically, ${inputs.length * 60} corrupted inputs (${refused} refused, each with the same reason and message)`)
})

function copy (bytes: Uint8Array | null): number[] | null {
  return bytes === null ? null : Array.from(bytes)
}

function u32 (value: number): number[] {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff]
}

/** A body map with the same five entries in insertion order creator, selfParent, otherParent, timestamp, transactions (not canonical). */
function reorderedBody (body: EventBody): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.from([0xa5])]
  for (const key of ['creator', 'selfParent', 'otherParent', 'timestamp', 'transactions'] as const) {
    parts.push(dagCbor.encode(key), dagCbor.encode(body[key]))
  }
  return Buffer.concat(parts)
}

/** The canonical body with its creator (a small integer) re-encoded in 2 bytes. */
function withWideCreator (canonical: Uint8Array): Uint8Array {
  const keyEnd = 1 + 8 // map head, text head + 'creator'
  const value = canonical[keyEnd]!
  assert.ok(value < 24, 'creator is not a small integer')
  return Uint8Array.from([...canonical.subarray(0, keyEnd), 0x19, 0, value, ...canonical.subarray(keyEnd + 1)])
}
