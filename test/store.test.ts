import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { CID } from 'multiformats/cid'
import { join } from 'node:path'
import {
  AbortError, AmbiguousImageError, CorruptChunkError, createImageStore, ImageExistsError, ImageInUseError, ImageNotFoundError,
  ImportSourceError, LayerRuleError, StoreLockedError, type ImageStore, type StoreProgressEvent
} from '../p2p/store/index.js'
import { distinctNonZeroBytes, generateSitePair, randomImage, sharedBytes, writePlan, writePlanSparse, zeroBytes, type ImagePlan } from './support/image-generator.js'

const KiB = 1024

const tempDirs: string[] = []
after(() => { for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true }) })

function tempDir (label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hgmig-store-${label}-`))
  tempDirs.push(dir)
  return dir
}

async function openStore (directory: string, chunkSize = 64 * KiB): Promise<ImageStore> {
  const store = createImageStore({ directory: join(directory, 'store'), chunkSize })
  await store.open()
  return store
}

async function planFile (dir: string, plan: ImagePlan): Promise<string> {
  const path = join(dir, `${plan.name}.img`)
  await writePlan(plan, path)
  return path
}

/** Bytes of the pack files on disk (what the store really occupies, garbage included). */
function packBytes (directory: string): number {
  const packs = join(directory, 'store', 'packs')
  return readdirSync(packs).reduce((sum, name) => sum + statSync(join(packs, name)).size, 0)
}

test('round trip is byte-identical for 1, chunk-1, chunk, chunk+1 and many chunks; a zero-length file is refused', async () => {
  const dir = tempDir('roundtrip')
  const chunk = 16 * KiB
  const store = await openStore(dir, chunk)
  try {
    for (const size of [1, chunk - 1, chunk, chunk + 1, 37 * chunk + 123]) {
      const data = randomBytes(size)
      const file = join(dir, `in-${size}`)
      writeFileSync(file, data)
      const info = await store.add(file, { layer: 'os' })
      assert.equal(info.size, size)
      assert.equal(info.chunkCount, Math.ceil(size / chunk), `chunks of a ${size}-byte file`)
      const out = join(dir, `out-${size}`)
      const result = await store.export(info.id, out)
      assert.equal(result.bytes, size)
      assert.ok(readFileSync(out).equals(data), `export of ${size} bytes is byte-identical`)
      const streamed = []
      for await (const piece of store.read(info.name)) streamed.push(piece)
      assert.ok(Buffer.concat(streamed).equals(data), `read() of ${size} bytes is byte-identical`)
    }
    const before = await store.stats()
    const empty = join(dir, 'empty')
    writeFileSync(empty, '')
    await assert.rejects(store.add(empty, { layer: 'os' }), (err: unknown) => err instanceof ImportSourceError && /empty \(0 bytes\)/.test(err.message))
    await assert.rejects(store.add(join(dir, 'missing'), { layer: 'os' }), (err: unknown) => err instanceof ImportSourceError && /no such file/.test(err.message))
    await assert.rejects(store.add(dir, { layer: 'os' }), (err: unknown) => err instanceof ImportSourceError && /directory/.test(err.message))
    assert.deepEqual(await store.stats(), before, 'refused imports change nothing')
    await assert.rejects(store.export('in-1', join(dir, 'out-1')), /already exists/, 'export does not overwrite unless told')
  } finally {
    await store.close()
  }
})

test('dedup: shared units are stored once, a second copy of a file stores nothing new', async () => {
  const dir = tempDir('dedup')
  const { a, b } = generateSitePair({ seed: 7, osUnits: 40, weUnits: 20, udUnits: 10, zeroShare: 0.1, similarity: { os: 0.4, we: 0.4 } })
  const store = await openStore(dir)
  try {
    const plans = [a.os, b.os]
    for (const plan of plans) await store.add(await planFile(dir, plan), { layer: 'os' })
    const stats = await store.stats()
    assert.equal(stats.storedLeafBytes, distinctNonZeroBytes(plans), 'stored leaf bytes equal the exact optimum')
    // 64 KiB units = 64 KiB chunks: one chunk row per distinct unit (the zero unit included) plus one root each.
    const distinctKeys = new Set([...a.os.units, ...b.os.units]).size
    assert.equal(stats.chunks, distinctKeys + 2)
    assert.equal(stats.zeroChunks, 1)
    const packsBefore = packBytes(dir)
    await store.add(join(dir, 'a-os.img'), { layer: 'os', name: 'a-os-again' })
    const after = await store.stats()
    assert.equal(after.chunks, stats.chunks, 'no new chunk rows for an identical file')
    assert.equal(packBytes(dir), packsBefore, 'no new bytes in the pack files')
    assert.equal(after.images, 3)
  } finally {
    await store.close()
  }
})

test('refcounts: removing an image frees exactly the chunks no other image uses; gc gives the space back', async () => {
  const dir = tempDir('refcount')
  const { a, b } = generateSitePair({ seed: 11, osUnits: 30, weUnits: 10, udUnits: 5, zeroShare: 0.2, similarity: { os: 0.5, we: 0.5 } })
  const store = await openStore(dir)
  try {
    const first = await store.add(await planFile(dir, a.os), { layer: 'os' })
    const second = await store.add(await planFile(dir, b.os), { layer: 'os' })
    const keysA = new Set(a.os.units)
    const keysB = new Set(b.os.units)
    const onlyA = [...keysA].filter((k) => !keysB.has(k))
    const exclusive = (await store.show(first.id)).exclusiveStoredBytes
    const removed = await store.remove(first.id)
    // Blocks only a-os used: its unique units (the zero unit is shared), plus its root node.
    assert.equal(removed.freedChunks, onlyA.length + 1)
    assert.equal(removed.freedBytes, exclusive)
    const rootNodeBytes = removed.freedBytes - onlyA.filter((k) => k !== 0).length * a.os.unitSize
    assert.ok(rootNodeBytes > 0 && rootNodeBytes < 4 * KiB, `the rest is the root node (${rootNodeBytes} bytes)`)
    const stats = await store.stats()
    assert.equal(stats.storedLeafBytes, distinctNonZeroBytes([b.os]), 'what b-os needs is all still there')
    assert.ok(stats.deadBytes > 0)
    const out = join(dir, 'b-out')
    await store.export(second.id, out)
    assert.ok(readFileSync(out).equals(readFileSync(join(dir, 'b-os.img'))), 'the other image still exports intact')
    const gc = await store.gc()
    assert.equal(gc.bytesReclaimed, stats.deadBytes)
    assert.equal(packBytes(dir), stats.storedBytes, 'after gc the pack files hold exactly the live blocks')
    assert.equal((await store.verify(second.id)).corrupt.length, 0, 'compaction moved blocks intact')
    await store.remove(second.id)
    const empty = await store.stats()
    assert.equal(empty.chunks, 0)
    assert.equal(empty.storedBytes, 0)
    // The same store object still remembers those chunks' digests (its Bloom filter keeps deleted
    // ones): they must be found missing in the index and stored again, not taken as present.
    const again = await store.add(join(dir, 'a-os.img'), { layer: 'os', name: 'a-os-again' })
    assert.equal((await store.stats()).storedLeafBytes, distinctNonZeroBytes([a.os]), 'every chunk stored again')
    const outAgain = join(dir, 'a-again-out')
    await store.export(again.id, outAgain)
    assert.ok(readFileSync(outAgain).equals(readFileSync(join(dir, 'a-os.img'))), 're-imported after removal, exported intact')
    assert.equal((await store.verify(again.id)).corrupt.length, 0)
  } finally {
    await store.close()
  }
})

test('zero chunks are recorded, never stored, and exported as zeros', async () => {
  const dir = tempDir('zero')
  const plan = randomImage('sparse', 50, 0.6, 5)
  const store = await openStore(dir)
  try {
    const info = await store.add(await planFile(dir, plan), { layer: 'os' })
    assert.equal(info.zeroBytes, zeroBytes(plan))
    assert.equal(info.zeroBytes, 30 * plan.unitSize)
    const stats = await store.stats()
    assert.equal(stats.zeroChunks, 1)
    assert.equal(stats.storedLeafBytes, 20 * plan.unitSize, 'only the 20 non-zero chunks take space')
    const out = join(dir, 'sparse-out')
    await store.export(info.id, out)
    assert.ok(readFileSync(out).equals(readFileSync(join(dir, 'sparse.img'))))
    const presence = await store.presence(info.id)
    assert.equal(presence.zeroBytes, info.zeroBytes)
  } finally {
    await store.close()
  }
})

test('layer rules: WE needs an OS base, UD a WE base, OS none; references are resolved or refused with candidates', async () => {
  const dir = tempDir('layers')
  const store = await openStore(dir, 4 * KiB)
  try {
    const file = join(dir, 'disk.img')
    writeFileSync(file, randomBytes(10 * KiB))
    const os = await store.add(file, { layer: 'os', name: 'debian' })
    await assert.rejects(store.add(file, { layer: 'os', base: 'debian', name: 'x' }), LayerRuleError)
    await assert.rejects(store.add(file, { layer: 'we', name: 'x' }), (err: unknown) => err instanceof LayerRuleError && /needs a base/.test(err.message))
    await assert.rejects(store.add(file, { layer: 'ud', base: 'debian', name: 'x' }), (err: unknown) => err instanceof LayerRuleError && /must be a WE image, but debian .* is an OS image/.test(err.message))
    await assert.rejects(store.add(file, { layer: 'we', base: 'nothing', name: 'x' }), (err: unknown) => err instanceof ImageNotFoundError && err.candidates.some((c) => c.startsWith('debian ')))
    await assert.rejects(store.add(file, { layer: 'os', name: 'debian' }), ImageExistsError)
    const we = await store.add(file, { layer: 'we', base: os.rootCid, name: 'web' })
    assert.equal(we.base, os.id)
    await assert.rejects(store.add(file, { layer: 'we', base: 'web', name: 'x' }), LayerRuleError)
    const ud = await store.add(file, { layer: 'ud', base: we.id.slice(0, 6), name: 'user', private: true })
    assert.equal(ud.base, we.id)
    assert.equal(ud.public, false)
    // The same file three times: its root CID names three images.
    await assert.rejects(store.resolve(os.rootCid), (err: unknown) => err instanceof AmbiguousImageError && err.candidates.length === 3)
    await assert.rejects(store.remove('debian'), (err: unknown) => err instanceof ImageInUseError && err.dependents.includes('web'))
    assert.equal((await store.list()).length, 3, 'refused operations registered nothing')
  } finally {
    await store.close()
  }
})

test('corruption: verify reports image, chunk index and byte offset; reads of a corrupt chunk fail', async () => {
  const dir = tempDir('corrupt')
  const chunk = 16 * KiB
  const store = await openStore(dir, chunk)
  const file = join(dir, 'disk.img')
  writeFileSync(file, randomBytes(10 * chunk))
  const info = await store.add(file, { layer: 'os', name: 'disk' })
  await store.close()
  // Flip one byte of the 4th chunk: blocks are appended in file order into the first pack.
  const pack = join(dir, 'store', 'packs', '000001.pack')
  const fd = openSync(pack, 'r+')
  const byte = Buffer.alloc(1)
  readSync(fd, byte, 0, 1, 3 * chunk + 100)
  byte[0] = (byte[0] as number) ^ 0xff
  writeSync(fd, byte, 0, 1, 3 * chunk + 100)
  closeSync(fd)
  const reopened = await openStore(dir, chunk)
  try {
    const report = await reopened.verify('disk')
    assert.equal(report.chunksChecked, 10)
    assert.equal(report.corrupt.length, 1)
    assert.deepEqual({ ...report.corrupt[0], cid: undefined, reason: undefined }, { image: 'disk', chunkIndex: 3, byteOffset: 3 * chunk, cid: undefined, reason: undefined })
    const out = join(dir, 'out')
    await assert.rejects(reopened.export(info.id, out), (err: unknown) => err instanceof CorruptChunkError && err.location?.chunkIndex === 3 && err.location.byteOffset === 3 * chunk)
    assert.equal(existsSync(out), false, 'a failed export leaves no file behind')
    const corruptCid = CID.parse(report.corrupt[0]?.cid as string)
    assert.throws(() => reopened.readBlock(corruptCid), CorruptChunkError, 'a read of the corrupt block fails')
    // Serving peers skip the check (the fetcher hashes every block it receives): the bytes come back as stored.
    const served = reopened.readBlock(corruptCid, { verify: false })
    assert.equal(served[100], (readFileSync(file)[3 * chunk + 100] as number) ^ 0xff)
  } finally {
    await reopened.close()
  }
})

test('similarity on generated site pairs matches the generator\'s ground truth, per layer', async () => {
  const dir = tempDir('similarity')
  const store = await openStore(dir, 16 * KiB)
  try {
    for (const [m, n] of [[0.05, 0.05], [0.4, 0.4]] as const) {
      const { a, b } = generateSitePair({ seed: Math.round(m * 100), osUnits: 40, weUnits: 30, udUnits: 10, zeroShare: 0.1, similarity: { os: m, we: n } })
      const ids = new Map<ImagePlan, string>()
      for (const site of [a, b]) {
        const os = await store.add(await planFile(dir, site.os), { layer: 'os', name: `${m}-${site.os.name}` })
        const we = await store.add(await planFile(dir, site.we), { layer: 'we', base: os.id, name: `${m}-${site.we.name}` })
        const ud = await store.add(await planFile(dir, site.ud), { layer: 'ud', base: we.id, name: `${m}-${site.ud.name}` })
        ids.set(site.os, os.id).set(site.we, we.id).set(site.ud, ud.id)
      }
      const report = await store.similarity(ids.get(a.ud) as string, ids.get(b.ud) as string)
      assert.equal(report.sharedBytes, sharedBytes(a.ud, b.ud))
      assert.deepEqual(report.layers.map((l) => [l.layer, l.sharedBytes, l.ratio, l.sharedDataBytes]), [
        ['os', sharedBytes(a.os, b.os), sharedBytes(a.os, b.os) / a.os.size, sharedBytes(a.os, b.os, { data: true })],
        ['we', sharedBytes(a.we, b.we), sharedBytes(a.we, b.we) / a.we.size, sharedBytes(a.we, b.we, { data: true })],
        ['ud', sharedBytes(a.ud, b.ud), sharedBytes(a.ud, b.ud) / a.ud.size, sharedBytes(a.ud, b.ud, { data: true })]
      ])
      // The generator's (m, n): the OS images share m of their non-zero units, exactly.
      const osLayer = report.layers[0]
      assert.equal(osLayer?.dataRatio, Math.round(m * (a.os.size - zeroBytes(a.os)) / a.os.unitSize) * a.os.unitSize / (a.os.size - zeroBytes(a.os)))
      const matrix = await store.similarityMatrix([ids.get(a.we) as string, ids.get(b.we) as string])
      assert.deepEqual(matrix.ratios, [[1, sharedBytes(a.we, b.we) / a.we.size], [sharedBytes(b.we, a.we) / b.we.size, 1]])
    }
  } finally {
    await store.close()
  }
})

test('the store directory is locked: a second store on it is refused until the first closes', async () => {
  const dir = tempDir('lock')
  const first = await openStore(dir)
  const second = createImageStore({ directory: join(dir, 'store') })
  await assert.rejects(second.open(), StoreLockedError)
  await first.close()
  await second.open()
  await second.close()
  // A lock left by a dead process is taken over.
  mkdirSync(join(dir, 'store'), { recursive: true })
  writeFileSync(join(dir, 'store', 'LOCK'), '999999999\n')
  const third = await openStore(dir)
  await third.close()
})

test('an aborted import registers nothing and the store stays usable; export, verify and gc can be cancelled too', async () => {
  const dir = tempDir('abort')
  const plan = randomImage('big', 200, 0, 3)
  const file = await planFile(dir, plan)
  const store = await openStore(dir)
  try {
    const controller = new AbortController()
    await assert.rejects(store.add(file, {
      layer: 'os',
      signal: controller.signal,
      // The first progress event comes with the first chunk: cancel right there, mid-import.
      onProgress: () => { controller.abort() }
    }), AbortError)
    assert.equal((await store.list()).length, 0)
    const info = await store.add(file, { layer: 'os' })
    assert.equal(info.size, plan.size)
    assert.equal((await store.verify(info.id)).corrupt.length, 0)
    assert.equal((await store.stats()).storedLeafBytes, plan.size)
    // The other long operations stop too, and leave nothing behind.
    const cancelled = AbortSignal.abort()
    const out = join(dir, 'out.img')
    await assert.rejects(store.export(info.id, out, { signal: cancelled }), AbortError)
    assert.equal(existsSync(out), false, 'a cancelled export leaves no file')
    await assert.rejects(store.verify(info.id, { signal: cancelled }), AbortError)
    const before = await store.stats()
    await assert.rejects(store.gc({ signal: cancelled }), AbortError)
    assert.deepEqual(await store.stats(), before, 'a cancelled gc changes nothing')
  } finally {
    await store.close()
  }
})

test('a source that cannot be read whole is refused with a clear error, and the store is unharmed', async () => {
  const dir = tempDir('unreadable')
  const store = await openStore(dir)
  try {
    const kept = await store.add(await planFile(dir, randomImage('kept', 8, 0, 5)), { layer: 'os' })
    const before = await store.stats()
    // Shrinks while being imported: the first progress event cuts it to a third.
    const shrinking = await planFile(dir, randomImage('shrinking', 300, 0, 6))
    let cut = false
    await assert.rejects(store.add(shrinking, {
      layer: 'os',
      onProgress: () => { if (!cut) { cut = true; truncateSync(shrinking, 100 * 64 * KiB) } }
    }), (err: unknown) => err instanceof ImportSourceError && /read \d+ bytes, but it has \d+; was it changed during the import\?/.test(err.message))
    const fifo = join(dir, 'fifo')
    if (spawnSync('mkfifo', [fifo]).status === 0) {
      await assert.rejects(store.add(fifo, { layer: 'os' }), (err: unknown) => err instanceof ImportSourceError && /is not a regular file/.test(err.message))
    }
    if (process.getuid?.() !== 0) {
      // (root reads any file: this case runs for an ordinary user only)
      const locked = join(dir, 'locked.img')
      writeFileSync(locked, randomBytes(1000), { mode: 0o000 })
      await assert.rejects(store.add(locked, { layer: 'os' }), (err: unknown) => err instanceof ImportSourceError && /permission denied/.test(err.message))
    }
    assert.deepEqual((await store.list()).map((i) => i.id), [kept.id], 'nothing half-registered')
    const after = await store.stats()
    assert.equal(after.storedLeafBytes, before.storedLeafBytes, 'no image refers to the chunks of the failed import')
    assert.equal(packBytes(dir), after.storedBytes, 'its unindexed bytes were cut off')
    assert.equal((await store.verify(kept.id)).corrupt.length, 0)
  } finally {
    await store.close()
  }
})

test('progress events: import, export, verify and gc report bytes done of the total, rate and ETA, ending at the total', async () => {
  const dir = tempDir('progress')
  const store = await openStore(dir)
  const events = new Map<string, StoreProgressEvent[]>()
  const record = (event: StoreProgressEvent): void => { events.set(event.type, [...(events.get(event.type) ?? []), event]) }
  try {
    const doomed = await store.add(await planFile(dir, randomImage('doomed', 96, 0, 7)), { layer: 'os' })
    const plan = randomImage('watched', 40, 0.25, 8)
    const info = await store.add(await planFile(dir, plan), { layer: 'os', onProgress: record })
    await store.export(info.id, join(dir, 'watched-out'), { onProgress: record })
    await store.verify(info.id, { onProgress: record })
    await store.remove(doomed.id)
    const gc = await store.gc({ onProgress: record })
    assert.ok(gc.packsCompacted > 0, 'the removal left a pack worth compacting')
    const liveBytes = (await store.stats()).storedBytes
    for (const [operation, total] of [['import', plan.size], ['export', plan.size], ['verify', plan.size], ['gc', liveBytes]] as const) {
      const seen = events.get(`store:${operation}:progress`) ?? []
      assert.ok(seen.length >= 1, `${operation} reported progress`)
      let previous = 0
      for (const { detail } of seen) {
        assert.equal(detail.operation, operation)
        assert.equal(detail.bytesTotal, total, `${operation}: bytesTotal`)
        assert.ok(detail.bytesDone >= previous && detail.bytesDone <= total, `${operation}: bytesDone only grows, up to the total`)
        assert.ok(Number.isFinite(detail.bytesPerSecond) && detail.bytesPerSecond >= 0, `${operation}: a rate`)
        previous = detail.bytesDone
      }
      const last = (seen[seen.length - 1] as StoreProgressEvent).detail
      assert.equal(last.bytesDone, total, `${operation}: the last event is at the total`)
      assert.equal(last.etaSeconds, 0, `${operation}: nothing left`)
    }
  } finally {
    await store.close()
  }
})

test('small imports, each through its own open, keep appending to the same few pack files', async () => {
  const dir = tempDir('reuse')
  for (let i = 0; i < 5; i++) {
    const store = await openStore(dir)
    try {
      // 3.5 chunks: full leaves go to a direct pack, the short one and the root node to a page-cache pack.
      const file = join(dir, `small-${i}.img`)
      writeFileSync(file, randomBytes(3.5 * 64 * KiB))
      await store.add(file, { layer: 'os' })
    } finally {
      await store.close()
    }
  }
  const store = await openStore(dir)
  try {
    const stats = await store.stats()
    assert.ok(stats.packFiles <= 2, `${stats.packFiles} pack files for 5 small images`)
    assert.equal(packBytes(dir), stats.storedBytes)
    for (const image of await store.list()) assert.equal((await store.verify(image.id)).corrupt.length, 0)
  } finally {
    await store.close()
  }
})

test('IPFS profile: root CIDs equal `ipfs add` output (kubo defaults) for known vectors', async () => {
  // Vectors: "hello world\n" from kubo's README ("ipfs add hello" prints it). The all-zero files are
  // the test vectors of solc's IPFS hash (ethereum/solidity test/libsolutil/IpfsHash.cpp), which
  // reimplements go-ipfs's default importer (256 KiB chunks, balanced DAG of 174 links, dag-pb
  // 'file' leaves, CIDv0) and checked its results against `ipfs add`. They cover one leaf, one
  // level, a full level (174 leaves) and the first two-level tree, and every leaf is all zero, so
  // they also prove that rebuilt zero leaves hash right.
  const vectors: Array<[string, Buffer, string]> = [
    ['hello world\\n', Buffer.from('hello world\n'), 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o'],
    ['"x"', Buffer.from('x'), 'QmULKig5Fxrs2sC4qt9nNduucXfb92AFYQ6Hi3YRqDmrYC'],
    ['200 zeros', Buffer.alloc(200), 'QmSXR1N23uWzsANi8wpxMPw5dmmhqBVUAb4hUrHVLpNaMr'],
    ['256 KiB - 1 zeros', Buffer.alloc(256 * KiB - 1), 'QmbNDspMkzkMFKyS3eCJGedG7GWRQHSCzJCZLjxP7wyVAx'],
    ['256 KiB + 1 zeros', Buffer.alloc(256 * KiB + 1), 'QmbVuw4C4vcmVKqxoWtgDVobvcHrSn51qsmQmyxjk4sB2Q'],
    ['1310710 zeros', Buffer.alloc(1310710), 'QmNg7BJo8gEMDK8yGQbHEwPtycesnE6FUULX5iVd5TAL9f'],
    ['174 chunks of zeros', Buffer.alloc(174 * 256 * KiB), 'QmY4HSz1oVGdUzb8poVYPLsoqBZjH6LZrtgnme9wWn2Qko'],
    ['174 chunks + 1 byte', Buffer.alloc(174 * 256 * KiB + 1), 'QmehMASWcBsX7VcEQqs6rpR5AHoBfKyBVEgmkJHjpPg8jq'],
    ['46661632 zeros', Buffer.alloc(46661632), 'QmaTb1sT9hrSXJLmf8bxJ9NuwndiHuMLsgNLgkS2eXu3Xj']
  ]
  const dir = tempDir('ipfs')
  const store = await openStore(dir)
  try {
    for (const [label, data, expected] of vectors) {
      const file = join(dir, 'vector')
      writeFileSync(file, data)
      const info = await store.add(file, { layer: 'os', profile: 'ipfs', name: label })
      assert.equal(info.rootCid, expected, label)
      assert.equal(info.chunkSize, 256 * KiB)
      const out = join(dir, 'vector-out')
      await store.export(info.id, out, { overwrite: true })
      assert.ok(readFileSync(out).equals(data), `${label} exports byte-identical`)
    }
    assert.equal(statSync(join(dir, 'store', 'packs')).isDirectory(), true)
  } finally {
    await store.close()
  }
})

/** Whether this directory's file system takes O_DIRECT writes (ext4, xfs, tmpfs on recent kernels do). */
function directIoWorks (dir: string): boolean {
  const probe = join(dir, 'o-direct-probe')
  try {
    closeSync(openSync(probe, constants.O_RDWR | constants.O_CREAT | constants.O_DIRECT))
    return true
  } catch {
    return false
  } finally {
    rmSync(probe, { force: true })
  }
}

test('hashing on the worker thread and on the main thread give the same DAG; full leaves are written with O_DIRECT, the rest through the page cache', async () => {
  const dir = tempDir('worker')
  const file = join(dir, 'disk.img')
  const chunk = 16 * KiB
  // Not a multiple of the 4 MiB pieces nor of the chunk size: the last piece and chunk are short.
  const data = Buffer.concat([randomBytes(5 * 1024 * KiB + 1234), Buffer.alloc(300 * KiB), randomBytes(77)])
  writeFileSync(file, data)
  // Stored leaves: every non-zero chunk once (random data: no repeats). Full ones can go direct; the short last one cannot.
  let fullLeafBytes = 0
  let shortLeafBytes = 0
  for (let offset = 0; offset < data.length; offset += chunk) {
    const leaf = data.subarray(offset, offset + chunk)
    if (leaf.every((byte) => byte === 0)) continue
    if (leaf.length === chunk) fullLeafBytes += chunk
    else shortLeafBytes += leaf.length
  }
  const direct = directIoWorks(dir)
  const roots: string[] = []
  for (const hashInWorker of [true, false]) {
    const store = createImageStore({ directory: join(dir, `store-${String(hashInWorker)}`), chunkSize: chunk, hashInWorker })
    await store.open()
    try {
      const info = await store.add(file, { layer: 'os' })
      assert.equal(info.size, statSync(file).size)
      roots.push(info.rootCid)
      const stats = await store.stats()
      const written = store.packBytesWritten
      assert.equal(stats.storedLeafBytes, fullLeafBytes + shortLeafBytes)
      assert.equal(written.direct + written.pageCache, stats.storedBytes, 'every stored byte written once, no padding')
      if (direct) {
        assert.equal(written.direct, fullLeafBytes, `full leaves bypass the page cache (hash worker: ${String(hashInWorker)})`)
      } else {
        assert.equal(written.direct, 0, 'no O_DIRECT here: everything through the page cache')
      }
      const out = join(dir, `out-${String(hashInWorker)}`)
      await store.export(info.id, out)
      assert.ok(readFileSync(out).equals(data), 'read back byte-identical')
      const packs = join(dir, `store-${String(hashInWorker)}`, 'packs')
      assert.equal(readdirSync(packs).reduce((sum, name) => sum + statSync(join(packs, name)).size, 0), stats.storedBytes, 'the pack files hold exactly the stored blocks')
    } finally {
      await store.close()
    }
  }
  assert.equal(roots[0], roots[1])
})

test('a mostly-zero 400 MiB image: its few data chunks per piece do not pin the reader\'s aligned pieces, every data leaf goes direct', async (t) => {
  const dir = tempDir('sparse')
  if (!directIoWorks(dir)) {
    t.skip('no O_DIRECT on this file system')
    return
  }
  // 80 % zero units: 8 MiB of data spans 40 MiB of file, ten pieces, if writes waited for 8 MiB.
  const plan = randomImage('sparse', 6400, 0.8, 12)
  const file = join(dir, 'sparse.img')
  await writePlanSparse(plan, file)
  const store = await openStore(dir)
  try {
    const info = await store.add(file, { layer: 'os' })
    assert.equal(info.zeroBytes, zeroBytes(plan))
    assert.equal(store.packBytesWritten.direct, distinctNonZeroBytes([plan]), 'every data leaf written with O_DIRECT')
    assert.equal((await store.verify(info.id)).corrupt.length, 0)
  } finally {
    await store.close()
  }
})

test('remote manifests: how much of another site\'s image is already here matches the ground truth', async () => {
  const dir = tempDir('remote')
  const { a, b } = generateSitePair({ seed: 21, osUnits: 60, weUnits: 10, udUnits: 5, zeroShare: 0.15, similarity: { os: 0.4, we: 0.4 } })
  const siteB = createImageStore({ directory: join(dir, 'site-b') })
  const siteA = createImageStore({ directory: join(dir, 'site-a') })
  await siteB.open()
  await siteA.open()
  try {
    const remote = await siteB.add(await planFile(dir, b.os), { layer: 'os' })
    const chunks = []
    for await (const cid of siteB.manifest(remote.id)) chunks.push(cid)
    assert.equal(chunks.length, b.os.units.length)
    await siteA.add(await planFile(dir, a.os), { layer: 'os' })
    await siteA.addRemoteManifest({ site: 'site-b', rootCid: remote.rootCid, layer: 'os', size: remote.size, chunkSize: remote.chunkSize, chunks })
    const presence = await siteA.remotePresence('site-b', remote.rootCid)
    assert.equal(presence.presentBytes, sharedBytes(b.os, a.os))
    assert.equal(presence.zeroBytes, zeroBytes(b.os))
    assert.ok(presence.ratio > 0.4 && presence.ratio < 1)
    await assert.rejects(siteA.addRemoteManifest({ site: 'site-b', rootCid: remote.rootCid, layer: 'os', size: remote.size, chunkSize: remote.chunkSize, chunks: chunks.slice(1) }), /59 chunks for .* \(expected 60\)/)
    await assert.rejects(siteA.remotePresence('site-c', remote.rootCid), ImageNotFoundError)
  } finally {
    await siteA.close()
    await siteB.close()
  }
})
