import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import type { AgentStatus } from '../p2p/api/index.js'
import { DEFAULT_CHUNK_SIZE } from '../p2p/store/index.js'
import { AgentProcess, createSwarm, hgmig, tempDataDir } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'

test('swarm create writes a 0600 key and genesis with this site as the only member, and refuses a second swarm', () => {
  const data = tempDataDir()
  const human = hgmig('swarm', 'create', '--name', 'site-a', '--swarm-name', 'west', '--data', data)
  assert.equal(human.status, 0, human.stderr)
  assert.match(human.stdout, /swarm id\s+[0-9a-f]{32}/)
  assert.match(human.stdout, /peer id\s+12D3Koo\w+/)

  for (const file of ['identity.key', 'swarm.json']) {
    assert.equal(statSync(join(data, file)).mode & 0o777, 0o600, `${file} is readable by its owner only`)
  }
  const genesis = JSON.parse(readFileSync(join(data, 'swarm.json'), 'utf8')) as Record<string, unknown> & { members: Array<Record<string, string>> }
  assert.equal(genesis['swarmName'], 'west')
  assert.match(String(genesis['swarmKey']), /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
  assert.equal(genesis['chunkSize'], DEFAULT_CHUNK_SIZE, 'the image store\'s chunk size')
  assert.equal(genesis['coinRoundFrequency'], 10)
  assert.equal(genesis.members.length, 1)
  assert.equal(genesis.members[0]!['name'], 'site-a')
  assert.match(human.stdout, new RegExp(genesis.members[0]!['peerId']!))

  const again = hgmig('swarm', 'create', '--name', 'site-b', '--data', data)
  assert.equal(again.status, 1)
  assert.match(again.stderr, /swarm\.json already exists/)
  assert.equal(JSON.parse(readFileSync(join(data, 'swarm.json'), 'utf8')).swarmId, genesis['swarmId'], 'the genesis is unchanged')

  const json = hgmig('swarm', 'create', '--name', 'site-c', '--data', tempDataDir(), '--json')
  assert.equal(json.status, 0, json.stderr)
  const created = JSON.parse(json.stdout) as { swarmId: string, peerId: string, site: string }
  assert.match(created.swarmId, /^[0-9a-f]{32}$/)
  assert.equal(created.site, 'site-c')

  const badName = hgmig('swarm', 'create', '--name', 'no spaces', '--data', tempDataDir())
  assert.equal(badName.status, 1)
  assert.match(badName.stderr, /--name: site name "no spaces" may hold only/)
})

test('agent and status without a swarm or without an agent say what to do', () => {
  const data = tempDataDir()
  const agent = hgmig('agent', '--data', data)
  assert.equal(agent.status, 1)
  assert.match(agent.stderr, /no swarm in .*run "hgmig swarm create --name SITE/)

  createSwarm(data, 'site-a')
  const status = hgmig('status', '--data', data)
  assert.equal(status.status, 1)
  assert.match(status.stderr, /no agent is running on/)
})

test('an agent serves status, orders its own pings, refuses a second agent, stops cleanly on SIGTERM and replays to the same state', async () => {
  const data = tempDataDir()
  const { peerId, swarmId } = createSwarm(data, 'site-a')
  let agent = new AgentProcess(data)
  try {
    const { client, api } = await agent.ready()
    assert.equal(statSync(join(data, 'api.json')).mode & 0o777, 0o600, 'api.json is readable by its owner only')
    assert.match(api.token, /^[0-9a-f]{64}$/)

    const cli = hgmig('status', '--data', data, '--json')
    assert.equal(cli.status, 0, cli.stderr)
    const first = JSON.parse(cli.stdout) as AgentStatus
    assert.equal(first.site, 'site-a')
    assert.equal(first.peerId, peerId)
    assert.equal(first.swarm.id, swarmId)
    assert.deepEqual(first.members.map((m) => [m.index, m.name, m.peerId, m.self, m.connected]), [[0, 'site-a', peerId, true, true]])
    assert.match(first.stateHash, /^[0-9a-f]{64}$/)
    assert.equal(first.halted, null)
    assert.equal(first.transactions.ordered, 0)
    assert.equal(first.latency.count, 0)
    assert.equal(first.latency.p50Ms, null)
    assert.equal(first.pid, agent.child.pid)
    assert.ok(first.listen.some((a) => a.startsWith('/ip4/127.0.0.1/tcp/')), 'listens on loopback by default')
    const human = hgmig('status', '--data', data)
    assert.equal(human.status, 0, human.stderr)
    assert.match(human.stdout, /site\s+site-a/)

    // A second agent on the same data directory is refused, and the first one keeps running.
    const second = hgmig('agent', '--data', data)
    assert.equal(second.status, 1)
    assert.match(second.stderr, new RegExp(`another agent \\(pid ${agent.child.pid}\\) is already running on data directory`))
    assert.equal((await client.status()).pid, agent.child.pid)

    // A swarm of one orders its own events: three probes reach the order and are measured.
    const { submitted } = await client.ping({ count: 3 })
    assert.equal(submitted.length, 3)
    const ordered = await eventually('3 pings ordered', async () => {
      const s = await client.status()
      return s.transactions.applied >= 3 && s.latency.count >= 3 ? s : undefined
    })
    assert.equal(ordered.transactions.rejected, 0)
    assert.equal(ordered.transactions.pending, 0)
    assert.ok(ordered.lastDecidedRound >= 1)
    assert.notEqual(ordered.stateHash, first.stateHash)
    assert.ok(ordered.latency.p50Ms !== null && ordered.latency.p50Ms > 0 && ordered.latency.p99Ms! >= ordered.latency.p50Ms)
    const metrics = await client.metrics()
    assert.match(metrics, /^hgmig_consensus_latency_seconds_count 3$/m)
    assert.match(metrics, /^hgmig_members 1$/m)
    assert.match(metrics, /^hgmig_ordered_transactions_total\{outcome="applied"\} 3$/m)
    const series = await client.latencySeries()
    assert.deepEqual(series.samples.map((s) => s.kind), ['ping', 'ping', 'ping'])
    assert.deepEqual(series.remote, [], 'no other site, no other site\'s probes')
    const graph = await client.hashgraph(50)
    assert.equal(graph.members.length, 1)
    assert.ok(graph.events.length > 0 && graph.events.length <= 50)
    assert.ok(graph.events.some((e) => e.witness && e.famous === true), 'famous witnesses are marked')
    assert.ok(graph.events.some((e) => e.order !== null && e.transactions > 0), 'ordered events with their positions')
    const byId = new Map(graph.events.map((e) => [e.id, e]))
    for (const e of graph.events) {
      const parent = e.selfParent === null ? undefined : byId.get(e.selfParent)
      if (parent !== undefined) assert.equal(parent.seq, e.seq - 1, 'the self-parent is the creator\'s previous event')
    }
    await assert.rejects(client.hashgraph(0), /query "limit" must be an integer from 1 to 5000/)

    const auditBefore = await client.consensusAudit('ndjson')
    const stopped = await agent.stop('SIGTERM')
    assert.deepEqual(stopped, { code: 0, signal: null }, agent.log)
    assert.match(agent.log, /agent stopped: state hash/)
    assert.equal(existsSync(join(data, 'api.json')), false, 'api.json removed')
    assert.equal(existsSync(join(data, 'agent.lock')), false, 'lock released')
    const none = hgmig('status', '--data', data)
    assert.equal(none.status, 1)
    assert.match(none.stderr, /no agent is running/)

    // The state is rebuilt from the event log: same hash, same counts.
    agent = new AgentProcess(data)
    const restarted = await (await agent.ready()).client.status()
    assert.equal(restarted.stateHash, ordered.stateHash)
    assert.equal(restarted.transactions.applied, 3)
    assert.equal(restarted.lastDecidedRound, ordered.lastDecidedRound)
    assert.equal(restarted.latency.count, 0, 'replayed transactions are not measured again')
    // The consensus audit survives the restart, and the replay neither repeats nor changes a row.
    const restartedClient = (await agent.ready()).client
    const auditAfter = await restartedClient.consensusAudit('ndjson')
    assert.ok(auditBefore.length > 0)
    assert.equal(auditAfter.slice(0, auditBefore.length), auditBefore)
    // It is derived from the event log: lost, it is rebuilt by the next start's replay.
    assert.deepEqual(await agent.stop('SIGTERM'), { code: 0, signal: null }, agent.log)
    for (const suffix of ['', '-wal', '-shm']) rmSync(join(data, `audit.sqlite${suffix}`), { force: true })
    agent = new AgentProcess(data)
    const rebuilt = await (await agent.ready()).client.consensusAudit('ndjson')
    assert.equal(rebuilt.slice(0, auditBefore.length), auditBefore)
  } finally {
    await agent.kill()
  }
})

test('an agent killed with SIGKILL leaves a stale lock and api.json that the next start takes over', async () => {
  const data = tempDataDir()
  createSwarm(data, 'site-a')
  let agent = new AgentProcess(data)
  try {
    await agent.ready()
    await agent.stop('SIGKILL')
    assert.ok(existsSync(join(data, 'agent.lock')))
    const stale = hgmig('status', '--data', data)
    assert.equal(stale.status, 1)
    assert.match(stale.stderr, /left over from pid \d+, which has exited/)
    agent = new AgentProcess(data)
    const { client } = await agent.ready()
    assert.equal((await client.status()).pid, agent.child.pid)
  } finally {
    await agent.kill()
  }
})

test('ports already in use, and bad addresses, fail the start with a clear message and leave nothing locked', async () => {
  const data = tempDataDir()
  createSwarm(data, 'site-a')
  const blocker: Server = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  const port = (blocker.address() as { port: number }).port
  try {
    const api = hgmig('agent', '--data', data, '--api-port', String(port))
    assert.equal(api.status, 1)
    assert.match(api.stderr, new RegExp(`API port ${port} on 127\\.0\\.0\\.1 is already in use`))
    assert.equal(existsSync(join(data, 'agent.lock')), false)
    assert.equal(existsSync(join(data, 'api.json')), false)

    const listen = hgmig('agent', '--data', data, '--listen', `/ip4/127.0.0.1/tcp/${port}`)
    assert.equal(listen.status, 1)
    assert.match(listen.stderr, new RegExp(`listen address /ip4/127\\.0\\.0\\.1/tcp/${port} is already in use`))
    assert.equal(existsSync(join(data, 'agent.lock')), false)

    const garbage = hgmig('agent', '--data', data, '--listen', 'not-an-address')
    assert.equal(garbage.status, 1)
    assert.match(garbage.stderr, /--listen not-an-address: not a multiaddr/)
    const noPeer = hgmig('agent', '--data', data, '--bootstrap', '/ip4/127.0.0.1/tcp/1')
    assert.equal(noPeer.status, 1)
    assert.match(noPeer.stderr, /--bootstrap .* must end in \/p2p\/<peer id>/)
    const badPort = hgmig('agent', '--data', data, '--api-port', 'x')
    assert.notEqual(badPort.status, 0)
    assert.match(badPort.stderr, /--api-port must be a TCP port number/)
  } finally {
    blocker.close()
  }
})

test('--site announces a new name through consensus', async () => {
  const data = tempDataDir()
  createSwarm(data, 'site-a')
  const agent = new AgentProcess(data, ['--site', 'lisbon-1'])
  try {
    const { client } = await agent.ready()
    const renamed = await eventually('the site-name transaction ordered', async () => {
      const s = await client.status()
      return s.site === 'lisbon-1' ? s : undefined
    })
    assert.equal(renamed.members[0]!.name, 'lisbon-1')
    assert.equal(renamed.transactions.applied, 1)
    assert.match(agent.log, /member 0 is now named lisbon-1/)
  } finally {
    await agent.kill()
  }
})
