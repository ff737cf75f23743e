/**
 * The site's images in the swarm. The agent owns the site's image store while it runs: imports go
 * through it and are announced by consensus (image-announce), removals dropped (image-drop); at
 * start, what the store holds and what the replicated state says this site holds are reconciled.
 * For every public image another site announces, the manifest — the DAG's interior nodes, hence
 * every chunk's CID in file order, not the data — is fetched from a holder, checked block by block
 * against the announced root CID, and kept as a remote manifest: so every site knows every chunk
 * hash in the swarm (H-GMIG: "hashgraph replicas hold the image hashes").
 *
 * Manifest protocol (`/hgmig/<swarm id>/manifest/1.0.0`, request/response, paged): `{ rootCid,
 * from, limit }` → `{ nodes, total }`, the interior dag-pb blocks of a local public image in
 * breadth-first order. With the balanced layout and raw leaves, every leaf sits at the bottom
 * level, so the leaves met breadth-first are the file's chunks in order.
 */
import { isAbsolute } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import type { PeerId } from '@libp2p/interface'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { ApiRequestError, type ChunkMapSite, type ChunkMapView, type ImagesResponse, type ImageView, type StoreCall } from '../api/index.js'
import { LAYERS, zeroLeafCidOf, type ImageInfo, type ImageStore, type Layer } from '../store/index.js'
import { handleRequests, sendRequest, type SwarmNode } from '../swarm/index.js'
import type { AnnouncedImage, AppliedTransaction, SwarmState, SwarmTransaction } from './state.js'

const RAW_CODEC = 0x55
const DAG_PB_CODEC = 0x70
const NODES_PER_PAGE = 64
/** A page is at most 64 interior nodes of ≤ 174 links each: far below this. */
const MAX_PAGE_BYTES = 4 * 1024 * 1024

