/**
 * Benchmarks of the image store (issue 3). Figures go to bench/RESULTS.md, "Issue 3 — image store".
 *
 *   node dist/bench/store.js import     [--gib 4] [--runs 3] [--chunk-kib 64]  import vs raw SHA-256, RSS
 *   node dist/bench/store.js layout     [--gib 1] [--runs 3]                   pack files vs SQLite blobs vs discard
 *   node dist/bench/store.js blocksize  [--runs 1]                             4/16/64/256 KiB: similarity, metadata, speed, dedup
 *   node dist/bench/store.js pairs                                             the paper's (m, n) site pairs: similarity, presence
 *   node dist/bench/store.js scale      [--gib 20] [--source stream|sparse]    20 GiB, as a stream and as a sparse file: RSS
 *
 * Everything is written under bench/out/ (git-ignored) and deleted afterwards, except the cached
 * realistic images (bench/out/images/, built by bench/debootstrap-images.sh).
 */
import '../p2p/polyfills.js'

import { createHash } from 'node:crypto'
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import Database from 'better-sqlite3'
import { importer, type WritableStorage } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import type { CID } from 'multiformats/cid'
import { createImageStore, isAllZero, type ImageStore, type ImportSource, type Layer } from '../p2p/store/index.js'
import { distinctNonZeroBytes, generateSitePair, planContent, randomImage, sharedBytes, writePlan, writePlanSparse, type ImagePlan } from '../test/support/image-generator.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
const outDir = fileURLToPath(new URL('../../bench/out/', import.meta.url))
const imagesDir = join(outDir, 'images')

function argument (name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? fallback : Number(process.argv[index + 1])
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

function machine (): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  return `${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / GiB).toFixed(0)} GiB RAM, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`
}

/** Peak RSS while `work` runs, sampled every 50 ms (plus before and after). */
async function withPeakRss<T> (work: () => Promise<T>): Promise<{ result: T, peakRss: number }> {
  let peak = process.memoryUsage.rss()
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()) }, 50)
  try {
    const result = await work()
    peak = Math.max(peak, process.memoryUsage.rss())
    return { result, peakRss: peak }
  } finally {
    clearInterval(timer)
  }
}

/** CPU seconds all processes of the machine have used since boot (/proc/stat; undefined elsewhere). */
function machineBusySeconds (): number | undefined {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
    return (fields.reduce((sum, value) => sum + value, 0) - idle) / 100 // USER_HZ
  } catch {
    return undefined
  }
}

/**
 * Wall-clock seconds, CPU seconds (user + system, all threads of this process: the hash worker
 * too), and the other load: how many cores everything else on the machine kept busy meanwhile.
 */
async function timed<T> (work: () => Promise<T>): Promise<{ result: T, seconds: number, cpuSeconds: number, otherCores: number }> {
  const start = performance.now()
  const cpu = process.cpuUsage()
  const busy = machineBusySeconds()
  const result = await work()
  const used = process.cpuUsage(cpu)
  const seconds = (performance.now() - start) / 1000
  const cpuSeconds = (used.user + used.system) / 1e6
  const busyAfter = machineBusySeconds()
  const otherCores = busy === undefined || busyAfter === undefined ? Number.NaN : Math.max(0, busyAfter - busy - cpuSeconds) / seconds
  return { result, seconds, cpuSeconds, otherCores }
}

/** The baseline: one running SHA-256 over the file's bytes on one thread, read like the import reads it. */
async function rawSha256 (file: string): Promise<number> {
  return (await rawSha256Timed(file)).rate
}

async function rawSha256Timed (file: string): Promise<{ rate: number, cpuSeconds: number, otherCores: number }> {
  const { seconds, cpuSeconds, otherCores } = await timed(async () => {
    const hash = createHash('sha256')
    for await (const piece of createReadStream(file, { highWaterMark: 4 * MiB })) hash.update(piece as Buffer)
    hash.digest()
  })
  return { rate: statSync(file).size / seconds, cpuSeconds, otherCores }
}

async function freshStore (label: string, chunkSize: number, hashInWorker = true): Promise<ImageStore> {
  const directory = join(outDir, `store-${label}`)
  rmSync(directory, { recursive: true, force: true })
  const store = createImageStore({ directory, chunkSize, hashInWorker })
  await store.open()
  return store
}

