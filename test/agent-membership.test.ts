import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { AgentStatus, ApiClient } from '../p2p/api/index.js'
import { AgentProcess, createSwarm, hgmig, tempDataDir, hgmigOk, reportAgents } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'

interface Site { name: string, dir: string, agent: AgentProcess, client: ApiClient }

async function startSite (name: string, dir: string, agents: AgentProcess[]): Promise<Site> {
  const agent = new AgentProcess(dir)
  agents.push(agent)
  const { client } = await agent.ready()
  return { name, dir, agent, client }
}

const cli = hgmigOk

/** Invite from `inviter`, join under `name` in a fresh directory, start its agent. */
async function inviteAndJoin (inviter: Site, name: string, agents: AgentProcess[]): Promise<Site> {
  const invite = JSON.parse(cli('swarm', 'invite', '--json', '--data', inviter.dir)) as { code: string, bootstrap: string[] }
  assert.match(invite.code, /^hgmig-invite-1\./)
  assert.ok(invite.bootstrap.length > 0)
  const dir = tempDataDir()
  const joined = JSON.parse(cli('swarm', 'join', invite.code, '--name', name, '--json', '--data', dir)) as { site: string }
  assert.equal(joined.site, name)
  return await startSite(name, dir, agents)
}

async function statuses (sites: Site[]): Promise<AgentStatus[]> {
  return await Promise.all(sites.map(async (s) => await s.client.status()))
}

/** Until every site sees the same members (by name) and the same state hash after the same count of transactions. */
async function converged (what: string, sites: Site[], check: (s: AgentStatus) => boolean): Promise<AgentStatus[]> {
  return await eventually(what, async () => {
    const all = await statuses(sites)
    const agree = all.every((s) => s.stateHash === all[0]!.stateHash && s.transactions.ordered === all[0]!.transactions.ordered)
    return agree && all.every(check) ? all : undefined
  }, 180_000)
}

test('invite, join, approve: sites join a running swarm by consensus, a taken name is refused, a member is removed, and the rest go on', async () => {
  const agents: AgentProcess[] = []
  try {
    const dirA = tempDataDir()
    createSwarm(dirA, 'site-a')
    const a = await startSite('site-a', dirA, agents)

    // B joins by A's invite; A approves.
    const b = await inviteAndJoin(a, 'site-b', agents)
    const request = await eventually('B\'s join request at A', async () => (await a.client.joinRequests()).find((r) => r.name === 'site-b'))
    assert.equal(request.peerId, (await b.client.status()).peerId)
    assert.equal((await b.client.status()).role, 'joining')
    await assert.rejects(b.client.ping(), /joining: only members submit transactions/, 'a joining site cannot submit')
    cli('swarm', 'approve', 'site-b', '--data', a.dir)
    await converged('A and B agree that B is a member', [a, b], (s) => s.role === 'member' && s.members.filter((m) => m.until === null).length === 2)

    // C is invited by B — a member added by consensus, whose ticket A must be able to check — and approved at A.
    const c = await inviteAndJoin(b, 'site-c', agents)
    await eventually('C\'s join request at A', async () => (await a.client.joinRequests()).find((r) => r.name === 'site-c'))
    const approval = await a.client.approve({ peer: 'site-c' })
    assert.match(approval.submitted, /^[0-9a-f]{64}$/)
    const three = await converged('three members everywhere', [a, b, c], (s) => s.role === 'member' && s.members.filter((m) => m.until === null).length === 3)
    assert.deepEqual(three[2]!.members.map((m) => m.name), ['site-a', 'site-b', 'site-c'])
    assert.ok(three[2]!.members[2]!.since > 1, 'a joined member takes part from a later round')

    // All three order transactions together.
    await Promise.all([a, b, c].map(async (s) => await s.client.ping()))
    const before = three[0]!.transactions.ordered
    await converged('three pings ordered at every site', [a, b, c], (s) => s.transactions.ordered >= before + 3)

    // D asks under a name already taken: refused by the member it asks, and never listed for approval.
    const d = await inviteAndJoin(a, 'SITE-B', agents)
    await eventually('D told why it is refused', async () => /name "SITE-B" is taken/.test(d.agent.log) ? true : undefined)
    assert.equal((await a.client.joinRequests()).some((r) => r.name === 'SITE-B'), false)
    assert.equal((await d.client.status()).role, 'joining')
    await d.agent.stop()

    // A removes C; A and B go on ordering without it.
    cli('swarm', 'remove', 'site-c', '--data', a.dir)
    const removing = await converged('C\'s removal ordered at A, B and C', [a, b, c], (s) => s.members.find((m) => m.name === 'site-c')?.until !== null)
    assert.ok(removing[2]!.role === 'leaving' || removing[2]!.role === 'removed')
    // C keeps taking part until the round of its removal is decided: stopping it earlier would leave A and B without a supermajority.
    await eventually('C sees its removal take effect', async () => (await c.client.status()).role === 'removed' ? true : undefined, 120_000)
    await c.agent.stop()
    const count = (await a.client.status()).transactions.ordered
    await a.client.ping()
    await converged('A and B order without C', [a, b], (s) => s.transactions.ordered > count)
    assert.deepEqual((await a.client.status()).members.filter((m) => m.until === null).map((m) => m.name), ['site-a', 'site-b'])
  } catch (err) {
    // The agents' own account is what explains a failure here.
    reportAgents(agents, Infinity)
    for (const agent of agents) {
      try {
        const { client } = await agent.ready(1000)
        const s = await client.status()
        process.stderr.write(`--- ${s.site}: role ${s.role}, decided round ${s.lastDecidedRound}, last round ${s.hashgraph.lastRound}, waiting ${s.hashgraph.waiting}, in memory ${s.hashgraph.eventsInMemory}, ordered ${s.transactions.ordered}, pending ${s.transactions.pending}, events/s ${s.eventsPerSecond}, members ${JSON.stringify(s.members.map((m) => [m.name, m.since, m.until]))}\n`)
      } catch { /* stopped */ }
    }
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})

test('a site with the swarm\'s genesis but no invite cannot start as anything; a damaged or foreign code is refused by join', async () => {
  const dirA = tempDataDir()
  createSwarm(dirA, 'site-a')
  const stranger = tempDataDir()
  createSwarm(stranger, 'stranger')
  // The stranger's own key with A's genesis (as if swarm.json had been copied): not a member, never asked.
  copyFileSync(join(dirA, 'swarm.json'), join(stranger, 'swarm.json'))
  const started = hgmig('agent', '--data', stranger)
  assert.notEqual(started.status, 0)
  assert.match(started.stderr, /is not a member of swarm .* and has not asked to join it/)

  const fresh = tempDataDir()
  mkdirSync(fresh, { recursive: true })
  const bad = hgmig('swarm', 'join', 'hgmig-invite-1.AAAA', '--name', 'x', '--data', fresh)
  assert.notEqual(bad.status, 0)
  assert.match(bad.stderr, /invite code is damaged|holds no genesis/)
  const foreign = hgmig('swarm', 'join', 'https://example.com/x', '--name', 'x', '--data', fresh)
  assert.match(foreign.stderr, /not an hgmig invite code/)
  const existing = hgmig('swarm', 'join', 'hgmig-invite-1.AAAA', '--name', 'x', '--data', dirA)
  assert.notEqual(existing.status, 0)
})
