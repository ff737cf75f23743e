/**
 * Synthetic VM images with known similarity, for tests and benchmarks.
 *
 * An image is planned as a list of units (64 KiB by default). Each unit is either all zero (key 0)
 * or the content of a numbered key: AES-128-CTR keystream under a key derived from (seed, key), so
 * two units are byte-identical exactly when their keys are equal, and any chunk size that divides
 * the unit size sees the same sharing as the plan. That makes the ground truth exact: the bytes of
 * image A found in image B are the units of A whose key B also has.
 *
 * Two sites (a, b) each get an OS image, a WE image built on it and a UD image built on that, in
 * the spirit of H-GMIG's experiments: the OS images share `similarity.os` of their non-zero units,
 * the WE-specific parts share `similarity.we` (the paper's (m, n)); user data is never shared.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { pipeline } from 'node:stream/promises'
import type { Layer } from '../../p2p/store/index.js'

export const DEFAULT_UNIT_SIZE = 64 * 1024

export interface ImagePlan {
  name: string
  layer: Layer
  unitSize: number
  /** Unit keys in file order; 0 is an all-zero unit. */
  units: Uint32Array
  /** Bytes; the last unit may be cut short. */
  size: number
  seed: number
}

export interface SiteImages {
  os: ImagePlan
  we: ImagePlan
  ud: ImagePlan
}

export interface SitePairOptions {
  seed: number
  unitSize?: number
  /** Units of the OS image. */
  osUnits: number
  /** Units the WE image adds after its copy of the OS image. */
  weUnits: number
  /** Units the UD image adds after its copy of the WE image. */
  udUnits: number
  /** Share of each layer's own units that are all zero (free space, sparse regions). */
  zeroShare: number
  /** Share of non-zero units the two sites' OS images, and their WE-specific parts, have in common. */
  similarity: { os: number, we: number }
  /** Share of the base's units a layer rewrites (package updates, config): default 0.05. */
  modifiedShare?: number
}

/** Deterministic pseudo-random numbers (mulberry32): the same plan for the same seed on every machine. */
function random (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Picks exactly round(share × n) of n indices. */
function pick (n: number, share: number, next: () => number): Set<number> {
  const indices = Array.from({ length: n }, (_, i) => i)
  const count = Math.round(share * n)
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(next() * (n - i))
    ;[indices[i], indices[j]] = [indices[j] as number, indices[i] as number]
  }
  return new Set(indices.slice(0, count))
}

export function generateSitePair (options: SitePairOptions): { a: SiteImages, b: SiteImages } {
  const unitSize = options.unitSize ?? DEFAULT_UNIT_SIZE
  const modifiedShare = options.modifiedShare ?? 0.05
  const next = random(options.seed)
  let lastKey = 0
  const fresh = (): number => ++lastKey

  /** A layer's own part: zero units at `zeroShare`, fresh keys elsewhere. */
  const ownPart = (n: number): number[] => {
    const zeros = pick(n, options.zeroShare, next)
    return Array.from({ length: n }, (_, i) => zeros.has(i) ? 0 : fresh())
  }
  /** The other site's version of a part: the same zeros, `share` of the non-zero units kept, the rest fresh. */
  const similarPart = (part: number[], share: number): number[] => {
    const nonZero = part.flatMap((key, i) => key === 0 ? [] : [i])
    const kept = pick(nonZero.length, share, next)
    const keep = new Set([...kept].map((k) => nonZero[k] as number))
    return part.map((key, i) => key === 0 || keep.has(i) ? key : fresh())
  }
  /** A layer built on a base: the base's units with `modifiedShare` of the non-zero ones rewritten. */
  const derived = (base: number[]): number[] => {
    const modified = pick(base.length, modifiedShare, next)
    return base.map((key, i) => key !== 0 && modified.has(i) ? fresh() : key)
  }

  const osA = ownPart(options.osUnits)
  const osB = similarPart(osA, options.similarity.os)
  const weOwnA = ownPart(options.weUnits)
  const weOwnB = similarPart(weOwnA, options.similarity.we)
  const weA = [...derived(osA), ...weOwnA]
  const weB = [...derived(osB), ...weOwnB]
  const udA = [...derived(weA), ...ownPart(options.udUnits)]
  const udB = [...derived(weB), ...ownPart(options.udUnits)]

  const plan = (site: string, layer: Layer, units: number[]): ImagePlan =>
    ({ name: `${site}-${layer}`, layer, unitSize, units: Uint32Array.from(units), size: units.length * unitSize, seed: options.seed })
  return {
    a: { os: plan('a', 'os', osA), we: plan('a', 'we', weA), ud: plan('a', 'ud', udA) },
    b: { os: plan('b', 'os', osB), we: plan('b', 'we', weB), ud: plan('b', 'ud', udB) }
  }
}

