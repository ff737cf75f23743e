/**
 * The migration protocol's byte channels over real libp2p (two swarm nodes on loopback TCP in this
 * process, the same stack as the agent's): a write that waits for the stream to drain leaves no
 * listener behind on the migration's signal, and a stream the other end resets under a waiting
 * write fails with an error that names the reset, not "[object Event]".
 */
import '../p2p/polyfills.js'
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { PeerLostError } from '../p2p/migration/errors.js'
import { WireCounter, byteChannel } from '../p2p/migration/wire.js'
import { createSwarmKey, createSwarmNode, type SwarmNode } from '../p2p/swarm/index.js'

const PROTOCOL = '/hgmig/wire-test/1.0.0'
let sender: SwarmNode
let receiver: SwarmNode
/** Inbound streams at the receiver, in arrival order: each test decides when (or whether) to read. */
const inbound: Stream[] = []
let inboundArrived: () => void = () => {}

before(async () => {
  const swarmKey = createSwarmKey()
  sender = await createSwarmNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
  receiver = await createSwarmNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
  await receiver.handle(PROTOCOL, (stream) => { inbound.push(stream); inboundArrived() })
  await sender.dial(receiver.getMultiaddrs()[0] as Parameters<SwarmNode['dial']>[0])
})

after(async () => {
  await sender?.stop()
  await receiver?.stop()
})

async function openPair (): Promise<{ out: Stream, in: Stream }> {
  const arrived = new Promise<void>((resolve) => { inboundArrived = resolve })
  const out = await sender.dialProtocol(receiver.getMultiaddrs()[0] as Parameters<SwarmNode['dial']>[0], PROTOCOL)
  // The stream reaches the receiver with its first bytes.
  out.send(new Uint8Array([1]))
  await arrived
  const stream = inbound[inbound.length - 1] as Stream
  // The receiver takes everything in (as the migration's readers do, with a large buffer).
  stream.maxReadBufferLength = 1024 * 1024 * 1024
  stream.addEventListener('message', () => {})
  return { out, in: stream }
}

const PIECE = new Uint8Array(1024 * 1024)

test('writes that wait for drain leave no abort listener on the migration signal', async () => {
  const pair = await openPair()
  const migration = new AbortController()
  const channel = byteChannel(pair.out, 'memory', new WireCounter())
  let drains = 0
  pair.out.addEventListener('drain', () => { drains++ })
  // Back to back, faster than the connection carries them: some writes wait for 'drain'.
  for (let i = 0; i < 64; i++) {
    await channel.write(PIECE, { signal: migration.signal })
    assert.equal(getEventListeners(migration.signal, 'abort').length, 0, `after write ${i} (${drains} drains so far)`)
  }
  assert.ok(drains > 0, 'some writes waited for the stream to drain')
  pair.out.abort(new Error('test done'))
})

test('a stream aborted under a waiting write fails with an error naming the cause, not "[object Event]"', async () => {
  const pair = await openPair()
  const channel = byteChannel(pair.out, 'disk', new WireCounter())
  for (let i = 0; i < 256; i++) {
    let settled = false
    const write = channel.write(PIECE, { signal: new AbortController().signal }).finally(() => { settled = true })
    // Microtasks only: the connection cannot drain meanwhile, so a write that needs 'drain' is still waiting.
    for (let turn = 0; turn < 50 && !settled && !pair.out.writableNeedsDrain; turn++) await Promise.resolve()
    if (settled || !pair.out.writableNeedsDrain) { await write; continue }
    // This write waits for 'drain': the stream ends under it (as the engine aborts a cancelled migration's streams).
    pair.out.abort(new Error('the migration was cancelled here'))
    const err = await write.then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof PeerLostError, `got ${String(err)}`)
    assert.doesNotMatch(err.message, /\[object /)
    assert.equal(err.message, 'disk stream: the migration was cancelled here')
    return
  }
  assert.fail('no write ever waited for drain')
})