async function ensureFile (plan: ImagePlan, name: string): Promise<string> {
  mkdirSync(outDir, { recursive: true })
  const file = join(outDir, name)
  if (!existsSync(file) || statSync(file).size !== plan.size) await writePlan(plan, file)
  return file
}

const mbps = (bytesPerSecond: number): string => (bytesPerSecond / 1e6).toFixed(0)

// ------------------------------------------------------------------ import vs raw SHA-256

async function benchImport (): Promise<void> {
  const gib = argument('gib', 4)
  const runs = argument('runs', 3)
  const chunkSize = argument('chunk-kib', 64) * KiB
  // Distinct random chunks, no zeros: the worst case (every chunk hashed, written and indexed).
  const plan = randomImage('import', Math.round(gib * GiB / (64 * KiB)), 0, 1)
  const file = await ensureFile(plan, `import-${gib}g.img`)
  const variants = [{ label: 'two threads (leaves hashed by a worker)', worker: true }, { label: 'one thread', worker: false }]
  const rows = variants.map(() => [] as Array<{ raw: number, store: number, ratio: number, rss: number, cpuRatio: number, otherCores: number }>)
  for (let run = 0; run < runs; run++) {
    for (const [v, variant] of variants.entries()) {
      // The baseline right before each import, so that both see the same machine load.
      const raw = await rawSha256Timed(file)
      const store = await freshStore('import', chunkSize, variant.worker)
      const { result: { seconds, cpuSeconds, otherCores }, peakRss } = await withPeakRss(async () => await timed(async () => await store.add(file, { layer: 'os' })))
      const written = store.packBytesWritten
      await store.close()
      rmSync(store.directory, { recursive: true, force: true })
      const rate = plan.size / seconds
      // CPU seconds of the baseline over CPU seconds of the import: what the import costs, whatever else the machine runs.
      const cpuRatio = raw.cpuSeconds / cpuSeconds
      rows[v]?.push({ raw: raw.rate, store: rate, ratio: rate / raw.rate, rss: peakRss, cpuRatio, otherCores })
      console.log(`run ${run + 1}, ${variant.label}: raw SHA-256 ${mbps(raw.rate)} MB/s (${raw.cpuSeconds.toFixed(1)} CPU s, other load ${raw.otherCores.toFixed(2)} cores), import ${mbps(rate)} MB/s (${cpuSeconds.toFixed(1)} CPU s, other load ${otherCores.toFixed(2)} cores), ratio ${(rate / raw.rate).toFixed(2)}, CPU ratio ${cpuRatio.toFixed(2)}, peak RSS ${(peakRss / MiB).toFixed(0)} MiB, pack bytes written with O_DIRECT ${(written.direct / MiB).toFixed(0)} MiB / through the page cache ${(written.pageCache / MiB).toFixed(1)} MiB, load average ${os.loadavg()[0]?.toFixed(1) ?? '?'}`)
    }
  }
  console.log(`\nimport of ${gib} GiB (${plan.size} bytes, random, chunk ${chunkSize / KiB} KiB, durable: pack fsync per batch before its index rows, registration committed with synchronous=FULL), ${runs} runs; ${machine()}`)
  console.log('| import | raw SHA-256 MB/s (median) | import MB/s (median) | ratio (median of per-run ratios) | CPU ratio: baseline CPU s / import CPU s (median) | other load during the imports, cores of 2 (median) | peak RSS MiB (max) |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  variants.forEach((variant, v) => {
    const r = rows[v] ?? []
    console.log(`| ${variant.label} | ${mbps(median(r.map((x) => x.raw)))} | ${mbps(median(r.map((x) => x.store)))} | ${median(r.map((x) => x.ratio)).toFixed(2)} | ${median(r.map((x) => x.cpuRatio)).toFixed(2)} | ${median(r.map((x) => x.otherCores)).toFixed(2)} | ${(Math.max(...r.map((x) => x.rss)) / MiB).toFixed(0)} |`)
  })
  rmSync(file, { force: true })
}

// ------------------------------------------------------------------ layouts

/** The alternative layout: every block a row of an ordinary table with a UNIQUE cid column, batched transactions. */
class SqliteBlobBlocks implements WritableStorage {
  private readonly db: Database.Database
  private readonly insert: Database.Statement
  private pending: Array<[Uint8Array, Uint8Array]> = []
  private pendingBytes = 0

