/**
 * Auto-converge: a pre-copy that cannot converge at its link rate throttles the guest, QEMU's
 * way (20 %, then 10 % more per pass) or further at once when the last pass's dirty and transfer
 * rates say so, once the base layers are in at the target; the VM runs
 * unthrottled again where it ends up (at the target, or at the source after a cancel). Two sites,
 * each its own OS process (store, synthetic driver, libp2p node, engine) on loopback.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { LogEntry, MigrationInfo, VmStats } from '../p2p/migration/index.js'
import { WORKLOADS } from '../p2p/migration/index.js'
import { sitesForTests, until, type MigrationSite } from './support/migration-sites.js'

const MiB = 1024 * 1024
let a: MigrationSite
let b: MigrationSite
sitesForTests('migration-converge', ['a', 'b'], { linkBandwidth: 200_000_000, images: { seed: 26, os: 16, we: 8 } }, (site) => {
  a = site('a')
  b = site('b')
})

async function log (site: MigrationSite, id: string): Promise<LogEntry[]> {
  return (await site.call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
}

async function stats (site: MigrationSite, vm: string): Promise<VmStats> {
  return (await site.call<{ stats: VmStats }>({ cmd: 'stats', vm })).stats
}

/**
 * A DYNAMIC VM (5,000 dirty pages/s over 15 % of its 16 MiB) at 2 MB/s with a 10 ms downtime
 * limit: its 2.4 MiB working set takes over a second a pass, so no pass converges by itself.
 */
async function start (name: string): Promise<MigrationInfo> {
  await a.call({ cmd: 'create-vm', name, os: 'a-os', we: 'a-we', memoryBytes: 16 * MiB, workload: 'dynamic', initialUserDataBytes: 256 * 1024 })
  return (await a.call<{ migration: MigrationInfo }>({ cmd: 'migrate', request: { vm: name, to: 'b', bandwidth: 2_000_000, maxDowntimeMs: 10 } })).migration
}

function throttles (entries: LogEntry[]): number[] {
  return entries.filter((e) => typeof e.data.throttle === 'number').map((e) => e.data.throttle as number)
}

test('a pre-copy that does not converge throttles the guest 20 %, then 10 % more per pass, or at once as far as the pass figures say; the VM runs unthrottled at the target', async () => {
  const started = await start('vm-converge')
  const done = (await a.call<{ migration: MigrationInfo }>({ cmd: 'wait', migration: started.id })).migration
  assert.equal(done.state, 'completed', String(done.error))
  const entries = await log(a, started.id)
  const steps = throttles(entries)
  assert.ok(steps.length >= 1, `the guest was throttled: ${JSON.stringify(entries.filter((e) => e.kind === 'pass').map((e) => e.data))}`)
  // Each step is QEMU's (20 %, then 10 % more) or, when the pass before says it takes more, that:
  // the guest's dirty rate (scaled back to unthrottled) brought to half the pass's transfer rate.
  let previous: number | undefined
  for (const entry of entries.filter((e) => typeof e.data.throttle === 'number')) {
    const step = previous === undefined ? 0.2 : previous + 0.1
    const pass = [...entries].reverse().find((e) => e.kind === 'pass' && e.seq < entry.seq)?.data as { dirtyRate: number, transferRate: number } | undefined
    const needed = pass === undefined || !(pass.dirtyRate > 0) ? 0 : 1 - 0.5 * pass.transferRate / (pass.dirtyRate * 4096 / (1 - (previous ?? 0)))
    const throttle = entry.data.throttle as number
    assert.ok(Math.abs(throttle - Math.min(0.99, Math.max(step, needed))) < 1e-9, `throttle ${throttle} after ${String(previous)} (step ${step}, from the pass ${needed}); steps ${steps.join(', ')}`)
    previous = throttle
  }
  // Only once the base was in at the target (the copy is held, not the guest throttled, before).
  const baseIn = entries.find((e) => e.kind === 'info' && e.data.held === false)?.seq ?? entries.find((e) => e.kind === 'phase' && e.phase === 'precopy')?.seq ?? 0
  const firstThrottle = entries.find((e) => typeof e.data.throttle === 'number') as LogEntry
  assert.ok(firstThrottle.seq > baseIn)
  // At the target the guest runs at its profile's pace again.
  const there = await stats(b, 'vm-converge')
  assert.equal(there.state, 'running')
  assert.equal(there.cpuPercent, WORKLOADS.dynamic.cpuPercent)
  await b.call({ cmd: 'destroy-vm', vm: 'vm-converge' })
  for (const image of ['a-we', 'a-os']) await b.call({ cmd: 'remove-image', image }).catch(() => {})
})

test('a throttled migration cancelled runs on at the source unthrottled', async () => {
  const started = await start('vm-throttle-cancel')
  await until('the guest to be throttled', async () => {
    const row = (await a.call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: started.id })).migrations.find((m) => m.role === 'source')
    if (row !== undefined && row.state !== 'running') throw new Error(`migration ended before it throttled: ${row.state} ${String(row.error)}`)
    return throttles(await log(a, started.id)).length > 0 ? true : undefined
  }, 120_000)
  assert.ok((await stats(a, 'vm-throttle-cancel')).cpuPercent < WORKLOADS.dynamic.cpuPercent, 'throttled while it migrates')
  const cancelled = (await a.call<{ migration: MigrationInfo }>({ cmd: 'cancel', migration: started.id })).migration
  assert.equal(cancelled.state, 'cancelled')
  const here = await stats(a, 'vm-throttle-cancel')
  assert.equal(here.state, 'running')
  assert.equal(here.cpuPercent, WORKLOADS.dynamic.cpuPercent)
  await a.call({ cmd: 'destroy-vm', vm: 'vm-throttle-cancel' })
})
