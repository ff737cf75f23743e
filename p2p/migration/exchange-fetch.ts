/**
 * The base-layer transfer through the swarm's chunk exchange (p2p/exchange): multi-source, every
 * block verified against its CID, resumable. For each of the VM's OS and WE images the target
 * lacks, one exchange fetch of the whole image: the exchange fills the positions the target
 * already holds from its own store and the all-zero ones itself, and pulls only the plan's
 * missing chunks, each from one of the sites the plan names for it (`FetchSource.positions`,
 * split by load; a dropped source's share moves to the others at once). The exchange imports the
 * image, so the engine's rebuild finds it in the store and skips it.
 *
 * OS first, then WE: the WE image is built on the OS image (the store needs the base there), and
 * the chunks both share then come from the local store instead of crossing the network twice.
 * The WE fetch starts as soon as every OS leaf is in the store, while the OS image registers.
 * Concurrent migrations of VMs on the same images share one fetch per image.
 */
import { CID } from 'multiformats/cid'
import type { BlockExchange, FetchSource, SourceProgress, TransferProgress } from '../exchange/index.js'
import { localImageName, type ChunkSource, type FetchContext, type ImageFetchFigures, type FetchMissingChunks, type FetchProgress, type MigrationImageStore, type SourceFigures } from './base.js'
import { MigrationError, PeerLostError } from './errors.js'
import type { ImageManifestData, MigrationPlan } from './plan.js'
import { deferred } from './token-bucket.js'

export interface ExchangeFetchInit {
  exchange: Pick<BlockExchange, 'fetch' | 'addEventListener' | 'removeEventListener'>
  store: MigrationImageStore
  /** How the exchange reaches a site (its peer id, and addresses if the peer store may lack them); undefined: not reachable. */
  sourceOf: (site: string) => Omit<FetchSource, 'positions'> | undefined
  /** A source the exchange dropped (its share moves to the other holders). */
  onSourceDropped?: (site: string, reason: string) => void
  /** The site name of a peer id, for progress and logs. */
  siteOf?: (peerId: string) => string | undefined
}

