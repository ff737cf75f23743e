/**
 * The migration plan as a pure function, against the image generator's ground truth, and the
 * fair link shaper. In-process: both are plain computations.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import {
  FairShaper, InvalidMigrationInputError, baseShares, computePlan, planDifferences, summarizePlan, type ImageManifestData, type PlanInput, type ReplicaView
} from '../p2p/migration/index.js'
import { generateSitePair, planContent, type ImagePlan } from './support/image-generator.js'

const UNIT = 64 * 1024

/** The manifest the store would record for a generated image (hgmig profile: raw leaves). */
function manifestOf (plan: ImagePlan, layer: 'os' | 'we'): ImageManifestData {
  const chunks = [...planContent(plan)].map((bytes) => CID.create(1, raw.code, createDigest(sha256.code, createHash('sha256').update(bytes).digest())).toString())
  return { rootCid: `root-${plan.name}`, layer, size: plan.size, chunkSize: UNIT, chunks }
}

const pair = generateSitePair({ seed: 3, osUnits: 60, weUnits: 40, udUnits: 1, zeroShare: 0.2, similarity: { os: 0.2, we: 0.6 } })
const images = {
  aOs: manifestOf(pair.a.os, 'os'),
  aWe: manifestOf(pair.a.we, 'we'),
  bOs: manifestOf(pair.b.os, 'os'),
  bWe: manifestOf(pair.b.we, 'we')
}
const replica: ReplicaView = {
  holdings: [
    { site: 'a', rootCid: images.aOs.rootCid }, { site: 'a', rootCid: images.aWe.rootCid },
    { site: 'b', rootCid: images.bOs.rootCid }, { site: 'b', rootCid: images.bWe.rootCid },
    { site: 'c', rootCid: images.aOs.rootCid }
  ],
  manifests: Object.values(images)
}
const input: PlanInput = {
  strategy: 'h-gmig',
  vm: { id: 'vm1', name: 'vm1', memoryBytes: 1 << 30, udBytes: 8 << 20, os: images.aOs.rootCid, we: images.aWe.rootCid },
  source: 'a',
  target: 'b',
  bandwidth: 125_000_000,
  replica
}

test('the plan marks exactly the non-zero chunks the target holds, per layer, and sends each missing chunk once', () => {
  const plan = computePlan(input)
  const targetKeys = new Set([...pair.b.os.units, ...pair.b.we.units])
  for (const [layer, image] of [['os', pair.a.os], ['we', pair.a.we]] as const) {
    const lp = plan.layers.find((l) => l.layer === layer)
    assert.ok(lp !== undefined)
    const nonZero = [...image.units].filter((k) => k !== 0)
    const expectedBits = nonZero.map((k) => targetKeys.has(k) ? 1 : 0)
    const bitmap = Buffer.from(lp.bitmap, 'base64')
    const bits = expectedBits.map((_, i) => ((bitmap[i >> 3] as number) >> (7 - (i & 7))) & 1)
    assert.deepEqual(bits, expectedBits, `${layer} bitmap`)
    assert.equal(lp.zeroChunks, image.units.length - nonZero.length)
    assert.equal(lp.presentBytes, expectedBits.filter((b) => b === 1).length * UNIT)
    assert.equal(lp.similarity, lp.presentBytes / (nonZero.length * UNIT))
  }
  // Distinct non-zero keys of a's OS and WE that b lacks: what crosses the network, once each.
  const missingKeys = new Set([...pair.a.os.units, ...pair.a.we.units].filter((k) => k !== 0 && !targetKeys.has(k)))
  assert.equal(plan.missing.length, missingKeys.size)
  assert.equal(plan.bytesToSend.base, missingKeys.size * UNIT)
  assert.equal(plan.bytesToSend.total, plan.bytesToSend.base + (8 << 20) + (1 << 30))
  // c holds a's OS image: chunks of it have two sources, the WE-only ones just the source.
  const osKeys = new Set(pair.a.os.units)
  const osChunks = new Set(images.aOs.chunks)
  for (const chunk of plan.missing) assert.deepEqual(chunk.sources, osChunks.has(chunk.cid) ? ['a', 'c'] : ['a'])
  assert.ok(osKeys.size > 0 && plan.missing.some((m) => m.sources.length === 2))
})

test('the plan is deterministic: holdings in any order give the same hash; any change in the inputs changes it', () => {
  const plan = computePlan(input)
  const shuffled = computePlan({ ...input, replica: { holdings: [...replica.holdings].reverse(), manifests: [...replica.manifests].reverse() } })
  assert.equal(shuffled.hash, plan.hash)
  assert.match(plan.hash, /^[0-9a-f]{64}$/)
  const stale = computePlan({ ...input, replica: { ...replica, holdings: replica.holdings.filter((h) => h.site !== 'c') } })
  assert.notEqual(stale.hash, plan.hash)
  assert.notEqual(computePlan({ ...input, target: 'c' }).hash, plan.hash)
  const differences = planDifferences(summarizePlan(plan, replica), summarizePlan(stale, { ...replica, holdings: replica.holdings.filter((h) => h.site !== 'c') }))
  assert.ok(differences.some((d) => /holdings differ/.test(d)), differences.join('; '))
})

