/**
 * Adopted leaves (what the chunk exchange does with the blocks it receives and verifies): stored
 * straight into the pack files, pinned until the image is registered from its manifest, and the
 * registered image is exactly what `add` of the same bytes gives.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import {
  createImageStore, MissingChunksError, RootMismatchError, zeroLeafCidOf, type DagProfile, type ImageInfo, type ImageStore
} from '../p2p/store/index.js'

const KiB = 1024

const tempDirs: string[] = []
after(() => { for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true }) })

function tempDir (label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hgmig-adopt-${label}-`))
  tempDirs.push(dir)
  return dir
}

async function openStore (directory: string): Promise<ImageStore> {
  const store = createImageStore({ directory, chunkSize: 64 * KiB })
  await store.open()
  return store
}

/**
 * A file of `chunks` chunks of `chunk` bytes: every 7th all zeros, every 11th a repeat of the
 * chunk 5 before, the last one `tail` bytes short.
 */
function writeImageFile (path: string, chunks: number, chunk: number, tail: number): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < chunks; i++) {
    if (i % 7 === 3) parts.push(Buffer.alloc(chunk))
    else if (i % 11 === 10) parts.push(parts[i - 5] as Buffer)
    else parts.push(randomBytes(chunk))
  }
  parts[chunks - 1] = (parts[chunks - 1] as Buffer).subarray(0, chunk - tail)
  const data = Buffer.concat(parts)
  writeFileSync(path, data)
  return data
}

async function manifestOf (store: ImageStore, image: string): Promise<CID[]> {
  const cids: CID[] = []
  for await (const cid of store.manifest(image)) cids.push(cid)
  return cids
}

