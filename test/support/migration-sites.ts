/**
 * Sites for the migration tests and benchmark: each a migration-peer.ts process with its own data
 * directory, and the test-side helpers to give them images and a common replica.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createSwarmKey } from '../../p2p/swarm/index.js'
import type { ImageManifestData, ReplicaView, SyntheticDriverInit } from '../../p2p/migration/index.js'
import { generateSitePair, writePlan } from './image-generator.js'

const PEER_SCRIPT = fileURLToPath(new URL('./migration-peer.js', import.meta.url))

export class MigrationSite {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly waiting = new Map<number, (value: Record<string, unknown>) => void>()
  private nextId = 1
  readonly stderr: string[] = []
  exited = false

  /** `netns`: run the site in that network namespace (`ip netns exec` execs node, so kill() still reaches the site). */
  constructor (readonly name: string, configPath: string, readonly dataDir: string, netns?: string) {
    const command = [process.execPath, PEER_SCRIPT, configPath, name, dataDir]
    this.child = netns === undefined
      ? spawn(command[0] as string, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', netns, ...command], { stdio: ['pipe', 'pipe', 'pipe'] })
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

  /** Sends `signal` to the site's process: SIGSTOP freezes it (its connections stay open, nothing is read), SIGCONT wakes it. */
  signal (signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.child.kill(signal)
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

/** Sites in network namespaces (test/support/exchange-netns.ts): per site, its namespace and the address it listens on there. */
export interface SitesLab { netns: Record<string, string>, listen: Record<string, string> }

/** Starts one process per site name under `root`, connected to each other (on loopback, or in `lab`'s namespaces). */
export async function startSites (root: string, names: string[], options: { chunkSize?: number, linkBandwidth?: number, baseTransfer?: 'exchange' | 'direct', faults?: Record<string, SyntheticDriverInit['faults']>, lab?: SitesLab } = {}): Promise<Map<string, MigrationSite>> {
  const keys: Record<string, string> = {}
  for (const name of names) keys[name] = Buffer.from(privateKeyToProtobuf(await generateKeyPair('Ed25519'))).toString('hex')
  const configPath = join(root, 'sites.json')
  writeFileSync(configPath, JSON.stringify({ swarmId: 'migration-test', swarmKey: new TextDecoder().decode(createSwarmKey()), keys, chunkSize: options.chunkSize ?? 64 * 1024, linkBandwidth: options.linkBandwidth ?? 0, baseTransfer: options.baseTransfer ?? 'exchange', faults: options.faults ?? {}, ...(options.lab ?? {}) }))
  const sites = new Map(names.map((name) => [name, new MigrationSite(name, configPath, join(root, name), options.lab?.netns[name])]))
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

/**
 * Sites for one test file: started in a `before` hook (with `sourceImages` at a when `images` is
 * given), then handed to `started`; stopped and their directory removed in an `after` hook. Call
 * at the top of the file. (`started` runs inside that hook: with Node 20, a second top-level
 * `before` in the test file was seen running before this one had started the sites.)
 */
export function sitesForTests (name: string, names: string[], options: Parameters<typeof startSites>[2] & { images?: { seed: number, os: number, we: number } }, started: (site: (name: string) => MigrationSite) => void): { root: string, site: (name: string) => MigrationSite } {
  const root = mkdtempSync(join(tmpdir(), `hgmig-${name}-`))
  let sites: Map<string, MigrationSite> | undefined
  before(async () => {
    const { images, ...start } = options
    sites = await startSites(root, names, start)
    if (images !== undefined) await sourceImages(root, sites, images.seed, images)
    started(site)
  })
  after(async () => {
    await Promise.all([...(sites?.values() ?? [])].map(async (site) => { await site.stop() }))
    rmSync(root, { recursive: true, force: true })
  })
  const site = (siteName: string): MigrationSite => {
    const found = sites?.get(siteName)
    if (found === undefined) throw new Error(`site ${siteName} is not started (sitesForTests starts the sites in a before hook)`)
    return found
  }
  return { root, site }
}

/**
 * Site a's OS and WE images (`a-os`, `a-we`: `units` 64 KiB chunks each, generated from `seed`),
 * imported there and known to every site through the replica: what a test needs to migrate VMs
 * from a when the target holds no similar images.
 */
export async function sourceImages (root: string, sites: Map<string, MigrationSite>, seed: number, units: { os: number, we: number }): Promise<void> {
  const a = sites.get('a') as MigrationSite
  const pair = generateSitePair({ seed, osUnits: units.os, weUnits: units.we, udUnits: 1, zeroShare: 0.1, similarity: { os: 0.4, we: 0.4 } })
  await writePlan(pair.a.os, join(root, 'a-os.img'))
  await writePlan(pair.a.we, join(root, 'a-we.img'))
  await a.call({ cmd: 'import', layer: 'os', path: join(root, 'a-os.img'), name: 'a-os' })
  await a.call({ cmd: 'import', layer: 'we', path: join(root, 'a-we.img'), name: 'a-we', base: 'a-os' })
  const replica = await buildReplica(sites, [{ site: 'a', image: 'a-os' }, { site: 'a', image: 'a-we' }])
  for (const site of sites.values()) await site.call({ cmd: 'replica', replica })
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
  const configPath = join(root, 'sites.json')
  const { netns } = JSON.parse(readFileSync(configPath, 'utf8')) as { netns?: Record<string, string> }
  const site = new MigrationSite(name, configPath, join(root, name), netns?.[name])
  sites.set(name, site)
  const addrs: Record<string, string> = {}
  for (const [other, s] of sites) addrs[other] = (await s.call<{ addr: string }>({ cmd: 'addr' })).addr
  for (const s of sites.values()) await s.call({ cmd: 'peers', addrs })
  return site
}
