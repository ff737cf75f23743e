/**
 * The migration plan (H-GMIG section 3.3.1) as a pure, deterministic function of plain data: the
 * same inputs give the same plan, byte for byte, at every site, so the target can recompute it from
 * its own replica and compare hashes (step 3: agree).
 *
 * Per chunk of the VM's OS and WE images: 1 if the target already holds it (in any image the
 * replica says the target holds — neighbourhood reuse), else 0; all-zero chunks never cross the
 * network and are left out of the bitmap. Missing chunks are counted once however many positions
 * (and both layers) use them.
 */
import { createHash } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { InvalidMigrationInputError } from './errors.js'

/** H-GMIG (plan from the agreed state, multi-source), and the paper's baselines NSS and SS (section 4.1). */
export type Strategy = 'h-gmig' | 'nss' | 'ss'
export const STRATEGIES: readonly Strategy[] = ['h-gmig', 'nss', 'ss']

/** An image's manifest as the replica records it: its leaves' CIDs in file order. */
export interface ImageManifestData {
  rootCid: string
  layer: 'os' | 'we' | 'ud'
  size: number
  chunkSize: number
  chunks: string[]
}

/** What the planner knows about the swarm: which site holds which image, and the images' manifests. */
export interface ReplicaView {
  holdings: Array<{ site: string, rootCid: string }>
  manifests: ImageManifestData[]
}

export interface PlanInput {
  strategy: Strategy
  vm: { id: string, name: string, memoryBytes: number, udBytes: number, os: string, we: string }
  source: string
  target: string
  /** SS only: the central repository site the target pulls base layers from. */
  repository?: string
  /** For the time estimate: bytes/s of one site-to-site link. */
  bandwidth: number
  replica: ReplicaView
}

export interface LayerPlan {
  layer: 'os' | 'we'
  rootCid: string
  size: number
  chunkSize: number
  chunks: number
  zeroChunks: number
  /** One bit per non-zero chunk position, in order (most significant bit first), base64: 1 = at the target. */
  bitmap: string
  presentChunks: number
  presentBytes: number
  missingBytes: number
  /** presentBytes over the layer's non-zero bytes: the paper's m (OS) and n (WE). */
  similarity: number
}

export interface MissingChunk {
  cid: string
  bytes: number
  /** Sites (other than the target) that hold the chunk, sorted. */
  sources: string[]
}

export interface MigrationPlan {
  version: 1
  strategy: Strategy
  vm: PlanInput['vm']
  source: string
  target: string
  repository: string | null
  layers: LayerPlan[]
  similarity: { m: number, n: number }
  /** Distinct chunks to send, in order of first use (OS, then WE). */
  missing: MissingChunk[]
  bytesToSend: { base: number, ud: number, memory: number, total: number }
  /** Bytes of the base layers the target need not receive (held there, or zero). */
  bytesSaved: number
  estimatedSeconds: number
  /** SHA-256 (hex) of the canonical JSON of everything above. */
  hash: string
}

/** What the source sends with its request so that a target whose plan differs can say where. */
export interface PlanSummary {
  hash: string
  holdingsDigest: string
  manifestsDigest: string
  layers: Array<{ layer: string, rootCid: string, presentChunks: number, bitmapDigest: string }>
  missingChunks: number
}

const zeroCidCache = new Map<number, Set<string>>()

/** CIDs of an all-zero leaf of `length` bytes, in both DAG profiles (raw CIDv1, and kubo's dag-pb CIDv0). */
export function zeroChunkCids (length: number): Set<string> {
  let set = zeroCidCache.get(length)
  if (set === undefined) {
    const zeros = new Uint8Array(length)
    const rawCid = CID.create(1, raw.code, createDigest(sha256.code, createHash('sha256').update(zeros).digest()))
    const block = dagPb.encode({ Data: new UnixFS({ type: 'file', data: zeros }).marshal(), Links: [] })
    const pbCid = CID.create(0, dagPb.code, createDigest(sha256.code, createHash('sha256').update(block).digest()))
    set = new Set([rawCid.toString(), pbCid.toString()])
    zeroCidCache.set(length, set)
  }
  return set
}

