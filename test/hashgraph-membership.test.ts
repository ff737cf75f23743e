import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair, publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { EventRejectedError, Hashgraph, MEMBERSHIP_DELAY_ROUNDS, replay, type SignedEvent } from '../p2p/hashgraph/index.js'
import { Rng } from './support/gossip-sim.js'

/**
 * Membership by consensus: the application applies "add" / "remove" transactions from the ordered
 * stream by calling addMember / removeMember, at the same point of the order at every site.
 */
interface Site { key: PrivateKey, hashgraph: Hashgraph, ordered: string[], known: Set<string> }

function seededRandom (seed: number): () => number {
  const rng = new Rng(seed)
  return () => rng.next()
}

async function makeSites (genesisCount: number, extra: number): Promise<Site[]> {
  const keys = await Promise.all(Array.from({ length: genesisCount + extra }, async () => await generateKeyPair('Ed25519')))
  const genesis = keys.slice(0, genesisCount).map((k) => k.publicKey)
  let clock = 1_000_000_000n
  return keys.map((key) => {
    const site: Site = { key, hashgraph: undefined as unknown as Hashgraph, ordered: [], known: new Set() }
    site.hashgraph = new Hashgraph({
      members: genesis,
      self: { key },
      clock: () => (clock += 1000n),
      onTransactions: (txs) => {
        for (const t of txs) {
          const text = Buffer.from(t.transaction).toString()
          site.ordered.push(text)
          if (text.startsWith('add:')) site.hashgraph.addMember(publicKeyFromRaw(Buffer.from(text.slice(4), 'hex')))
          if (text.startsWith('remove:')) site.hashgraph.removeMember(Number(text.slice(7)))
        }
      }
    })
    site.hashgraph.start()
    return site
  })
}

/** Everything `from` holds that `to` lacks, in creation order (a topological order). */
function sync (all: SignedEvent[], from: Site, to: Site): void {
  for (const e of all) {
    if (from.known.has(e.id) && !to.known.has(e.id)) {
      to.hashgraph.receive(e.bytes)
      to.known.add(e.id)
    }
  }
}

function gossipStep (all: SignedEvent[], sites: Site[], active: number[], random: () => number, tx?: string): void {
  const i = active[Math.floor(random() * active.length)]!
  let j = active[Math.floor(random() * (active.length - 1))]!
  if (j === i) j = active[active.length - 1]!
  const me = sites[i]!
  sync(all, sites[j]!, me)
  if (tx !== undefined) me.hashgraph.submit(Buffer.from(tx))
  const other = sites[j]!.hashgraph
  const otherParent = other.selfId === null ? null : other.lastEventOf(other.selfId)?.id ?? null
  try {
    const event = me.hashgraph.createEvent({ otherParent: otherParent !== null && me.known.has(otherParent) ? otherParent : null })
    all.push(event)
    me.known.add(event.id)
  } catch (err) {
    // A site whose membership has not taken effect yet cannot create events: that is the rule.
    if (!(err instanceof EventRejectedError) || err.reason !== 'not-a-member') throw err
  }
}

function assertPrefixes (sites: Site[], seed: number): void {
  for (const a of sites) {
    for (const b of sites) {
      const n = Math.min(a.ordered.length, b.ordered.length)
      assert.deepEqual(a.ordered.slice(0, n), b.ordered.slice(0, n), `orders diverge (seed ${seed})`)
    }
  }
}

test('a member added by consensus joins from a common round, and thresholds follow the member set', async () => {
  const seed = 20261122
  const random = seededRandom(seed)
  const sites = await makeSites(4, 1)
  const joiner = sites[4]!
  const all: SignedEvent[] = []
  let active = [0, 1, 2, 3]
  const raw = Buffer.from(joiner.key.publicKey.raw).toString('hex')

  for (let step = 0; step < 60; step++) gossipStep(all, sites, active, random, `tx-${step}`)
  gossipStep(all, sites, active, random, `add:${raw}`)

  // The joiner only listens until its membership is in effect; the others gossip on.
  for (let step = 0; step < 20_000 && !sites.every((s) => s.hashgraph.memberCount === 5); step++) {
    gossipStep(all, sites, active, random, step % 10 === 0 ? `wait-${step}` : undefined)
    sync(all, sites[step % 4]!, joiner)
  }
  assert.equal(joiner.hashgraph.selfId, 4, `the joiner learned its creator id from the order (seed ${seed})`)
  for (const s of sites) assert.equal(s.hashgraph.memberCount, 5, 'every site opened the slot')

  // Before the change takes effect the joiner cannot create events that count.
  active = [0, 1, 2, 3, 4]
  for (let step = 0; step < 6000; step++) {
    gossipStep(all, sites, active, random, step % 25 === 0 ? `five-${step}` : undefined)
    if (sites.every((s) => s.ordered.includes('joined')) && step > 100) break
    if (step === 50) joiner.hashgraph.submit(Buffer.from('joined'))
  }
  assertPrefixes(sites, seed)
  for (const s of sites) {
    assert.ok(s.ordered.includes('joined'), `the new member's transaction is ordered everywhere (seed ${seed})`)
    assert.deepEqual(s.hashgraph.membersIn(), [0, 1, 2, 3, 4], 'five members now')
  }

  // With five members, two stopped leave 3 of 5 (3·3 > 2·5 fails): nothing new is ordered.
  const stoppedAt = sites[0]!.ordered.length
  for (let step = 0; step < 400; step++) gossipStep(all, sites, [0, 1, 2], random, step === 0 ? 'needs-four' : undefined)
  const settled = sites[0]!.ordered.length
  for (let step = 0; step < 1500; step++) gossipStep(all, sites, [0, 1, 2], random)
  assert.equal(sites[0]!.ordered.length, settled, `no progress with 3 of 5 live (seed ${seed})`)
  assert.ok(!sites[0]!.ordered.slice(stoppedAt).includes('needs-four'))

  // Bring them back: ordering resumes.
  for (let step = 0; step < 6000 && !sites.every((s) => s.ordered.includes('needs-four')); step++) gossipStep(all, sites, active, random)
  assertPrefixes(sites, seed)
  for (const s of sites) assert.ok(s.ordered.includes('needs-four'), `ordering resumed (seed ${seed})`)
})