  constructor (directory: string) {
    mkdirSync(directory, { recursive: true })
    this.db = new Database(join(directory, 'blocks.sqlite'))
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = FULL')
    this.db.exec('CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY, cid BLOB NOT NULL UNIQUE, data BLOB NOT NULL)')
    this.insert = this.db.prepare('INSERT OR IGNORE INTO blocks (cid, data) VALUES (?, ?)')
  }

  async put (cid: CID, bytes: Uint8Array): Promise<CID> {
    this.pending.push([cid.bytes, bytes])
    this.pendingBytes += bytes.byteLength
    if (this.pendingBytes >= 64 * MiB) this.commit()
    return cid
  }

  commit (): void {
    const rows = this.pending
    this.pending = []
    this.pendingBytes = 0
    this.db.transaction(() => { for (const [cid, data] of rows) this.insert.run(cid, data) })()
  }

  close (): void {
    this.commit()
    this.db.close()
  }
}

async function importerOnly (file: string, chunkSize: number, blocks: WritableStorage): Promise<void> {
  const content = createReadStream(file, { highWaterMark: 4 * MiB })
  for await (const _entry of importer([{ content }], blocks, { chunker: fixedSize({ chunkSize }), rawLeaves: true, cidVersion: 1 })) { /* drain */ }
}

async function benchLayout (): Promise<void> {
  const gib = argument('gib', 1)
  const runs = argument('runs', 3)
  const plan = randomImage('layout', Math.round(gib * GiB / (64 * KiB)), 0, 2)
  const file = await ensureFile(plan, `layout-${gib}g.img`)
  console.log(`layouts, ${gib} GiB random file, ${runs} runs, ratio = import rate / raw SHA-256 rate measured just before it; ${machine()}`)
  console.log('| chunk | importer, blocks discarded | importer → SQLite blobs (UNIQUE cid) | hgmig store (pack files + SQLite index) |')
  console.log('| --- | --- | --- | --- |')
  for (const chunkSize of [4 * KiB, 64 * KiB, 256 * KiB]) {
    const ratios: Record<'discard' | 'blobs' | 'packs', number[]> = { discard: [], blobs: [], packs: [] }
    for (let run = 0; run < runs; run++) {
      let raw = await rawSha256(file)
      ratios.discard.push(plan.size / (await timed(async () => { await importerOnly(file, chunkSize, { put: async (cid: CID) => cid }) })).seconds / raw)
      raw = await rawSha256(file)
      const blobDir = join(outDir, 'layout-blobs')
      rmSync(blobDir, { recursive: true, force: true })
      ratios.blobs.push(plan.size / (await timed(async () => {
        const blocks = new SqliteBlobBlocks(blobDir)
        await importerOnly(file, chunkSize, blocks)
        blocks.close()
      })).seconds / raw)
      rmSync(blobDir, { recursive: true, force: true })
      raw = await rawSha256(file)
      const store = await freshStore('layout', chunkSize)
      ratios.packs.push(plan.size / (await timed(async () => { await store.add(file, { layer: 'os' }) })).seconds / raw)
      await store.close()
      rmSync(store.directory, { recursive: true, force: true })
    }
    console.log(`| ${chunkSize / KiB} KiB | ${median(ratios.discard).toFixed(2)} | ${median(ratios.blobs).toFixed(2)} | ${median(ratios.packs).toFixed(2)} |`)
  }
  rmSync(file, { force: true })
}

// ------------------------------------------------------------------ chunk size table

interface TestImage { name: string, layer: Layer, file: string, base?: string }

/** The realistic images if bench/debootstrap-images.sh has built them, else a synthetic site pair (said so in the output). */
async function testImages (): Promise<{ images: TestImage[], realistic: boolean, plans: ImagePlan[] }> {
  const realistic = ['debian-os.img', 'debian-we.img'].every((name) => existsSync(join(imagesDir, name)))
  if (realistic) {
    const images: TestImage[] = [
      { name: 'debian-os', layer: 'os', file: join(imagesDir, 'debian-os.img') },
      { name: 'debian-we', layer: 'we', file: join(imagesDir, 'debian-we.img'), base: 'debian-os' }
    ]
    for (const extra of readdirSync(imagesDir).filter((n) => n.endsWith('-os.img') && n !== 'debian-os.img')) {
      images.push({ name: basename(extra, '.img'), layer: 'os', file: join(imagesDir, extra) })
    }
    return { images, realistic, plans: [] }
  }
  const { a, b } = generateSitePair({ seed: 3, osUnits: 4096, weUnits: 2048, udUnits: 512, zeroShare: 0.3, similarity: { os: 0.4, we: 0.4 } })
  const images: TestImage[] = []
  for (const plan of [a.os, a.we, b.os, b.we]) {
    images.push({ name: plan.name, layer: plan.layer, file: await ensureFile(plan, `${plan.name}.img`), ...(plan.layer === 'we' ? { base: plan.name.replace('-we', '-os') } : {}) })
  }
  return { images, realistic, plans: [a.os, a.we, b.os, b.we] }
}

