/**
 * The base layers (OS, WE) at the target: fetch the chunks the plan marks missing, then rebuild
 * each image in the local store from local chunks, zeros and fetched chunks — an import whose root
 * CID must come out equal to the source's, which proves the bytes identical.
 *
 * The fetch is a seam: the agent injects the swarm's multi-source chunk exchange (issue 5). The
 * built-in one (`DirectChunkFetch`) asks each source site for its share of the chunks over the
 * migration protocol's `chunks` channel, moves a failed source's share to other holders, checks
 * every block against its CID and stages it in a file until the import has consumed it.
 */
import { createHash } from 'node:crypto'
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Stream } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import type { AddImageOptions, ImageInfo, ImportSource } from '../store/index.js'
import type { VmDescription } from './driver.js'
import { MigrationError, PeerLostError, ProtocolError } from './errors.js'
import { zeroChunkCids, type ImageManifestData, type MigrationPlan } from './plan.js'
import { ControlChannel, WireCounter } from './wire.js'

/** What the engine needs of the image store (ImageStore fits). */
export interface MigrationImageStore {
  list: () => Promise<ImageInfo[]>
  readBlock: (cid: CID) => Uint8Array
  blockstore: () => { has: (cid: CID) => boolean }
  add: (source: ImportSource, options: AddImageOptions) => Promise<ImageInfo>
  read: (reference: string, options?: { signal?: AbortSignal }) => AsyncGenerator<Uint8Array>
  manifest: (reference: string) => AsyncGenerator<CID>
}

export interface FetchProgress {
  chunks: number
  bytes: number
  totalChunks: number
  totalBytes: number
  /** The site the last batch came from. */
  site?: string
  /** Per source site, cumulative: verified chunks and bytes it delivered (and why it was dropped, if it was). */
  sources?: SourceFigures[]
  /**
   * Of `bytes`, those already in the store (a transfer that stages chunks and imports them after
   * says so here); undefined: all of `bytes`. The target's readiness, which the source times
   * memory pre-copy by, counts these.
   */
  storedBytes?: number
}

export interface SourceFigures {
  site: string
  chunks: number
  bytes: number
  dropReason?: string
}

/** Where the fetched chunks can be read until the images are rebuilt. */
export interface ChunkSource {
  get: (cid: string) => Promise<Uint8Array>
  close: () => Promise<void>
}

/** What a base-layer transfer knows of the migration it serves. */
export interface FetchContext {
  /** The migration's id (sources may check it against their policy). */
  migration: string
  /** The VM as its source described it (its OS and WE images' root CIDs and names). */
  vm: VmDescription
  /** The OS and WE images' manifests (from the replica the plan came from). */
  manifests: ImageManifestData[]
  /** The migration's byte counts: a transfer adds what it received to `received.chunks`. */
  counter: WireCounter
  /** One image of the base is in the store: where its time went (the engine logs it). */
  onImage?: (figures: ImageFetchFigures) => void
  /**
   * What the migration's source sends meanwhile on its own link: its UD layer (first: the
   * snapshot goes as the base starts) and the memory in use (last: the pre-copy is timed to end
   * with the base; its first pass skips zero pages), by the source's report. Without it, the
   * plan's UD and whole memory (an idle 32 MiB VM sends 8 MiB of it: its source then took 13 of
   * 67 MB of the base where 25 would have balanced the two links).
   */
  sourceSends?: { ud: number, memory: number }
}

/** One base image's transfer, as the engine logs it (ms; `startedMs` from the start of the base transfer). */
export interface ImageFetchFigures {
  layer: 'os' | 'we'
  startedMs: number
  durationMs: number
  /** Of durationMs, as the exchange reports them: until the first block, the network phase, the store's registration. */
  firstBlockMs?: number
  fetchMs?: number
  importMs?: number
  chunksFetched: number
  bytesFetched: number
}

/**
 * The injected base-layer transfer: make every chunk of `plan.missing` readable here — either
 * staged (the built-in fetch) or already imported into the store as the VM's OS/WE images (the
 * swarm's chunk exchange), in which case the rebuild finds the images and skips them.
 */
export type FetchMissingChunks = (plan: MigrationPlan, signal: AbortSignal, onProgress: (progress: FetchProgress) => void, context: FetchContext) => Promise<ChunkSource>

/** Chunks per request on the chunks channel, and per progress report. */
const BATCH_CHUNKS = 64
/** Hashing and rebuilding yield to the event loop this often (in chunks), so streams and timers keep being served. */
const YIELD_EVERY_CHUNKS = 64
const HASH_YIELD_EVERY_CHUNKS = 8

/**
 * A turn of the event loop. Reading blocks from the store is synchronous, so a loop over an
 * image's chunks runs on microtasks alone and would keep I/O (every migration's streams) and
 * timers waiting until the whole image is done — long enough, under load, for peers to time out.
 */
