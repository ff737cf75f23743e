/** Helpers of the catch-up tests (test/agent-catchup*.test.ts): driving rounds, comparing sites, reading their logs. */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import Database from 'better-sqlite3'
import type { ApiClient } from '../../p2p/api/index.js'
import { AgentProcess, foundingSwarm, hgmigOk, tempDataDir } from './agent-process.js'
import { eventually } from './peer-process.js'

/** Pings from `client` until its site has decided at least `round`. */
export async function orderUntilRound (client: ApiClient, round: number): Promise<void> {
  await eventually(`decided round ${round}`, async () => {
    const status = await client.status()
    if (status.lastDecidedRound >= round) return true
    await client.ping()
    return undefined
  }, 120_000)
}

/** Waits until every site has ordered the same transactions, none pending, with the same state hash; returns it. */
export async function sameState (sites: Array<{ client: ApiClient }>, what: string): Promise<string> {
  return await eventually(`${what}: every site at the same state hash`, async () => {
    const all = await Promise.all(sites.map(async (s) => await s.client.status()))
    return all.every((s) => s.stateHash === all[0]!.stateHash && s.transactions.ordered === all[0]!.transactions.ordered && s.transactions.pending === 0) ? all[0]!.stateHash : undefined
  }, 150_000)
}

/** Events in a site's event log (read from its SQLite file). */
export function loggedEvents (dir: string): number {
  const db = new Database(join(dir, 'hashgraph.sqlite'), { readonly: true })
  try {
    return Number(db.prepare('SELECT count(*) FROM events').pluck().get())
  } finally {
    db.close()
  }
}

/** The agent's start line: how many events it replayed, and after what. */
export function replayLine (agent: AgentProcess): { events: number, after: string } {
  const match = /replayed (\d+) events from \S+ after (the whole log|the checkpoint of round \d+)/.exec(agent.log)
  assert.ok(match !== null, `no replay line in the log:\n${agent.log.slice(-3000)}`)
  return { events: Number(match[1]), after: match[2]! }
}

/** A site as the catch-up tests drive it. */
export interface Site { dir: string, agent: AgentProcess, client: ApiClient }

/** Invite from `inviter`, join under `name` in a fresh directory, start its agent. */
export async function inviteAndJoin (inviter: Site, name: string, agents: AgentProcess[]): Promise<Site> {
  const invite = JSON.parse(hgmigOk('swarm', 'invite', '--json', '--data', inviter.dir)) as { code: string }
  const dir = tempDataDir()
  hgmigOk('swarm', 'join', invite.code, '--name', name, '--json', '--data', dir)
  const agent = new AgentProcess(dir)
  agents.push(agent)
  return { dir, agent, client: (await agent.ready(120_000)).client }
}

const sha256 = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(bytes).digest())

/**
 * Alters the newest checkpoint on a stopped site's disk into a consistent lie: a member renamed in
 * the state snapshot, every hash recomputed (the snapshot's, the body's, the file's), so that the
 * site itself accepts it and serves it — only the other members' agreement can expose it.
 */
export function alterNewestCheckpoint (dir: string): number {
  const name = readdirSync(join(dir, 'checkpoints')).filter((n) => n.endsWith('.cbor')).sort().at(-1)!
  const round = Number(/checkpoint-(\d+)/.exec(name)![1])
  const path = join(dir, 'checkpoints', name)
  const file = dagCbor.decode(readFileSync(path)) as { format: string, checkpoint: Uint8Array, logPosition: number, sha256: Uint8Array }
  const envelope = dagCbor.decode(file.checkpoint) as { format: string, version: number, body: Uint8Array, sha256: Uint8Array }
  const body = dagCbor.decode(envelope.body) as { agreement: Record<string, unknown>, frontier: Uint8Array, state: Uint8Array }
  const state = dagCbor.decode(body.state) as { members: Array<{ name: string }> }
  state.members[1]!.name = 'mallory'
  body.state = dagCbor.encode(state)
  body.agreement.stateSnapshotHash = Buffer.from(sha256(body.state)).toString('hex')
  envelope.body = dagCbor.encode(body)
  envelope.sha256 = sha256(envelope.body)
  file.checkpoint = dagCbor.encode(envelope)
  file.sha256 = new Uint8Array(createHash('sha256').update(file.checkpoint).update(`|logPosition=${file.logPosition}`).digest())
  writeFileSync(path, dagCbor.encode(file))
  return round
}


/** Four founding sites that have decided at least `round` rounds and agree (site-a and site-b first). */
export async function checkpointedSwarm (agents: AgentProcess[], round = 10): Promise<Site[]> {
  const founders = await foundingSwarm(['site-a', 'site-b', 'site-c', 'site-d'], agents)
  await orderUntilRound(founders[0]!.client, round)
  await sameState(founders, 'the founders')
  return founders
}
