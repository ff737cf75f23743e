import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AgentStatus } from '../p2p/api/index.js'
import { AgentProcess, createSwarm, tempDataDir } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'

/** Two sites in one swarm: a's genesis with b added as member 1, copied to both data directories. */
function twoSiteSwarm (): [string, string] {
  const a = tempDataDir()
  const b = tempDataDir()
  createSwarm(a, 'site-a')
  createSwarm(b, 'site-b')
  const genesis = JSON.parse(readFileSync(join(a, 'swarm.json'), 'utf8')) as { members: unknown[] }
  genesis.members.push((JSON.parse(readFileSync(join(b, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0])
  for (const dir of [a, b]) writeFileSync(join(dir, 'swarm.json'), JSON.stringify(genesis, null, 2), { mode: 0o600 })
  return [a, b]
}

test('two agents over libp2p on loopback: a name both claim goes to one of them, identically at both sites', async () => {
  const [dirA, dirB] = twoSiteSwarm()
  const agents: AgentProcess[] = []
  try {
    // Both announce the same new name at start, before they can see each other's claim.
    agents.push(new AgentProcess(dirA, ['--site', 'shared']))
    const a = await agents[0]!.ready()
    const addressOfA = (await a.client.status()).listen[0]!
    agents.push(new AgentProcess(dirB, ['--site', 'shared', '--bootstrap', addressOfA]))
    const b = await agents[1]!.ready()
    await b.client.ping()

    const statuses = await eventually('both sites ordered the two claims and the ping', async () => {
      const both = await Promise.all([a.client.status(), b.client.status()])
      return both.every((s) => s.transactions.ordered === 3) ? both : undefined
    }, 120_000)
    const [atA, atB] = statuses as [AgentStatus, AgentStatus]
    assert.equal(atA.stateHash, atB.stateHash, 'the same state hash at both sites')
    assert.deepEqual(atA.members.map((m) => m.name), atB.members.map((m) => m.name))
    assert.equal(atA.members.filter((m) => m.name === 'shared').length, 1, 'exactly one site holds the name')
    assert.deepEqual([atA.transactions.applied, atA.transactions.rejected], [2, 1], 'the later claim was rejected')
    assert.equal(atB.latency.count, 2, 'b measured both its own transactions (name claim and ping), applied or not')
    assert.equal(atA.latency.count, 1, 'a measured its name claim only: latency is per submitting site')
    for (const s of statuses) {
      const other = s.members.find((m) => !m.self)!
      assert.equal(other.connected, true)
    }
    const rtt = await eventually('a round-trip time to the other member', async () => {
      const other = (await a.client.status()).members.find((m) => !m.self)!
      return other.rttMs ?? undefined
    })
    assert.ok(rtt >= 0)
    assert.match(agents[0]!.log + agents[1]!.log, /rejected \(name-taken\)/)
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})

test('two agents listening beyond loopback find each other by mDNS; a member killed with SIGKILL restarts, reconnects and catches up', async () => {
  const [dirA, dirB] = twoSiteSwarm()
  const lan = ['--listen', '/ip4/0.0.0.0/tcp/0']
  const agents = [new AgentProcess(dirA, lan), new AgentProcess(dirB, lan)]
  try {
    const [a, b] = await Promise.all(agents.map(async (agent) => await agent.ready()))
    await eventually('the two sites connected without bootstrap addresses', async () => {
      const both = await Promise.all([a!.client.status(), b!.client.status()])
      return both.every((s) => s.members.every((m) => m.connected)) ? true : undefined
    })
    assert.match(agents[0]!.log, /mDNS discovery on/)
    await a!.client.ping()
    const [before] = await eventually('the first ping ordered at both sites', async () => {
      const both = await Promise.all([a!.client.status(), b!.client.status()])
      return both.every((s) => s.transactions.ordered === 1) && both[0]!.stateHash === both[1]!.stateHash ? both : undefined
    })

    await agents[1]!.stop('SIGKILL')
    agents[1] = new AgentProcess(dirB, lan)
    const restarted = await agents[1].ready()
    // After SIGKILL the log holds a prefix of what the site had (received events are written in
    // batches): the replay reaches the same state or an earlier one, and the rest comes by sync.
    const replayed = await restarted.client.status()
    assert.ok(replayed.transactions.ordered <= 1)
    if (replayed.transactions.ordered === 1) assert.equal(replayed.stateHash, before!.stateHash)
    await restarted.client.ping()
    const after = await eventually('the ping of the restarted site ordered at both sites', async () => {
      const both = await Promise.all([a!.client.status(), restarted.client.status()])
      return both.every((s) => s.transactions.ordered === 2) ? both : undefined
    }, 120_000)
    assert.equal(after[0]!.stateHash, after[1]!.stateHash)
    assert.notEqual(after[0]!.stateHash, before!.stateHash)
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
