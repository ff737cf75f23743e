import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { decodeEvent } from '../p2p/hashgraph/index.js'
import { createSwarmNode, parseSwarmKey } from '../p2p/swarm/index.js'
import { eventually } from './support/peer-process.js'
import { allOrdered, connect as connectAll, makeSwarm, startPeer } from './support/swarm-peers.js'

const PUSH = '/hgmig/test-swarm/events/push/1.0.0'
const LIMITS = { maxEventBytes: 1024 * 1024, maxTransactions: 10_000 }

/** Resolves when the stream has been closed or reset (by either end). */
async function closed (stream: Stream): Promise<void> {
  await eventually('the push stream closed by the member', async () => stream.status !== 'open' || stream.remoteWriteStatus !== 'writable' ? true : undefined, 20_000)
}

/**
 * Three members in their own processes, and this test process as the fourth member (its own
 * libp2p node, the swarm's key and member 3's identity; no hashgraph): it receives what the
 * members push, then pushes garbage itself.
 */
test('members push their own events over a stream per member; garbage on a push stream closes it, lowers the sender\'s score, and repeated faults get its pushes refused', async () => {
  const swarm = await makeSwarm(4)
  const peers = [0, 1, 2].map((i) => startPeer(swarm, i))
  const genesis = JSON.parse(readFileSync(swarm.genesis, 'utf8')) as { swarmKey: string, keys: string[] }
  const node = await createSwarmNode({ privateKey: privateKeyFromProtobuf(Buffer.from(genesis.keys[3]!, 'hex')), swarmKey: parseSwarmKey(genesis.swarmKey), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const pushedTo: Array<{ creator: number, transactions: number }> = []
  let pushStreams = 0
  await node.handle(PUSH, (stream) => {
    pushStreams++
    const lp = lpStream(stream, { maxDataLength: 2 * 1024 * 1024 })
    void (async () => {
      for (;;) {
        const frame = (await lp.read()).subarray()
        const event = decodeEvent(frame, LIMITS)
        pushedTo.push({ creator: event.creator, transactions: event.transactions.length })
      }
    })().catch(() => { /* the stream ended */ })
  })
  try {
    await connectAll(peers)
    const member0 = peerIdFromString((await peers[0]!.call<{ peerId: string }>({ cmd: 'peer-id' })).peerId)
    await node.dial(multiaddr((await peers[0]!.call<{ addr: string }>({ cmd: 'addr' })).addr))
    await eventually('member 0 opened a push stream to member 3 when it connected', async () => pushStreams > 0 ? true : undefined)
    // Three of four members order (3 > 2·4/3); member 0 pushes each own event to us as well.
    for (const [i, peer] of peers.entries()) await peer.call({ cmd: 'submit', tx: `pushed-${i}` })
    await allOrdered(peers, 3)
    await eventually('member 0 pushed its own events to member 3', async () => pushedTo.some((e) => e.creator === 0 && e.transactions > 0) ? true : undefined)
    assert.ok(pushedTo.every((e) => e.creator === 0), 'a member pushes only its own events')

    const score = async (): Promise<number> => (await peers[0]!.call<{ score: number }>({ cmd: 'score', peer: node.peerId.toString() })).score
    assert.equal(await score(), 0, 'nothing counted against member 3 yet')
    const garbage: Array<{ what: string, raw: Uint8Array }> = [
      // A length prefix, then CBOR that is no event.
      { what: 'malformed', raw: Uint8Array.from([7, 0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0xf6]) },
      // An event-shaped [body, signature] whose signature cannot verify.
      { what: 'badly signed', raw: lengthPrefixed(Buffer.concat([Buffer.from([0x82, 0x58, 0x20]), Buffer.alloc(32, 1), Buffer.from([0x58, 0x40]), Buffer.alloc(64, 2)])) },
      // A length prefix of 64 MiB: more than any member accepts; refused before a byte of it is read.
      { what: 'oversized', raw: Uint8Array.from([0x80, 0x80, 0x80, 0x20]) }
    ]
    for (const { what, raw } of garbage) {
      const stream = await node.dialProtocol(member0, PUSH)
      stream.send(raw)
      await closed(stream)
      assert.notEqual(stream.status, 'open', `a ${what} frame closes the push stream`)
    }
    // Gossipsub caches a score for a second: ask until the faults show.
    const lowered = await eventually('member 0 lowered its gossipsub score of member 3', async () => { const s = await score(); return s < 0 ? s : undefined }, 20_000)
    assert.ok(lowered <= -10, `member 0's gossipsub score of member 3 is ${lowered} after three faults`)
    // After three faults, member 0 refuses member 3's push streams for a while.
    const refused = await node.dialProtocol(member0, PUSH).catch(() => null)
    if (refused !== null) await closed(refused)
    // The members still order everything, and member 3 still gets member 0's events.
    const before = pushedTo.length
    for (const [i, peer] of peers.entries()) await peer.call({ cmd: 'submit', tx: `after-garbage-${i}` })
    const statuses = await allOrdered(peers, 6)
    assert.equal(new Set(statuses.map((s) => s.snapshot.runningHash)).size, 1, 'one order at every site')
    for (const s of statuses) assert.deepEqual(s.errors, [])
    await eventually('member 0 still pushes to member 3', async () => pushedTo.length > before ? true : undefined)
  } finally {
    await node.stop()
    await Promise.all(peers.map(async (p) => { await p.stop() }))
  }
})

function lengthPrefixed (bytes: Uint8Array): Uint8Array {
  // Frames here are < 128 bytes: a one-byte varint.
  assert.ok(bytes.byteLength < 128)
  return Uint8Array.from([bytes.byteLength, ...bytes])
}