export async function yieldToEventLoop (): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
}

export function cidOfData (data: Uint8Array): CID {
  return CID.create(1, raw.code, createDigest(sha256.code, createHash('sha256').update(data).digest()))
}

/** Serves blocks named by the requester, in order, one length-prefixed message each (empty = missing here). */
export async function serveChunks (control: ControlChannel, readBlock: (cid: CID) => Uint8Array | undefined, shape: (bytes: number) => Promise<void>): Promise<{ chunks: number, bytes: number }> {
  let chunks = 0
  let bytes = 0
  for (;;) {
    const request = await control.receive()
    if (request === null || request.type === 'end') break
    if (request.type !== 'get' || !Array.isArray(request.cids)) throw new ProtocolError('chunks channel: expected {type:"get", cids:[...]}')
    for (const cid of request.cids as unknown[]) {
      let block: Uint8Array | undefined
      try { block = readBlock(CID.parse(String(cid))) } catch { block = undefined }
      const data = block ?? new Uint8Array(0)
      await shape(data.byteLength)
      await control.sendRaw(data)
      chunks++
      bytes += data.byteLength
    }
  }
  await control.close()
  return { chunks, bytes }
}

export interface DirectFetchInit {
  /** Opens a chunks channel to a site (header written); `flow` names the fetch for the server's shaper. */
  open: (site: string, signal: AbortSignal, flow: string) => Promise<Stream>
  counter: WireCounter
  stagingDirectory: string
  /** A source failed (its share is retried once, then moved to other holders). */
  onSourceFailed?: (site: string, err: Error) => void
}

/** The built-in multi-source fetch over the migration protocol. */
export function directChunkFetch (init: DirectFetchInit): FetchMissingChunks {
  return async (plan, signal, onProgress) => {
    mkdirSync(init.stagingDirectory, { recursive: true })
    const path = join(init.stagingDirectory, `${plan.hash.slice(0, 16)}-${process.pid}-${Date.now()}.chunks`)
    const fd = openSync(path, 'w+')
    const index = new Map<string, { offset: number, length: number }>()
    let offset = 0
    const totalBytes = plan.missing.reduce((s, c) => s + c.bytes, 0)
    let doneBytes = 0
    const failed = new Set<string>()
    const failures = new Map<string, number>()
    let pending = plan.missing.filter((c) => !index.has(c.cid))
    const perSite = new Map<string, SourceFigures>()
    try {
      while (pending.length > 0) {
        // Each chunk to the least-loaded live source that holds it.
        const shares = new Map<string, string[]>()
        const load = new Map<string, number>()
        for (const chunk of pending) {
          const live = chunk.sources.filter((s) => !failed.has(s))
          if (live.length === 0) throw new PeerLostError(`no live source left for chunk ${chunk.cid} (tried ${chunk.sources.join(', ')})`)
          let best = live[0] as string
          for (const s of live) if ((load.get(s) ?? 0) < (load.get(best) ?? 0)) best = s
          load.set(best, (load.get(best) ?? 0) + chunk.bytes)
          shares.set(best, [...(shares.get(best) ?? []), chunk.cid])
        }
        await Promise.all([...shares].map(async ([site, cids]) => {
          try {
            const stream = await init.open(site, signal, plan.hash.slice(0, 32))
            const control = new ControlChannel(stream, init.counter, `chunks stream from ${site}`, 'chunks')
            for (let i = 0; i < cids.length; i += BATCH_CHUNKS) {
              const batch = cids.slice(i, i + BATCH_CHUNKS)
              await control.send({ type: 'get', cids: batch }, signal)
              for (const cid of batch) {
                const data = await control.receiveRaw(signal)
                if (data === null) throw new PeerLostError(`${site} closed the chunks stream`)
                if (data.byteLength === 0) throw new MigrationError(`${site} does not have chunk ${cid}`)
                if (cidOfData(data).toString() !== cid) throw new ProtocolError(`${site} sent a block that does not hash to ${cid}`)
                writeSync(fd, data, 0, data.byteLength, offset)
                const figures = perSite.get(site) ?? { site, chunks: 0, bytes: 0 }
                figures.chunks++
                figures.bytes += data.byteLength
                perSite.set(site, figures)
                index.set(cid, { offset, length: data.byteLength })
                offset += data.byteLength
                doneBytes += data.byteLength
              }
              onProgress({ chunks: index.size, bytes: doneBytes, totalChunks: plan.missing.length, totalBytes, site, sources: [...perSite.values()].map((f) => ({ ...f })) })
            }
            await control.send({ type: 'end' }, signal)
            await control.close()
          } catch (err) {
            if (signal.aborted) throw err
            // A dropped connection gets one more try (a fresh dial) before the site's share moves on.
            const count = (failures.get(site) ?? 0) + 1
            failures.set(site, count)
            if (count >= 2 || !(err instanceof PeerLostError)) {
              failed.add(site)
              perSite.set(site, { ...(perSite.get(site) ?? { site, chunks: 0, bytes: 0 }), dropReason: (err as Error).message })
            }
            init.onSourceFailed?.(site, err as Error)
          }
        }))
        if (signal.aborted) throw signal.reason
        pending = pending.filter((c) => !index.has(c.cid))
      }
    } catch (err) {
      closeSync(fd)
      rmSync(path, { force: true })
      throw err
    }
    return {
      async get (cid) {
        const at = index.get(cid)
        if (at === undefined) throw new MigrationError(`chunk ${cid} was not fetched`)
        const data = Buffer.allocUnsafe(at.length)
        readSync(fd, data, 0, at.length, at.offset)
        return data
      },
      async close () {
        closeSync(fd)
        rmSync(path, { force: true })
      }
    }
  }
}

