import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { decodeEvent } from '../p2p/hashgraph/index.js'
import { createSwarmNode, parseSwarmKey } from '../p2p/swarm/index.js'
import { eventually } from './support/peer-process.js'
import { allOrdered, connect as connectAll, makeSwarm, startPeer } from './support/swarm-peers.js'

const PUSH = '/hgmig/test-swarm/events/push/1.0.0'
const LIMITS = { maxEventBytes: 1024 * 1024, maxTransactions: 10_000 }

/**
 * The pusher keeps its own list of connected members (from libp2p's connect and disconnect
 * events, instead of asking libp2p for its peers on every own event): a member that hangs up and
 * connects again must get a new push stream and the pusher's events on it, and nothing is pushed
 * to it while it is away. Three members in their own processes; this test process is the fourth
 * (its own libp2p node, member 3's identity, no hashgraph).
 */
test('a member that disconnects and connects again is pushed to again', async () => {
  const swarm = await makeSwarm(4)
  const peers = [0, 1, 2].map((i) => startPeer(swarm, i))
  const genesis = JSON.parse(readFileSync(swarm.genesis, 'utf8')) as { swarmKey: string, keys: string[] }
  const node = await createSwarmNode({ privateKey: privateKeyFromProtobuf(Buffer.from(genesis.keys[3]!, 'hex')), swarmKey: parseSwarmKey(genesis.swarmKey), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const pushed: Array<{ stream: number, creator: number, transactions: string[] }> = []
  let pushStreams = 0
  await node.handle(PUSH, (stream) => {
    const streamNumber = ++pushStreams
    const lp = lpStream(stream, { maxDataLength: 2 * 1024 * 1024 })
    void (async () => {
      for (;;) {
        const event = decodeEvent((await lp.read()).subarray(), LIMITS)
        pushed.push({ stream: streamNumber, creator: event.creator, transactions: event.transactions.map((t) => Buffer.from(t).toString()) })
      }
    })().catch(() => { /* the stream ended */ })
  }, { maxInboundStreams: 4 })
  const carried = (tx: string): boolean => pushed.some((e) => e.transactions.includes(tx))
  try {
    await connectAll(peers)
    const member0 = peerIdFromString((await peers[0]!.call<{ peerId: string }>({ cmd: 'peer-id' })).peerId)
    const member0Addr = multiaddr((await peers[0]!.call<{ addr: string }>({ cmd: 'addr' })).addr)
    await node.dial(member0Addr)
    await eventually('member 0 opened a push stream to member 3 when it connected', async () => pushStreams > 0 ? true : undefined)
    await peers[0]!.call({ cmd: 'submit', tx: 'first' })
    await allOrdered(peers, 1)
    await eventually('member 0 pushed its transaction to member 3', async () => carried('first') ? true : undefined)

    await node.hangUp(member0)
    await eventually('member 0 saw member 3 go', async () => (await peers[0]!.call<{ peers: number }>({ cmd: 'status' })).peers === 2 ? true : undefined)
    const streamsBefore = pushStreams
    await peers[0]!.call({ cmd: 'submit', tx: 'while-away' })
    await allOrdered(peers, 2)
    assert.equal(carried('while-away'), false, 'nothing pushed to a member that is not connected')

    await node.dial(member0Addr)
    // Events keep coming while anything is unordered: each submission makes a few more.
    let round = 0
    await eventually('member 0 opened a new push stream and pushed on it', async () => {
      await peers[0]!.call({ cmd: 'submit', tx: `back-${round++}` })
      return pushStreams > streamsBefore && pushed.some((e) => e.stream > streamsBefore && e.creator === 0) ? true : undefined
    }, 30_000)
    assert.ok(pushed.every((e) => e.creator === 0), 'a member pushes only its own events')
    const statuses = await allOrdered(peers, 2 + round)
    assert.equal(new Set(statuses.map((s) => s.snapshot.runningHash)).size, 1, 'one order at every site')
    for (const s of statuses) assert.deepEqual(s.errors, [])
  } finally {
    await node.stop()
    await Promise.all(peers.map(async (p) => { await p.stop() }))
  }
})
