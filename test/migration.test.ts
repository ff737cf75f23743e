/**
 * The migration engine end to end: three sites, each its own OS process with its own image store,
 * synthetic driver and libp2p node, over loopback. Site a runs the VMs; b is the target, holding
 * similar images (the paper's (m, n) = (40 %, 40 %)); c holds copies of a's images, so the base
 * chunks b lacks have two sources.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { LogEntry, MigrationInfo, MigrationPlan, ReplicaView, VmInfo, VmStats } from '../p2p/migration/index.js'
import { generateSitePair, writePlan } from './support/image-generator.js'
import { buildReplica, startSites, until, type MigrationSite } from './support/migration-sites.js'

const MiB = 1024 * 1024
const root = mkdtempSync(join(tmpdir(), 'hgmig-migration-'))
let sites: Map<string, MigrationSite>
let a: MigrationSite
let b: MigrationSite
let c: MigrationSite
let replica: ReplicaView

before(async () => {
  sites = await startSites(root, ['a', 'b', 'c'])
  a = sites.get('a') as MigrationSite
  b = sites.get('b') as MigrationSite
  c = sites.get('c') as MigrationSite
  // 3 MiB OS, 2 MiB more in the WE image; 10 % zero chunks.
  const pair = generateSitePair({ seed: 6, osUnits: 48, weUnits: 32, udUnits: 1, zeroShare: 0.1, similarity: { os: 0.4, we: 0.4 } })
  for (const [name, plan] of Object.entries({ 'a-os': pair.a.os, 'a-we': pair.a.we, 'b-os': pair.b.os, 'b-we': pair.b.we })) await writePlan(plan, join(root, `${name}.img`))
  for (const site of [a, c]) {
    await site.call({ cmd: 'import', layer: 'os', path: join(root, 'a-os.img'), name: 'a-os' })
    await site.call({ cmd: 'import', layer: 'we', path: join(root, 'a-we.img'), name: 'a-we', base: 'a-os' })
  }
  await b.call({ cmd: 'import', layer: 'os', path: join(root, 'b-os.img'), name: 'b-os' })
  await b.call({ cmd: 'import', layer: 'we', path: join(root, 'b-we.img'), name: 'b-we', base: 'b-os' })
  replica = await buildReplica(sites, [
    { site: 'a', image: 'a-os' }, { site: 'a', image: 'a-we' },
    { site: 'b', image: 'b-os' }, { site: 'b', image: 'b-we' },
    { site: 'c', image: 'a-os' }, { site: 'c', image: 'a-we' }
  ])
  for (const site of sites.values()) await site.call({ cmd: 'replica', replica })
})

after(async () => {
  await Promise.all([...sites.values()].map(async (site) => { await site.stop() }))
  rmSync(root, { recursive: true, force: true })
})

async function createVm (name: string, memoryBytes: number, workload = 'dynamic', initialUserDataBytes = 512 * 1024): Promise<VmInfo> {
  return (await a.call<{ vm: VmInfo }>({ cmd: 'create-vm', name, os: 'a-os', we: 'a-we', memoryBytes, workload, initialUserDataBytes })).vm
}

async function migrate (request: Record<string, unknown>): Promise<MigrationInfo> {
  return (await a.call<{ migration: MigrationInfo }>({ cmd: 'migrate', request })).migration
}

async function wait (site: MigrationSite, id: string): Promise<MigrationInfo> {
  return (await site.call<{ migration: MigrationInfo }>({ cmd: 'wait', migration: id })).migration
}

async function vms (site: MigrationSite): Promise<VmInfo[]> {
  return (await site.call<{ vms: VmInfo[] }>({ cmd: 'vms' })).vms
}

async function stats (site: MigrationSite, vm: string): Promise<VmStats> {
  return (await site.call<{ stats: VmStats }>({ cmd: 'stats', vm })).stats
}

async function log (site: MigrationSite, id: string): Promise<LogEntry[]> {
  return (await site.call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
}

/** The target's row of a migration, once it has one that is finished. */
async function targetRow (site: MigrationSite, id: string): Promise<MigrationInfo> {
  return await until(`the target's record of ${id}`, async () => {
    const rows = (await site.call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: id })).migrations
    const row = rows.find((r) => r.role === 'target')
    return row !== undefined && row.state !== 'running' ? row : undefined
  })
}