/** The exact dedup optimum at a chunk size: each distinct non-zero chunk once, found by hashing the files ourselves. */
async function optimumBytes (files: string[], chunkSize: number): Promise<number> {
  const seen = new Set<string>()
  let bytes = 0
  for (const file of files) {
    let carry = Buffer.alloc(0)
    const take = (chunk: Buffer): void => {
      if (isAllZero(chunk)) return
      const key = createHash('sha256').update(chunk).digest('base64')
      if (!seen.has(key)) { seen.add(key); bytes += chunk.byteLength }
    }
    for await (const piece of createReadStream(file, { highWaterMark: 4 * MiB })) {
      let buffer = carry.byteLength === 0 ? piece as Buffer : Buffer.concat([carry, piece as Buffer])
      while (buffer.byteLength >= chunkSize) { take(buffer.subarray(0, chunkSize)); buffer = buffer.subarray(chunkSize) }
      carry = Buffer.from(buffer)
    }
    if (carry.byteLength > 0) take(carry)
  }
  return bytes
}

async function benchBlockSize (): Promise<void> {
  const { images, realistic, plans } = await testImages()
  const totalBytes = images.reduce((sum, i) => sum + statSync(i.file).size, 0)
  console.log(`chunk size table on ${realistic ? 'the realistic Debian images (bench/debootstrap-images.sh)' : 'SYNTHETIC images (generator, (40 %, 40 %), 30 % zeros) — debootstrap images not built'}: ${images.map((i) => `${i.name} ${(statSync(i.file).size / MiB).toFixed(0)} MiB`).join(', ')}; ${machine()}`)
  const pairs: Array<[string, string]> = [['debian-we', 'debian-os'], ['debian-os', 'debian-we']]
  for (const other of images.filter((i) => i.layer === 'os' && i.name !== 'debian-os')) pairs.push([other.name, 'debian-os'])
  if (!realistic) pairs.splice(0, pairs.length, ['a-we', 'a-os'], ['a-os', 'b-os'], ['a-we', 'b-we'])
  console.log('similarity: share of A\'s bytes whose chunk is in B — of all bytes (zeros count as shared) / of the non-zero data only')
  console.log(`| chunk | ${pairs.map(([a, b]) => `${a} in ${b}`).join(' | ')} | metadata bytes per image GiB | import MB/s (raw SHA-256 MB/s) | CPU ratio (raw SHA-256 CPU s / import CPU s) | stored leaf bytes / optimum |`)
  console.log(`| --- | ${pairs.map(() => '---').join(' | ')} | --- | --- | --- | --- |`)
  for (const chunkSize of [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB]) {
    const store = await freshStore(`blocksize-${chunkSize}`, chunkSize)
    let importSeconds = 0
    let importCpuSeconds = 0
    let rawSeconds = 0
    let rawCpuSeconds = 0
    for (const image of images) {
      const raw = await rawSha256Timed(image.file)
      rawSeconds += statSync(image.file).size / raw.rate
      rawCpuSeconds += raw.cpuSeconds
      const imported = await timed(async () => await store.add(image.file, { layer: image.layer, name: image.name, ...(image.base === undefined ? {} : { base: image.base }) }))
      importSeconds += imported.seconds
      importCpuSeconds += imported.cpuSeconds
    }
    const reports = await Promise.all(pairs.map(async ([a, b]) => await store.similarity(a, b)))
    const ratios = reports.map((r) => r.ratio)
    const stats = await store.stats()
    await store.close()
    const metadata = statSync(join(store.directory, 'index.sqlite')).size
    const optimum = plans.length > 0 && chunkSize <= 64 * KiB ? distinctNonZeroBytes(plans) : await optimumBytes(images.map((i) => i.file), chunkSize)
    if (!realistic) {
      // The generator's ground truth holds for chunks that divide its 64 KiB units.
      const byName = new Map(plans.map((p) => [p.name, p]))
      if (chunkSize <= 64 * KiB) {
        pairs.forEach(([a, b], i) => {
          const truth = sharedBytes(byName.get(a) as ImagePlan, byName.get(b) as ImagePlan) / (byName.get(a) as ImagePlan).size
          if (Math.abs(truth - (ratios[i] as number)) > 1e-12) throw new Error(`similarity ${a} in ${b} at ${chunkSize} is ${ratios[i] as number}, ground truth ${truth}`)
        })
      }
    }
    console.log(`| ${chunkSize / KiB} KiB | ${reports.map((r) => `${(100 * r.ratio).toFixed(1)} % / ${(100 * r.dataRatio).toFixed(1)} %`).join(' | ')} | ${(metadata / (totalBytes / GiB) / MiB).toFixed(2)} MiB | ${mbps(totalBytes / importSeconds)} (${mbps(totalBytes / rawSeconds)}) | ${(rawCpuSeconds / importCpuSeconds).toFixed(2)} | ${stats.storedLeafBytes} / ${optimum} = ${(stats.storedLeafBytes / optimum).toFixed(4)} |`)
    rmSync(store.directory, { recursive: true, force: true })
  }
  if (!realistic) for (const image of images) rmSync(image.file, { force: true })
}

