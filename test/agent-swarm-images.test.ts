import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AgentStatus, ApiClient } from '../p2p/api/index.js'
import { AgentProcess, createSwarm, tempDataDir, hgmigOk, reportAgents } from './support/agent-process.js'
import { randomImage, writePlan } from './support/image-generator.js'
import { eventually } from './support/peer-process.js'

interface Site { name: string, dir: string, agent: AgentProcess, client: ApiClient }

const cli = hgmigOk

async function start (name: string, dir: string, agents: AgentProcess[]): Promise<Site> {
  const agent = new AgentProcess(dir)
  agents.push(agent)
  return { name, dir, agent, client: (await agent.ready()).client }
}

async function agreed (what: string, sites: Site[], check: (s: AgentStatus) => boolean, timeoutMs = 240_000): Promise<AgentStatus[]> {
  let seen = ''
  try {
    return await eventually(what, async () => {
      const all = await Promise.all(sites.map(async (s) => await s.client.status()))
      seen = all.map((s, i) => `${sites[i]!.name}: ${s.role}, ${s.members.length} members, ordered ${s.transactions.ordered}, decided round ${s.lastDecidedRound}, highest round ${s.hashgraph.lastRound}, waiting ${s.hashgraph.waiting}${s.halted === null ? '' : `, halted: ${s.halted}`}`).join('; ')
      const same = all.every((s) => s.stateHash === all[0]!.stateHash && s.transactions.ordered === all[0]!.transactions.ordered)
      return same && all.every(check) ? all : undefined
    }, timeoutMs)
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${seen}`, { cause: err })
  }
}

test('four sites: create, invite, join, approve; each imports an image through its agent; all agree and know every chunk list; kill -9 and restart catches up; two of four down stops ordering until they return', async () => {
  const agents: AgentProcess[] = []
  const files = mkdtempSync(join(tmpdir(), 'hgmig-images-'))
  try {
    const a = await start('site-a', (() => { const d = tempDataDir(); createSwarm(d, 'site-a'); return d })(), agents)
    const sites = [a]
    for (const name of ['site-b', 'site-c', 'site-d']) {
      const { code } = JSON.parse(cli('swarm', 'invite', '--json', '--data', a.dir)) as { code: string }
      const dir = tempDataDir()
      cli('swarm', 'join', code, '--name', name, '--data', dir)
      const site = await start(name, dir, agents)
      await eventually(`${name}'s join request at site-a`, async () => (await a.client.joinRequests()).find((r) => r.name === name))
      cli('swarm', 'approve', name, '--data', a.dir)
      sites.push(site)
      await agreed(`${name} a member everywhere`, sites, (s) => s.role === 'member' && s.members.length === sites.length)
    }

    // Joining sites saw members' events before they knew those members: no member may have paid for that with its score.
    for (const status of await Promise.all(sites.map(async (s) => await s.client.status()))) {
      for (const m of status.members) if (!m.self) assert.ok(m.gossipScore! >= 0, `${status.site} scores ${m.name} ${m.gossipScore}`)
    }

    // Each site imports its own OS image through the CLI, which goes through its running agent.
    for (const [i, site] of sites.entries()) {
      const file = join(files, `${site.name}.img`)
      await writePlan(randomImage(`os-${i}`, 24 + i, 0.25, 100 + i), file)
      const added = JSON.parse(cli('image', 'add', file, '--layer', 'os', '--name', `os-${site.name}`, '--json', '--data', site.dir)) as { rootCid: string }
      assert.match(added.rootCid, /^baf/)
    }
    const final = await agreed('four images announced and the same state hash at all four sites', sites, (s) => s.transactions.applied >= 3 + 4)
    assert.equal(new Set(final.map((s) => s.stateHash)).size, 1)
    const views = await eventually('every site knows every image\'s chunk list', async () => {
      const all = await Promise.all(sites.map(async (s) => await s.client.images()))
      return all.every((v) => v.images.length === 4 && v.images.every((i) => i.manifest)) ? all : undefined
    }, 120_000)
    for (const [i, view] of views.entries()) {
      assert.deepEqual(view.images.filter((image) => image.local).map((image) => image.name), [`os-${sites[i]!.name}`])
      assert.deepEqual(view.sites.map((s) => s.images.length), [1, 1, 1, 1])
    }
    // Site B's image as site A maps it: B holds every chunk; A, holding unrelated random data, none but the zeros.
    const imageOfB = views[0]!.images.find((image) => image.name === 'os-site-b')!
    const map = await a.client.chunkMap(imageOfB.rootCid, 16)
    assert.equal(map.chunkCount, imageOfB.chunkCount)
    assert.equal(map.buckets * map.chunksPerBucket >= map.chunkCount && (map.buckets - 1) * map.chunksPerBucket < map.chunkCount, true)
    const atB = map.sites.find((s) => s.site === 'site-b')!
    const atA = map.sites.find((s) => s.site === 'site-a')!
    assert.equal(atB.held, map.chunkCount)
    assert.match(atB.states, /^[hz]+$/)
    assert.match(atA.states, /^[mz]+$/)
    assert.ok(atA.held < atB.held)
    await assert.rejects(a.client.chunkMap('bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'), /no image with root CID/)
    // Every site measures the others' probes too; libp2p's byte counters are on /metrics.
    await Promise.all(sites.map(async (s) => await s.client.ping()))
    const latencies = await eventually('other sites\' probes measured at site-a', async () => {
      const { remote } = await a.client.latencySeries()
      return new Set(remote.map((sample) => sample.site)).size === 3 ? remote : undefined
    })
    assert.ok(latencies.every((sample) => sample.latencyMs >= 0 && sample.kind === 'ping'))
    assert.ok((await a.client.status()).remoteLatency.count >= 3)
    assert.match(await a.client.metrics(), /^libp2p_data_transfer_bytes_total\{protocol="global received"\} [1-9]/m)
    // Per-member throughput at site-a: traffic both ways with every other member (gossip, state reports, pings).
    const traffic = await eventually('throughput measured to and from every member at site-a', async () => {
      const others = (await a.client.status()).members.filter((m) => !m.self)
      return others.every((m) => m.throughput !== null && m.throughput.sentBytesPerSecond > 0 && m.throughput.receivedBytesPerSecond > 0) ? others : undefined
    })
    assert.equal(traffic.length, 3)
    assert.equal((await a.client.status()).members.find((m) => m.self)!.throughput, null)
    // The image list through the agent shows the local image, as the store would.
    assert.match(cli('image', 'list', '--data', sites[1]!.dir), /os-site-b/)

    // kill -9 one agent, let the others move on, restart it: it catches up to the same state hash.
    const d = sites[3]!
    await d.agent.kill()
    await a.client.ping()
    await agreed('three sites order without D', sites.slice(0, 3), (s) => s.transactions.ordered >= final[0]!.transactions.ordered + 1)
    sites[3] = await start('site-d', d.dir, agents)
    const caughtUp = await agreed('D caught up after kill -9', sites, (s) => s.transactions.ordered >= final[0]!.transactions.ordered + 1)
    assert.equal(caughtUp[3]!.stateHash, caughtUp[0]!.stateHash)

    // Two of four stopped: no supermajority, nothing is ordered; back again: ordering resumes.
    const [c, dAgain] = [sites[2]!, sites[3]!]
    await c.agent.stop()
    await dAgain.agent.stop()
    const before = (await a.client.status()).transactions.ordered
    await a.client.ping()
    await sites[1]!.client.ping()
    // Both are submitted and being gossiped between A and B; give them many heartbeats' time.
    await new Promise((resolve) => setTimeout(resolve, 5000))
    const stalled = await Promise.all([a, sites[1]!].map(async (s) => await s.client.status()))
    assert.ok(stalled.every((s) => s.transactions.ordered === before), 'nothing ordered with two of four members down')
    assert.ok(stalled[0]!.transactions.pending >= 1)
    sites[2] = await start('site-c', c.dir, agents)
    sites[3] = await start('site-d', dAgain.dir, agents)
    await agreed('ordering resumed with all four', sites, (s) => s.transactions.ordered >= before + 2)
  } catch (err) {
    reportAgents(agents, 4000)
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