export function exchangeChunkFetch (init: ExchangeFetchInit): FetchMissingChunks {
  /** Image fetches running now, by root CID: a second migration of a VM on the same image waits for the first. */
  const running = new Map<string, Promise<void>>()
  /**
   * Migrations waiting for another's fetch of an image, by root CID: they hear its progress (bytes
   * verified and stored here), so their own readiness reports go on and their memory pre-copy
   * starts while that base arrives instead of after it (five concurrent migrations sent four VMs'
   * memory only once the first one's base was in).
   */
  const watchers = new Map<string, Set<(bytes: number, stored: number) => void>>()
  return async (plan, signal, onProgress, context) => {
    const startedAt = performance.now()
    const totalBytes = plan.missing.reduce((sum, chunk) => sum + chunk.bytes, 0)
    /** Per image (root CID), cumulative over its attempts: what it fetched, stored, and from whom. */
    const perImage = new Map<string, { chunks: number, bytes: number, stored: number, sources: SourceFigures[] }>()
    const sources = (): SourceFigures[] => {
      const merged = new Map<string, SourceFigures>()
      for (const image of perImage.values()) {
        for (const f of image.sources) {
          const before = merged.get(f.site) ?? { site: f.site, chunks: 0, bytes: 0 }
          merged.set(f.site, { ...before, chunks: before.chunks + f.chunks, bytes: before.bytes + f.bytes, ...(f.dropReason === undefined ? {} : { dropReason: f.dropReason }) })
        }
      }
      return [...merged.values()].sort((x, y) => x.site.localeCompare(y.site))
    }
    const sum = (key: 'chunks' | 'bytes' | 'stored'): number => [...perImage.values()].reduce((n, image) => n + image[key], 0)
    const layers = [...plan.layers].sort((x, y) => x.layer.localeCompare(y.layer))
    for (const layer of layers) {
      if (!context.manifests.some((m) => m.rootCid === layer.rootCid)) throw new MigrationError(`no manifest of the ${layer.layer.toUpperCase()} image ${layer.rootCid} to fetch it by`)
    }
    // One image's failure stops the other's fetch.
    const stop = new AbortController()
    const inner = AbortSignal.any([signal, stop.signal])
    /**
     * The WE image's fetch starts once every leaf of the OS image is in the store (the OS fetch
     * registers it meanwhile): it finds the chunks both share there instead of fetching them
     * twice, and its start-up (state rows, streams, first round trip) overlaps the OS image's
     * registration and last blocks instead of following them. The store runs registrations in
     * the order asked, so the OS image is registered before the WE image that needs it as base.
     */
    let belowLeavesIn: Promise<void> = Promise.resolve()
    let below: Promise<void> = Promise.resolve()
    const tasks = layers.map((layer) => {
      const manifest = context.manifests.find((m) => m.rootCid === layer.rootCid) as ImageManifestData
      const leavesIn = deferred()
      const waitFor = belowLeavesIn
      const imageBelow = below
      const task = (async () => {
        try {
          await waitFor
          for (;;) {
            const other = running.get(layer.rootCid)
            if (other === undefined) break
            const watch = (bytes: number, stored: number): void => {
              perImage.set(layer.rootCid, { chunks: 0, bytes, stored, sources: [] })
              onProgress({ chunks: sum('chunks'), bytes: sum('bytes'), storedBytes: sum('stored'), totalChunks: plan.missing.length, totalBytes, sources: sources() })
            }
            let set = watchers.get(layer.rootCid)
            if (set === undefined) watchers.set(layer.rootCid, set = new Set())
            set.add(watch)
            try {
              await other.catch(() => {})
            } finally {
              // What it heard last stays this image's share until the store has it (or this fetch reports its own).
              set.delete(watch)
            }
          }
          // Claimed before the next await: a migration checking meanwhile waits for this one (two
          // fetches of one image would both import it, and the second name would clash).
          const claim = deferred()
          running.set(layer.rootCid, claim.promise)
          try {
            if ((await init.store.list()).some((image) => image.rootCid === layer.rootCid)) return
            const imageStarted = performance.now()
            const fetchOnce = async (): Promise<Awaited<ReturnType<typeof fetchImage>>> => await fetchImage(init, plan, manifest, inner, context, (progress) => {
              perImage.set(layer.rootCid, { chunks: progress.chunks, bytes: progress.bytes, stored: progress.storedBytes ?? progress.bytes, sources: progress.sources ?? [] })
              for (const watch of watchers.get(layer.rootCid) ?? []) watch(progress.bytes, progress.storedBytes ?? progress.bytes)
              onProgress({ chunks: sum('chunks'), bytes: sum('bytes'), storedBytes: sum('stored'), totalChunks: plan.missing.length, totalBytes, ...(progress.site === undefined ? {} : { site: progress.site }), sources: sources() })
            }, () => { leavesIn.resolve() })
            let result: Awaited<ReturnType<typeof fetchImage>>
            try {
              result = await fetchOnce()
            } catch (err) {
              // Not expected (registrations run in order), but a WE image registered before its
              // OS image would fail on its base: once that is in, the fetch resumes (nothing again).
              if (inner.aborted || layer.layer !== 'we') throw err
              await imageBelow
              result = await fetchOnce()
            }
            perImage.set(layer.rootCid, { chunks: result.chunks, bytes: result.bytes, stored: result.bytes, sources: result.sources })
            context.onImage?.({ layer: manifest.layer === 'os' ? 'os' : 'we', startedMs: imageStarted - startedAt, durationMs: performance.now() - imageStarted, ...result.timing, chunksFetched: result.chunks, bytesFetched: result.bytes })
          } finally {
            running.delete(layer.rootCid)
            claim.resolve()
          }
        } finally {
          leavesIn.resolve()
        }
      })()
      task.catch((err: unknown) => { stop.abort(err) })
      belowLeavesIn = leavesIn.promise
      below = task
      return task
    })
    const outcomes = await Promise.allSettled(tasks)
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')
    // The cause, not the other image's echo of it (its fetch was stopped because of it).
    if (failed !== undefined) throw signal.aborted ? signal.reason : (stop.signal.reason ?? failed.reason)
    onProgress({ chunks: sum('chunks'), bytes: totalBytes, storedBytes: totalBytes, totalChunks: plan.missing.length, totalBytes, sources: sources() })
    return storeChunkSource(init.store)
  }
}

