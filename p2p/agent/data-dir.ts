/**
 * The agent's data directory:
 *   identity.key      Ed25519 libp2p key (0600); also signs the site's hashgraph events
 *   swarm.json        the swarm's genesis (0600: it holds the swarm key)
 *   hashgraph.sqlite  the event log (the replicated state is rebuilt from it at every start)
 *   api.json          the running agent's API port, token and pid (0600; removed at stop)
 *   agent.lock        the running agent's pid (one agent per directory)
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../swarm/index.js'
import { AgentConfigError, SwarmExistsError } from './errors.js'
import { createGenesis, parseGenesis, type CreateGenesisOptions, type Genesis } from './genesis.js'

export interface DataDirLayout {
  root: string
  identity: string
  genesis: string
  eventLog: string
}

export function dataDirLayout (root: string): DataDirLayout {
  return {
    root,
    identity: join(root, 'identity.key'),
    genesis: join(root, 'swarm.json'),
    eventLog: join(root, 'hashgraph.sqlite')
  }
}

export async function loadGenesis (layout: DataDirLayout): Promise<Genesis> {
  let text: string
  try {
    text = await readFile(layout.genesis, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AgentConfigError(`no swarm in ${layout.root} (no swarm.json): run "hgmig swarm create --name SITE --data ${layout.root}" first`)
    }
    throw new AgentConfigError(`cannot read ${layout.genesis}: ${(err as Error).message}`)
  }
  return parseGenesis(text, layout.genesis)
}

/** The site's existing key; a swarm's data directory without one cannot act as any member. */
export async function loadIdentity (layout: DataDirLayout): Promise<PrivateKey> {
  if (!await exists(layout.identity)) {
    throw new AgentConfigError(`${layout.identity} is missing: this data directory has a swarm.json but no site key (restore the key, or start over in an empty directory)`)
  }
  return await loadOrCreateIdentity(layout.identity)
}

export interface CreatedSwarm {
  genesis: Genesis
  peerId: string
  dataDir: string
}

/** `hgmig swarm create`: the site's key (created if missing) and a genesis with it as the only member. */
export async function createSwarm (dataDir: string, options: Omit<CreateGenesisOptions, 'key'>): Promise<CreatedSwarm> {
  const layout = dataDirLayout(dataDir)
  if (await exists(layout.genesis)) throw new SwarmExistsError(`${layout.genesis} already exists: this data directory already belongs to a swarm`)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const key = await loadOrCreateIdentity(layout.identity)
  const genesis = createGenesis({ ...options, key })
  try {
    await writeFile(layout.genesis, JSON.stringify(genesis, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SwarmExistsError(`${layout.genesis} already exists: this data directory already belongs to a swarm`)
    throw err
  }
  return { genesis, peerId: peerIdFromPrivateKey(key).toString(), dataDir }
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}