/** The manifest's distinct leaves that are not all zeros: what an exchange would have to bring. */
function dataLeaves (image: ImageInfo, cids: CID[]): CID[] {
  const lastLength = image.size - (cids.length - 1) * image.chunkSize
  const zeros = new Set([image.chunkSize, lastLength].map((length) => zeroLeafCidOf(length, image.profile).toString()))
  const seen = new Set<string>()
  return cids.filter((cid) => {
    const key = cid.toString()
    if (zeros.has(key) || seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** Adopts at `to` the leaves of `image` that `to` lacks, read from `from`, in batches; returns what pinLeaves said. */
async function adoptMissing (from: ImageStore, to: ImageStore, adoption: string, image: ImageInfo, batch = 37): Promise<{ absent: number, pinned: number }> {
  const leaves = dataLeaves(image, await manifestOf(from, image.id))
  const states = await to.pinLeaves(adoption, leaves)
  const absent = leaves.filter((_, i) => states[i] === 'absent')
  for (let i = 0; i < absent.length; i += batch) {
    await to.adoptLeaves(adoption, absent.slice(i, i + batch).map((cid) => ({ cid, block: from.readBlock(cid) })))
  }
  return { absent: absent.length, pinned: states.filter((s) => s === 'pinned').length }
}

async function registerFrom (from: ImageStore, to: ImageStore, adoption: string, image: ImageInfo, name = image.name): Promise<ImageInfo> {
  return await to.registerAdopted(adoption, { rootCid: image.rootCid, chunks: await manifestOf(from, image.id), size: image.size, layer: image.layer, name, profile: image.profile })
}

for (const [profile, chunk, chunks] of [['hgmig', 64 * KiB, 400], ['ipfs', 256 * KiB, 180], ['hgmig', 64 * KiB, 1]] as Array<[DagProfile, number, number]>) {
  test(`${profile} profile, ${chunks} chunk(s): adopted leaves register as the image add gives (root CID, show, stats, verify, export byte-identical)`, async () => {
    const dir = tempDir(profile)
    const file = join(dir, 'image.img')
    const data = writeImageFile(file, chunks, chunk, 1000)
    const source = await openStore(join(dir, 'source'))
    const reference = await openStore(join(dir, 'reference'))
    const target = await openStore(join(dir, 'target'))
    try {
      const original = await source.add(file, { layer: 'os', name: 'img', profile })
      // What `add` gives in a fresh store, to compare the adopting store with.
      await reference.add(file, { layer: 'os', name: 'img', profile })
      const adopted = await adoptMissing(source, target, 'transfer-1', original)
      assert.equal(adopted.pinned, 0, 'nothing was here before')
      assert.deepEqual(await target.list(), [], 'adopted leaves are no image yet')
      const image = await registerFrom(source, target, 'transfer-1', original)
      assert.equal(image.rootCid, original.rootCid, 'the same root CID')
      const strip = ({ id: _id, created: _created, ...rest }: Record<string, unknown>): Record<string, unknown> => rest
      assert.deepEqual(strip(await target.show(image.id) as unknown as Record<string, unknown>), strip(await reference.show('img') as unknown as Record<string, unknown>), 'show is the same as after add')
      assert.deepEqual(await target.stats(), await reference.stats(), 'the same chunks, zero chunks and stored bytes as after add')
      assert.deepEqual(await manifestOf(target, image.id), await manifestOf(source, original.id), 'the same chunk list')
      const report = await target.verify(image.id)
      assert.deepEqual([report.corrupt, report.corruptNodes], [[], []], 'verify passes')
      assert.equal(report.innerNodesChecked, (await reference.verify('img')).innerNodesChecked, 'the same inner nodes')
      const out = join(dir, 'out.img')
      await target.export(image.id, out)
      assert.ok(readFileSync(out).equals(data), 'export is byte-identical')
      assert.deepEqual(await target.adoptions(), [], 'the registration released the adoption')
      // Full leaves were copied into aligned memory and written with O_DIRECT (where the file system allows it: not tmpfs).
      if (chunks > 1 && target.packBytesWritten.direct === 0) assert.equal(reference.packBytesWritten.direct, 0, 'O_DIRECT refused here for add too')
      // The registered image's chunks are held by its refcounts: gc deletes nothing.
      assert.equal((await target.gc()).orphansDeleted, 0)
    } finally {
      await Promise.all([source.close(), reference.close(), target.close()])
    }
  })
}

test('leaves already here are pinned, not adopted again; pinned leaves survive another image\'s removal and gc; a released adoption leaves nothing behind', async () => {
  const dir = tempDir('pins')
  const chunk = 64 * KiB
  const shared = randomBytes(40 * chunk)
  const baseFile = join(dir, 'base.img')
  writeFileSync(baseFile, Buffer.concat([shared, randomBytes(10 * chunk)]))
  const imageFile = join(dir, 'image.img')
  writeFileSync(imageFile, Buffer.concat([shared, randomBytes(60 * chunk)]))
  const source = await openStore(join(dir, 'source'))
  const target = await openStore(join(dir, 'target'))
  try {
    const original = await source.add(imageFile, { layer: 'os', name: 'img' })
    const base = await target.add(baseFile, { layer: 'os', name: 'base' })
    const before = await target.stats()
    const leaves = dataLeaves(original, await manifestOf(source, original.id))
    const states = await target.pinLeaves('transfer-2', leaves)
    assert.equal(states.filter((s) => s === 'pinned').length, 40, 'the shared leaves are here: pinned')
    assert.equal(states.filter((s) => s === 'absent').length, 60)
    // Half of the missing leaves come in, then the process "stops".
    const absent = leaves.filter((_, i) => states[i] === 'absent')
    await target.adoptLeaves('transfer-2', absent.slice(0, 30).map((cid) => ({ cid, block: source.readBlock(cid) })))
    // A second adoption of the same block stores nothing more.
    const stored = (await target.stats()).storedBytes
    await target.adoptLeaves('transfer-2', absent.slice(0, 1).map((cid) => ({ cid, block: source.readBlock(cid) })))
    assert.equal((await target.stats()).storedBytes, stored)
    const again = await target.pinLeaves('transfer-2', leaves)
    assert.equal(again.filter((s) => s === 'adopted').length, 70, 'a resumed transfer finds what it adopted or pinned before')

    // The base goes; its shared chunks stay (pinned), its own ten go. gc keeps the adopted leaves too.
    const removed = await target.remove(base.id)
    assert.equal(removed.freedChunks, 10 + 1, 'the base\'s own leaves and its root; not the pinned shared leaves')
    await target.gc()
    for (const cid of [...leaves.slice(0, 40), ...absent.slice(0, 30)]) assert.ok(target.blockstore().has(cid), `${cid.toString()} kept`)
    assert.deepEqual(await target.adoptions(), ['transfer-2'])

    // Registering before every leaf is in: refused, nothing registered, the pins stay.
    await assert.rejects(registerFrom(source, target, 'transfer-2', original), (err: unknown) => err instanceof MissingChunksError && err.positions.length === 30)
    // A manifest of another root: refused.
    await target.adoptLeaves('transfer-2', absent.slice(30).map((cid) => ({ cid, block: source.readBlock(cid) })))
    const wrongRoot = await target.add(join(dir, 'base.img'), { layer: 'os', name: 'other' })
    await assert.rejects(target.registerAdopted('transfer-2', { rootCid: wrongRoot.rootCid, chunks: await manifestOf(source, original.id), size: original.size, layer: 'os', name: 'img' }), RootMismatchError)
    await target.remove(wrongRoot.id)
    assert.equal((await target.list()).length, 0)

    // Cancelled for good: the adoption is released and its leaves are deleted; gc gives the space back.
    const released = await target.releaseAdoption('transfer-2')
    assert.equal(released.freedChunks, 100, 'every leaf it kept')
    await target.gc()
    const after = await target.stats()
    assert.deepEqual([after.chunks, after.storedBytes, after.images], [0, 0, 0], 'nothing leaked')
    assert.ok(before.chunks > 0)
    assert.deepEqual(await target.adoptions(), [])
  } finally {
    await Promise.all([source.close(), target.close()])
  }
})
