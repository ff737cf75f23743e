/**
 * A LAN of network namespaces: two sites, each in its own namespace, joined by veth pairs to a
 * bridge, with no addresses configured beyond their own — they find each other by mDNS alone.
 * Needs root (ip netns); skipped with the reason printed otherwise.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AgentStatus } from '../p2p/api/index.js'
import { bin, createSwarm, tempDataDir } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'

function run (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function must (...args: string[]): string {
  const r = run(...args)
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout
}

function whyNotPossible (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for ip netns'
  const probe = run('ip', 'netns', 'list')
  if (probe.status !== 0) return `ip netns is not available: ${probe.stderr.trim() || 'ip not found'}`
  return undefined
}

const skip = whyNotPossible()
if (skip !== undefined) process.stdout.write(`# agent-lan: skipped: ${skip}\n`)

test('agents in separate network namespaces on one bridge find each other by mDNS and order together', { skip }, async () => {
  const tag = randomBytes(3).toString('hex')
  const bridge = `hgbr${tag}`
  const sites = ['a', 'b'].map((s, i) => ({ name: `lan-${s}`, ns: `hgmig-${tag}-${s}`, host: `hgv${tag}${s}0`, guest: `hgv${tag}${s}1`, ip: `10.231.${parseInt(tag.slice(0, 2), 16) % 250}.${i + 1}`, dir: tempDataDir() }))
  const children: ChildProcess[] = []
  const logs: string[][] = []
  try {
    must('ip', 'link', 'add', bridge, 'type', 'bridge')
    // Multicast must flood across the bridge (mDNS queries and answers), with no querier on this LAN.
    must('ip', 'link', 'set', bridge, 'type', 'bridge', 'mcast_snooping', '0')
    must('ip', 'link', 'set', bridge, 'up')
    for (const site of sites) {
      must('ip', 'netns', 'add', site.ns)
      must('ip', 'link', 'add', site.host, 'type', 'veth', 'peer', 'name', site.guest)
      must('ip', 'link', 'set', site.host, 'master', bridge)
      must('ip', 'link', 'set', site.host, 'up')
      must('ip', 'link', 'set', site.guest, 'netns', site.ns)
      must('ip', '-n', site.ns, 'addr', 'add', `${site.ip}/24`, 'dev', site.guest)
      must('ip', '-n', site.ns, 'link', 'set', site.guest, 'up')
      must('ip', '-n', site.ns, 'link', 'set', 'lo', 'up')
      // Multicast leaves through the LAN interface (there is no default route in the namespace).
      must('ip', '-n', site.ns, 'route', 'add', '224.0.0.0/4', 'dev', site.guest)
    }

    // Both sites are founders of one swarm (its genesis lists both); nothing tells either where the other is.
    for (const site of sites) createSwarm(site.dir, site.name)
    const genesis = JSON.parse(readFileSync(join(sites[0]!.dir, 'swarm.json'), 'utf8')) as { members: unknown[] }
    genesis.members.push((JSON.parse(readFileSync(join(sites[1]!.dir, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0])
    for (const site of sites) writeFileSync(join(site.dir, 'swarm.json'), JSON.stringify(genesis, null, 2), { mode: 0o600 })

    for (const site of sites) {
      const output: string[] = []
      logs.push(output)
      const child = spawn('ip', ['netns', 'exec', site.ns, process.execPath, bin, 'agent', '--data', site.dir, '--listen', `/ip4/${site.ip}/tcp/0`], { stdio: ['ignore', 'pipe', 'pipe'] })
      child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()))
      children.push(child)
    }
    // The API listens on the namespace's own loopback: ask through the CLI run inside it.
    const status = (site: typeof sites[number]): AgentStatus | undefined => {
      const r = run('ip', 'netns', 'exec', site.ns, process.execPath, bin, 'status', '--json', '--data', site.dir)
      return r.status === 0 ? JSON.parse(r.stdout) as AgentStatus : undefined
    }
    await eventually('both agents connected to each other over the bridge', async () => {
      const both = sites.map(status)
      return both.every((s) => s !== undefined && s.members.every((m) => m.connected)) ? true : undefined
    }, 120_000)
    assert.match(logs[0]!.join(''), /mDNS discovery on/)
    must('ip', 'netns', 'exec', sites[0]!.ns, process.execPath, bin, 'status', '--data', sites[0]!.dir)
    // A latency probe submitted at B, through B's API inside its namespace.
    const api = new URL('../p2p/api/index.js', import.meta.url).href
    const probe = `const { ApiClient } = await import(${JSON.stringify(api)}); const c = await ApiClient.forDataDir(${JSON.stringify(sites[1]!.dir)}); process.stdout.write(JSON.stringify(await c.ping()))`
    const submitted = JSON.parse(must('ip', 'netns', 'exec', sites[1]!.ns, process.execPath, '--input-type=module', '-e', probe)) as { submitted: string[] }
    assert.equal(submitted.submitted.length, 1)
    // B lists A among the peers found on the LAN, with A's bridge address, as a member.
    const lanProbe = `const { ApiClient } = await import(${JSON.stringify(api)}); const c = await ApiClient.forDataDir(${JSON.stringify(sites[1]!.dir)}); process.stdout.write(JSON.stringify(await c.lanPeers()))`
    const lanPeers = JSON.parse(must('ip', 'netns', 'exec', sites[1]!.ns, process.execPath, '--input-type=module', '-e', lanProbe)) as Array<{ peerId: string, addrs: string[], member: boolean }>
    const a = lanPeers.find((p) => p.peerId === status(sites[0]!)!.peerId)
    assert.ok(a !== undefined, `site A among B's LAN peers: ${JSON.stringify(lanPeers)}`)
    assert.ok(a.member)
    assert.ok(a.addrs.some((addr) => addr.includes(`/ip4/${sites[0]!.ip}/`)), `A's bridge address among ${a.addrs.join(', ')}`)
    const agreed = await eventually('a transaction ordered at both sites with one state hash', async () => {
      const both = sites.map(status)
      if (both.some((s) => s === undefined)) return undefined
      const [x, y] = both as [AgentStatus, AgentStatus]
      return x.transactions.ordered >= 1 && x.stateHash === y.stateHash && x.transactions.ordered === y.transactions.ordered ? both : undefined
    }, 120_000)
    const peer = agreed[0]!.members.find((m) => !m.self)!
    assert.equal(peer.connected, true)
  } catch (err) {
    for (const [i, output] of logs.entries()) process.stderr.write(`--- ${sites[i]!.name}\n${output.join('')}\n`)
    throw err
  } finally {
    for (const child of children) child.kill('SIGKILL')
    await Promise.all(children.map(async (child) => await new Promise((resolve) => { if (child.exitCode !== null || child.signalCode !== null) resolve(null); else child.once('exit', resolve) })))
    for (const site of sites) {
      run('ip', 'netns', 'del', site.ns)
      run('ip', 'link', 'del', site.host)
    }
    run('ip', 'link', 'del', bridge)
  }
})
