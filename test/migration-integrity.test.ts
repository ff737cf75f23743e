/**
 * The end-to-end check with running checksums, and the flows session 3's benchmark tripped on.
 * Four sites, each its own OS process: a runs the VMs; b is a clean target holding similar
 * images; c's driver flips a byte of a received memory page and d's of a received UD block
 * (fault injection), as a faulty link or memory would; e's cannot write received user data.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { LogEntry, MigrationInfo, VmInfo, VmStats } from '../p2p/migration/index.js'
import { generateSitePair, writePlan } from './support/image-generator.js'
import { buildReplica, startSites, until, type MigrationSite } from './support/migration-sites.js'

const MiB = 1024 * 1024
const root = mkdtempSync(join(tmpdir(), 'hgmig-migration-integrity-'))
let sites: Map<string, MigrationSite>
let a: MigrationSite
let b: MigrationSite

before(async () => {
  sites = await startSites(root, ['a', 'b', 'c', 'd', 'e'], {
    linkBandwidth: 100_000_000,
    faults: { c: { corruptReceivedPage: true }, d: { corruptReceivedBlock: true }, e: { failDiskWrite: true } }
  })
  a = sites.get('a') as MigrationSite
  b = sites.get('b') as MigrationSite
  const pair = generateSitePair({ seed: 16, osUnits: 48, weUnits: 32, udUnits: 1, zeroShare: 0.1, similarity: { os: 0.4, we: 0.4 } })
  for (const [name, plan] of Object.entries({ 'a-os': pair.a.os, 'a-we': pair.a.we, 'b-os': pair.b.os, 'b-we': pair.b.we })) await writePlan(plan, join(root, `${name}.img`))
  await a.call({ cmd: 'import', layer: 'os', path: join(root, 'a-os.img'), name: 'a-os' })
  await a.call({ cmd: 'import', layer: 'we', path: join(root, 'a-we.img'), name: 'a-we', base: 'a-os' })
  await b.call({ cmd: 'import', layer: 'os', path: join(root, 'b-os.img'), name: 'b-os' })
  await b.call({ cmd: 'import', layer: 'we', path: join(root, 'b-we.img'), name: 'b-we', base: 'b-os' })
  const replica = await buildReplica(sites, [
    { site: 'a', image: 'a-os' }, { site: 'a', image: 'a-we' }, { site: 'b', image: 'b-os' }, { site: 'b', image: 'b-we' }
  ])
  for (const site of sites.values()) await site.call({ cmd: 'replica', replica })
})

after(async () => {
  await Promise.all([...sites.values()].map(async (site) => { await site.stop() }))
  rmSync(root, { recursive: true, force: true })
})

async function createVm (name: string, memoryBytes: number, workload: string): Promise<void> {
  await a.call<{ vm: VmInfo }>({ cmd: 'create-vm', name, os: 'a-os', we: 'a-we', memoryBytes, workload, initialUserDataBytes: 512 * 1024 })
}

async function migrate (request: Record<string, unknown>): Promise<MigrationInfo> {
  const started = (await a.call<{ migration: MigrationInfo }>({ cmd: 'migrate', request })).migration
  return (await a.call<{ migration: MigrationInfo }>({ cmd: 'wait', migration: started.id })).migration
}

async function vms (site: MigrationSite): Promise<VmInfo[]> {
  return (await site.call<{ vms: VmInfo[] }>({ cmd: 'vms' })).vms
}

async function log (site: MigrationSite, id: string): Promise<LogEntry[]> {
  return (await site.call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
}

async function targetRow (site: MigrationSite, id: string): Promise<MigrationInfo> {
  return await until(`the target's record of ${id}`, async () => {
    const row = (await site.call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: id })).migrations.find((r) => r.role === 'target')
    return row !== undefined && row.state !== 'running' ? row : undefined
  })
}

async function assertRunningAtSource (vm: string): Promise<void> {
  const stats = async (): Promise<VmStats> => (await a.call<{ stats: VmStats }>({ cmd: 'stats', vm })).stats
  const first = await stats()
  assert.equal(first.state, 'running')
  await until(`VM ${vm} to write more pages at a`, async () => (await stats()).pagesWritten > first.pagesWritten ? true : undefined)
}

for (const [target, what, pattern] of [['c', 'memory page', /memory [0-9a-f]{12}… ≠ source/], ['d', 'UD block', /UD disk [0-9a-f]{12}… ≠ source/]] as const) {
  test(`a ${what} corrupted on its way fails the running-checksum verification: the VM runs on at the source, the target drops its copy`, async () => {
    const name = `vm-corrupt-${target}`
    await createVm(name, 8 * MiB, 'dynamic')
    const done = await migrate({ vm: name, to: target })
    assert.equal(done.state, 'failed', `the migration must fail (got ${done.state}: ${String(done.error)})`)
    assert.match(String(done.error), /switchover: .*not identical at the target/)
    assert.match(String(done.error), pattern)
    const row = await targetRow(sites.get(target) as MigrationSite, done.id)
    assert.equal(row.state, 'failed')
    assert.match(String(row.error), pattern)
    assert.ok(!(await vms(sites.get(target) as MigrationSite)).some((vm) => vm.name === name), 'the target dropped its copy')
    assert.ok(!(await log(a, done.id)).some((e) => e.kind === 'phase' && e.phase === 'committed'), 'never committed')
    await assertRunningAtSource(name)
  })
}

test('the target\'s driver fails to write the user data (a full disk): the migration fails at both ends with that reason, the VM runs on at the source', { timeout: 120_000 }, async () => {
  // Nothing reads the disk stream at the target any more: without the engine hearing of it, the
  // source's writes would wait for room in the delivery window for ever.
  await createVm('vm-enospc', 8 * MiB, 'static')
  const done = await migrate({ vm: 'vm-enospc', to: 'e' })
  assert.equal(done.state, 'failed', `the migration must fail (got ${done.state}: ${String(done.error)})`)
  assert.match(String(done.error), /ENOSPC/)
  assert.match(String(done.error), /runs on at a/)
  const row = await targetRow(sites.get('e') as MigrationSite, done.id)
  assert.equal(row.state, 'failed')
  assert.match(String(row.error), /applying the UD disk stream at the target failed: ENOSPC/)
  assert.ok(!(await vms(sites.get('e') as MigrationSite)).some((vm) => vm.name === 'vm-enospc'), 'the target dropped its copy')
  await assertRunningAtSource('vm-enospc')
})

test('five concurrent NSS migrations complete (the target hashes its images once for the five, and keeps answering its peers)', async () => {
  const names = ['vm-n1', 'vm-n2', 'vm-n3', 'vm-n4', 'vm-n5']
  for (const name of names) await createVm(name, 4 * MiB, 'static')
  const done = await Promise.all(names.map(async (name) => await migrate({ vm: name, to: 'b', strategy: 'nss' })))
  for (const m of done) assert.equal(m.state, 'completed', `${m.vmName}: ${String(m.error)}`)
  const atB = (await vms(b)).map((vm) => vm.name)
  for (const name of names) assert.ok(atB.includes(name), `${name} runs at b`)
  for (const m of done) {
    // Memory and disk verified at b against the source's running checksums.
    const sent = (await log(a, m.id)).find((e) => e.phase === 'switchover' && e.data.memorySha256 !== undefined)
    const received = (await log(b, m.id)).find((e) => e.phase === 'switchover' && e.data.verified === true)
    assert.ok(sent !== undefined && received !== undefined)
    assert.equal(received.data.memorySha256, sent.data.memorySha256)
    assert.equal(received.data.diskSha256, sent.data.diskSha256)
  }
  for (const name of names) await b.call({ cmd: 'destroy-vm', vm: name })
  for (const image of ['a-we', 'a-os']) await b.call({ cmd: 'remove-image', image }).catch(() => {})
})

test('H-GMIG starts memory pre-copy by the target\'s own readiness report (the seconds until its last base byte is verified), not before the target reports one', async () => {
  await createVm('vm-ready', 16 * MiB, 'dynamic')
  const done = await migrate({ vm: 'vm-ready', to: 'b' })
  assert.equal(done.state, 'completed', String(done.error))
  const entries = await log(a, done.id)
  const start = entries.find((e) => e.data.memoryStart === true)
  // Either the base was in before memory started, or the target had reported verified base bytes and a time left that the first pass (with its margin) covers.
  if (start !== undefined && start.data.baseInBeforeStart !== true) {
    assert.ok(Number(start.data.baseBytes) > 0, JSON.stringify(start.data))
    assert.equal(typeof start.data.targetEtaSeconds, 'number')
    assert.ok(Number(start.data.targetEtaSeconds) <= Number(start.data.firstPassSeconds) * 1.5 + 0.5, JSON.stringify(start.data))
  }
  const precopy = entries.find((e) => e.kind === 'phase' && e.phase === 'precopy')
  const transfer = entries.find((e) => e.kind === 'phase' && e.phase === 'transfer')
  assert.ok(precopy !== undefined && transfer !== undefined && precopy.seq > transfer.seq)
  assert.ok((await vms(b)).some((vm) => vm.name === 'vm-ready'))
})