// ------------------------------------------------------------------ the paper's (m, n) pairs

async function benchPairs (): Promise<void> {
  // H-GMIG's experiments: two sites' images with OS and WE similarity (m, n) of 5, 20, 40, 60 %.
  console.log(`generated site pairs (OS 1024 units, WE +512, UD +128 of 64 KiB, 20 % zeros, 5 % of a base rewritten per layer), 64 KiB chunks; measured by the store, checked against the generator's ground truth; ${machine()}`)
  console.log('| target (m, n) | OS data in OS | WE data in WE | UD data in UD | a-we already at site b (presence via the remote manifest) |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const share of [0.05, 0.2, 0.4, 0.6]) {
    const { a, b } = generateSitePair({ seed: Math.round(share * 100), osUnits: 1024, weUnits: 512, udUnits: 128, zeroShare: 0.2, similarity: { os: share, we: share } })
    const siteA = await freshStore('pairs-a', 64 * KiB)
    const siteB = await freshStore('pairs-b', 64 * KiB)
    const ids = new Map<ImagePlan, string>()
    for (const [store, site] of [[siteA, a], [siteB, b]] as const) {
      for (const plan of [site.os, site.we, site.ud]) {
        const base = plan.layer === 'we' ? site.os : plan.layer === 'ud' ? site.we : undefined
        const info = await store.add({ content: planContent(plan), size: plan.size, description: plan.name }, { layer: plan.layer, name: plan.name, ...(base === undefined ? {} : { base: ids.get(base) as string }) })
        ids.set(plan, info.id)
      }
    }
    // Site b learns a's WE manifest (as the swarm will gossip it) and asks what it already holds.
    const weA = await siteA.resolve(ids.get(a.we) as string)
    const chunks = []
    for await (const cid of siteA.manifest(weA.id)) chunks.push(cid)
    await siteB.addRemoteManifest({ site: 'a', rootCid: weA.rootCid, layer: 'we', size: weA.size, chunkSize: weA.chunkSize, chunks })
    const presence = await siteB.remotePresence('a', weA.rootCid)
    // Similarity of a's images to b's, per layer, measured inside one store holding both sites' images.
    const both = await freshStore('pairs-both', 64 * KiB)
    const bothIds = new Map<ImagePlan, string>()
    for (const site of [a, b]) {
      for (const plan of [site.os, site.we, site.ud]) {
        const base = plan.layer === 'we' ? site.os : plan.layer === 'ud' ? site.we : undefined
        bothIds.set(plan, (await both.add({ content: planContent(plan), size: plan.size, description: plan.name }, { layer: plan.layer, name: plan.name, ...(base === undefined ? {} : { base: bothIds.get(base) as string }) })).id)
      }
    }
    const report = await both.similarity(bothIds.get(a.ud) as string, bothIds.get(b.ud) as string)
    const plansA = [a.os, a.we, a.ud]
    const plansB = [b.os, b.we, b.ud]
    report.layers.forEach((layer, i) => {
      const truth = sharedBytes(plansA[i] as ImagePlan, plansB[i] as ImagePlan, { data: true })
      if (layer.sharedDataBytes !== truth) throw new Error(`(${share}) ${layer.layer}: store ${layer.sharedDataBytes}, ground truth ${truth}`)
    })
    if (presence.presentBytes !== sharedBytes(a.we, [b.os, b.we, b.ud].reduce((all, p) => ({ ...all, units: Uint32Array.from([...all.units, ...p.units]) })))) throw new Error('presence differs from the ground truth')
    const pct = (r: number): string => `${(100 * r).toFixed(1)} %`
    console.log(`| (${pct(share)}, ${pct(share)}) | ${report.layers.map((l) => pct(l.dataRatio)).join(' | ')} | ${pct(presence.ratio)} (zeros ${pct(presence.zeroBytes / presence.size)}) |`)
    for (const store of [siteA, siteB, both]) {
      await store.close()
      rmSync(store.directory, { recursive: true, force: true })
    }
  }
}

