/**
 * The source's delivery window: what it has written on a migration's disk and memory streams but
 * the target's driver has not read stays within about 80 ms at the delivery rate (at least 1
 * MiB), so the pages left at the pause do not queue behind seconds of earlier ones. The class on
 * its own, then a migration between two sites, each its own OS process (store, synthetic driver,
 * libp2p node, engine) on loopback.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { DeliveryWindow, MIN_DELIVERY_WINDOW, type LogEntry, type MigrationInfo } from '../p2p/migration/index.js'
import { sitesForTests, type MigrationSite } from './support/migration-sites.js'

const MiB = 1024 * 1024
let a: MigrationSite
let b: MigrationSite
sitesForTests('migration-delivery', ['a', 'b'], { linkBandwidth: 20_000_000, images: { seed: 31, os: 16, we: 8 } }, (site) => {
  a = site('a')
  b = site('b')
})

test('a write waits while the window is full and goes on when the target reports what it read', async () => {
  const window = new DeliveryWindow()
  assert.equal(window.window, MIN_DELIVERY_WINDOW)
  await window.admit(MIN_DELIVERY_WINDOW - 1)
  // Still below the window: one more write may go, and overshoots it by its own size.
  await window.admit(256 * 1024)
  let admitted = false
  const waiting = window.admit(256 * 1024).then(() => { admitted = true })
  await sleep(20)
  assert.equal(admitted, false, 'a write waits while the window is full')
  window.report(128 * 1024)
  await sleep(20)
  assert.equal(admitted, false, 'still full after a report that leaves it full')
  window.report(512 * 1024)
  await waiting
  assert.equal(window.inFlight, MIN_DELIVERY_WINDOW - 1 + 512 * 1024 - 512 * 1024)
  assert.equal(window.maxInFlight, MIN_DELIVERY_WINDOW - 1 + 256 * 1024)
})

test('a waiting write is rejected by its signal and by fail()', async () => {
  const window = new DeliveryWindow()
  await window.admit(MIN_DELIVERY_WINDOW)
  const controller = new AbortController()
  const aborted = window.admit(1, controller.signal)
  controller.abort(new Error('cancelled here'))
  await assert.rejects(aborted, /cancelled here/)
  const failed = window.admit(1)
  window.fail(new Error('the migration ended'))
  await assert.rejects(failed, /the migration ended/)
  // And so does every later write, even one the window would have room for.
  window.report(MIN_DELIVERY_WINDOW)
  await assert.rejects(window.admit(1), /the migration ended/)
})

test('the window grows with the delivery rate: 80 ms of it plus a round trip, at least 1 MiB', async () => {
  const window = new DeliveryWindow()
  let total = 0
  // 4 MiB every 50 ms for 300 ms: ~80 MB/s delivered, each report ≥ 50 ms after its bytes (the
  // round trip), so ~(80 + 50) ms × 80 MB/s may be in flight. One byte stays in flight (an empty
  // pipe restarts the rate sample: an idle spell says nothing about the link).
  for (let i = 0; i < 6; i++) {
    await window.admit(4 * MiB)
    await sleep(50)
    total += 4 * MiB
    window.report(total - 1)
  }
  assert.ok(window.window > 4 * MiB, `window ${window.window}`)
  // The fastest sample's rate is at most 4 MiB per 40 ms (timers fire late, never early); the round trip seen is ≥ 50 ms.
  assert.ok(window.window < (0.08 + 0.25) * 4 * MiB / 0.04, `window ${window.window}: at most 80 ms plus the round trip at the fastest sample's rate`)
})

test('on a long round trip the window grows past its minimum (a window of the queue alone would cap the rate at 1 MiB per round trip)', async () => {
  const window = new DeliveryWindow()
  let total = 0
  // The link delivers whatever the window lets out, a round trip (150 ms) later: 1 MiB per 150 ms
  // = 7 MB/s at first. 80 ms of that is under 1 MiB; with the round trip the window grows.
  for (let i = 0; i < 6; i++) {
    const room = Math.max(window.window - window.inFlight, 64 * 1024)
    await window.admit(room)
    await sleep(150)
    total += room
    window.report(total - 1)
  }
  assert.ok(window.window > 1.2 * MIN_DELIVERY_WINDOW, `window ${window.window} stayed near its 1 MiB minimum`)
})

test('a migration keeps what is in flight on its disk and memory streams within the window; the target reports what it read', async () => {
  await a.call({ cmd: 'create-vm', name: 'vm-delivery', os: 'a-os', we: 'a-we', memoryBytes: 16 * MiB, workload: 'static', initialUserDataBytes: 2 * MiB })
  const started = (await a.call<{ migration: MigrationInfo }>({ cmd: 'migrate', request: { vm: 'vm-delivery', to: 'b' } })).migration
  const done = (await a.call<{ migration: MigrationInfo }>({ cmd: 'wait', migration: started.id })).migration
  assert.equal(done.state, 'completed', String(done.error))
  const entries = (await a.call<{ entries: LogEntry[] }>({ cmd: 'log', migration: started.id })).entries
  const switchover = entries.find((e) => e.data.delivery !== undefined)
  assert.ok(switchover !== undefined, 'the target reported what its driver read (the source kept a delivery window)')
  const { maxInFlight, window } = switchover.data.delivery as { maxInFlight: number, window: number }
  // Several MiB crossed (16 MiB of memory, 40 % in use, and 2 MiB of UD): without the window a
  // write returned once yamux (4 MiB per stream) and the kernel took it.
  assert.ok(maxInFlight > 0, 'something was in flight')
  // One write may overshoot the window by its size: the driver's largest frame is 8 UD blocks of 64 KiB.
  assert.ok(maxInFlight <= window + 8 * 64 * 1024 + 4096, `at most ${window} + one frame in flight, saw ${maxInFlight}`)
  await b.call({ cmd: 'destroy-vm', vm: 'vm-delivery' })
})
