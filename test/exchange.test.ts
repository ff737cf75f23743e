/**
 * The block exchange between sites in separate OS processes on loopback (real libp2p with the
 * swarm's protector, real image stores and SQLite transfer state): multi-source fetch, a source
 * killed half-way, a lying source, the fetcher killed and restarted (then resumed, or cancelled for
 * good), and the serving policy.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eventually } from './support/peer-process.js'
import { missingBytes, plan, sha256File, Site, writeImage, writeSwarmFile, type ChunkPlan, type SiteOptions } from './support/exchange-sites.js'

interface Fixture {
  dir: string
  swarm: string
  image: string
  imagePlan: ChunkPlan
  sites: Site[]
}

/** A swarm of `sites` key pairs and one image file (the fetched one), in a fresh directory. */
async function fixture (chunks: number, sites = 4): Promise<Fixture & { contents: Map<number, Buffer> }> {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-exchange-'))
  const swarm = await writeSwarmFile(dir, sites)
  const imagePlan = plan(chunks, 1000)
  const contents = new Map<number, Buffer>()
  const image = join(dir, 'image.img')
  writeImage(image, imagePlan, contents)
  return { dir, swarm, image, imagePlan, sites: [], contents }
}

async function cleanup (f: Fixture): Promise<void> {
  await Promise.all(f.sites.map(async (s) => { await s.stop() }))
  rmSync(f.dir, { recursive: true, force: true })
}

async function startSite (f: Fixture, index: number, options: SiteOptions = {}, name = `site${index}`): Promise<Site> {
  const site = await Site.start(f.swarm, index, join(f.dir, name), options)
  f.sites.push(site)
  return site
}

/** Stored blocks logged by a site (across restarts): CID and the peer that sent it. */
function receivedLog (site: Site): Array<{ cid: string, peer: string }> {
  let text: string
  try { text = readFileSync(join(site.dataDir, 'received.log'), 'utf8') } catch { return [] }
  return text.split('\n').filter((l) => l !== '').map((l) => { const [cid, peer] = l.split(' '); return { cid: cid!, peer: peer! } })
}

/** Sites A (0), B (1) and C (2); A and C hold the image as "img"; B starts fetching it from both. */
async function fetchFromAandC (f: Fixture, optionsA: SiteOptions = {}, optionsC: SiteOptions = {}): Promise<{ a: Site, b: Site, c: Site }> {
  const a = await startSite(f, 0, optionsA)
  const b = await startSite(f, 1)
  const c = await startSite(f, 2, optionsC)
  await a.call({ cmd: 'addImage', path: f.image, layer: 'os', name: 'img' })
  await c.call({ cmd: 'addImage', path: f.image, layer: 'os', name: 'img' })
  await b.fetchStart(await a.requestFor('img', [a, c]))
  return { a, b, c }
}

async function assertSameBytes (f: Fixture, site: Site, image: string): Promise<void> {
  const out = join(f.dir, `export-${site.index}.img`)
  await site.call({ cmd: 'export', image, path: out })
  assert.equal(await sha256File(out), await sha256File(f.image), 'the fetched image is byte-identical to the original')
}

/** The image at `fetcher` is the one `add` gave at `holder`: the same root CID, chunk counts and sizes; verify finds nothing wrong. */
async function assertSameImage (holder: Site, fetcher: Site, image: string): Promise<void> {
  type Shown = { show: Record<string, unknown>, verify: { corrupt: unknown[], corruptNodes: unknown[], innerNodesChecked: number } }
  const [there, here] = [await holder.call<Shown>({ cmd: 'show', image }), await fetcher.call<Shown>({ cmd: 'show', image })]
  for (const field of ['rootCid', 'layer', 'size', 'chunkSize', 'profile', 'chunkCount', 'zeroBytes', 'distinctChunks']) {
    assert.deepEqual(here.show[field], there.show[field], `${field} as at the holder`)
  }
  assert.deepEqual([here.verify.corrupt, here.verify.corruptNodes], [[], []], 'verify passes')
  assert.equal(here.verify.innerNodesChecked, there.verify.innerNodesChecked, 'the same inner nodes')
}

