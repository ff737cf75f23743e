/** Runs `hgmig` commands and agent daemons as separate OS processes, for the agent and API tests. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiClient, type ApiFile } from '../../p2p/api/index.js'
import { tempDir } from './temp-dir.js'
import { eventually } from './peer-process.js'

export const bin = fileURLToPath(new URL('../../../bin/hgmig.js', import.meta.url))

export interface CommandResult { status: number | null, stdout: string, stderr: string }

/** Runs one hgmig command to completion. */
export function hgmig (...args: string[]): CommandResult {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, HGMIG_DEBUG: '' }, timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Runs one hgmig command that must succeed; returns its stdout, or throws with its stderr. */
export function hgmigOk (...args: string[]): string {
  const r = hgmig(...args)
  if (r.status !== 0) throw new Error(`hgmig ${args.join(' ')} failed (${r.status ?? 'killed'}): ${r.stderr}`)
  return r.stdout
}

export function tempDataDir (): string {
  return join(tempDir('hgmig-agent-'), 'data')
}

/** `hgmig swarm create --json` in `dataDir`; fails the test if it does not succeed. */
export function createSwarm (dataDir: string, site: string): { swarmId: string, peerId: string } {
  const r = hgmig('swarm', 'create', '--name', site, '--data', dataDir, '--json')
  if (r.status !== 0) throw new Error(`swarm create failed: ${r.stderr}`)
  return JSON.parse(r.stdout) as { swarmId: string, peerId: string }
}

export class AgentProcess {
  readonly child: ChildProcess
  readonly output: string[] = []
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>

  constructor (readonly dataDir: string, args: string[] = []) {
    this.child = spawn(process.execPath, [bin, 'agent', '--data', dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HGMIG_DEBUG: '' } })
    this.child.stdout!.on('data', (chunk: Buffer) => { this.output.push(chunk.toString()) })
    this.child.stderr!.on('data', (chunk: Buffer) => { this.output.push(chunk.toString()) })
    this.exited = new Promise((resolve) => { this.child.once('exit', (code, signal) => { resolve({ code, signal }) }) })
  }

  get log (): string { return this.output.join('') }

  /** Waits for this agent's api.json and returns a client for it. */
  async ready (timeoutMs = 60_000): Promise<{ client: ApiClient, api: ApiFile }> {
    let gone = false
    void this.exited.then(() => { gone = true })
    const api = await eventually(`api.json of agent pid ${this.child.pid}`, async () => {
      if (gone) throw new Error(`agent exited before it was ready:\n${this.log}`)
      const file = JSON.parse(readFileSync(join(this.dataDir, 'api.json'), 'utf8')) as ApiFile
      return file.pid === this.child.pid ? file : undefined
    }, timeoutMs)
    return { client: new ApiClient({ origin: `http://127.0.0.1:${api.port}`, token: api.token }), api }
  }

  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
    return await this.exited
  }

  /** For cleanup in `finally`: whatever state the agent is in, it is gone afterwards. */
  async kill (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.kill('SIGKILL')
    await this.exited
  }
}

/** For a failed test's output: each agent's state (running, or how it ended) and the tail of its log. */
export function reportAgents (agents: AgentProcess[], tailChars = 5000): void {
  for (const agent of agents) {
    const { exitCode, signalCode, pid } = agent.child
    const state = exitCode === null && signalCode === null ? 'running' : `exited with ${signalCode ?? `code ${exitCode}`}`
    process.stderr.write(`--- agent ${agent.dataDir} (pid ${pid}, ${state})\n${agent.log.slice(-tailChars)}\n`)
  }
}

export interface FoundingSite { name: string, dir: string, agent: AgentProcess, client: ApiClient }

/**
 * `names.length` founding sites of one swarm (the genesis lists them all: no joining), their
 * agents started on loopback, each bootstrapped to the first, and connected to one another.
 */
export async function foundingSwarm (names: string[], agents: AgentProcess[]): Promise<FoundingSite[]> {
  const dirs = names.map(() => tempDataDir())
  names.forEach((name, i) => createSwarm(dirs[i]!, name))
  const genesis = JSON.parse(readFileSync(join(dirs[0]!, 'swarm.json'), 'utf8')) as { members: unknown[] }
  genesis.members = dirs.map((dir) => (JSON.parse(readFileSync(join(dir, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0])
  for (const dir of dirs) writeFileSync(join(dir, 'swarm.json'), JSON.stringify(genesis), { mode: 0o600 })
  const sites: FoundingSite[] = []
  for (const [i, dir] of dirs.entries()) {
    const agent = new AgentProcess(dir, i === 0 ? [] : ['--bootstrap', (await sites[0]!.client.status()).listen[0]!])
    agents.push(agent)
    sites.push({ name: names[i]!, dir, agent, client: (await agent.ready()).client })
  }
  await eventually(`all ${names.length} sites connected`, async () => (await Promise.all(sites.map(async (s) => await s.client.status()))).every((s) => s.members.every((m) => m.connected)) ? true : undefined, 120_000)
  return sites
}
