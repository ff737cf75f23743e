/** Helpers of the catch-up tests (test/agent-catchup*.test.ts): driving rounds, comparing sites, reading their logs. */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { ApiClient } from '../../p2p/api/index.js'
import type { AgentProcess } from './agent-process.js'
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
