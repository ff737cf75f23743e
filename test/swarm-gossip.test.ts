import { test } from 'node:test'
import assert from 'node:assert/strict'
import { eventually } from './support/peer-process.js'
import { allOrdered, connect as connectAll, makeSwarm, startPeer, type PeerStatus as Status } from './support/swarm-peers.js'

test('separate processes on loopback gossip a hashgraph and agree on one order; a killed member catches up after restart', async () => {
  const swarm = await makeSwarm(4)
  const peers = [0, 1, 2, 3].map((i) => startPeer(swarm, i))
  try {
    await connectAll(peers)
    for (let k = 0; k < 5; k++) {
      for (let i = 0; i < peers.length; i++) await peers[i]!.call({ cmd: 'submit', tx: `site${i}-tx${k}` })
    }
    const first = await allOrdered(peers, 20)
    const order = first[0]!.ordered.slice(0, 20)
    assert.deepEqual(new Set(order).size, 20, 'every transaction ordered once')
    for (const s of first) assert.deepEqual(s.ordered.slice(0, 20), order, 'the same order at every site')
    for (const s of first) assert.equal(s.forks, 0)

    // Kill -9 one site: three of four remain (3 > 2·4/3), so ordering continues without it.
    await peers[3]!.kill()
    for (let k = 0; k < 3; k++) await peers[k]!.call({ cmd: 'submit', tx: `while-down-${k}` })
    const during = await allOrdered(peers.slice(0, 3), 23)
    assert.deepEqual(during[1]!.ordered.slice(0, 23), during[0]!.ordered.slice(0, 23))

    // Restart it on the same data directory: it replays its log, syncs the rest, and agrees.
    peers[3] = startPeer(swarm, 3)
    await connectAll(peers)
    await peers[3].call({ cmd: 'sync' })
    await peers[3].call({ cmd: 'submit', tx: 'after-restart' })
    const after = await allOrdered(peers, 24)
    const reference = after[0]!.ordered.slice(0, 24)
    for (const s of after) assert.deepEqual(s.ordered.slice(0, 24), reference, 'the restarted site holds the same order')
    for (const s of after) assert.equal(s.forks, 0, 'the restarted site did not fork itself')
    assert.ok(reference.includes('after-restart'))
  } finally {
    await Promise.all(peers.map(async (p) => { await p.stop() }))
  }
})

test('a node with a wrong swarm key cannot connect', async () => {
  const swarm = await makeSwarm(2)
  const other = await makeSwarm(2)
  const member = startPeer(swarm, 0)
  const outsider = startPeer(other, 1)
  try {
    const { addr } = await member.call<{ addr: string }>({ cmd: 'addr' })
    await assert.rejects(outsider.call({ cmd: 'dial', addr }), /failed/)
    const status = await member.call<Status>({ cmd: 'status' })
    assert.equal(status.peers, 0, 'no connection was established')
  } finally {
    await member.stop()
    await outsider.stop()
  }
})

test('malformed, badly signed and oversized gossip is dropped, lowers the sender\'s score, and crashes nobody', async () => {
  const swarm = await makeSwarm(3)
  const peers = [0, 1, 2].map((i) => startPeer(swarm, i))
  try {
    await connectAll(peers)
    const sender = (await peers[2]!.call<{ peerId: string }>({ cmd: 'peer-id' })).peerId
    // Each probe differs: gossipsub ids unsigned messages by their content, and drops a repeat as seen.
    let probe = 0
    await eventually('topic meshes formed', async () => {
      const r = await peers[2]!.call<{ recipients: number }>({ cmd: 'publish-raw', hex: (probe++).toString(16).padStart(8, '0') })
      return r.recipients >= 2 ? true : undefined
    })
    const garbage = [
      'ff00ff00', // not CBOR
      Buffer.from('a26161016162f6', 'hex').toString('hex'), // CBOR, not an event
      // An event-shaped [body, signature] with a signature that cannot be right.
      Buffer.concat([Buffer.from([0x82, 0x58, 0x20]), Buffer.alloc(32, 1), Buffer.from([0x58, 0x40]), Buffer.alloc(64, 2)]).toString('hex')
    ]
    for (const hex of garbage) await peers[2]!.call({ cmd: 'publish-raw', hex })
    // Larger than any member accepts (gossipsub's inbound limit): the stream carrying it is dropped.
    await peers[2]!.call({ cmd: 'publish-raw', hex: Buffer.alloc(1200 * 1024, 7).toString('hex') })
    const score = await eventually('the sender\'s score lowered at member 0', async () => {
      const { score } = await peers[0]!.call<{ score: number }>({ cmd: 'score', peer: sender })
      return score < 0 ? score : undefined
    })
    assert.ok(score < 0)
    // Everyone still works: a transaction from each member is ordered at all three.
    for (const [i, peer] of peers.entries()) await peer.call({ cmd: 'submit', tx: `after-garbage-${i}` })
    const statuses = await allOrdered(peers, 3)
    for (const status of statuses) assert.deepEqual([...status.ordered].sort(), ['after-garbage-0', 'after-garbage-1', 'after-garbage-2'])
    assert.equal(new Set(statuses.map((s) => s.snapshot.runningHash)).size, 1)
  } finally {
    await Promise.all(peers.map(async (p) => { await p.stop() }))
  }
})

interface Hops { durable: Record<string, number>, received: Record<string, number> }

test('an own event reaches no one, by gossip or by sync, before its sync to disk returned; a slow disk slows ordering but stops nothing', async () => {
  const swarm = await makeSwarm(3)
  // Member 0's disk answers 150 ms late: anything that shows its events before the sync returns
  // shows them ~150 ms early, far beyond the clock's millisecond.
  const syncDelayMs = 150
  const peers = [startPeer(swarm, 0, syncDelayMs), startPeer(swarm, 1), startPeer(swarm, 2)]
  try {
    await connectAll(peers)
    for (let k = 0; k < 4; k++) {
      for (let i = 0; i < peers.length; i++) await peers[i]!.call({ cmd: 'submit', tx: `slow-disk-${i}-${k}` })
      // Syncs asked of member 0 while its newest event waits for the disk: the sync server must hold it back.
      await Promise.all([peers[1]!.call({ cmd: 'sync' }), peers[2]!.call({ cmd: 'sync' })])
    }
    const statuses = await allOrdered(peers, 12)
    assert.equal(new Set(statuses.map((s) => s.snapshot.runningHash)).size, 1, 'one order at every site')
    for (const s of statuses) assert.deepEqual(s.errors, [])
    const [own, ...others] = await Promise.all(peers.map(async (p) => await p.call<Hops>({ cmd: 'hops' })))
    const durable = Object.entries(own!.durable)
    assert.ok(durable.length >= 4, `member 0 synced only ${durable.length} own events`)
    let compared = 0
    const early: string[] = []
    for (const [i, hops] of others.entries()) {
      for (const [id, durableAt] of durable) {
        const receivedAt = hops.received[id]
        if (receivedAt === undefined) continue
        compared++
        if (receivedAt < durableAt) early.push(`member ${i + 1} had event ${id.slice(0, 12)} ${durableAt - receivedAt} ms before it was on member 0's disk`)
      }
    }
    assert.ok(compared >= 8, `only ${compared} receipts of member 0's events to compare`)
    assert.deepEqual(early, [], 'an own event was shown before it was durable')
  } finally {
    await Promise.all(peers.map(async (p) => { await p.stop() }))
  }
})
