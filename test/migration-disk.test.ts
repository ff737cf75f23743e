/**
 * The UD layer's copy at 4 KiB granularity: after the snapshot, a guest's disk writes cross as the
 * 4 KiB sectors they dirtied (QEMU: blockdev-mirror's dirty bitmap at granularity 4096), not as
 * the 64 KiB blocks they fall in, and the running checksums cover them: blocks the VM allocates
 * during the migration (no snapshot of them) arrive identical, and a corrupted sector fails the
 * verification. Three sites, each its own OS process: a runs the VMs; b is a clean target; c's
 * driver flips a byte of the first dirty UD sector it receives (fault injection).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { LogEntry, MigrationInfo, VmInfo, VmStats } from '../p2p/migration/index.js'
import { sitesForTests, until, type MigrationSite } from './support/migration-sites.js'

const MiB = 1024 * 1024
/** A dirty-round unit on the wire: its index and length (8 bytes), then at most one 4 KiB sector. */
const SECTOR_ON_WIRE = 4096 + 8
let a: MigrationSite
let b: MigrationSite
sitesForTests('migration-disk', ['a', 'b', 'c'], { linkBandwidth: 50_000_000, faults: { c: { corruptReceivedSector: true } }, images: { seed: 36, os: 32, we: 32 } }, (site) => {
  a = site('a')
  b = site('b')
})

async function log (site: MigrationSite, id: string): Promise<LogEntry[]> {
  return (await site.call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
}

/** A COMPILATION VM (600 disk writes/s over half its disk) with no user data at creation: every UD block it has, it allocates while migrating. */
async function migrateCompilation (name: string, to: string): Promise<MigrationInfo> {
  await a.call<{ vm: VmInfo }>({ cmd: 'create-vm', name, os: 'a-os', we: 'a-we', memoryBytes: 8 * MiB, workload: 'compilation', initialUserDataBytes: 0 })
  // Writes before the migration land in blocks the snapshot sends whole: wait for none, start at once.
  const started = (await a.call<{ migration: MigrationInfo }>({ cmd: 'migrate', request: { vm: name, to, strategy: 'h-gmig' } })).migration
  return (await a.call<{ migration: MigrationInfo }>({ cmd: 'wait', migration: started.id })).migration
}

test('UD writes after the snapshot cross as 4 KiB sectors, blocks allocated meanwhile included, and the VM arrives identical', async () => {
  const done = await migrateCompilation('vm-sectors', 'b')
  assert.equal(done.state, 'completed', String(done.error))
  const entries = await log(a, done.id)
  const rounds = entries.filter((e) => e.kind === 'disk-round' && Number(e.data.round) >= 1 && Number(e.data.blocksSent) > 0)
  const final = entries.find((e) => e.phase === 'switchover' && e.data.finalBlocks !== undefined)
  const sectors = rounds.reduce((n, e) => n + Number(e.data.blocksSent), 0) + Number(final?.data.finalBlocks ?? 0)
  assert.ok(sectors > 0, 'the sectors the workload dirtied crossed after the snapshot')
  for (const round of rounds) {
    // One frame header (9 bytes) per batch of at most 64 sectors; at block granularity each unit was 64 KiB + 8.
    const perUnit = (Number(round.data.bytesSent) - 9 * Math.ceil(Number(round.data.blocksSent) / 64)) / Number(round.data.blocksSent)
    assert.ok(perUnit <= SECTOR_ON_WIRE, `round ${String(round.data.round)}: ${perUnit.toFixed(0)} bytes per dirty unit (a 4 KiB sector and its header is ${SECTOR_ON_WIRE})`)
  }
  // The running checksums matched (completed): every sector of every block the VM allocated while
  // migrating — the sectors it wrote, and the zeros around them — is at b as it was at a.
  const vm = (await b.call<{ vms: VmInfo[] }>({ cmd: 'vms' })).vms.find((v) => v.name === 'vm-sectors')
  assert.ok(vm !== undefined && vm.state === 'running', 'the VM runs at b')
  const stats = async (): Promise<VmStats> => (await b.call<{ stats: VmStats }>({ cmd: 'stats', vm: vm.id })).stats
  const first = await stats()
  await until('the VM to write more blocks at b', async () => (await stats()).blocksWritten > first.blocksWritten ? true : undefined)
})

test('a UD sector corrupted on its way fails the verification: the VM runs on at the source', async () => {
  const done = await migrateCompilation('vm-bad-sector', 'c')
  assert.equal(done.state, 'failed')
  assert.match(String(done.error), /UD disk [0-9a-f]{12}… ≠ source/)
  const vm = (await a.call<{ vms: VmInfo[] }>({ cmd: 'vms' })).vms.find((v) => v.name === 'vm-bad-sector')
  assert.ok(vm !== undefined, 'the VM is still at a')
  const stats = async (): Promise<VmStats> => (await a.call<{ stats: VmStats }>({ cmd: 'stats', vm: vm.id })).stats
  const first = await stats()
  assert.equal(first.state, 'running')
  await until('the VM to write more blocks at a', async () => (await stats()).blocksWritten > first.blocksWritten ? true : undefined)
})
