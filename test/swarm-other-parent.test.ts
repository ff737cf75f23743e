import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Hashgraph, type SignedEvent } from '../p2p/hashgraph/index.js'
import { OtherParentChooser } from '../p2p/swarm/index.js'

test('the other-parent is the unreferenced event with the highest generation; between equals, the member taken least recently', () => {
  const chooser = new OtherParentChooser()
  assert.equal(chooser.take(), null, 'nothing received yet')
  // Member 2's events always arrive last (the case that left member 1 out before).
  chooser.noteReceived('a1', 1, 10)
  chooser.noteReceived('b1', 2, 10)
  assert.equal(chooser.take(), 'a1', 'equal generations: the first noted')
  assert.equal(chooser.take(), 'b1', 'then the other member')
  assert.equal(chooser.hasNew, false)
  chooser.noteReceived('a2', 1, 20)
  chooser.noteReceived('b2', 2, 20)
  assert.equal(chooser.take(), 'a2', 'member 1 was taken before member 2 last time: its turn')
  chooser.noteReceived('b3', 2, 30)
  chooser.noteReceived('c1', 3, 25)
  assert.equal(chooser.take(), 'b3', 'a higher generation wins over the member not taken yet')
  assert.equal(chooser.take(), 'c1')
  assert.equal(chooser.take(), 'c1', 'nothing new: the newest received event again (a heartbeat)')
})

test('a late-released older event does not replace a newer one; unusable ids are skipped', () => {
  const chooser = new OtherParentChooser()
  chooser.noteReceived('new', 1, 50)
  chooser.noteReceived('old', 1, 40)
  assert.equal(chooser.take(), 'new')
  chooser.noteReceived('gone', 1, 60)
  chooser.noteReceived('here', 2, 55)
  assert.equal(chooser.take((id) => id !== 'gone'), 'here', 'an id the hashgraph no longer resolves is never offered')
  assert.equal(chooser.hasNew, false)
})

/**
 * Three members of the real engine in lock-step: each step every member creates one event, and all
 * of them reach everyone at once, in creator order (so the newest event each member receives is
 * always from the same one). Returns how many steps until a transaction submitted at step 0 is
 * ordered at every member (Infinity if not within `maxSteps`).
 */
async function stepsToOrder (pick: 'newest' | 'chooser', maxSteps: number): Promise<number> {
  const keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
  let clock = 1_700_000_000_000_000_000n
  const ordered = [false, false, false]
  const members = keys.map((key, i) => {
    const hashgraph = new Hashgraph({
      members: keys.map((k) => k.publicKey),
      self: { creator: i, key },
      clock: () => clock,
      onTransactions: () => { ordered[i] = true }
    })
    hashgraph.start()
    return { hashgraph, chooser: new OtherParentChooser(), newest: null as string | null }
  })
  members[0]!.hashgraph.submit(new TextEncoder().encode('probe'))
  for (let step = 1; step <= maxSteps; step++) {
    clock += 1_000_000n
    const created: SignedEvent[] = members.map((m) => m.hashgraph.createEvent({ otherParent: pick === 'newest' ? m.newest : m.chooser.take() }))
    for (const [i, m] of members.entries()) {
      for (const event of created) {
        if (event.creator === i) continue
        m.hashgraph.receive(event.bytes)
        m.newest = event.id
        m.chooser.noteReceived(event.id, event.creator, m.hashgraph.status(event.id)!.generation)
      }
    }
    if (ordered.every(Boolean)) return step
  }
  return Infinity
}

test('with events arriving together, rotating the other-parent orders sooner than taking the newest (real engine)', async () => {
  const rotating = await stepsToOrder('chooser', 60)
  const newest = await stepsToOrder('newest', 60)
  assert.ok(Number.isFinite(rotating), 'the rotating choice orders the transaction within 60 steps')
  assert.ok(rotating < newest, `rotating: ${rotating} steps, newest-received: ${newest} steps`)
})