// ------------------------------------------------------------------ scale

async function benchScale (): Promise<void> {
  const gib = argument('gib', 20)
  // 80 % of the units are zero (recorded, not stored), 20 % distinct random data, so the manifest
  // has every chunk of 20 GiB and about 4 GiB reach the pack files. Imported twice: as a generated
  // stream, and as a sparse file (zero units are holes: 4 GiB of disk for the source), which takes
  // the file path of a real import (aligned pieces, hash worker, O_DIRECT pack writes).
  const plan = randomImage('scale', Math.round(gib * GiB / (64 * KiB)), 0.8, 4)
  const file = join(outDir, `scale-${gib}g-sparse.img`)
  mkdirSync(outDir, { recursive: true })
  // One source per process (`--source stream|sparse`), so that one import's heap does not count in the other's RSS.
  const only = process.argv[process.argv.indexOf('--source') + 1]
  const sources: Array<{ label: string, source: () => ImportSource }> = [
    { label: 'generated stream', source: () => ({ content: planContent(plan), size: plan.size, description: 'generated stream' }) },
    { label: 'sparse file', source: () => file }
  ].filter((s) => !process.argv.includes('--source') || s.label.includes(only ?? ''))
  if (sources.some((s) => s.label === 'sparse file')) await writePlanSparse(plan, file)
  try {
    for (const { label, source } of sources) {
      const store = await freshStore('scale', 64 * KiB)
      let lastReport = 0
      const { result: { seconds, cpuSeconds }, peakRss } = await withPeakRss(async () => await timed(async () => await store.add(source(), {
        layer: 'os',
        name: 'scale',
        onProgress: (event) => {
          if (event.detail.bytesDone - lastReport >= 2 * GiB) {
            lastReport = event.detail.bytesDone
            console.log(`  ${label}: ${(event.detail.bytesDone / GiB).toFixed(0)} GiB, RSS ${(process.memoryUsage.rss() / MiB).toFixed(0)} MiB, ETA ${event.detail.etaSeconds?.toFixed(0) ?? '?'} s`)
          }
        }
      })))
      const stats = await store.stats()
      const written = store.packBytesWritten
      await store.close()
      rmSync(store.directory, { recursive: true, force: true })
      console.log(`scale, ${label}: ${gib} GiB (80 % zero units), ${seconds.toFixed(0)} s (${cpuSeconds.toFixed(0)} CPU s), peak RSS ${(peakRss / MiB).toFixed(0)} MiB, ${stats.chunks} chunk rows, ${(stats.storedBytes / GiB).toFixed(2)} GiB stored (${(written.direct / GiB).toFixed(2)} GiB with O_DIRECT); ${machine()}`)
    }
  } finally {
    rmSync(file, { force: true })
  }
}

const benches: Record<string, () => Promise<void>> = { import: benchImport, layout: benchLayout, blocksize: benchBlockSize, pairs: benchPairs, scale: benchScale }
const which = process.argv[2] ?? 'all'
if (which !== 'all' && benches[which] === undefined) {
  console.error(`bench/store: unknown bench "${which}" (${Object.keys(benches).join(', ')}, all)`)
  process.exitCode = 1
} else {
  for (const [name, bench] of Object.entries(benches)) {
    if (which === 'all' || which === name) {
      console.log(`\n## ${name}\n`)
      await bench()
    }
  }
}
