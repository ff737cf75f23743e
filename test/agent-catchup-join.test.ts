/**
 * A joining site starts from a member's checkpoint (issue 4), with agents as separate OS processes on
 * loopback: the checkpoint is confirmed by f + 1 members, the site syncs only later events, reaches
 * the others' state hash and, once approved, takes part. A checkpoint whose agreement the members
 * dispute (the inviter's, altered on its disk) is refused and the site syncs the whole history.
 * Checkpoints every 4 decided rounds here (HGMIG_CHECKPOINT_ROUNDS).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import type { ApiClient } from '../p2p/api/index.js'
import { AgentProcess, foundingSwarm, hgmigOk, reportAgents, tempDataDir } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'
import { loggedEvents, orderUntilRound, replayLine, sameState } from './support/checkpoint-sites.js'

process.env.HGMIG_CHECKPOINT_ROUNDS = '4'

interface Site { dir: string, agent: AgentProcess, client: ApiClient }

async function inviteAndJoin (inviter: Site, name: string, agents: AgentProcess[]): Promise<Site> {
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
function alterNewestCheckpoint (dir: string): number {
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

test('a joining site starts from a checkpoint confirmed by f + 1 members, syncs only later events, reaches the same state hash and becomes a member; a disputed checkpoint is refused', async () => {
  const agents: AgentProcess[] = []
  try {
    const founders = await foundingSwarm(['site-a', 'site-b', 'site-c', 'site-d'], agents)
    const a: Site = founders[0]!
    const b: Site = founders[1]!
    await orderUntilRound(a.client, 10)
    await sameState(founders, 'the founders')

    // An honest inviter: the checkpoint is confirmed and used.
    const e = await inviteAndJoin(b, 'site-e', agents)
    const bPeer = (await b.client.status()).peerId
    const fetched = /checkpoint of round (\d+) fetched from (\S+) \((\d+) bytes\), confirmed by (\d+) members \(f \+ 1 = 2 of n = 4\)/.exec(e.agent.log)
    assert.ok(fetched !== null, `site-e did not start from a checkpoint:\n${e.agent.log}`)
    assert.equal(fetched[2], bPeer, 'fetched from its inviter')
    assert.ok(Number(fetched[4]) >= 2, 'confirmed by at least f + 1 = 2 members')
    assert.equal(replayLine(e.agent).after, `the checkpoint of round ${fetched[1]}`)
    assert.equal((await e.client.status()).role, 'joining')
    await b.client.ping()
    await sameState([...founders, e], 'with site-e (joining)')
    const eEvents = loggedEvents(e.dir)
    const bEvents = loggedEvents(b.dir)
    assert.ok(eEvents < bEvents, `site-e logged ${eEvents} events, its inviter ${bEvents}: it should have synced only events after the checkpoint`)

    // Membership on top of a checkpoint: approved, e takes part from its first round.
    await b.client.approve({ peer: 'site-e' })
    await eventually('site-e is a member', async () => {
      const status = await e.client.status()
      if (status.role === 'member') return true
      await a.client.ping()
      return undefined
    }, 150_000)
    await e.client.ping()
    await sameState([...founders, e], 'with site-e a member')

    // A member whose log starts at a checkpoint restarts from a later one of its own, taken after it
    // was added (its key and the membership change travel in the frontier), and goes on creating events.
    await e.agent.stop()
    e.agent = new AgentProcess(e.dir)
    agents.push(e.agent)
    e.client = (await e.agent.ready()).client
    const resumed = replayLine(e.agent)
    assert.match(resumed.after, /^the checkpoint of round \d+$/)
    assert.ok(Number(/\d+/.exec(resumed.after)![0]) > Number(fetched[1]), `site-e restarted from ${resumed.after}, not from one of its own after round ${fetched[1]}`)
    assert.equal((await e.client.status()).role, 'member')
    await e.client.ping()
    await sameState([...founders, e], 'with site-e restarted')

    // A lying inviter: its checkpoint's agreement is disputed by the other members; the site syncs everything instead.
    await a.agent.stop()
    const altered = alterNewestCheckpoint(a.dir)
    a.agent = new AgentProcess(a.dir, ['--bootstrap', (await b.client.status()).listen[0]!])
    agents.push(a.agent)
    a.client = (await a.agent.ready()).client
    assert.equal(replayLine(a.agent).after, `the checkpoint of round ${altered}`, 'the altered checkpoint is self-consistent: its own site uses it')
    await sameState([...founders, e], 'with site-a back')
    const g = await inviteAndJoin(a, 'site-g', agents)
    assert.match(g.agent.log, new RegExp(`checkpoint refused \\(the checkpoint of round ${altered} from \\S+ has agreement digest [0-9a-f]+…, but \\d+ members report another`))
    assert.equal(replayLine(g.agent).after, 'the whole log')
    await b.client.ping()
    await sameState([...founders, e, g], 'with site-g synced from scratch')
  } catch (err) {
    reportAgents(agents)
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
