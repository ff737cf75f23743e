/**
 * Fixtures for the exchange tests and benchmark: a swarm file (keys and pnet key for N sites),
 * sites as separate OS processes (exchange-peer.ts), and image files with a known chunk plan
 * (random chunks, all-zero chunks, chunks repeated within the image).
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createSwarmKey } from '../../p2p/swarm/index.js'
import { eventually, PeerProcess } from './peer-process.js'

export const CHUNK = 64 * 1024
const peerScript = fileURLToPath(new URL('./exchange-peer.js', import.meta.url))
const netnsLauncher = fileURLToPath(new URL('./exchange-netns-launch.js', import.meta.url))

export async function writeSwarmFile (dir: string, sites: number): Promise<string> {
  const keys = await Promise.all(Array.from({ length: sites }, async () => Buffer.from(privateKeyToProtobuf(await generateKeyPair('Ed25519'))).toString('hex')))
  const path = join(dir, 'swarm.json')
  writeFileSync(path, JSON.stringify({ swarmId: 'exchange-test', swarmKey: new TextDecoder().decode(createSwarmKey()), keys }))
  return path
}

export interface SiteOptions {
  /** The site's script (default this build's exchange-peer.js): a benchmark runs another build's for an A/B. */
  script?: string
  /** Run the site in this network namespace (`ip netns exec`; needs root), listening on `listen`. */
  netns?: string
  /** libp2p listen address (default 127.0.0.1, any port). */
  listen?: string
  members?: number[]
  corrupt?: boolean
  egressBytesPerSecond?: number
  stallTimeoutMs?: number
  sendCoalesceBytes?: number
}

export class Site {
  readonly process: PeerProcess
  peerId = ''
  addr = ''
  /** The site's own process id (under `netns`, PeerProcess drives a launcher in front of it). */
  pid = 0
  constructor (readonly swarmFile: string, readonly index: number, readonly dataDir: string, readonly options: SiteOptions = {}) {
    mkdirSync(dataDir, { recursive: true })
    const { netns, script = peerScript, ...peerOptions } = options
    const args = [swarmFile, String(index), dataDir, JSON.stringify(peerOptions)]
    this.process = netns === undefined ? new PeerProcess(script, args) : new PeerProcess(netnsLauncher, [netns, script, ...args])
  }

  static async start (swarmFile: string, index: number, dataDir: string, options: SiteOptions = {}): Promise<Site> {
    const site = new Site(swarmFile, index, dataDir, options)
    const { addr, peerId, pid } = await site.call<{ addr: string, peerId: string, pid: number }>({ cmd: 'addr' })
    site.addr = addr.includes('/p2p/') ? addr : `${addr}/p2p/${peerId}`
    site.peerId = peerId
    site.pid = pid
    return site
  }

  async call<T = Record<string, unknown>> (command: Record<string, unknown>): Promise<T> {
    return await this.process.call<T>(command)
  }

  /** The fetch request for an image this site holds, with the given sites as sources. */
  async requestFor (image: string, sources: Site[], extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const manifest = await this.call<{ rootCid: string, size: number, layer: string, chunks: string[] }>({ cmd: 'manifest', image })
    return { ...manifest, name: image, sources: sources.map((s) => ({ peer: s.peerId, addrs: [s.addr] })), ...extra }
  }

  async fetchStart (request: Record<string, unknown>): Promise<void> {
    await this.call({ cmd: 'fetchStart', request })
  }

  async status (): Promise<FetchStatus> {
    return await this.call<FetchStatus>({ cmd: 'status' })
  }

  /** Waits for the running fetch to end; returns its status (result or error). */
  async fetchEnd (timeoutMs = 90_000): Promise<FetchStatus> {
    return await eventually('the fetch to end', async () => {
      const status = await this.status()
      return status.result !== undefined || status.failure !== undefined ? status : undefined
    }, timeoutMs)
  }

  /** kill -9 of the site itself (and of its launcher, if any). */
  async kill (): Promise<void> {
    if (this.options.netns !== undefined && this.pid !== 0) {
      try { process.kill(this.pid, 'SIGKILL') } catch { /* already gone */ }
    }
    await this.process.kill()
  }
  async stop (): Promise<void> { await this.process.stop() }
}

export interface SourceStatus {
  peer: string
  state: string
  chunks: number
  bytes: number
  bytesReceived: number
  invalidBlocks: number
  dropReason?: string
}

export interface FetchStatus {
  progress?: { phase: string, fetchChunksDone: number, fetchChunksTotal: number, chunksDone: number, chunksTotal: number, sources: SourceStatus[] }
  result?: { image: { rootCid: string, id: string }, fetchMs: number, importMs: number, firstBlockMs: number, chunksFetched: number, bytesFetched: number, bytesReceived: number, chunksResumed: number, chunksRecovered: number, chunksLocal: number, chunksZero: number, invalidBlocks: number, sources: SourceStatus[] }
  failure?: string
  failureName?: string
  transfers: Array<{ rootCid: string, chunksDone: number, chunksTotal: number, running: boolean }>
}

/** An image's chunk plan: 0 = all zeros, otherwise the key of a random chunk (equal keys = equal bytes). */
export interface ChunkPlan {
  keys: number[]
  /** Bytes of the last chunk (the image need not end on a chunk boundary). */
  lastLength: number
}

/**
 * A plan of `chunks` chunks: every 10th-from-3 chunk all zeros, every 17th a repeat of an earlier
 * one, the rest distinct (keys offset by `keyBase`, so two plans share exactly the keys they share).
 */
export function plan (chunks: number, keyBase: number, lastLength = CHUNK - 1000): ChunkPlan {
  const keys: number[] = []
  for (let i = 0; i < chunks; i++) {
    if (i % 10 === 3) keys.push(0)
    else if (i % 17 === 16 && i > 20 && i < chunks - 1) keys.push(keys[i - 20] === 0 ? keyBase + i : keys[i - 20] as number)
    else keys.push(keyBase + i)
  }
  return { keys, lastLength }
}

/** Writes a plan's bytes (random content per key, the same for the same key within one `contents` map). */
export function writeImage (path: string, chunkPlan: ChunkPlan, contents: Map<number, Buffer>): void {
  const parts = chunkPlan.keys.map((key, i) => {
    const length = i === chunkPlan.keys.length - 1 ? chunkPlan.lastLength : CHUNK
    if (key === 0) return Buffer.alloc(length)
    let content = contents.get(key)
    if (content === undefined) {
      content = randomBytes(CHUNK)
      contents.set(key, content)
    }
    return content.subarray(0, length)
  })
  writeFileSync(path, Buffer.concat(parts))
}

/** Bytes of the distinct non-zero chunks of `target` whose key `have` lacks: what must cross the network. */
export function missingBytes (target: ChunkPlan, have: ChunkPlan | undefined): { chunks: number, bytes: number } {
  const present = new Set(have?.keys ?? [])
  const seen = new Set<number>()
  let chunks = 0
  let bytes = 0
  target.keys.forEach((key, i) => {
    if (key === 0 || present.has(key) || seen.has(key)) return
    seen.add(key)
    chunks++
    bytes += i === target.keys.length - 1 ? target.lastLength : CHUNK
  })
  return { chunks, bytes }
}

export async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