export function manifestProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/manifest/1.0.0`
}

export interface SiteImagesInit {
  store: ImageStore
  node: SwarmNode
  swarmId: string
  state: () => SwarmState
  selfPeerId: string
  /** Whether this site takes part (a joining site announces nothing yet). */
  isMember: () => boolean
  submit: (transaction: SwarmTransaction) => void
  isConnected: (peerId: string) => boolean
  peerOf: (peerId: string) => PeerId
  say: (line: string) => void
  onProgress: (task: string, done: number, total: number | null, message?: string) => void
}

export class SiteImages {
  /** Interior nodes of local public images, by root CID, for serving pages (the last few only). */
  private readonly interiorCache = new Map<string, CID[]>()
  /** Root CIDs whose manifest is wanted, with the last failure reason (to log once). */
  private readonly wanted = new Map<string, string | null>()
  private fetching = false
  private reconciled = false

  constructor (private readonly init: SiteImagesInit) {}

  async start (): Promise<void> {
    await handleRequests(this.init.node, manifestProtocol(this.init.swarmId), async (request) => await this.servePage(request), { maxResponseBytes: MAX_PAGE_BYTES })
  }

  async stop (): Promise<void> {
    await this.init.node.unhandle(manifestProtocol(this.init.swarmId))
  }

  // ------------------------------------------------------------ consensus side

  /** Called for each live applied transaction: true if it announced a manifest this site now wants. */
  applied (applied: AppliedTransaction): boolean {
    const tx = applied.transaction
    if (tx?.type !== 'image-announce' || !tx.image.public) return false
    const self = this.init.state().memberByPeerId(this.init.selfPeerId)
    if (self !== undefined && applied.creator === self.index) return false
    this.wanted.set(tx.image.rootCid, null)
    return true
  }

  /** After the replay: every public image some other site holds is a manifest this site may lack. */
  wantAnnounced (): void {
    const self = this.init.state().memberByPeerId(this.init.selfPeerId)
    for (const image of this.init.state().imageList()) {
      if (image.public && !(self !== undefined && image.holders.length === 1 && image.holders[0] === self.index)) this.wanted.set(image.rootCid, null)
    }
  }

  /**
   * Once a member: announces local images the state does not list for this site (imported while
   * the agent was down, or crashed before the announcement), and drops those no longer here.
   * Then fetches the manifests still missing. Called periodically; cheap when nothing is to do.
   */
  async maintain (): Promise<void> {
    if (!this.init.isMember()) return
    if (!this.reconciled) {
      this.reconciled = true
      await this.reconcile()
    }
    await this.fetchWanted()
  }

  private async reconcile (): Promise<void> {
    const state = this.init.state()
    const self = state.memberByPeerId(this.init.selfPeerId)
    if (self === undefined) return
    const local = await this.init.store.list()
    const localRoots = new Set(local.map((i) => i.rootCid))
    const announced = new Set(state.imageList().filter((i) => i.holders.includes(self.index)).map((i) => i.rootCid))
    for (const image of local) {
      if (announced.has(image.rootCid) || image.profile !== 'hgmig') continue
      this.init.say(`announcing ${image.name} (${image.rootCid}), held here but not yet announced`)
      this.init.submit({ type: 'image-announce', image: await this.describe(image, local) })
    }
    for (const root of announced) {
      if (localRoots.has(root)) continue
      this.init.say(`dropping ${root}: announced by this site, no longer in its store`)
      this.init.submit({ type: 'image-drop', rootCid: root })
    }
  }

  private async describe (image: ImageInfo, local: ImageInfo[]): Promise<AnnouncedImage> {
    const base = image.base === null ? null : local.find((i) => i.id === image.base)?.rootCid ?? null
    return { rootCid: image.rootCid, name: image.name, layer: image.layer, base, size: image.size, chunkSize: image.chunkSize, chunkCount: image.chunkCount, public: image.public }
  }

  /** Every image announced in the swarm, with who holds it and what this site knows of it. */
  async view (): Promise<ImagesResponse> {
    const state = this.init.state()
    const localRoots = new Set((await this.init.store.list()).map((i) => i.rootCid))
    const images: ImageView[] = []
    for (const image of state.imageList()) {
      const local = localRoots.has(image.rootCid)
      images.push({
        rootCid: image.rootCid,
        name: image.name,
        layer: image.layer,
        base: image.base,
        size: image.size,
        chunkSize: image.chunkSize,
        chunkCount: image.chunkCount,
        public: image.public,
        holders: image.holders.map((h) => state.member(h)?.name ?? String(h)),
        local,
        manifest: local || await this.init.store.hasRemoteManifest(image.rootCid)
      })
    }
    const sites = state.activeMembers().map((m) => ({ site: m.name, peerId: m.peerId, images: state.imageList().filter((i) => i.holders.includes(m.index)).map((i) => i.rootCid) }))
    return { images, sites }
  }

  /**
   * Which of an image's chunks each member holds, in `buckets` runs of chunk positions: held means
   * present in some image the replicated state says that site holds (whose chunk list is known
   * here), so a chunk shared with another image counts as held. All-zero chunks are never stored
   * or sent; they show as their own state. While this site fetches the image (`fetchingHere`: a
   * transfer of it runs, with that many chunks still to come), its missing chunks are in flight.
   */
  async chunkMap (rootCid: string, buckets: number, fetchingHere: { pending: number } | null = null): Promise<ChunkMapView> {
    const state = this.init.state()
    const image = state.image(rootCid)
    if (image === undefined) throw new ApiRequestError(404, `no image with root CID ${JSON.stringify(rootCid)} in the swarm (see GET /v1/images)`)
    const chunkLists = new Map<string, CID[] | undefined>()
    const localRoots = new Set((await this.init.store.list()).map((i) => i.rootCid))
    const chunksOf = async (root: string): Promise<CID[] | undefined> => {
      if (!chunkLists.has(root)) chunkLists.set(root, await this.chunkList(root, localRoots.has(root)))
      return chunkLists.get(root)
    }
    const chunks = await chunksOf(rootCid)
    if (chunks === undefined) throw new ApiRequestError(409, `the chunk list of ${image.name} (${rootCid}) is not known here yet: this site fetches it from a holder`)
    // All-zero leaves of both profiles, at the full and the last chunk's length.
    const zero = new Set([image.chunkSize, image.size - (chunks.length - 1) * image.chunkSize]
      .flatMap((length) => [zeroLeafCidOf(length, 'hgmig'), zeroLeafCidOf(length, 'ipfs')]).map(cidKey))
    const perBucket = Math.max(1, Math.ceil(chunks.length / buckets))
    const bucketCount = Math.ceil(chunks.length / perBucket)
    const sites: ChunkMapSite[] = []
    for (const member of state.activeMembers()) {
      const held = new Set<string>()
      for (const other of state.imageList()) {
        if (!other.holders.includes(member.index)) continue
        for (const cid of await chunksOf(other.rootCid) ?? []) held.add(cidKey(cid))
      }
      const isSelf = member.peerId === this.init.selfPeerId
      let heldCount = 0
      let states = ''
      for (let b = 0; b < bucketCount; b++) {
        let have = 0
        let zeros = 0
        let fetching = false
        const end = Math.min(chunks.length, (b + 1) * perBucket)
        for (let position = b * perBucket; position < end; position++) {
          const k = cidKey(chunks[position]!)
          if (zero.has(k)) zeros++
          else if (held.has(k)) have++
          else if (isSelf && fetchingHere !== null) fetching = true
        }
        heldCount += have + zeros
        const size = end - b * perBucket
        states += zeros === size ? 'z' : have + zeros === size ? 'h' : fetching ? 'f' : have > 0 ? 'p' : 'm'
      }
      sites.push({ site: member.name, peerId: member.peerId, held: heldCount, inFlight: isSelf && fetchingHere !== null ? fetchingHere.pending : 0, states })
    }
    return { rootCid, name: image.name, chunkCount: chunks.length, chunkSize: image.chunkSize, buckets: bucketCount, chunksPerBucket: perBucket, sites }
  }

  /** The leaves of an image, from the local store or a recorded manifest; undefined if neither has it. */
  private async chunkList (rootCid: string, local: boolean): Promise<CID[] | undefined> {
    if (local) {
      const chunks: CID[] = []
      for await (const cid of this.init.store.manifest(rootCid)) chunks.push(cid)
      return chunks
    }
    return (await this.init.store.remoteManifest(rootCid))?.chunks.map((cid) => cid instanceof Uint8Array ? CID.decode(cid) : cid)
  }

  // ------------------------------------------------------------ store calls (CLI and UI)

  async call (call: StoreCall, options: { signal: AbortSignal, onProgress: (event: { type: string, detail: unknown }) => void }): Promise<unknown> {
    const { store } = this.init
    const [a, b, c] = call.args
    const { signal, onProgress } = options
    switch (call.method) {
      case 'add': {
        const path = absolutePath(a, 'the image file')
        const info = await store.add(path, { ...addOptions(b), signal, onProgress })
        await this.announce(info)
        return info
      }
      case 'list': return await store.list()
      case 'show': return await store.show(reference(a))
      case 'export': return await store.export(reference(a), absolutePath(b, 'the output file'), { overwrite: optionFlag(c, 'overwrite'), signal, onProgress })
      case 'verify': return await store.verify(reference(a), { signal, onProgress })
      case 'similarity': return await store.similarity(reference(a), reference(b))
      case 'similarityMatrix': return await store.similarityMatrix(a === undefined ? undefined : referenceList(a))
      case 'presence': return await store.presence(reference(a))
      case 'remove': {
        const removed = await store.remove(reference(a))
        const info = removed as unknown as { image: string }
        await this.dropIfGone(info.image)
        return removed
      }
      case 'gc': return await store.gc({ signal, onProgress })
      case 'stats': return await store.stats()
    }
  }

  /** Imports are announced once the site is a member (a joining site's reconcile does it later). */
  async announce (info: ImageInfo): Promise<void> {
    if (!this.init.isMember() || info.profile !== 'hgmig') return
    this.init.submit({ type: 'image-announce', image: await this.describe(info, await this.init.store.list()) })
    this.init.say(`announced ${info.name} (${info.layer}, ${info.rootCid}, ${info.public ? 'public' : 'private'})`)
  }

  private async dropIfGone (removedRef: string): Promise<void> {
    if (!this.init.isMember()) return
    const state = this.init.state()
    const self = state.memberByPeerId(this.init.selfPeerId)
    if (self === undefined) return
    const localRoots = new Set((await this.init.store.list()).map((i) => i.rootCid))
    for (const image of state.imageList()) {
      if (image.holders.includes(self.index) && !localRoots.has(image.rootCid)) {
        this.init.submit({ type: 'image-drop', rootCid: image.rootCid })
        this.init.say(`dropped ${image.name} (${image.rootCid}) after removing ${removedRef}`)
      }
    }
  }

  // ------------------------------------------------------------ manifests

  private async servePage (request: unknown): Promise<{ nodes: Uint8Array[], total: number }> {
    const r = request as { rootCid?: unknown, from?: unknown, limit?: unknown } | null
    if (typeof r?.rootCid !== 'string' || !Number.isSafeInteger(r.from) || (r.from as number) < 0) throw new Error('malformed manifest request')
    const image = (await this.init.store.list()).find((i) => i.rootCid === r.rootCid)
    // Private images are never described to anyone; unknown ones cannot be.
    if (image === undefined || !image.public) throw new Error(`no public image ${r.rootCid} here`)
    const interior = this.interiorNodes(image.rootCid)
    const limit = Math.min(NODES_PER_PAGE, typeof r.limit === 'number' && r.limit > 0 ? r.limit : NODES_PER_PAGE)
    const from = r.from as number
    return { nodes: interior.slice(from, from + limit).map((cid) => this.init.store.readBlock(cid)), total: interior.length }
  }

  private interiorNodes (rootCid: string): CID[] {
    let nodes = this.interiorCache.get(rootCid)
    if (nodes === undefined) {
      nodes = []
      const queue = [CID.parse(rootCid)]
      while (queue.length > 0) {
        const cid = queue.shift()!
        if (cid.code !== DAG_PB_CODEC) continue
        nodes.push(cid)
        for (const link of dagPb.decode(this.init.store.readBlock(cid)).Links) queue.push(link.Hash)
      }
      this.interiorCache.set(rootCid, nodes)
      while (this.interiorCache.size > 8) this.interiorCache.delete(this.interiorCache.keys().next().value!)
    }
    return nodes
  }

  private async fetchWanted (): Promise<void> {
    if (this.fetching || this.wanted.size === 0) return
    this.fetching = true
    try {
      for (const [rootCid, lastFailure] of [...this.wanted]) {
        const record = this.init.state().image(rootCid)
        if (record === undefined || !record.public) { this.wanted.delete(rootCid); continue }
        if (await this.init.store.hasRemoteManifest(rootCid)) { this.wanted.delete(rootCid); continue }
        const holders = record.holders.map((h) => this.init.state().member(h)!).filter((m) => m.peerId !== this.init.selfPeerId && this.init.isConnected(m.peerId))
        let failure = holders.length === 0 ? 'no holder is connected' : null
        for (const holder of holders) {
          try {
            const chunks = await this.fetchManifest(holder.peerId, record)
            await this.init.store.addRemoteManifest({ site: holder.peerId, rootCid, name: record.name, layer: record.layer as Layer, baseRootCid: record.base ?? undefined, size: record.size, chunkSize: record.chunkSize, chunks })
            this.init.say(`manifest of ${record.name} (${rootCid}): ${chunks.length} chunk hashes from ${holder.name}, checked against the root CID`)
            this.wanted.delete(rootCid)
            failure = null
            break
          } catch (err) {
            failure = `from ${holder.name}: ${(err as Error).message}`
          }
        }
        if (failure !== null) {
          if (lastFailure !== failure) this.init.say(`manifest of ${record.name} (${rootCid}) not fetched yet: ${failure}`)
          this.wanted.set(rootCid, failure)
        }
      }
    } finally {
      this.fetching = false
    }
  }

  /** Pages the interior nodes, checking each against the CID its parent (or the announcement) names. */
  private async fetchManifest (holder: string, image: AnnouncedImage): Promise<CID[]> {
    const root = CID.parse(image.rootCid)
    if (root.code === RAW_CODEC) {
      if (image.chunkCount !== 1) throw new Error('announced as several chunks, but its root is a single raw leaf')
      return [root]
    }
    const expected: CID[] = [root]
    const leaves: CID[] = []
    let fileSize = 0n
    let from = 0
    const task = `manifest:${image.rootCid}`
    while (expected.length > 0) {
      const page = await sendRequest(this.init.node, this.init.peerOf(holder), manifestProtocol(this.init.swarmId), { rootCid: image.rootCid, from, limit: NODES_PER_PAGE },
        { maxResponseBytes: MAX_PAGE_BYTES, signal: AbortSignal.timeout(60_000) }) as { nodes?: unknown, total?: unknown }
      if (!Array.isArray(page.nodes) || page.nodes.length === 0) throw new Error(`the holder's manifest ends early (${from} nodes, ${expected.length} expected still)`)
      for (const bytes of page.nodes as unknown[]) {
        const cid = expected.shift()
        if (cid === undefined) throw new Error('the holder sent more nodes than the DAG has')
        if (!(bytes instanceof Uint8Array) || !(await blockMatches(cid, bytes))) throw new Error(`node ${from} does not hash to ${cid.toString()}: manifest refused`)
        const node = dagPb.decode(bytes)
        if (cid.equals(root)) fileSize = UnixFS.unmarshal(node.Data ?? new Uint8Array()).fileSize()
        for (const link of node.Links) {
          if (link.Hash.code === RAW_CODEC) leaves.push(link.Hash)
          else if (link.Hash.code === DAG_PB_CODEC) expected.push(link.Hash)
          else throw new Error(`unexpected link codec 0x${link.Hash.code.toString(16)}`)
        }
        from++
      }
      this.init.onProgress(task, from, typeof page.total === 'number' ? page.total : null, `manifest of ${image.name}`)
    }
    if (leaves.length !== image.chunkCount) throw new Error(`the DAG has ${leaves.length} chunks, the announcement ${image.chunkCount}`)
    if (fileSize !== BigInt(image.size)) throw new Error(`the DAG describes ${fileSize} bytes, the announcement ${image.size}`)
    return leaves
  }
}

