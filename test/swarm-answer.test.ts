import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Hashgraph, type SignedEvent } from '../p2p/hashgraph/index.js'
import { OtherParentChooser } from '../p2p/swarm/index.js'

test('an answer takes one other-parent per member with a new event, up to the limit; nothing new: the newest received', () => {
  const chooser = new OtherParentChooser()
  assert.deepEqual(chooser.takeEach(4), [null], 'nothing received yet: one event without an other-parent')
  chooser.noteReceived('a1', 1, 10)
  chooser.noteReceived('b1', 2, 11)
  chooser.noteReceived('c1', 3, 12)
  assert.deepEqual(chooser.takeEach(2), ['c1', 'b1'], 'the two highest generations first')
  assert.deepEqual(chooser.takeEach(2), ['a1'], 'the one left over')
  assert.deepEqual(chooser.takeEach(2), ['c1'], 'nothing new: the newest received (a heartbeat)')
  chooser.noteReceived('a2', 1, 20)
  chooser.noteReceived('a3', 1, 21)
  assert.deepEqual(chooser.takeEach(4, (id) => id !== 'a3'), [null], 'an id the hashgraph cannot resolve is never offered, not even as the newest')
})

/**
 * `n` members of the real engine in lock-step: at each step every member answers what it received
 * in the step before, and all events of a step reach every other member at once, in creator
 * order. 'each': one own event per member whose new event arrived (HashgraphGossip's default,
 * OtherParentChooser.takeEach), all of them made durable together (createPendingEvents);
 * 'rotate': one own event per step. Returns the steps (= hops) from the submission of a
 * transaction at member 0 until every member ordered it, and the own events per member per step.
 */
async function lockStep (n: number, answer: 'each' | 'rotate', submitAtStep: number, maxSteps = 60): Promise<{ steps: number, eventsPerStep: number }> {
  const keys = await Promise.all(Array.from({ length: n }, async () => await generateKeyPair('Ed25519')))
  let clock = 1_700_000_000_000_000_000n
  const ordered = new Array<boolean>(n).fill(false)
  let watching = false
  const members = keys.map((key, i) => {
    const hashgraph = new Hashgraph({
      members: keys.map((k) => k.publicKey),
      self: { creator: i, key },
      clock: () => clock,
      onTransactions: () => { if (watching) ordered[i] = true }
    })
    hashgraph.start()
    return { hashgraph, chooser: new OtherParentChooser(), inbox: [] as SignedEvent[] }
  })
  let created = 0
  for (let step = 1; step <= maxSteps; step++) {
    if (step === submitAtStep) {
      members[0]!.hashgraph.submit(new TextEncoder().encode('probe'))
      watching = true
    }
    clock += 1_000_000n
    const sent: SignedEvent[] = []
    for (const m of members) {
      for (const event of m.inbox) {
        m.hashgraph.receive(event.bytes)
        m.chooser.noteReceived(event.id, event.creator, m.hashgraph.status(event.id)!.generation)
      }
      m.inbox = []
      const usable = (id: string): boolean => m.hashgraph.has(id)
      const otherParents = answer === 'each' ? m.chooser.takeEach(n - 1, usable) : [m.chooser.take(usable)]
      const { events } = m.hashgraph.createPendingEvents(otherParents)
      sent.push(...events)
      created += events.length
    }
    for (const event of sent) for (const [j, m] of members.entries()) if (j !== event.creator) m.inbox.push(event)
    if (watching && ordered.every(Boolean)) return { steps: step - submitAtStep + 1, eventsPerStep: created / step / n }
  }
  return { steps: Infinity, eventsPerStep: created / maxSteps / n }
}

test('answering each member\'s new event orders in 6-7 hops at 3 and 5 members, sooner than one event per answer (real engine, lock-step)', async () => {
  for (const n of [3, 5]) {
    for (const submitAtStep of [4, 5]) {
      const each = await lockStep(n, 'each', submitAtStep)
      const rotate = await lockStep(n, 'rotate', submitAtStep)
      assert.ok(each.steps <= 7, `${n} members, answering each: ${each.steps} steps`)
      assert.ok(each.steps < rotate.steps, `${n} members: answering each ${each.steps} steps, one event per answer (rotate) ${rotate.steps}`)
      // The price: one own event per other member per step (n - 1), one disk sync.
      assert.ok(each.eventsPerStep <= n - 1, `${each.eventsPerStep} own events per member per step`)
    }
  }
})
