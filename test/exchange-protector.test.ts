/**
 * The swarm's private-network protector (p2p/swarm/private-network.ts) against @libp2p/pnet, each
 * host in its own OS process on loopback: real dials both ways carry bytes intact, and a host with
 * another swarm key never completes a connection, in either direction and with either protector.
 */
import '../p2p/polyfills.js'
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { createSwarmKey, decodeSwarmKey, XSalsa20Stream } from '../p2p/swarm/index.js'
import { PeerProcess } from './support/peer-process.js'

// @libp2p/pnet's cipher, the reference for the keystream (its package ships no types).
const xsalsa20 = createRequire(import.meta.url)('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (input: Uint8Array) => Uint8Array }

const peerScript = fileURLToPath(new URL('./support/exchange-protector-peer.js', import.meta.url))
const peers: PeerProcess[] = []
after(async () => { await Promise.all(peers.map(async (peer) => { await peer.stop() })) })

async function start (protector: 'swarm' | 'pnet', swarmKey: Uint8Array): Promise<{ peer: PeerProcess, addr: string }> {
  const peer = new PeerProcess(peerScript, [protector, new TextDecoder().decode(swarmKey)])
  peers.push(peer)
  const { addr } = await peer.call<{ addr: string }>({ cmd: 'addr' })
  return { peer, addr }
}

test('the XSalsa20 keystream equals the one @libp2p/pnet uses (the xsalsa20 package), across uneven calls', () => {
  const key = decodeSwarmKey(createSwarmKey())
  const nonce = Uint8Array.from({ length: 24 }, (_, i) => i * 7)
  const input = Uint8Array.from({ length: 300_001 }, (_, i) => (i * 13) & 0xff)
  const expected = xsalsa20(nonce, key).update(input)
  const ours = new XSalsa20Stream(key, nonce)
  const output = new Uint8Array(input.byteLength)
  for (let offset = 0, i = 0; offset < input.byteLength; i++) {
    const end = Math.min(input.byteLength, offset + [1, 63, 64, 65, 7, 100_000][i % 6]!)
    ours.xor(input.subarray(offset, end), output.subarray(offset, end))
    offset = end
  }
  assert.deepEqual(Buffer.from(output), Buffer.from(expected))
})

test('a swarm key file in any other form is refused with a message naming the expected form', () => {
  assert.throws(() => decodeSwarmKey(new TextEncoder().encode('/key/swarm/psk/1.0.0/\n/base16/\nabc')), /64 hex digits/)
  assert.throws(() => decodeSwarmKey(new TextEncoder().encode('/key/swarm/psk/1.0.0/\n/base64/\n' + 'a'.repeat(64))), /\/base16\//)
  assert.equal(decodeSwarmKey(createSwarmKey()).byteLength, 32)
})

test('swarm protector and @libp2p/pnet interoperate: a real dial each way echoes 3 MiB intact', async () => {
  const swarmKey = createSwarmKey()
  const ours = await start('swarm', swarmKey)
  const theirs = await start('pnet', swarmKey)
  const bytes = 3 * 1024 * 1024 + 17
  const toPnet = await ours.peer.call<{ received: number, same: boolean }>({ cmd: 'echo', addr: theirs.addr, bytes })
  assert.deepEqual(toPnet, { sent: bytes, received: bytes, same: true })
  const toOurs = await theirs.peer.call<{ received: number, same: boolean }>({ cmd: 'echo', addr: ours.addr, bytes })
  assert.deepEqual(toOurs, { sent: bytes, received: bytes, same: true })
})

test('with another swarm key no connection completes, whichever protector either side runs', async () => {
  const key = createSwarmKey()
  const otherKey = createSwarmKey()
  const ours = await start('swarm', key)
  const theirs = await start('pnet', key)
  const oursOther = await start('swarm', otherKey)
  const theirsOther = await start('pnet', otherKey)
  // A control with the same key first, so a refusal below is the key and not the setup.
  assert.equal((await oursOther.peer.call<{ same: boolean }>({ cmd: 'echo', addr: theirsOther.addr, bytes: 1000 })).same, true)
  for (const [dialer, listener] of [[oursOther, ours], [oursOther, theirs], [theirsOther, ours], [ours, oursOther]] as const) {
    await assert.rejects(dialer.peer.call({ cmd: 'echo', addr: listener.addr, bytes: 1000 }), /failed/)
  }
})

test('the swarm protector\'s ciphers have no per-process limit (pnet\'s stopped after about 10,000)', () => {
  const key = decodeSwarmKey(createSwarmKey())
  const nonce = new Uint8Array(24)
  const block = new Uint8Array(64)
  let last: Uint8Array = new Uint8Array(0)
  for (let i = 0; i < 30_000; i++) last = new XSalsa20Stream(key, nonce).xor(block)
  // Still the right keystream after all of them: the first block of XSalsa20(key, nonce).
  assert.deepEqual(Buffer.from(last), Buffer.from(xsalsa20(nonce, key).update(block)))
})