/** JSON with object keys sorted: the same value always serializes to the same bytes. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new InvalidMigrationInputError(`cannot plan with a non-finite number (${value})`)
  return JSON.stringify(value)
}

function digest (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

function checkInput (input: PlanInput): void {
  if (!(['h-gmig', 'nss', 'ss'] as string[]).includes(input.strategy)) throw new InvalidMigrationInputError(`unknown strategy "${String(input.strategy)}"; one of ${STRATEGIES.join(', ')}`)
  if (typeof input.source !== 'string' || input.source === '') throw new InvalidMigrationInputError('plan input: source site missing')
  if (typeof input.target !== 'string' || input.target === '') throw new InvalidMigrationInputError('plan input: target site missing')
  if (input.source === input.target) throw new InvalidMigrationInputError(`source and target are the same site (${input.source})`)
  if (input.strategy === 'ss' && (input.repository === undefined || input.repository === '')) throw new InvalidMigrationInputError('the SS strategy needs a repository site')
  if (!(input.bandwidth > 0)) throw new InvalidMigrationInputError(`plan input: bandwidth must be > 0 bytes/s (got ${String(input.bandwidth)})`)
  if (!Array.isArray(input.replica?.holdings) || !Array.isArray(input.replica?.manifests)) throw new InvalidMigrationInputError('plan input: replica needs holdings and manifests arrays')
}

/** Leaf length at a position (the last chunk may be short). */
function chunkLength (manifest: ImageManifestData, position: number): number {
  return Math.min(manifest.chunkSize, manifest.size - position * manifest.chunkSize)
}

export function computePlan (input: PlanInput): MigrationPlan {
  checkInput(input)
  const manifests = new Map(input.replica.manifests.map((m) => [m.rootCid, m]))
  const layerManifest = (layer: 'os' | 'we', rootCid: string): ImageManifestData => {
    const manifest = manifests.get(rootCid)
    if (manifest === undefined) throw new InvalidMigrationInputError(`the replica has no manifest of the VM's ${layer.toUpperCase()} image ${rootCid}`)
    if (manifest.layer !== layer) throw new InvalidMigrationInputError(`image ${rootCid} is a ${manifest.layer.toUpperCase()} image, not ${layer.toUpperCase()}`)
    if (manifest.chunks.length !== Math.ceil(manifest.size / manifest.chunkSize)) throw new InvalidMigrationInputError(`manifest of ${rootCid}: ${manifest.chunks.length} chunks for ${manifest.size} bytes at ${manifest.chunkSize} per chunk`)
    return manifest
  }
  const os = layerManifest('os', input.vm.os)
  const we = layerManifest('we', input.vm.we)

  // What the target holds: every chunk of every image the replica places there.
  const targetChunks = new Set<string>()
  const holders = new Map<string, Set<string>>()
  const holdings = [...input.replica.holdings].sort((a, b) => a.site.localeCompare(b.site) || a.rootCid.localeCompare(b.rootCid))
  for (const { site, rootCid } of holdings) {
    const manifest = manifests.get(rootCid)
    if (manifest === undefined) continue
    if (site === input.target) {
      for (const cid of manifest.chunks) targetChunks.add(cid)
    } else {
      for (const cid of manifest.chunks) {
        let sites = holders.get(cid)
        if (sites === undefined) { sites = new Set(); holders.set(cid, sites) }
        sites.add(site)
      }
    }
  }
  const sourcesOf = (cid: string): string[] => {
    if (input.strategy === 'nss') return [input.source]
    if (input.strategy === 'ss') return [input.repository as string]
    const sites = new Set(holders.get(cid) ?? [])
    // The source runs the VM: it has the VM's base images whatever the replica says.
    sites.add(input.source)
    return [...sites].sort()
  }

  const missing = new Map<string, MissingChunk>()
  let bytesSaved = 0
  const layers: LayerPlan[] = []
  for (const [layer, manifest] of [['os', os], ['we', we]] as const) {
    const bits: number[] = []
    let zeroChunks = 0
    let presentChunks = 0
    let presentBytes = 0
    let missingBytes = 0
    manifest.chunks.forEach((cid, position) => {
      const length = chunkLength(manifest, position)
      if (zeroChunkCids(length).has(cid)) {
        zeroChunks++
        bytesSaved += length
        return
      }
      if (targetChunks.has(cid)) {
        bits.push(1)
        presentChunks++
        presentBytes += length
        bytesSaved += length
        return
      }
      bits.push(0)
      missingBytes += length
      if (!missing.has(cid)) missing.set(cid, { cid, bytes: length, sources: sourcesOf(cid) })
      else bytesSaved += length
    })
    const bitmap = Buffer.alloc(Math.ceil(bits.length / 8))
    bits.forEach((bit, i) => { if (bit === 1) bitmap[i >> 3] = (bitmap[i >> 3] as number) | (0x80 >> (i & 7)) })
    const dataBytes = presentBytes + missingBytes
    layers.push({
      layer,
      rootCid: manifest.rootCid,
      size: manifest.size,
      chunkSize: manifest.chunkSize,
      chunks: manifest.chunks.length,
      zeroChunks,
      bitmap: bitmap.toString('base64'),
      presentChunks,
      presentBytes,
      missingBytes,
      similarity: dataBytes === 0 ? 1 : presentBytes / dataBytes
    })
  }

  const missingList = [...missing.values()]
  const base = missingList.reduce((sum, c) => sum + c.bytes, 0)
  const bytesToSend = { base, ud: input.vm.udBytes, memory: input.vm.memoryBytes, total: base + input.vm.udBytes + input.vm.memoryBytes }
  const plan: Omit<MigrationPlan, 'hash'> = {
    version: 1,
    strategy: input.strategy,
    vm: { id: input.vm.id, name: input.vm.name, memoryBytes: input.vm.memoryBytes, udBytes: input.vm.udBytes, os: input.vm.os, we: input.vm.we },
    source: input.source,
    target: input.target,
    repository: input.strategy === 'ss' ? input.repository as string : null,
    layers,
    similarity: { m: (layers[0] as LayerPlan).similarity, n: (layers[1] as LayerPlan).similarity },
    missing: missingList,
    bytesToSend,
    bytesSaved,
    estimatedSeconds: estimateSeconds(input, missingList)
  }
  return { ...plan, hash: digest(canonicalJson(plan)) }
}

