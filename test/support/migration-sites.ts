/**
 * Sites for the migration tests and benchmark: each a migration-peer.ts process with its own data
 * directory, and the test-side helpers to give them images and a common replica.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createSwarmKey } from '../../p2p/swarm/index.js'
import type { ImageManifestData, ReplicaView, SyntheticDriverInit } from '../../p2p/migration/index.js'

const PEER_SCRIPT = fileURLToPath(new URL('./migration-peer.js', import.meta.url))

export class MigrationSite {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly waiting = new Map<number, (value: Record<string, unknown>) => void>()
  private nextId = 1
  readonly stderr: string[] = []
  exited = false

  constructor (readonly name: string, configPath: string, readonly dataDir: string) {
    this.child = spawn(process.execPath, [PEER_SCRIPT, configPath, name, dataDir], { stdio: ['pipe', 'pipe', 'pipe'] })
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const answer = JSON.parse(line) as Record<string, unknown> & { id: number }
      this.waiting.get(answer.id)?.(answer)
      this.waiting.delete(answer.id)
    })
    this.child.stderr.on('data', (chunk: Buffer) => { this.stderr.push(chunk.toString()) })
    this.child.on('exit', () => {
      this.exited = true
      for (const resolve of this.waiting.values()) resolve({ error: `site ${name} exited: ${this.stderr.join('').slice(-2000)}` })
      this.waiting.clear()
    })
  }

  async call<T = Record<string, unknown>> (command: Record<string, unknown>): Promise<T> {
    if (this.exited) throw new Error(`site ${this.name} has exited: ${this.stderr.join('').slice(-2000)}`)
    const id = this.nextId++
    const answer = await new Promise<Record<string, unknown>>((resolve) => {
      this.waiting.set(id, resolve)
      this.child.stdin.write(JSON.stringify({ ...command, id }) + '\n')
    })
    if (answer.error !== undefined) throw new Error(`${this.name}: ${JSON.stringify(command).slice(0, 200)} failed: ${String(answer.error)}`)
    return answer as T
  }

  kill (): Promise<void> {
    return new Promise((resolve) => {
      if (this.exited) { resolve(); return }
      this.child.once('exit', () => { resolve() })
      this.child.kill('SIGKILL')
    })
  }

  async stop (): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => { resolve() }))
    this.child.stdin.end()
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))])
    await this.kill()
  }
}

/** Starts one process per site name under `root`, connected to each other. */
export async function startSites (root: string, names: string[], options: { chunkSize?: number, linkBandwidth?: number, baseTransfer?: 'exchange' | 'direct', faults?: Record<string, SyntheticDriverInit['faults']> } = {}): Promise<Map<string, MigrationSite>> {
  const keys: Record<string, string> = {}
  for (const name of names) keys[name] = Buffer.from(privateKeyToProtobuf(await generateKeyPair('Ed25519'))).toString('hex')
  const configPath = join(root, 'sites.json')
  writeFileSync(configPath, JSON.stringify({ swarmId: 'migration-test', swarmKey: new TextDecoder().decode(createSwarmKey()), keys, chunkSize: options.chunkSize ?? 64 * 1024, linkBandwidth: options.linkBandwidth ?? 0, baseTransfer: options.baseTransfer ?? 'exchange', faults: options.faults ?? {} }))
  const sites = new Map(names.map((name) => [name, new MigrationSite(name, configPath, join(root, name))]))
  const addrs: Record<string, string> = {}
  for (const [name, site] of sites) addrs[name] = (await site.call<{ addr: string }>({ cmd: 'addr' })).addr
  for (const site of sites.values()) await site.call({ cmd: 'peers', addrs })
  return sites
}

/** The replica every site agrees on: holdings as given, manifests read from the holders' stores. */
export async function buildReplica (sites: Map<string, MigrationSite>, holdings: Array<{ site: string, image: string }>): Promise<ReplicaView> {
  const manifests = new Map<string, ImageManifestData>()
  const out: ReplicaView = { holdings: [], manifests: [] }
  for (const { site, image } of holdings) {
    const { manifest } = await (sites.get(site) as MigrationSite).call<{ manifest: ImageManifestData }>({ cmd: 'manifest', image })
    manifests.set(manifest.rootCid, manifest)
    out.holdings.push({ site, rootCid: manifest.rootCid })
  }
  out.manifests = [...manifests.values()]
  return out
}

/** Polls `probe` until it returns a value (a liveness bound, not a speed check). */
export async function until<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Starts a site again (after a kill) on its data directory and tells every site its new address. */
export async function restartSite (root: string, sites: Map<string, MigrationSite>, name: string): Promise<MigrationSite> {
  const site = new MigrationSite(name, join(root, 'sites.json'), join(root, name))
  sites.set(name, site)
  const addrs: Record<string, string> = {}
  for (const [other, s] of sites) addrs[other] = (await s.call<{ addr: string }>({ cmd: 'addr' })).addr
  for (const s of sites.values()) await s.call({ cmd: 'peers', addrs })
  return site
}
