import { test } from 'node:test'
import assert from 'node:assert/strict'
import { allOrdered, connect, makeSwarm, startPeer } from './support/swarm-peers.js'

// Events that come straight from their creator are not forwarded by gossipsub (the creator sent
// them to every member it reaches): a member the creator does not reach must still get them.
test('members not connected to each other still order each other\'s transactions when creators\' own events are not relayed', async () => {
  const swarm = await makeSwarm(3)
  const peers = [0, 1, 2].map((i) => startPeer(swarm, i))
  try {
    // A line: 0 — 1 — 2. Member 1 hears 0's and 2's events from their creators and relays neither.
    await connect(peers, [[0, 1], [1, 2]])
    for (let k = 0; k < 3; k++) {
      await peers[0]!.call({ cmd: 'submit', tx: `end-0-${k}` })
      await peers[2]!.call({ cmd: 'submit', tx: `end-2-${k}` })
    }
    const statuses = await allOrdered(peers, 6)
    for (const s of statuses) assert.deepEqual([...s.ordered].sort(), ['end-0-0', 'end-0-1', 'end-0-2', 'end-2-0', 'end-2-1', 'end-2-2'])
    assert.equal(new Set(statuses.map((s) => s.snapshot.runningHash)).size, 1, 'one order at every site')
    for (const s of statuses) assert.deepEqual(s.errors, [])
    // Otherwise the test proved nothing: the two ends must not have found each other.
    assert.equal(statuses[0]!.peers, 1, 'member 0 is connected to member 1 only')
    assert.equal(statuses[2]!.peers, 1, 'member 2 is connected to member 1 only')
  } finally {
    await Promise.all(peers.map(async (p) => { await p.stop() }))
  }
})