/** The VM keeps running: its workload writes more pages between two looks. */
async function assertRunning (site: MigrationSite, vm: string): Promise<void> {
  const first = await stats(site, vm)
  assert.equal(first.state, 'running')
  await until(`VM ${vm} at ${site.name} to write more pages`, async () => (await stats(site, vm)).pagesWritten > first.pagesWritten ? true : undefined)
}

test('NSS baseline: hashes exchanged at migration time, the source alone sends the missing chunks; memory and disk identical', async () => {
  await createVm('vm-nss', 8 * MiB, 'static')
  const started = await migrate({ vm: 'vm-nss', to: 'b', strategy: 'nss' })
  const done = await wait(a, started.id)
  assert.equal(done.state, 'completed', String(done.error))
  const plan = done.result.plan as { sources: string[], missingChunks: number }
  assert.deepEqual(plan.sources, ['a'])
  assert.ok(plan.missingChunks > 0)
  assert.ok((await vms(b)).some((vm) => vm.name === 'vm-nss' && vm.state === 'running'))
  assert.ok(!(await vms(a)).some((vm) => vm.name === 'vm-nss'))
  const entries = await log(a, started.id)
  assert.ok(entries.some((e) => e.kind === 'info' && e.phase === 'plan' && typeof e.data.dedupMs === 'number'), 'NSS logs its deduplication time')
})

test('H-GMIG: a VM migrates with its memory and disk byte-identical, from two chunk sources, and keeps running at the target', async () => {
  const vm = await createVm('vm-1', 16 * MiB, 'dynamic')
  const { plan } = await a.call<{ plan: MigrationPlan }>({ cmd: 'plan', vm: 'vm-1', to: 'b' })
  assert.ok(plan.missing.length > 0 && plan.bytesToSend.base > 0)
  assert.ok(plan.similarity.m > 0.2 && plan.similarity.m < 0.6, `m = ${plan.similarity.m}`)
  const started = await migrate({ vm: 'vm-1', to: 'b' })
  const done = await wait(a, started.id)
  assert.equal(done.state, 'completed', String(done.error))
  assert.equal(done.planHash, plan.hash)
  const target = await targetRow(b, started.id)
  assert.equal(target.state, 'completed', String(target.error))
  assert.equal(target.planHash, plan.hash)

  // Checksums computed independently at each end: the source's at pause, the target's after receiving.
  const sent = (await log(a, started.id)).find((e) => e.phase === 'switchover' && e.data.memorySha256 !== undefined)
  const received = (await log(b, started.id)).find((e) => e.phase === 'switchover' && e.data.verified === true)
  assert.ok(sent !== undefined && received !== undefined)
  assert.equal(received.data.memorySha256, sent.data.memorySha256)
  assert.equal(received.data.diskSha256, sent.data.diskSha256)

  // Bytes on the wire for the base layers: what the plan said, plus framing, and no more.
  const wire = target.result.wire as { received: { chunks: number } }
  assert.ok(wire.received.chunks >= plan.bytesToSend.base, `${wire.received.chunks} < ${plan.bytesToSend.base}`)
  assert.ok(wire.received.chunks <= 1.02 * plan.bytesToSend.base, `base bytes on the wire ${wire.received.chunks} > 1.02 × plan ${plan.bytesToSend.base}`)
  const batchSites = new Set((await log(b, started.id)).filter((e) => e.kind === 'batch').map((e) => e.data.site))
  assert.deepEqual([...batchSites].sort(), ['a', 'c'], 'chunks came from both holders')

  assert.ok(!(await vms(a)).some((v) => v.id === vm.id), 'the source released the VM')
  await assertRunning(b, 'vm-1')
  const passes = (await log(a, started.id)).filter((e) => e.kind === 'pass')
  assert.ok(passes.length >= 1 && passes.every((p) => typeof p.data.pagesSent === 'number' && typeof p.data.pagesDirtied === 'number'))
})