test('an image held at A and C is fetched at B from both, byte-identical, with at most 2 % more bytes than the missing chunks', async () => {
  const f = await fixture(600)
  try {
    // B already holds an image sharing the first 150 chunks' contents: those are copied locally, never fetched.
    const basePlan: ChunkPlan = { keys: f.imagePlan.keys.slice(0, 150), lastLength: 64 * 1024 }
    const baseFile = join(f.dir, 'base.img')
    writeImage(baseFile, basePlan, f.contents)
    const [a, b, c] = [await startSite(f, 0), await startSite(f, 1), await startSite(f, 2)]
    await a.call({ cmd: 'addImage', path: f.image, layer: 'os', name: 'img' })
    await c.call({ cmd: 'addImage', path: f.image, layer: 'os', name: 'img' })
    await b.call({ cmd: 'addImage', path: baseFile, layer: 'os', name: 'base' })
    await b.fetchStart(await a.requestFor('img', [a, c]))
    const status = await b.fetchEnd()
    assert.equal(status.failure, undefined, `fetch failed: ${status.failure ?? ''}`)
    const result = status.result!
    const missing = missingBytes(f.imagePlan, basePlan)
    assert.equal(result.chunksFetched, missing.chunks, 'exactly the missing distinct non-zero chunks were fetched')
    assert.ok(result.chunksLocal > 0, 'chunks already here were taken from the local store')
    assert.ok(result.bytesReceived <= 1.02 * missing.bytes, `received ${result.bytesReceived} bytes for ${missing.bytes} missing`)
    const [fromA, fromC] = [a.peerId, c.peerId].map((peer) => result.sources.find((s) => s.peer === peer)!)
    assert.ok(fromA!.chunks > 0 && fromC!.chunks > 0, `both sources contribute (A ${fromA!.chunks}, C ${fromC!.chunks})`)
    assert.equal(fromA!.chunks + fromC!.chunks, missing.chunks)
    await assertSameBytes(f, b, 'img')
    const log = receivedLog(b)
    assert.equal(new Set(log.map((e) => e.cid)).size, log.length, 'no chunk stored twice')
    // Registered from the adopted leaves and the manifest: the image `add` gave at A, checked whole.
    await assertSameImage(a, b, 'img')
  } finally {
    await cleanup(f)
  }
})

test('kill -9 of source A half-way: the transfer completes from C', async () => {
  const f = await fixture(400)
  try {
    // Rate-limited sources make "half-way" a moment the test can catch on a loaded machine.
    const { a, b, c } = await fetchFromAandC(f, { egressBytesPerSecond: 4 << 20 }, { egressBytesPerSecond: 4 << 20 })
    const total = missingBytes(f.imagePlan, undefined).chunks
    await eventually('the fetch to pass 40 %', async () => {
      const { progress } = await b.status()
      return progress !== undefined && progress.fetchChunksDone >= 0.4 * total ? true : undefined
    })
    await a.kill()
    const status = await b.fetchEnd()
    assert.equal(status.failure, undefined, `fetch failed: ${status.failure ?? ''}`)
    const sources = status.result!.sources
    const fromA = sources.find((s) => s.peer === a.peerId)!
    const fromC = sources.find((s) => s.peer === c.peerId)!
    assert.equal(fromA.state, 'dropped', 'the killed source was dropped')
    assert.doesNotMatch(fromA.dropReason ?? '', /stalled/, 'its death was noticed from the connection, not by waiting for a stall')
    assert.ok(fromA.chunks > 0, 'A contributed before it died')
    assert.equal(fromA.chunks + fromC.chunks, total)
    await assertSameBytes(f, b, 'img')
  } finally {
    await cleanup(f)
  }
})