/**
 * Rebuilds the VM's OS and WE images in the local store (each one only if missing) from local
 * chunks, zeros and `fetched`. Returns the bytes that came from `fetched`.
 */
export async function materializeBaseImages (store: MigrationImageStore, vm: VmDescription, manifests: ImageManifestData[], fetched: ChunkSource, signal: AbortSignal): Promise<{ imported: string[] }> {
  const imported: string[] = []
  const local = await store.list()
  const blocks = store.blockstore()
  for (const layer of ['os', 'we'] as const) {
    const wanted = vm[layer]
    if (local.some((image) => image.rootCid === wanted.rootCid)) continue
    const manifest = manifests.find((m) => m.rootCid === wanted.rootCid)
    if (manifest === undefined) throw new MigrationError(`no manifest of the ${layer.toUpperCase()} image ${wanted.rootCid} to rebuild it from`)
    const content = async function * (): AsyncGenerator<Uint8Array> {
      for (let position = 0; position < manifest.chunks.length; position++) {
        if (signal.aborted) throw signal.reason
        if (position % YIELD_EVERY_CHUNKS === YIELD_EVERY_CHUNKS - 1) await yieldToEventLoop()
        const cid = manifest.chunks[position] as string
        const length = Math.min(manifest.chunkSize, manifest.size - position * manifest.chunkSize)
        if (zeroChunkCids(length).has(cid)) { yield new Uint8Array(length); continue }
        const parsed = CID.parse(cid)
        if (parsed.code !== raw.code) throw new MigrationError(`image ${wanted.rootCid} uses dag-pb leaves (the ipfs profile): only raw-leaf images migrate`)
        yield blocks.has(parsed) ? store.readBlock(parsed) : await fetched.get(cid)
      }
    }
    const name = localImageName(wanted.name, layer, wanted.rootCid, local.map((i) => i.name))
    const image = await store.add({ content: content(), size: manifest.size, description: `${layer.toUpperCase()} image ${wanted.rootCid} (migration)` }, {
      layer, name, base: layer === 'we' ? vm.os.rootCid : undefined, signal
    })
    if (image.rootCid !== wanted.rootCid) throw new MigrationError(`rebuilt ${layer.toUpperCase()} image has root ${image.rootCid}, expected ${wanted.rootCid}`)
    imported.push(image.rootCid)
    local.push(image)
  }
  return { imported }
}

/** The name a rebuilt base image gets here: the source's, unless a local image has it already. */
export function localImageName (sourceName: string | undefined, layer: string, rootCid: string, taken: string[]): string {
  return sourceName === undefined || taken.includes(sourceName) ? `${sourceName ?? layer}@${rootCid.slice(-8)}` : sourceName
}

/** Hashes an image's bytes now, chunk by chunk (what NSS and SS do at migration time). */
export async function hashImageNow (store: MigrationImageStore, reference: string, chunkSize: number, signal: AbortSignal): Promise<string[]> {
  const cids: string[] = []
  let pending = Buffer.alloc(0)
  for await (const piece of store.read(reference, { signal })) {
    pending = pending.byteLength === 0 ? Buffer.from(piece) : Buffer.concat([pending, piece])
    let at = 0
    for (; pending.byteLength - at >= chunkSize; at += chunkSize) {
      cids.push(cidOfData(pending.subarray(at, at + chunkSize)).toString())
      // More often than a rebuild: NSS/SS hash whole image sets, and libp2p's pings must keep being answered.
      if (cids.length % HASH_YIELD_EVERY_CHUNKS === 0) await yieldToEventLoop()
    }
    pending = pending.subarray(at)
  }
  if (pending.byteLength > 0) cids.push(cidOfData(pending).toString())
  return cids
}