/**
 * This image's share of the base: the missing chunks it brings first (the WE image's manifest
 * lists the OS image's chunks too; those come with the OS image's fetch), and what the
 * migration's source sends on its own link meanwhile (`preload`). The WE image's fetch follows the
 * OS image's (it starts once every OS leaf is in), so each is balanced on its own: the UD
 * snapshot goes during the first image fetched, memory's pre-copy (timed to end with the base)
 * during the last; one image alone overlaps both. (Balanced over the whole base instead, the
 * source took little of the OS image and much of the WE image, where its memory went too: a
 * DYNAMIC VM's base took 5.8 s for the 3.8 s two 100 Mbit/s links need.)
 */
function imageShare (plan: MigrationPlan, manifest: ImageManifestData, context: Pick<FetchContext, 'manifests' | 'sourceSends'>): { chunks: Set<string>, preload: number } {
  const { ud, memory } = context.sourceSends ?? { ud: plan.bytesToSend.ud, memory: plan.bytesToSend.memory }
  const missing = new Set(plan.missing.map((chunk) => chunk.cid))
  const fetched: Array<{ rootCid: string, chunks: Set<string> }> = []
  const earlier = new Set<string>()
  for (const layer of [...plan.layers].sort((x, y) => x.layer.localeCompare(y.layer))) {
    const own = new Set((context.manifests.find((m) => m.rootCid === layer.rootCid)?.chunks ?? []).filter((cid) => missing.has(cid) && !earlier.has(cid)))
    for (const cid of own) earlier.add(cid)
    if (own.size > 0) fetched.push({ rootCid: layer.rootCid, chunks: own })
  }
  const index = fetched.findIndex((image) => image.rootCid === manifest.rootCid)
  const chunks = fetched[index]?.chunks ?? new Set<string>()
  if (fetched.length < 2) return { chunks, preload: ud + memory }
  return { chunks, preload: index === 0 ? ud : index === fetched.length - 1 ? memory : 0 }
}

/**
 * Which holder sends each chunk of `share`: the least loaded one, where the migration's source
 * site starts loaded with the share's preload, what it sends meanwhile (so other holders take
 * more of the base). Each chunk goes to one holder only, so no block crosses the network twice
 * (the exchange's endgame re-requests a chunk only from sources said to hold it).
 */
function assignChunks (plan: MigrationPlan, share: { chunks: Set<string>, preload: number }, live: Set<string>, previous?: Map<string, string>): Map<string, string> {
  const load = new Map<string, number>([...live].map((site) => [site, site === plan.source ? share.preload : 0]))
  const assignment = new Map<string, string>()
  for (const chunk of plan.missing) {
    if (!share.chunks.has(chunk.cid)) continue
    const kept = previous?.get(chunk.cid)
    if (kept !== undefined && live.has(kept)) {
      assignment.set(chunk.cid, kept)
      load.set(kept, (load.get(kept) ?? 0) + chunk.bytes)
      continue
    }
    let best: string | undefined
    for (const site of chunk.sources) if (live.has(site) && (best === undefined || (load.get(site) ?? 0) < (load.get(best) ?? 0))) best = site
    if (best === undefined) continue
    assignment.set(chunk.cid, best)
    load.set(best, (load.get(best) ?? 0) + chunk.bytes)
  }
  return assignment
}

/**
 * How the base is split over its holders, per image (root CID) and site, in bytes: what the
 * exchange fetch asks of each (the placement hint and the tests read it).
 */
export function baseShares (plan: MigrationPlan, context: Pick<FetchContext, 'manifests' | 'sourceSends'>): Map<string, Map<string, number>> {
  const bytes = new Map(plan.missing.map((chunk) => [chunk.cid, chunk.bytes]))
  const live = new Set(plan.missing.flatMap((chunk) => chunk.sources))
  const out = new Map<string, Map<string, number>>()
  for (const layer of plan.layers) {
    const manifest = context.manifests.find((m) => m.rootCid === layer.rootCid)
    if (manifest === undefined) continue
    const perSite = new Map<string, number>()
    for (const [cid, site] of assignChunks(plan, imageShare(plan, manifest, context), live)) perSite.set(site, (perSite.get(site) ?? 0) + (bytes.get(cid) ?? 0))
    out.set(layer.rootCid, perSite)
  }
  return out
}