test('a source serving wrong bytes is detected, the chunks are fetched from the other source, and the liar is penalised', async () => {
  const f = await fixture(200)
  try {
    const { a, b, c } = await fetchFromAandC(f, { corrupt: true })
    const status = await b.fetchEnd()
    assert.equal(status.failure, undefined, `fetch failed: ${status.failure ?? ''}`)
    const result = status.result!
    const fromA = result.sources.find((s) => s.peer === a.peerId)!
    assert.ok(result.invalidBlocks >= 1, 'invalid blocks were detected')
    assert.equal(fromA.chunks, 0, 'nothing from the liar was accepted')
    assert.equal(fromA.state, 'dropped')
    assert.match(fromA.dropReason ?? '', /do not match their CIDs/)
    const { penalties, penalised } = await b.call<{ penalties: Array<{ peer: string, reason: string }>, penalised: Record<string, number> }>({ cmd: 'penalties' })
    assert.ok(penalties.length >= 1 && penalties.every((p) => p.peer === a.peerId), 'the penalty names the liar')
    assert.ok((penalised[a.peerId] ?? 0) >= 1)
    assert.ok(receivedLog(b).every((e) => e.peer === c.peerId), 'every stored block came from the honest source')
    assert.equal(receivedLog(b).length, missingBytes(f.imagePlan, undefined).chunks)
    await assertSameBytes(f, b, 'img')
  } finally {
    await cleanup(f)
  }
})

/**
 * A (rate-limited, so that "half-way" is a moment the test can catch) holds the image; B starts
 * fetching it and is kill -9'd past 40 %, then restarted on the same data directory.
 */
async function fetchKilledHalfway (f: Fixture, beforeFetch: (b: Site) => Promise<void> = async () => {}): Promise<{ a: Site, b: Site, request: Record<string, unknown>, missing: { chunks: number, bytes: number } }> {
  const a = await startSite(f, 0, { egressBytesPerSecond: 4 << 20 })
  await a.call({ cmd: 'addImage', path: f.image, layer: 'os', name: 'img' })
  const request = await a.requestFor('img', [a])
  const killed = await startSite(f, 1)
  await beforeFetch(killed)
  await killed.fetchStart(request)
  const missing = missingBytes(f.imagePlan, undefined)
  await eventually('the fetch to pass 40 %', async () => {
    const { progress } = await killed.status()
    return progress !== undefined && progress.fetchChunksDone >= 0.4 * missing.chunks ? true : undefined
  })
  await killed.kill()
  f.sites.splice(f.sites.indexOf(killed), 1)
  const beforeRestart = receivedLog(killed).length
  assert.ok(beforeRestart > 0 && beforeRestart < missing.chunks, 'killed half-way')
  return { a, b: await startSite(f, 1, {}, 'site1'), request, missing }
}

test('kill -9 of the fetcher half-way: after a restart the transfer resumes and no chunk is received twice', async () => {
  const f = await fixture(400)
  try {
    const window = 2 * 2 * 1024 * 1024
    const { a, b, request, missing } = await fetchKilledHalfway(f)
    const { transfers } = await b.status()
    assert.equal(transfers.length, 1, 'the interrupted transfer is known after the restart')
    assert.equal(transfers[0]!.running, false)
    await b.fetchStart(request)
    const status = await b.fetchEnd()
    assert.equal(status.failure, undefined, `fetch failed: ${status.failure ?? ''}`)
    assert.ok(status.result!.chunksResumed > 0, 'the second run resumed')
    const log = receivedLog(b)
    const cids = log.map((e) => e.cid)
    assert.equal(new Set(cids).size, cids.length, 'no chunk was stored twice')
    // A block the store took in just before the kill, but not yet marked done here, is found in the store on resume (recovered), not fetched again.
    assert.equal(cids.length + status.result!.chunksRecovered, missing.chunks, 'every missing chunk was stored once')
    const served = await a.call<{ bytes: number }>({ cmd: 'served' })
    // Blocks in flight at the kill (at most the window) and verified blocks not yet durable in the
    // store (one batch) are the only ones that can cross twice.
    assert.ok(served.bytes <= missing.bytes + window, `A served ${served.bytes} bytes for ${missing.bytes} missing`)
    await assertSameBytes(f, b, 'img')
    await assertSameImage(a, b, 'img')
    const { stats, adoptions } = await b.call<{ stats: { chunks: number }, adoptions: string[] }>({ cmd: 'storeStats', gc: true })
    assert.deepEqual(adoptions, [], 'the registration released the transfer\'s pins')
    assert.equal(stats.chunks, (await a.call<{ stats: { chunks: number } }>({ cmd: 'storeStats' })).stats.chunks, 'no chunk more than the holder\'s store')
  } finally {
    await cleanup(f)
  }
})

