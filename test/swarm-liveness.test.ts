/**
 * Liveness from the bytes a connection receives (p2p/swarm/node.ts, `liveness`): an idle live
 * connection stays (its pings are answered), and a peer frozen with SIGSTOP — its kernel keeps
 * the TCP connection open, its process answers nothing — has its connection closed once nothing
 * came in for `silentMs` and a ping failed. The peer is a separate OS process; the node here is
 * the site's real libp2p host (TCP, the swarm key, noise, yamux).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { Registry } from 'prom-client'
import { createSwarmKey, createSwarmNode, parseSwarmKey, type ConnectionBytes } from '../p2p/swarm/index.js'
import { eventually } from './support/peer-process.js'

const swarmKey = new TextDecoder().decode(createSwarmKey())
const peer = spawn(process.execPath, [join(import.meta.dirname, 'support', 'swarm-liveness-peer.js'), swarmKey], { stdio: ['ignore', 'pipe', 'inherit'] })
const [line] = await once(createInterface({ input: peer.stdout }), 'line') as [string]
const dead: Array<{ peer: string, reason: string }> = []
const node = await createSwarmNode({
  privateKey: await generateKeyPair('Ed25519'),
  swarmKey: parseSwarmKey(swarmKey),
  listen: ['/ip4/127.0.0.1/tcp/0'],
  metricsRegistry: new Registry(),
  connectionBytes: new Map<string, ConnectionBytes>(),
  liveness: { silentMs: 1_500, probeTimeoutMs: 1_500, intervalMs: 250, onDead: (peer, reason) => { dead.push({ peer, reason }) } }
})

after(async () => {
  peer.kill('SIGCONT')
  peer.kill('SIGKILL')
  await node.stop()
})

test('an idle connection to a live peer stays open across several silent spells (its ping is answered)', async () => {
  const connection = await node.dial(multiaddr(line))
  await sleep(6_000)
  assert.equal(connection.status, 'open')
  assert.deepEqual(dead, [])
})

test('a frozen peer (SIGSTOP: its TCP connection stays open, nothing answers) has its connection closed, with the reason', async () => {
  const [connection] = node.getConnections()
  assert.ok(connection !== undefined)
  const remote = connection.remotePeer.toString()
  peer.kill('SIGSTOP')
  await eventually('the connection to the frozen peer found dead', async () => dead.length > 0 ? true : undefined, 60_000)
  assert.equal(dead.length, 1)
  assert.equal(dead[0]?.peer, remote)
  assert.match(dead[0]?.reason ?? '', /nothing received for \d+ s and a ping failed/)
  assert.notEqual(connection.status, 'open')
})
