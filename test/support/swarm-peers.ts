/** Swarms of gossip-peer.ts processes for the swarm layer's multi-process tests. */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createSwarmKey } from '../../p2p/swarm/index.js'
import { tempDir } from './temp-dir.js'
import { eventually, PeerProcess } from './peer-process.js'

const peerScript = fileURLToPath(new URL('./gossip-peer.js', import.meta.url))

export interface PeerStatus { ordered: string[], snapshot: { eventPosition: number, runningHash: string }, peers: number, forks: number, errors: string[] }

export interface TestSwarm { dir: string, genesis: string }

/** A genesis file with `members` fresh keys and a swarm key, in a new temporary directory. */
export async function makeSwarm (members: number): Promise<TestSwarm> {
  const dir = tempDir('hgmig-swarm-')
  const keys = await Promise.all(Array.from({ length: members }, async () => await generateKeyPair('Ed25519')))
  const genesis = join(dir, 'genesis.json')
  writeFileSync(genesis, JSON.stringify({
    swarmId: 'test-swarm',
    swarmKey: new TextDecoder().decode(createSwarmKey()),
    keys: keys.map((k) => Buffer.from(privateKeyToProtobuf(k)).toString('hex'))
  }))
  return { dir, genesis }
}

/** `syncDelayMs`: the member's event log syncs return that much later (a slow disk). */
export function startPeer (swarm: TestSwarm, index: number, syncDelayMs = 0): PeerProcess {
  const data = join(swarm.dir, `site-${index}`)
  mkdirSync(data, { recursive: true })
  return new PeerProcess(peerScript, [swarm.genesis, String(index), data, String(syncDelayMs)])
}

/** Dials the pairs given (by index), or every pair. */
export async function connect (peers: PeerProcess[], pairs?: Array<[number, number]>): Promise<void> {
  const addrs = await Promise.all(peers.map(async (p) => (await p.call<{ addr: string }>({ cmd: 'addr' })).addr))
  const all: Array<[number, number]> = []
  for (let i = 0; i < peers.length; i++) for (let j = i + 1; j < peers.length; j++) all.push([i, j])
  for (const [i, j] of pairs ?? all) await peers[i]!.call({ cmd: 'dial', addr: addrs[j] })
}

export async function allOrdered (peers: PeerProcess[], expected: number): Promise<PeerStatus[]> {
  return await eventually(`${expected} transactions ordered at ${peers.length} sites`, async () => {
    const statuses = await Promise.all(peers.map(async (p) => await p.call<PeerStatus>({ cmd: 'status' })))
    return statuses.every((s) => s.ordered.length >= expected) ? statuses : undefined
  }, 120_000)
}