/**
 * Seconds on links of `bandwidth` each: base chunks spread over their sources (each chunk to the
 * least-loaded of its sources), in parallel with the UD layer from the source, then memory.
 * NSS sends everything from the source, one after the other on its one link.
 */
function estimateSeconds (input: PlanInput, missing: MissingChunk[]): number {
  const load = new Map<string, number>([[input.source, input.vm.udBytes]])
  for (const chunk of missing) {
    let best = chunk.sources[0] as string
    for (const site of chunk.sources) if ((load.get(site) ?? 0) < (load.get(best) ?? 0)) best = site
    load.set(best, (load.get(best) ?? 0) + chunk.bytes)
  }
  const storage = Math.max(...load.values()) / input.bandwidth
  return storage + input.vm.memoryBytes / input.bandwidth
}

export function summarizePlan (plan: MigrationPlan, replica: ReplicaView): PlanSummary {
  const holdings = [...replica.holdings].map((h) => `${h.site} ${h.rootCid}`).sort()
  const manifests = [...replica.manifests].map((m) => `${m.rootCid} ${digest(m.chunks.join(','))}`).sort()
  return {
    hash: plan.hash,
    holdingsDigest: digest(holdings.join('\n')),
    manifestsDigest: digest(manifests.join('\n')),
    layers: plan.layers.map((l) => ({ layer: l.layer, rootCid: l.rootCid, presentChunks: l.presentChunks, bitmapDigest: digest(l.bitmap) })),
    missingChunks: plan.missing.length
  }
}

/** Where two plans' summaries part: the reason a target gives when it refuses. */
export function planDifferences (source: PlanSummary, target: PlanSummary): string[] {
  const out: string[] = []
  if (source.holdingsDigest !== target.holdingsDigest) out.push('the replicas disagree on which site holds which image (holdings differ)')
  if (source.manifestsDigest !== target.manifestsDigest) out.push('the replicas disagree on image manifests')
  for (const layer of source.layers) {
    const other = target.layers.find((l) => l.layer === layer.layer)
    if (other === undefined) continue
    if (other.rootCid !== layer.rootCid) out.push(`${layer.layer.toUpperCase()} image: source plans ${layer.rootCid}, target ${other.rootCid}`)
    else if (other.bitmapDigest !== layer.bitmapDigest) out.push(`${layer.layer.toUpperCase()} bitmap differs: source counts ${layer.presentChunks} chunks at the target, the target ${other.presentChunks}`)
  }
  if (source.missingChunks !== target.missingChunks) out.push(`chunks to send: source ${source.missingChunks}, target ${target.missingChunks}`)
  return out
}

/** Candidate targets ranked by estimated time, then bytes to send (the --suggest placement hint). */
export function rankTargets (plans: MigrationPlan[]): Array<{ target: string, estimatedSeconds: number, bytesToSend: number, similarity: { m: number, n: number } }> {
  return plans
    .map((p) => ({ target: p.target, estimatedSeconds: p.estimatedSeconds, bytesToSend: p.bytesToSend.total, similarity: p.similarity }))
    .sort((a, b) => a.estimatedSeconds - b.estimatedSeconds || a.bytesToSend - b.bytesToSend || a.target.localeCompare(b.target))
}
