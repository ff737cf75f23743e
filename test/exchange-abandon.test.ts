/**
 * Ending transfers for good, at the exchange: the transfer list's figures come from the persisted
 * state; `cancel(root, { forget: true })` frees exactly the leaves only that transfer kept; a crash
 * between forgetting the state and releasing the pins leaves nothing after a restart, a crash
 * before it leaves the whole transfer; a transfer whose image was registered before a crash is done.
 * Real image store, real SQLite, a real swarm node on loopback (the exchange serves on it).
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { createBlockExchange, type BlockExchange } from '../p2p/exchange/index.js'
import { adoptionKey } from '../p2p/exchange/transfer.js'
import { TransferState, type TransferRecord } from '../p2p/exchange/transfer-state.js'
import { createImageStore, type ImageStore } from '../p2p/store/index.js'
import { createSwarmKey, createSwarmNode, type SwarmNode } from '../p2p/swarm/index.js'

const CHUNK = 64 * 1024
const SOURCE = '12D3KooWPRLVyn1fNQeqNhDqKUQZjEzVf8PYuT2jgUYG3TCAW6m5'
const dirs: string[] = []
after(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }) })

interface Site { dir: string, store: ImageStore, node: SwarmNode, exchange: BlockExchange }

async function openSite (dir: string, node?: SwarmNode): Promise<Site> {
  const store = createImageStore({ directory: join(dir, 'store'), chunkSize: CHUNK, hashInWorker: false })
  await store.open()
  node ??= await createSwarmNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey: createSwarmKey(), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const exchange = createBlockExchange({ node, store, swarmId: 'abandon-test', directory: join(dir, 'exchange'), policy: { isMember: () => true, mayServe: () => true } })
  await exchange.start()
  return { dir, store, node, exchange }
}

async function closeSite (site: Site, options: { keepNode?: boolean } = {}): Promise<void> {
  await site.exchange.stop()
  await site.store.close()
  if (options.keepNode !== true) await site.node.stop()
}

async function rawLeaf (block: Uint8Array): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(block))
}

/**
 * What a transfer leaves behind when its process dies: its state (chunks, `delivered` of them
 * done from SOURCE), and those leaves adopted in the store. `shared` leaves come from a local image.
 */
async function interruptedTransfer (site: Site, chunks: number, delivered: number, shared: Uint8Array[] = []): Promise<{ rootCid: string, record: TransferRecord }> {
  const blocks = [...shared, ...Array.from({ length: chunks - shared.length }, () => randomBytes(CHUNK))]
  const cids = await Promise.all(blocks.map(rawLeaf))
  const rootCid = (await rawLeaf(randomBytes(32))).toString()
  const record: TransferRecord = { id: rootCid, name: `image-${rootCid.slice(-6)}`, layer: 'os', base: null, private: false, size: chunks * CHUNK, chunkSize: CHUNK, purpose: 'replication', migration: null, partialPath: '', created: Date.now() }
  const state = new TransferState(join(site.dir, 'exchange', 'transfers.sqlite'))
  try {
    state.create(record, cids.map((c) => c.bytes))
    await site.store.pinLeaves(adoptionKey(rootCid), cids.slice(0, shared.length))
    await site.store.adoptLeaves(adoptionKey(rootCid), blocks.slice(shared.length, shared.length + delivered).map((block, i) => ({ cid: cids[shared.length + i]!, block })))
    state.markDone(rootCid, [
      { positions: Array.from({ length: shared.length }, (_, i) => i), source: null },
      { positions: Array.from({ length: delivered }, (_, i) => shared.length + i), source: SOURCE }
    ])
    state.noteOutcome(rootCid, 'failed', 'no source can send them')
  } finally {
    state.close()
  }
  return { rootCid, record }
}

