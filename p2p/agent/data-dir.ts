/**
 * The agent's data directory:
 *   identity.key      Ed25519 libp2p key (0600); also signs the site's hashgraph events
 *   swarm.json        the swarm's genesis (0600: it holds the swarm key)
 *   hashgraph.sqlite  the event log (the replicated state is rebuilt from it at every start)
 *   api.json          the running agent's API port, token and pid (0600; removed at stop)
 *   agent.lock        the running agent's pid (one agent per directory)
 *   join.json         how this site asked to join (name, invite ticket, bootstrap), if it was not a founder
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../swarm/index.js'
import { AgentConfigError, SwarmExistsError } from './errors.js'
import { createGenesis, parseGenesis, type CreateGenesisOptions, type Genesis } from './genesis.js'
import { parseInvite, parseTicket, type InviteTicket } from './invite.js'
import { siteNameProblem } from './site-name.js'

export interface DataDirLayout {
  root: string
  identity: string
  genesis: string
  eventLog: string
  /** The consensus audit: every ordered event with its round, fame and position (derived from the event log). */
  auditLog: string
  join: string
}

/** What `hgmig swarm join` recorded: the agent asks the members to admit this site until one approves. */
export interface JoinIntent {
  name: string
  ticket: InviteTicket
  bootstrap: string[]
  createdAt: string
}

export function dataDirLayout (root: string): DataDirLayout {
  return {
    root,
    identity: join(root, 'identity.key'),
    genesis: join(root, 'swarm.json'),
    eventLog: join(root, 'hashgraph.sqlite'),
    auditLog: join(root, 'audit.sqlite'),
    join: join(root, 'join.json')
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

export interface JoinedSwarm {
  genesis: Genesis
  peerId: string
  dataDir: string
  name: string
  bootstrap: string[]
}

/**
 * `hgmig swarm join CODE`: the site's key (created if missing), the swarm's genesis from the code,
 * and join.json. The agent then asks the members to admit the site; a member approves.
 */
export async function joinSwarm (dataDir: string, code: string, options: { siteName: string }): Promise<JoinedSwarm> {
  const problem = siteNameProblem(options.siteName)
  if (problem !== undefined) throw new AgentConfigError(`--name: ${problem}`)
  const invite = parseInvite(code)
  const layout = dataDirLayout(dataDir)
  if (await exists(layout.genesis)) throw new SwarmExistsError(`${layout.genesis} already exists: this data directory already belongs to a swarm (join from an empty --data directory)`)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const key = await loadOrCreateIdentity(layout.identity)
  const peerId = peerIdFromPrivateKey(key).toString()
  if (invite.genesis.members.some((m) => m.peerId === peerId)) throw new AgentConfigError(`this site (${peerId}) is a founding member of that swarm already`)
  const intent: JoinIntent = { name: options.siteName, ticket: invite.ticket, bootstrap: invite.bootstrap, createdAt: new Date().toISOString() }
  // join.json first: a directory with a swarm.json but no join.json would look like a non-member's.
  await writeFile(layout.join, JSON.stringify(intent, (_k, v: unknown) => v instanceof Uint8Array ? { bytes: Buffer.from(v).toString('base64') } : v, 2) + '\n', { mode: 0o600 })
  try {
    await writeFile(layout.genesis, JSON.stringify(invite.genesis, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SwarmExistsError(`${layout.genesis} already exists: this data directory already belongs to a swarm`)
    throw err
  }
  return { genesis: invite.genesis, peerId, dataDir, name: options.siteName, bootstrap: invite.bootstrap }
}

export async function loadJoinIntent (layout: DataDirLayout): Promise<JoinIntent | undefined> {
  let text: string
  try {
    text = await readFile(layout.join, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new AgentConfigError(`cannot read ${layout.join}: ${(err as Error).message}`)
  }
  try {
    const value = JSON.parse(text, (_k, v: unknown) => v !== null && typeof v === 'object' && typeof (v as { bytes?: unknown }).bytes === 'string' && Object.keys(v).length === 1 ? new Uint8Array(Buffer.from((v as { bytes: string }).bytes, 'base64')) : v) as Partial<JoinIntent>
    if (typeof value.name !== 'string' || siteNameProblem(value.name) !== undefined) throw new Error('"name" is not a site name')
    if (!Array.isArray(value.bootstrap) || !value.bootstrap.every((a) => typeof a === 'string')) throw new Error('"bootstrap" is not a list of multiaddrs')
    return { name: value.name, ticket: parseTicket(value.ticket), bootstrap: value.bootstrap, createdAt: String(value.createdAt) }
  } catch (err) {
    throw new AgentConfigError(`${layout.join} is damaged: ${(err as Error).message}`)
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}