test('the baselines: NSS sends from the source alone, SS from the repository alone; H-GMIG estimates less time when chunks have more sources', () => {
  const nss = computePlan({ ...input, strategy: 'nss' })
  const ss = computePlan({ ...input, strategy: 'ss', repository: 'c' })
  const hgmig = computePlan(input)
  assert.ok(nss.missing.every((c) => c.sources.length === 1 && c.sources[0] === 'a'))
  assert.ok(ss.missing.every((c) => c.sources.length === 1 && c.sources[0] === 'c'))
  assert.equal(nss.bytesToSend.base, hgmig.bytesToSend.base)
  assert.ok(hgmig.estimatedSeconds < nss.estimatedSeconds, `${hgmig.estimatedSeconds} vs ${nss.estimatedSeconds}`)
})

test('bad plan inputs are refused with a message naming what is wrong', () => {
  assert.throws(() => computePlan({ ...input, target: 'a' }), (err: Error) => err instanceof InvalidMigrationInputError && /same site/.test(err.message))
  assert.throws(() => computePlan({ ...input, strategy: 'ss' }), /repository/)
  assert.throws(() => computePlan({ ...input, strategy: 'fast' as 'nss' }), /unknown strategy "fast"/)
  assert.throws(() => computePlan({ ...input, replica: { ...replica, manifests: [images.aWe] } }), /no manifest of the VM's OS image/)
  assert.throws(() => computePlan({ ...input, vm: { ...input.vm, os: images.aWe.rootCid } }), /is a WE image, not OS/)
  assert.throws(() => computePlan({ ...input, bandwidth: 0 }), /bandwidth must be > 0/)
})

test('the fair shaper gives two busy flows equal shares whatever their write sizes', async () => {
  const shaper = new FairShaper(8 * 1024 * 1024)
  // Flow x writes 1 MiB at once, flow y the same in 16 KiB pieces; both always have bytes waiting.
  let yDone = false
  const x = (async () => { for (let i = 0; i < 4; i++) await shaper.take('x', 1 << 20) })()
  const y = (async () => { for (let i = 0; i < 256; i++) await shaper.take('y', 16 << 10); yDone = true })()
  await x
  const grants = shaper.grants()
  const gx = grants.get('x') ?? 0
  const gy = grants.get('y') ?? 0
  // When x has had its 4 MiB, y (never idle) has had nearly as much.
  assert.equal(gx, 4 << 20)
  assert.ok(yDone || gy >= 0.85 * gx, `x ${gx}, y ${gy}`)
  await y
})

test('the base is split per image so each image\'s holders finish together: the source\'s share shrinks by the UD it sends during the OS image and the memory during the WE image', () => {
  // The WE image's manifest lists the OS image's chunks too (a layered image): those come with the OS image.
  const weFull: ImageManifestData = { ...images.aWe, rootCid: 'root-we-full', size: images.aOs.size + images.aWe.size, chunks: [...images.aOs.chunks, ...images.aWe.chunks] }
  const both: ReplicaView = {
    holdings: [...replica.holdings, { site: 'c', rootCid: weFull.rootCid }, { site: 'a', rootCid: weFull.rootCid }],
    manifests: [...replica.manifests, weFull]
  }
  const plan = computePlan({ ...input, vm: { ...input.vm, we: weFull.rootCid }, replica: both })
  const ud = 256 * 1024
  for (const memory of [512 * 1024, 1024 * 1024]) {
    const shares = baseShares(plan, { manifests: both.manifests, sourceSends: { ud, memory } })
    const total = [...shares.values()].flatMap((perSite) => [...perSite.values()]).reduce((x, y) => x + y, 0)
    assert.equal(total, plan.bytesToSend.base, 'every missing chunk is asked of one holder, once')
    for (const [root, preload] of [[images.aOs.rootCid, ud], [weFull.rootCid, memory]] as const) {
      const perSite = shares.get(root) as Map<string, number>
      const fromA = (perSite.get('a') ?? 0) + preload
      const fromC = perSite.get('c') ?? 0
      // Balanced to within one chunk (the least-loaded holder takes each next chunk).
      assert.ok(Math.abs(fromA - fromC) <= UNIT, `${root}: a ${fromA} (with ${preload} of its own) vs c ${fromC}`)
    }
  }
})