async function blockMatches (cid: CID, bytes: Uint8Array): Promise<boolean> {
  if (cid.multihash.code !== sha256.code) return false
  const digest = await sha256.digest(bytes)
  return Buffer.from(digest.digest).equals(Buffer.from(cid.multihash.digest))
}

function reference (value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) throw new ApiRequestError(400, `an image reference (name, id or root CID) is required, got ${JSON.stringify(value)}`)
  return value
}

function referenceList (value: unknown): string[] {
  if (!Array.isArray(value) || value.length > 1000) throw new ApiRequestError(400, 'images must be a list of references')
  return value.map(reference)
}

function absolutePath (value: unknown, what: string): string {
  if (typeof value !== 'string' || !isAbsolute(value)) throw new ApiRequestError(400, `${what} must be an absolute path on the agent's host, got ${JSON.stringify(value)}`)
  return value
}

function optionFlag (value: unknown, name: string): boolean {
  if (value === undefined) return false
  const flag = (value as Record<string, unknown> | null)?.[name]
  if (flag !== undefined && typeof flag !== 'boolean') throw new ApiRequestError(400, `option "${name}" must be true or false`)
  return flag === true
}

function addOptions (value: unknown): { layer: Layer, base?: string, name?: string, private?: boolean, profile?: 'hgmig' | 'ipfs' } {
  const o = (value ?? {}) as Record<string, unknown>
  if (typeof o !== 'object' || Array.isArray(o)) throw new ApiRequestError(400, 'import options must be an object')
  const allowed = ['layer', 'base', 'name', 'private', 'profile']
  const extra = Object.keys(o).find((k) => !allowed.includes(k))
  if (extra !== undefined) throw new ApiRequestError(400, `unknown import option "${extra}" (allowed: ${allowed.join(', ')})`)
  if (!LAYERS.includes(o['layer'] as Layer)) throw new ApiRequestError(400, `option "layer" must be one of ${LAYERS.join(', ')}, got ${JSON.stringify(o['layer'])}`)
  for (const key of ['base', 'name'] as const) if (o[key] !== undefined && typeof o[key] !== 'string') throw new ApiRequestError(400, `option "${key}" must be a string`)
  if (o['private'] !== undefined && typeof o['private'] !== 'boolean') throw new ApiRequestError(400, 'option "private" must be true or false')
  if (o['profile'] !== undefined && o['profile'] !== 'hgmig' && o['profile'] !== 'ipfs') throw new ApiRequestError(400, 'option "profile" must be "hgmig" or "ipfs"')
  return o as { layer: Layer }
}

/** A CID's bytes as a string key (cheaper than its text form for sets of hundreds of thousands). */
export function cidKey (cid: CID): string {
  return Buffer.from(cid.bytes).toString('latin1')
}