test('an interrupted transfer is listed from its persisted state; forgetting it frees only the leaves it alone kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-abandon-'))
  dirs.push(dir)
  let site = await openSite(dir)
  try {
    // A local image whose first 4 chunks the transfer also has: they must stay.
    const shared = Array.from({ length: 4 }, () => randomBytes(CHUNK))
    const localFile = join(dir, 'local.img')
    writeFileSync(localFile, Buffer.concat([...shared, randomBytes(CHUNK)]))
    await site.store.add(localFile, { layer: 'os', name: 'local' })
    const before = await site.store.stats()
    const { rootCid, record } = await interruptedTransfer(site, 20, 6, shared)
    // The exchange reads what the state says (it was started before these rows existed: restart it).
    await closeSite(site, { keepNode: true })
    site = await openSite(dir, site.node)
    assert.deepEqual(site.exchange.transfers()[0]?.sources, [], 'per-source figures only when asked for')
    const [listed] = site.exchange.transfers({ sources: true })
    assert.ok(listed !== undefined)
    assert.equal(listed.rootCid, rootCid)
    assert.equal(listed.name, record.name)
    assert.equal(listed.state, 'failed')
    assert.equal(listed.lastError, 'no source can send them')
    assert.equal(listed.chunksDone, 10)
    assert.equal(listed.chunksTotal, 20)
    assert.equal(listed.bytesDone, 10 * CHUNK)
    assert.equal(listed.bytesTotal, 20 * CHUNK)
    assert.deepEqual(listed.sources, [{ peer: SOURCE, chunks: 6, bytes: 6 * CHUNK }, { peer: null, chunks: 4, bytes: 4 * CHUNK }])
    assert.equal(listed.running, false)

    const cancelled = await site.exchange.cancel(rootCid, { forget: true })
    assert.deepEqual(cancelled, { rootCid, known: true, wasRunning: false, chunksDone: 10, chunksTotal: 20, freedChunks: 6, freedBytes: 6 * CHUNK })
    assert.deepEqual(site.exchange.transfers(), [])
    assert.deepEqual(await site.store.adoptions(), [])
    const after = await site.store.stats()
    assert.equal(after.storedBytes, before.storedBytes, 'the transfer\'s own leaves are gone, the shared ones stay')
    assert.equal(after.deadBytes - before.deadBytes, 6 * CHUNK)
    assert.equal((await site.store.verify('local')).corrupt.length, 0)
    // Nothing known: nothing done, and said so.
    assert.deepEqual(await site.exchange.cancel(rootCid, { forget: true }), { rootCid, known: false, wasRunning: false, chunksDone: 0, chunksTotal: 0, freedChunks: 0, freedBytes: 0 })
  } finally {
    await closeSite(site)
  }
})

test('a crash in the middle of forgetting leaves the whole transfer or, after the restart, nothing of it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-abandon-crash-'))
  dirs.push(dir)
  let site = await openSite(dir)
  try {
    const before = await site.store.stats()
    const kept = await interruptedTransfer(site, 12, 5)
    const forgotten = await interruptedTransfer(site, 12, 7)
    const node = site.node
    await closeSite(site, { keepNode: true })
    // The crash came after the first step of forgetting `forgotten` (its state rows went, in one
    // transaction) and before the second (the store's release of its pins).
    const state = new TransferState(join(dir, 'exchange', 'transfers.sqlite'))
    state.delete(forgotten.rootCid)
    state.close()
    site = await openSite(dir, node)
    assert.deepEqual(site.exchange.transfers().map((t) => [t.rootCid, t.chunksDone]), [[kept.rootCid, 5]], 'the transfer not being forgotten is whole')
    assert.deepEqual(await site.store.adoptions(), [adoptionKey(kept.rootCid)], 'the forgotten one\'s pins were released at start')
    const afterRestart = await site.store.stats()
    assert.equal(afterRestart.storedBytes - before.storedBytes, 5 * CHUNK, 'only the kept transfer\'s leaves stay')
    assert.equal(afterRestart.deadBytes - before.deadBytes, 7 * CHUNK)
  } finally {
    await closeSite(site)
  }
})

test('a transfer whose image was registered before a crash ended its state is listed as done at the next start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-abandon-done-'))
  dirs.push(dir)
  let site = await openSite(dir)
  try {
    const file = join(dir, 'image.img')
    writeFileSync(file, randomBytes(3 * CHUNK))
    const image = await site.store.add(file, { layer: 'os', name: 'registered' })
    const state = new TransferState(join(dir, 'exchange', 'transfers.sqlite'))
    const record: TransferRecord = { id: image.rootCid, name: 'registered', layer: 'os', base: null, private: false, size: 3 * CHUNK, chunkSize: CHUNK, purpose: 'migration', migration: null, partialPath: '', created: Date.now() - 1000 }
    const leaves: Uint8Array[] = []
    for await (const cid of site.store.manifest(image.rootCid)) leaves.push(cid.bytes)
    state.create(record, leaves)
    state.markDone(image.rootCid, [{ positions: [0, 1, 2], source: SOURCE }])
    state.close()
    await closeSite(site, { keepNode: true })
    site = await openSite(dir, site.node)
    assert.deepEqual(site.exchange.transfers(), [])
    const [done] = site.exchange.finished()
    assert.equal(done?.rootCid, image.rootCid)
    assert.equal(done?.outcome, 'done')
    assert.deepEqual(done?.sources, [{ peer: SOURCE, chunks: 3, bytes: 3 * CHUNK }])
    assert.equal(done?.error, null)
  } finally {
    await closeSite(site)
  }
})