test('removed members stop counting from a common round: two of the remaining two order alone', async () => {
  const seed = 7
  const random = seededRandom(seed)
  const sites = await makeSites(4, 0)
  const all: SignedEvent[] = []
  const active = [0, 1, 2, 3]
  for (let step = 0; step < 40; step++) gossipStep(all, sites, active, random, `tx-${step}`)
  gossipStep(all, sites, active, random, 'remove:3')
  gossipStep(all, sites, active, random, 'remove:2')
  let removedFrom = 0
  for (let step = 0; step < 20_000; step++) {
    gossipStep(all, sites, active, random, step % 10 === 0 ? `keep-${step}` : undefined)
    const lastOrdered = sites[0]!.hashgraph.lastOrderedRound
    if (sites.every((s) => s.ordered.includes('remove:2')) && removedFrom === 0) removedFrom = lastOrdered + MEMBERSHIP_DELAY_ROUNDS
    if (removedFrom > 0 && sites.every((s) => s.hashgraph.lastOrderedRound > removedFrom + 2)) break
  }
  assert.ok(removedFrom > 0, `the removals were ordered (seed ${seed})`)
  for (const s of sites) {
    assert.deepEqual(s.hashgraph.membersIn(), [0, 1], 'members 2 and 3 are out')
    assert.equal(s.hashgraph.membersIn(1).length, 4, 'and were in at the start')
  }
  // Two of four could never order; two of the two remaining members can.
  for (let step = 0; step < 3000 && !sites[0]!.ordered.includes('two'); step++) gossipStep(all, sites, [0, 1], random, step === 0 ? 'two' : undefined)
  assert.ok(sites[0]!.ordered.includes('two'), `the two remaining members order alone (seed ${seed})`)
  assertPrefixes(sites, seed)
})

test('replay (static membership) is unaffected by the membership hold', () => {
  // 40 rounds of a 1-member graph: each event is a new round; the hold would need ordering to keep up, replay does not hold.
  const events = Array.from({ length: 60 }, (_, k) => ({ id: `e${k}`, creator: 0, selfParent: k === 0 ? null : `e${k - 1}`, otherParent: null, timestamp: BigInt(k + 1), signature: Buffer.from([k + 1]) }))
  const output = replay({ members: 1, events })
  assert.equal(output.events.at(-1)!.round, 60)
  assert.ok(output.order.length >= 55)
})

test('a member removed from a three-member swarm keeps carrying the others to its last round: no deadlock at the change', async () => {
  // With three members every round needs all three witnesses strongly seen. The leaving member's
  // events that first strongly see the last round it counts in must still be accepted (as
  // carriers, never witnesses), or the two that stay can never form the round it leaves in.
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const random = seededRandom(seed)
    const sites = await makeSites(3, 0)
    const all: SignedEvent[] = []
    const active = [0, 1, 2]
    for (let step = 0; step < 30; step++) gossipStep(all, sites, active, random, `tx-${step}`)
    gossipStep(all, sites, active, random, 'remove:2')
    let removedFrom = 0
    for (let step = 0; step < 20_000; step++) {
      gossipStep(all, sites, active, random, step % 10 === 0 ? `keep-${step}` : undefined)
      if (removedFrom === 0 && sites.every((s) => s.ordered.includes('remove:2'))) removedFrom = Math.max(...sites.map((s) => s.hashgraph.lastOrderedRound)) + MEMBERSHIP_DELAY_ROUNDS
      if (removedFrom > 0 && sites.every((s) => s.hashgraph.lastOrderedRound > removedFrom + 2)) break
    }
    assert.ok(removedFrom > 0, `the removal was ordered (seed ${seed})`)
    for (const s of sites) {
      assert.ok(s.hashgraph.lastOrderedRound > removedFrom + 2, `site ${s.hashgraph.selfId} ordered past the removal's round ${removedFrom}: it reached ${s.hashgraph.lastOrderedRound} (seed ${seed})`)
      assert.deepEqual(s.hashgraph.membersIn(), [0, 1], 'member 2 is out')
    }
    assertPrefixes(sites, seed)
  }
})
