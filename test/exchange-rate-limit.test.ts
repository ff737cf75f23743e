/**
 * Rate limits of the block exchange: priorities in the token bucket, and ingress/egress limits
 * holding on a real transfer between two processes (a lower bound on its duration: a limit can
 * only make a transfer slower, however loaded the machine).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InvalidRequestError, PRIORITY, TokenBucket } from '../p2p/exchange/index.js'
import { missingBytes, plan, Site, writeImage, writeSwarmFile } from './support/exchange-sites.js'

test('a token bucket serves migration waiters before replication waiters, whatever the arrival order', async () => {
  const bucket = new TokenBucket({ bytesPerSecond: 200_000, burstBytes: 10_000 }, 'test')
  assert.equal(bucket.tryTake(10_000, PRIORITY.replication), true, 'the burst is available at once')
  assert.equal(bucket.tryTake(5_000, PRIORITY.migration), false, 'an empty bucket makes callers wait')
  const order: string[] = []
  const waits = [
    bucket.take(10_000, PRIORITY.replication).then(() => { order.push('replication 1') }),
    bucket.take(10_000, PRIORITY.replication).then(() => { order.push('replication 2') }),
    bucket.take(10_000, PRIORITY.migration).then(() => { order.push('migration') })
  ]
  await Promise.all(waits)
  assert.deepEqual(order, ['migration', 'replication 1', 'replication 2'])
})

test('a cancelled waiter leaves the queue; a bad limit is refused with the field named', async () => {
  const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 1000 }, 'test')
  bucket.tryTake(1000, 0)
  const controller = new AbortController()
  const waiting = bucket.take(1000, 0, controller.signal)
  controller.abort()
  await assert.rejects(waiting, { name: 'AbortError' })
  assert.throws(() => new TokenBucket({ bytesPerSecond: 0 }, 'rateLimits.egress'), (err: unknown) => err instanceof InvalidRequestError && /rateLimits\.egress\.bytesPerSecond/.test(err.message))
})

test('egress and per-transfer ingress limits hold on a real transfer', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-exchange-rate-'))
  const sites: Site[] = []
  try {
    const swarm = await writeSwarmFile(dir, 3)
    const image = join(dir, 'image.img')
    const imagePlan = plan(64, 1)
    writeImage(image, imagePlan, new Map())
    const missing = missingBytes(imagePlan, undefined)
    const limit = 1 << 20
    // Egress-limited source: the fetch cannot beat the limit (burst: a quarter second's worth, at least 256 KiB).
    const a = await Site.start(swarm, 0, join(dir, 'a'), { egressBytesPerSecond: limit })
    sites.push(a)
    await a.call({ cmd: 'addImage', path: image, layer: 'os', name: 'img' })
    const b = await Site.start(swarm, 1, join(dir, 'b'))
    sites.push(b)
    const request = await a.requestFor('img', [a])
    let started = performance.now()
    await b.fetchStart(request)
    let status = await b.fetchEnd()
    assert.equal(status.failure, undefined)
    const egressSeconds = (performance.now() - started) / 1000
    assert.ok(egressSeconds >= (missing.bytes - 256 * 1024) / limit, `egress limit held: ${missing.bytes} bytes in ${egressSeconds.toFixed(2)} s at ${limit} B/s`)

    // Per-transfer ingress at the fetcher, from an unlimited source (a second image: the first is here now).
    const other = join(dir, 'other.img')
    writeImage(other, plan(64, 100_000), new Map())
    const c = await Site.start(swarm, 2, join(dir, 'c'))
    sites.push(c)
    await c.call({ cmd: 'addImage', path: other, layer: 'os', name: 'other' })
    const otherRequest = await c.requestFor('other', [c], { ingress: { bytesPerSecond: limit, burstBytes: 256 * 1024 } })
    started = performance.now()
    await b.fetchStart(otherRequest)
    status = await b.fetchEnd()
    assert.equal(status.failure, undefined)
    const ingressSeconds = (performance.now() - started) / 1000
    assert.ok(ingressSeconds >= (missing.bytes - 256 * 1024) / limit, `ingress limit held: ${ingressSeconds.toFixed(2)} s`)
  } finally {
    for (const site of sites) await site.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
