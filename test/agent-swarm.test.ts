import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AgentStatus, ApiClient } from '../p2p/api/index.js'
import { AgentProcess, createSwarm, hgmig, hgmigOk, tempDataDir } from './support/agent-process.js'
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
    await checkConsensusAudit(a.client, b.client, dirA)
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

interface AuditRow { position: number, id: string, creator: number, site: string, round: number, witness: boolean, famous: boolean | null, roundReceived: number, consensusTimestampNs: string, transactions: number }

/** Both sites' consensus audits record the same events with the same rounds, fame and positions. */
async function checkConsensusAudit (a: ApiClient, b: ApiClient, dirA: string): Promise<void> {
  const [atA, atB] = await Promise.all([a, b].map(async (client) => (JSON.parse(await client.consensusAudit('json')) as { events: AuditRow[] }).events))
  const common = Math.min(atA!.length, atB!.length)
  assert.ok(common > 0, 'events were ordered and recorded')
  assert.deepEqual(atA!.slice(0, common), atB!.slice(0, common), 'the same ordered events, rounds, fame and consensus times at both sites')
  assert.deepEqual(atA!.map((e) => e.position), atA!.map((_, i) => i), 'positions 0, 1, 2, … with no gap')
  assert.equal(atA!.reduce((sum, e) => sum + e.transactions, 0), 3, 'the events carry the two name claims and the ping')
  for (const e of atA!) {
    assert.ok(e.roundReceived >= e.round, `event ${e.position}: received in round ${e.roundReceived}, created in round ${e.round}`)
    assert.equal(e.famous === null, !e.witness, `event ${e.position}: fame is decided for every ordered witness and only for witnesses`)
    assert.ok(e.site === 'shared' || /^site-[ab]$/.test(e.site), `event ${e.position}: creator named (${e.site})`)
  }
  for (let i = 1; i < atA!.length; i++) {
    const [before, after] = [atA![i - 1]!, atA![i]!]
    if (before.roundReceived === after.roundReceived) assert.ok(BigInt(before.consensusTimestampNs) <= BigInt(after.consensusTimestampNs), `consensus times ordered within round ${after.roundReceived}`)
    else assert.ok(before.roundReceived < after.roundReceived, 'rounds received in order')
  }
  // The CLI: csv with a header row and one line per event; a window in the future holds nothing; bad input is named.
  const csv = hgmigOk('consensus', 'export', '-', '--format', 'csv', '--data', dirA).trim().split('\n')
  assert.match(csv[0]!, /^position,id,creator,site,seq,round,witness,famous,roundReceived,consensusTime,/)
  assert.ok(csv.length - 1 >= atA!.length, 'every recorded event is in the csv')
  assert.equal(hgmigOk('consensus', 'export', '-', '--since', '2999-01-01T00:00:00Z', '--data', dirA), '')
  const bad = hgmig('consensus', 'export', '-', '--since', 'yesterday', '--data', dirA)
  assert.notEqual(bad.status, 0)
  assert.match(bad.stderr, /"since" must be an ISO time/)
}
