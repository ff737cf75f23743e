/**
 * One swarm member in its own OS process, for multi-process tests of the swarm layer. Driven by
 * JSON lines on stdin; answers with JSON lines on stdout.
 *   argv: <genesis.json> <member index> <data dir> [sync delay ms]
 *   sync delay: every sync of the event log returns this much later (the disk made slow), to show
 *   that nothing waits on it that should not, and that nothing is shown before it returns
 *   genesis: { swarmId, swarmKey (text), keys: [hex protobuf private keys] }  (test-only: every key in one file)
 *   commands: {"cmd":"addr"} {"cmd":"dial","addr"} {"cmd":"submit","tx"} {"cmd":"status"} {"cmd":"sync"}
 *             {"cmd":"publish-raw","hex"} (bytes straight onto the events topic, bypassing the engine)
 *             {"cmd":"score","peer"} (this node's gossipsub score of a peer id)
 *             {"cmd":"hops"} (Date.now() when each own event's sync returned, and when each other
 *             member's event first reached this process: by gossip or by sync)
 */
import '../../p2p/polyfills.js'
import { fdatasync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { EventLog, Hashgraph } from '../../p2p/hashgraph/index.js'
import { createSwarmNode, eventsTopic, HashgraphGossip, parseSwarmKey } from '../../p2p/swarm/index.js'

const [genesisPath, indexArg, dataDir, syncDelayArg] = process.argv.slice(2)
const syncDelayMs = Number(syncDelayArg ?? 0)
const genesis = JSON.parse(readFileSync(genesisPath!, 'utf8')) as { swarmId: string, swarmKey: string, keys: string[] }
const self = Number(indexArg)
const keys = genesis.keys.map((hex) => privateKeyFromProtobuf(Buffer.from(hex, 'hex')))
// A slow disk is simulated in the thread-pool sync (the inline one cannot be slowed from here).
const log = new EventLog(join(dataDir!, 'hashgraph.sqlite'), syncDelayMs === 0
  ? {}
  : { syncMode: 'pool', syncFile: (fd, done) => { fdatasync(fd, (err) => { setTimeout(() => { done(err) }, syncDelayMs) }) } })
const ordered: string[] = []
const hashgraph = new Hashgraph({
  members: keys.map((k) => k.publicKey),
  self: { creator: self, key: keys[self]! },
  log,
  onTransactions: (txs) => { for (const t of txs) ordered.push(Buffer.from(t.transaction).toString()) }
})
hashgraph.start()
const node = await createSwarmNode({ privateKey: keys[self]!, swarmKey: parseSwarmKey(genesis.swarmKey), listen: ['/ip4/127.0.0.1/tcp/0'], scoredTopics: [eventsTopic(genesis.swarmId)] })
const errors: string[] = []
const hops = { durable: {} as Record<string, number>, received: {} as Record<string, number> }
const gossip = new HashgraphGossip({
  node,
  hashgraph,
  swarmId: genesis.swarmId,
  peers: () => keys.map((k) => peerIdFromPrivateKey(k)),
  onError: (err) => { errors.push(err.message) },
  onHop: (stage, eventId) => {
    // Date.now(): one clock for every process on this host (performance.now() is per process).
    if (stage === 'durable') hops.durable[eventId] = Date.now()
    if (stage === 'received') hops.received[eventId] ??= Date.now()
  }
})
await gossip.start()

const reply = (value: unknown): void => { process.stdout.write(JSON.stringify(value) + '\n') }
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as { cmd: string, addr?: string, tx?: string, hex?: string, peer?: string }
  try {
    switch (command.cmd) {
      case 'addr': reply({ addr: node.getMultiaddrs()[0]!.toString() }); break
      case 'dial': await node.dial(multiaddr(command.addr!)); reply({ ok: true }); break
      case 'submit': gossip.submit(Buffer.from(command.tx!)); reply({ ok: true }); break
      case 'sync': await gossip.syncWithAll(); reply({ ok: true }); break
      case 'publish-raw': {
        const result = await node.services.pubsub.publish(gossip.topic, Buffer.from(command.hex!, 'hex'))
        reply({ recipients: result.recipients.length })
        break
      }
      case 'score': reply({ score: (node.services.pubsub as unknown as { getScore: (peer: string) => number }).getScore(command.peer!) }); break
      case 'hops': reply(hops); break
      case 'peer-id': reply({ peerId: node.peerId.toString() }); break
      case 'status': reply({ ordered, snapshot: hashgraph.snapshot(), peers: node.getPeers().length, forks: hashgraph.forks.length, errors }); break
      default: reply({ error: `unknown command ${command.cmd}` })
    }
  } catch (err) {
    reply({ error: (err as Error).message })
  }
}
await gossip.stop()
await node.stop()
hashgraph.stop()
log.close()
