/**
 * `swarm.json`: the swarm's genesis, identical at every site: its id and name, the pnet swarm key,
 * consensus and store parameters, and the founding members (index = hashgraph creator id).
 * Membership is static for now; members added later by consensus are not written back here.
 */
import { randomBytes } from 'node:crypto'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromPublicKey } from '@libp2p/peer-id'
import { DEFAULT_COIN_ROUND_FREQUENCY } from '../hashgraph/index.js'
import { DEFAULT_CHUNK_SIZE } from '../store/index.js'
import { createSwarmKey, parseSwarmKey } from '../swarm/index.js'
import { AgentConfigError } from './errors.js'
import { siteNameKey, siteNameProblem } from './site-name.js'

export const GENESIS_VERSION = 1

export interface GenesisMember {
  name: string
  peerId: string
  /** Base64 of the protobuf-encoded libp2p public key. */
  publicKey: string
}

export interface Genesis {
  version: number
  swarmId: string
  swarmName: string
  /** pnet pre-shared key, text form ("/key/swarm/psk/1.0.0/\n/base16/\n<64 hex>"). */
  swarmKey: string
  coinRoundFrequency: number
  chunkSize: number
  createdAt: string
  members: GenesisMember[]
}

export interface CreateGenesisOptions {
  siteName: string
  swarmName?: string
  key: PrivateKey
  coinRoundFrequency?: number
  chunkSize?: number
}

export function createGenesis (options: CreateGenesisOptions): Genesis {
  const problem = siteNameProblem(options.siteName)
  if (problem !== undefined) throw new AgentConfigError(`--name: ${problem}`)
  const genesis: Genesis = {
    version: GENESIS_VERSION,
    // Random, not derived from the content: two swarms founded by the same site stay apart.
    swarmId: randomBytes(16).toString('hex'),
    swarmName: options.swarmName ?? `${options.siteName}-swarm`,
    swarmKey: new TextDecoder().decode(createSwarmKey()),
    coinRoundFrequency: options.coinRoundFrequency ?? DEFAULT_COIN_ROUND_FREQUENCY,
    // The image store's default: every site chunks alike, so equal images share chunks across sites.
    chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE,
    createdAt: new Date().toISOString(),
    members: [{
      name: options.siteName,
      peerId: peerIdFromPrivateKey(options.key).toString(),
      publicKey: Buffer.from(publicKeyToProtobuf(options.key.publicKey)).toString('base64')
    }]
  }
  return parseGenesis(JSON.stringify(genesis), 'new genesis')
}

/** Parses and checks every field; errors name the file and the field. */
export function parseGenesis (text: string, source: string): Genesis {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new AgentConfigError(`${source} is not valid JSON: ${(err as Error).message}`)
  }
  const fail = (field: string, problem: string): never => { throw new AgentConfigError(`${source}: "${field}" ${problem}`) }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('(top level)', 'must be a JSON object')
  const g = value as Record<string, unknown>
  if (g['version'] !== GENESIS_VERSION) fail('version', `must be ${GENESIS_VERSION} (this build reads only that version), got ${JSON.stringify(g['version'])}`)
  if (typeof g['swarmId'] !== 'string' || !/^[0-9a-f]{32}$/.test(g['swarmId'])) fail('swarmId', 'must be 32 lower-case hex digits')
  if (typeof g['swarmName'] !== 'string' || g['swarmName'].length === 0 || g['swarmName'].length > 200) fail('swarmName', 'must be a string of 1 to 200 characters')
  if (typeof g['swarmKey'] !== 'string') fail('swarmKey', 'must be a string')
  try { parseSwarmKey(g['swarmKey'] as string) } catch (err) { fail('swarmKey', (err as Error).message) }
  const c = g['coinRoundFrequency']
  if (typeof c !== 'number' || !Number.isInteger(c) || c < 2) fail('coinRoundFrequency', 'must be an integer of at least 2')
  const chunk = g['chunkSize']
  // The image store's rule: fixed-size chunks that are a power of two, 1 KiB to 1 MiB.
  if (typeof chunk !== 'number' || !Number.isInteger(chunk) || chunk < 1024 || chunk > 1024 * 1024 || (chunk & (chunk - 1)) !== 0) fail('chunkSize', 'must be a power of two from 1024 to 1048576 (bytes)')
  if (typeof g['createdAt'] !== 'string' || Number.isNaN(Date.parse(g['createdAt']))) fail('createdAt', 'must be an ISO date')
  const members = g['members']
  if (!Array.isArray(members) || members.length === 0) fail('members', 'must be a non-empty array')
  const seenPeers = new Set<string>()
  const seenNames = new Set<string>()
  const parsed = (members as unknown[]).map((m, i): GenesisMember => {
    const field = `members[${i}]`
    if (m === null || typeof m !== 'object') fail(field, 'must be an object')
    const { name, peerId, publicKey } = m as Record<string, unknown>
    const nameProblem = siteNameProblem(name)
    if (nameProblem !== undefined) fail(`${field}.name`, nameProblem)
    if (typeof publicKey !== 'string') fail(`${field}.publicKey`, 'must be a base64 string')
    let key: PublicKey | undefined
    try { key = publicKeyFromProtobuf(Buffer.from(publicKey as string, 'base64')) } catch (err) { fail(`${field}.publicKey`, `is not a libp2p public key: ${(err as Error).message}`) }
    if (key!.type !== 'Ed25519') fail(`${field}.publicKey`, `must be an Ed25519 key, got ${key!.type}`)
    if (typeof peerId !== 'string' || peerIdFromPublicKey(key!).toString() !== peerId) fail(`${field}.peerId`, 'does not match its publicKey')
    if (seenPeers.has(peerId as string)) fail(`${field}.peerId`, 'appears twice')
    seenPeers.add(peerId as string)
    if (seenNames.has(siteNameKey(name as string))) fail(`${field}.name`, `${JSON.stringify(name)} is taken by an earlier member (names are unique, ignoring case)`)
    seenNames.add(siteNameKey(name as string))
    return { name: name as string, peerId: peerId as string, publicKey: publicKey as string }
  })
  return {
    version: GENESIS_VERSION,
    swarmId: g['swarmId'] as string,
    swarmName: g['swarmName'] as string,
    swarmKey: g['swarmKey'] as string,
    coinRoundFrequency: c as number,
    chunkSize: chunk as number,
    createdAt: g['createdAt'] as string,
    members: parsed
  }
}

export function memberPublicKeys (genesis: Genesis): PublicKey[] {
  return genesis.members.map((m) => publicKeyFromProtobuf(Buffer.from(m.publicKey, 'base64')))
}