/**
 * One image through the exchange; reports per source as its delivered bytes grow. A source the
 * exchange drops (its connection died, it stalled, it sent bad blocks) is taken out at once: this
 * fetch is stopped and started again at once (the exchange resumes it: nothing verified is
 * fetched twice) with the dropped source's chunks spread over the holders left.
 */
async function fetchImage (init: ExchangeFetchInit, plan: MigrationPlan, manifest: ImageManifestData, signal: AbortSignal, context: FetchContext,
  onProgress: (progress: FetchProgress) => void, onLeavesIn: () => void): Promise<{ chunks: number, bytes: number, sources: SourceFigures[], timing: Pick<ImageFetchFigures, 'firstBlockMs' | 'fetchMs' | 'importMs'> }> {
  const layer = manifest.layer === 'os' ? 'os' : 'we'
  const osRoot = plan.layers.find((l) => l.layer === 'os')?.rootCid
  const wanted = new Set(manifest.chunks)
  const holders = new Set(plan.missing.filter((chunk) => wanted.has(chunk.cid)).flatMap((chunk) => chunk.sources))
  const live = new Set([...holders].filter((site) => init.sourceOf(site) !== undefined))
  const unreachable = [...holders].filter((site) => !live.has(site))
  if (holders.size > 0 && live.size === 0) throw new PeerLostError(`no source of the ${layer.toUpperCase()} image ${manifest.rootCid} is reachable (${unreachable.join(', ')})`)
  const name = localImageName(context.vm[layer].name, layer, manifest.rootCid, (await init.store.list()).map((image) => image.name))
  /** Per site over the attempts so far. */
  const earlier = new Map<string, SourceFigures>()
  let totalChunks = 0
  let totalBytes = 0
  const share = imageShare(plan, manifest, context)
  let assignment = assignChunks(plan, share, live)
  for (;;) {
    const siteByPeer = new Map<string, string>()
    const positions = new Map<string, number[]>()
    manifest.chunks.forEach((cid, position) => {
      const site = assignment.get(cid)
      if (site === undefined) return
      let list = positions.get(site)
      if (list === undefined) positions.set(site, list = [])
      list.push(position)
    })
    const sources: FetchSource[] = []
    for (const [site, list] of positions) {
      const source = init.sourceOf(site) as Omit<FetchSource, 'positions'>
      sources.push({ ...source, positions: list })
      siteByPeer.set(source.peer.toString(), site)
    }
    const siteOf = (peer: string): string => siteByPeer.get(peer) ?? init.siteOf?.(peer) ?? peer
    const figuresOf = (list: SourceProgress[]): SourceFigures[] => {
      const merged = new Map([...earlier].map(([site, f]) => [site, { ...f }]))
      for (const source of list) {
        const site = siteOf(source.peer)
        const before = merged.get(site) ?? { site, chunks: 0, bytes: 0 }
        merged.set(site, { site, chunks: before.chunks + source.chunks, bytes: before.bytes + source.bytes, ...(source.dropReason === undefined ? {} : { dropReason: source.dropReason }) })
      }
      return [...merged.values()]
    }
    const attempt = new AbortController()
    let dropped: { site: string, reason: string } | undefined
    const onDropped = (evt: CustomEvent<{ rootCid: string, peer: string, reason: string }>): void => {
      if (evt.detail.rootCid !== manifest.rootCid || dropped !== undefined) return
      dropped = { site: siteOf(evt.detail.peer), reason: evt.detail.reason }
      attempt.abort(new PeerLostError(`chunk source ${dropped.site} dropped: ${dropped.reason}`))
    }
    init.exchange.addEventListener('source:dropped', onDropped)
    let received = 0
    /** Image bytes already done when this attempt began fetching (local, zero and resumed positions). */
    let doneAtStart: number | undefined
    let last: TransferProgress | undefined
    const seen = new Map<string, number>()
    const report = (progress: TransferProgress): void => {
      last = progress
      context.counter.received.chunks += progress.bytesReceived - received
      received = progress.bytesReceived
      if (progress.phase === 'fetching') doneAtStart ??= progress.bytesDone
      // Every leaf is in the store; the exchange registers the image next.
      if (progress.phase === 'importing' || progress.phase === 'done') onLeavesIn()
      const stored = storedOf(progress, totalBytes, doneAtStart)
      let reported = false
      for (const source of progress.sources) {
        const site = siteOf(source.peer)
        if (source.bytes > (seen.get(source.peer) ?? 0)) {
          onProgress({ chunks: totalChunks + progress.fetchChunksDone, bytes: totalBytes + progress.bytesReceived, storedBytes: stored, totalChunks: 0, totalBytes: 0, site, sources: figuresOf(progress.sources) })
          reported = true
        }
        seen.set(source.peer, source.bytes)
      }
      // The stored bytes move without new blocks too (the import after the fetch).
      if (!reported && stored !== undefined) onProgress({ chunks: totalChunks + progress.fetchChunksDone, bytes: totalBytes + progress.bytesReceived, storedBytes: stored, totalChunks: 0, totalBytes: 0, sources: figuresOf(progress.sources) })
    }
    try {
      const result = await init.exchange.fetch({
        rootCid: manifest.rootCid,
        chunks: manifest.chunks,
        size: manifest.size,
        chunkSize: manifest.chunkSize,
        layer,
        name,
        ...(layer === 'we' && osRoot !== undefined ? { base: osRoot } : {}),
        sources,
        purpose: 'migration',
        migration: context.migration,
        signal: AbortSignal.any([signal, attempt.signal]),
        onProgress: report
      })
      context.counter.received.chunks += result.bytesReceived - received
      return { chunks: totalChunks + result.chunksFetched, bytes: totalBytes + result.bytesFetched, sources: figuresOf(result.sources), timing: { firstBlockMs: result.firstBlockMs, fetchMs: result.fetchMs, importMs: result.importMs } }
    } catch (err) {
      if (signal.aborted) throw err
      // Which source went: the one this attempt saw dropped, or the one the exchange names.
      const failures = (err as { failures?: Array<{ peer: string, reason: string }> }).failures ?? []
      const gone = dropped ?? (failures[0] === undefined ? undefined : { site: siteOf(failures[0].peer), reason: failures[0].reason })
      if (gone === undefined || !live.has(gone.site)) throw err
      live.delete(gone.site)
      if (live.size === 0) throw new PeerLostError(`every source of the ${layer.toUpperCase()} image ${manifest.rootCid} is gone (last: ${gone.site}: ${gone.reason})`)
      init.onSourceDropped?.(gone.site, gone.reason)
      for (const f of figuresOf(last?.sources ?? [])) earlier.set(f.site, f.site === gone.site ? { ...f, dropReason: gone.reason } : f)
      totalChunks += last?.fetchChunksDone ?? 0
      totalBytes += received
      assignment = assignChunks(plan, share, live, assignment)
    } finally {
      init.exchange.removeEventListener('source:dropped', onDropped)
    }
  }
}

/**
 * Of this image's fetched bytes (after `earlier` of attempts before), those in the store. The
 * exchange writes each verified block into the store before it counts its positions done, so the
 * image bytes done since this attempt began fetching are stored fetched bytes; from 'importing'
 * on (the store registers the image from its leaves) all of them are.
 */
function storedOf (progress: TransferProgress, earlier: number, doneAtStart: number | undefined): number {
  if (progress.phase === 'importing' || progress.phase === 'done') return earlier + progress.bytesReceived
  if (doneAtStart === undefined) return earlier
  return earlier + Math.max(0, Math.min(progress.bytesReceived, progress.bytesDone - doneAtStart))
}

/** The images are in the store now: chunks read from there (the rebuild skips images it finds). */
function storeChunkSource (store: MigrationImageStore): ChunkSource {
  return {
    async get (cid) {
      const parsed = CID.parse(cid)
      if (!store.blockstore().has(parsed)) throw new MigrationError(`chunk ${cid} is not in the store after the exchange fetched the base images`)
      return store.readBlock(parsed)
    },
    async close () {}
  }
}