/** A single image of `units` units, `zeroShare` of them zero, the rest distinct. */
export function randomImage (name: string, units: number, zeroShare: number, seed: number, unitSize = DEFAULT_UNIT_SIZE): ImagePlan {
  const next = random(seed)
  const zeros = pick(units, zeroShare, next)
  const keys = Uint32Array.from({ length: units }, (_, i) => zeros.has(i) ? 0 : i + 1)
  return { name, layer: 'os', unitSize, units: keys, size: units * unitSize, seed }
}

/** The bytes of one unit. */
export function unitBytes (seed: number, key: number, unitSize: number): Buffer {
  if (key === 0) return Buffer.alloc(unitSize)
  const secret = createHash('sha256').update(`hgmig-generator:${seed}:${key}`).digest()
  const cipher = createCipheriv('aes-128-ctr', secret.subarray(0, 16), secret.subarray(16, 32))
  return cipher.update(Buffer.alloc(unitSize))
}

/** The image's bytes, a unit at a time (memory stays at one unit, whatever the size). */
export function * planContent (plan: ImagePlan): Generator<Uint8Array> {
  let remaining = plan.size
  for (const key of plan.units) {
    if (remaining <= 0) return
    const bytes = unitBytes(plan.seed, key, plan.unitSize)
    yield remaining < bytes.byteLength ? bytes.subarray(0, remaining) : bytes
    remaining -= bytes.byteLength
  }
}

export async function writePlan (plan: ImagePlan, path: string): Promise<void> {
  await pipeline(planContent(plan), createWriteStream(path))
}

/**
 * The image as a sparse file: zero units are holes (they read as zeros and take no disk), so a
 * 20 GiB image that is mostly zeros fits on a small disk and is written in the time of its data.
 */
export async function writePlanSparse (plan: ImagePlan, path: string): Promise<void> {
  const file = await open(path, 'w')
  try {
    let offset = 0
    for (const key of plan.units) {
      const length = Math.min(plan.unitSize, plan.size - offset)
      if (length <= 0) break
      if (key !== 0) await file.write(unitBytes(plan.seed, key, plan.unitSize), 0, length, offset)
      offset += length
    }
    await file.truncate(plan.size)
  } finally {
    await file.close()
  }
}

/**
 * Ground truth: bytes of a whose unit key also occurs in b — zero units included, as the store's
 * `sharedBytes` counts them, or left out (`data: true`), as its `sharedDataBytes` does.
 */
export function sharedBytes (a: ImagePlan, b: ImagePlan, options: { data?: boolean } = {}): number {
  const keysOfB = new Set(b.units)
  let shared = 0
  a.units.forEach((key, i) => { if (keysOfB.has(key) && !(options.data === true && key === 0)) shared += unitLength(a, i) })
  return shared
}

/** Ground truth: bytes of a that are all zero. */
export function zeroBytes (plan: ImagePlan): number {
  let zero = 0
  plan.units.forEach((key, i) => { if (key === 0) zero += unitLength(plan, i) })
  return zero
}

/** The least any store can keep for these images: each distinct non-zero unit once. */
export function distinctNonZeroBytes (plans: ImagePlan[]): number {
  const seen = new Set<string>()
  let bytes = 0
  for (const plan of plans) {
    plan.units.forEach((key, i) => {
      const id = `${plan.seed}:${key}:${unitLength(plan, i)}`
      if (key !== 0 && !seen.has(id)) { seen.add(id); bytes += unitLength(plan, i) }
    })
  }
  return bytes
}

function unitLength (plan: ImagePlan, index: number): number {
  return Math.min(plan.unitSize, plan.size - index * plan.unitSize)
}