test('kill -9 of the fetcher half-way, then the transfer is cancelled for good: none of its chunks stays in the store', async () => {
  const f = await fixture(300)
  try {
    type Stats = { stats: { chunks: number, storedBytes: number }, adoptions: string[], transfers: unknown[] }
    let before: Stats | undefined
    const { b, request } = await fetchKilledHalfway(f, async (b) => {
      // B holds an unrelated image: its chunks must stay.
      const other = join(f.dir, 'other.img')
      writeImage(other, plan(20, 9000), new Map())
      await b.call({ cmd: 'addImage', path: other, layer: 'os', name: 'other' })
      before = await b.call<Stats>({ cmd: 'storeStats' })
    })
    if (before === undefined) throw new Error('no figures before the fetch')
    const interrupted = await b.call<Stats>({ cmd: 'storeStats', gc: true })
    assert.equal(interrupted.transfers.length, 1)
    assert.ok(interrupted.stats.chunks > before.stats.chunks, 'the leaves stored before the kill are kept for a resume, gc or not')
    assert.equal(interrupted.adoptions.length, 1)
    await b.call({ cmd: 'cancel', rootCid: request.rootCid, forget: true })
    const after = await b.call<Stats>({ cmd: 'storeStats', gc: true })
    assert.deepEqual(after.transfers, [], 'the transfer is forgotten')
    assert.deepEqual(after.adoptions, [], 'its pins are gone')
    assert.equal(after.stats.chunks, before.stats.chunks, 'its chunks are deleted')
    assert.equal(after.stats.storedBytes, before.stats.storedBytes, 'and their bytes reclaimed')
  } finally {
    await cleanup(f)
  }
})

test('a non-member is refused; a private image goes only to the target of its migration', async () => {
  const f = await fixture(60)
  try {
    // A serves members 0-2 only; site 3 holds the swarm key but is not a member.
    const a = await startSite(f, 0, { members: [0, 1, 2] })
    const b = await startSite(f, 1)
    const outsider = await startSite(f, 3)
    await a.call({ cmd: 'addImage', path: f.image, layer: 'os', name: 'public' })
    const secretPlan = plan(40, 5000)
    const secret = join(f.dir, 'secret.img')
    writeImage(secret, secretPlan, new Map())
    await a.call({ cmd: 'addImage', path: secret, layer: 'os', name: 'secret', private: true })

    await outsider.fetchStart(await a.requestFor('public', [a]))
    const refused = await outsider.fetchEnd()
    assert.equal(refused.failureName, 'NoSourcesLeftError')
    assert.match(refused.failure ?? '', /not a member/)
    const served = await a.call<{ rejectedStreams: number, peers: Record<string, { bytes: number }> }>({ cmd: 'served' })
    assert.ok(served.rejectedStreams >= 1)
    assert.equal(served.peers[outsider.peerId]?.bytes ?? 0, 0, 'the non-member received nothing')

    const secretRequest = await a.requestFor('secret', [a])
    await b.fetchStart(secretRequest)
    const notTarget = await b.fetchEnd()
    assert.equal(notTarget.failureName, 'NoSourcesLeftError', 'a member that is not the migration target is refused')
    assert.match(notTarget.failure ?? '', /refused/)
    assert.equal((await a.call<{ peers: Record<string, { bytes: number }> }>({ cmd: 'served' })).peers[b.peerId]?.bytes ?? 0, 0)

    await a.call({ cmd: 'allowMigration', peer: b.peerId, image: secretRequest.rootCid, migration: 'm-1' })
    await b.fetchStart({ ...secretRequest, purpose: 'migration', migration: 'm-1' })
    const target = await b.fetchEnd()
    assert.equal(target.failure, undefined, `the migration target's fetch failed: ${target.failure ?? ''}`)
    const out = join(f.dir, 'secret-out.img')
    await b.call({ cmd: 'export', image: 'secret', path: out })
    assert.equal(await sha256File(out), await sha256File(secret))
  } finally {
    await cleanup(f)
  }
})
