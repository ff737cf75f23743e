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
import { buildReplica, restartSite, startSites, until, type MigrationSite } from './support/migration-sites.js'

const MiB = 1024 * 1024
const root = mkdtempSync(join(tmpdir(), 'hgmig-migration-'))
let sites: Map<string, MigrationSite>
let a: MigrationSite
let b: MigrationSite
let c: MigrationSite
let replica: ReplicaView

before(async () => {
  // Each site's upload link is shaped (fair shares between its migrations), fast enough for a quick test.
  sites = await startSites(root, ['a', 'b', 'c'], { linkBandwidth: 200_000_000 })
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
  // Both records count the hash lists: what one end sent on the control stream, the other received.
  type Wire = { sent: { control: number }, received: { control: number } }
  const sourceWire = done.result.wire as Wire
  const targetWire = (await targetRow(b, started.id)).result.wire as Wire
  assert.ok(targetWire.sent.control > 0, 'the target counts the hash list it sent')
  // Within a few small messages one end may not have read before it closed (a last delivery report).
  assert.ok(Math.abs(targetWire.sent.control - sourceWire.received.control) <= 1024, `target sent ${targetWire.sent.control} control bytes, the source received ${sourceWire.received.control}`)
  assert.ok(Math.abs(targetWire.received.control - sourceWire.sent.control) <= 1024, `source sent ${sourceWire.sent.control} control bytes, the target received ${targetWire.received.control}`)
  assert.ok((await vms(b)).some((vm) => vm.name === 'vm-nss' && vm.state === 'running'))
  assert.ok(!(await vms(a)).some((vm) => vm.name === 'vm-nss'))
  const entries = await log(a, started.id)
  assert.ok(entries.some((e) => e.kind === 'info' && e.phase === 'plan' && typeof e.data.dedupMs === 'number'), 'NSS logs its deduplication time')
  // b back to its own images (the replica never learnt that it rebuilt a's).
  await b.call({ cmd: 'destroy-vm', vm: 'vm-nss' })
  for (const image of ['a-we', 'a-os']) await b.call({ cmd: 'remove-image', image })
})

test('H-GMIG: a VM migrates with its memory and disk byte-identical, from two chunk sources, and keeps running at the target', async () => {
  // Little memory and user data: the source site, which sends them, also sends a share of the base chunks.
  const vm = await createVm('vm-1', 1 * MiB, 'dynamic')
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
  // Through the chunk exchange, split over both holders (c, which sends nothing else, takes more),
  // each chunk from one of them: the verified bytes add up to the plan exactly.
  const baseDone = (await log(b, started.id)).find((e) => e.kind === 'info' && e.data.baseDone === true)
  const sources = baseDone?.data.sources as Array<{ site: string, bytes: number }> | undefined
  assert.deepEqual(sources?.filter((s) => s.bytes > 0).map((s) => s.site), ['a', 'c'], `chunks came from both holders: ${JSON.stringify(sources)}`)
  assert.ok((sources[1]?.bytes ?? 0) > (sources[0]?.bytes ?? 0), 'c, which sends no memory, sent more of the base')
  assert.equal(sources.reduce((sum, s) => sum + s.bytes, 0), plan.bytesToSend.base)
  // The source's record (and the consensus record made from it) counts the base the target fetched too.
  const sourceWire = done.result.wire as { sent: Record<string, number>, received: Record<string, number> }
  const ownBytes = Object.values(sourceWire.sent).reduce((x, y) => x + y, 0) + Object.values(sourceWire.received).reduce((x, y) => x + y, 0)
  assert.ok(Number(done.result.bytesOnWire) >= ownBytes + wire.received.chunks, `bytesOnWire ${String(done.result.bytesOnWire)} < ${ownBytes} + ${wire.received.chunks} base bytes`)
  // Both ends closed the migration's streams: none is left open on the connection (each one left
  // would count against its stream limit, and keep the released VM reachable at the source).
  for (const site of [a, b]) {
    await until(`${site.name} to close the migration's streams`, async () => (await site.call<{ open: number }>({ cmd: 'streams' })).open === 0 ? true : undefined)
  }
  // The WE image's fetch starts once every leaf of the OS image is in b's store (the chunks both
  // share are found there, not fetched twice: the sum above is the plan's) and overlaps the OS
  // image's registration, before the OS fetch has returned.
  const targetLog = await log(b, started.id)
  const images = targetLog.filter((e) => e.data.image !== undefined).map((e) => e.data.image as { layer: string, startedMs: number, durationMs: number })
  const osImage = images.find((i) => i.layer === 'os')
  const weImage = images.find((i) => i.layer === 'we')
  assert.ok(osImage !== undefined && weImage !== undefined, `both images fetched: ${JSON.stringify(images)}`)
  assert.ok(weImage.startedMs < osImage.startedMs + osImage.durationMs, `the WE fetch started before the OS fetch returned: ${JSON.stringify(images)}`)
  // Progress is logged at most every 500 ms at the target (each entry is an fsynced write on the loop that takes in the base).
  // (and the completion once).
  const batches = targetLog.filter((e) => e.kind === 'batch')
  const complete = batches.filter((e) => Number(e.data.bytes) >= Number(e.data.totalBytes))
  assert.equal(complete.length, 1, `one entry logs the base complete: ${JSON.stringify(batches.map((e) => e.data.bytes))}`)
  const partial = batches.filter((e) => Number(e.data.bytes) < Number(e.data.totalBytes)).map((e) => e.time)
  for (let i = 1; i < partial.length; i++) assert.ok((partial[i] as number) - (partial[i - 1] as number) >= 400, `batch entries ${partial.join(', ')}`)
  // UD blocks dirtied after the snapshot wait for memory pre-copy's first pass (rounds ≥ 1 follow it), then cross once.
  const sourceLog = await log(a, started.id)
  const precopyAt = sourceLog.find((e) => e.kind === 'pass')?.seq ?? Number.POSITIVE_INFINITY
  const laterRounds = sourceLog.filter((e) => e.kind === 'disk-round' && Number(e.data.round) >= 1)
  assert.ok(laterRounds.every((e) => e.seq > precopyAt), `dirty rounds before memory started: ${JSON.stringify(laterRounds.map((e) => e.data))}`)
  const finalBlocks = Number(sourceLog.find((e) => e.phase === 'switchover' && e.data.finalBlocks !== undefined)?.data.finalBlocks ?? 0)
  assert.ok(laterRounds.reduce((n, e) => n + Number(e.data.blocksSent), 0) + finalBlocks > 0, 'the blocks the workload dirtied crossed after the snapshot')

  assert.ok(!(await vms(a)).some((v) => v.id === vm.id), 'the source released the VM')
  await assertRunning(b, 'vm-1')
  const passes = (await log(a, started.id)).filter((e) => e.kind === 'pass')
  assert.ok(passes.length >= 1 && passes.every((p) => typeof p.data.pagesSent === 'number' && typeof p.data.pagesDirtied === 'number'))
})

/** Polls the source's live record until `ready` holds for it. */
async function sourceProgress (id: string, ready: (m: MigrationInfo) => boolean): Promise<MigrationInfo> {
  return await until(`migration ${id} to make progress`, async () => {
    const row = (await a.call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: id })).migrations.find((m) => m.role === 'source')
    if (row !== undefined && row.state !== 'running') throw new Error(`migration ${id} ended early: ${row.state} ${String(row.error)}`)
    return row !== undefined && ready(row) ? row : undefined
  })
}

test('a stale replica at the target gives another plan hash: the migration is refused with the reason, the VM stays', async () => {
  await createVm('vm-stale', 8 * MiB, 'idle')
  // b's replica has not learnt that c holds a's images: the chunks' sources differ.
  const stale: ReplicaView = { holdings: replica.holdings.filter((h) => h.site !== 'c'), manifests: replica.manifests }
  await b.call({ cmd: 'replica', replica: stale })
  try {
    const started = await migrate({ vm: 'vm-stale', to: 'b' })
    const done = await wait(a, started.id)
    assert.equal(done.state, 'refused')
    assert.match(String(done.error), /plan hash mismatch/)
    assert.match(String(done.error), /holdings differ/)
    const target = await targetRow(b, started.id)
    assert.equal(target.state, 'refused')
    assert.ok(!(await vms(b)).some((vm) => vm.name === 'vm-stale'))
    await assertRunning(a, 'vm-stale')
  } finally {
    await b.call({ cmd: 'replica', replica })
  }
})

/** A 32 MiB VM migrating at 2 MB/s, once its pre-copy has sent 2 MiB: seconds from its end. */
async function slowMigrationInPrecopy (name: string): Promise<MigrationInfo> {
  await createVm(name, 32 * MiB, 'dynamic')
  const started = await migrate({ vm: name, to: 'b', bandwidth: 2_000_000 })
  await sourceProgress(started.id, (m) => m.phase === 'precopy' && (m.progress?.wire.sent.memory ?? 0) > 2 * MiB)
  return started
}

test('cancel half-way through pre-copy: the VM runs on at the source, the target drops its partial copy', async () => {
  const started = await slowMigrationInPrecopy('vm-cancel')
  const cancelled = (await a.call<{ migration: MigrationInfo }>({ cmd: 'cancel', migration: started.id, reason: 'test cancels' })).migration
  assert.equal(cancelled.state, 'cancelled')
  assert.match(String(cancelled.error), /test cancels/)
  const target = await targetRow(b, started.id)
  assert.equal(target.state, 'cancelled')
  assert.ok(!(await vms(b)).some((vm) => vm.name === 'vm-cancel'), 'the target dropped the partial VM')
  const here = (await vms(a)).find((vm) => vm.name === 'vm-cancel')
  assert.ok(here !== undefined && !here.migrating)
  await assertRunning(a, 'vm-cancel')
})

test('bandwidth cap and downtime limit change mid-flight: the new values reach the driver, bad ones are refused, the migration completes', async () => {
  await createVm('vm-params', 32 * MiB, 'dynamic')
  // 1 MB/s: without the change the first pass alone would take half a minute.
  const started = await migrate({ vm: 'vm-params', to: 'b', bandwidth: 1_000_000, maxDowntimeMs: 50 })
  await sourceProgress(started.id, (m) => m.phase === 'precopy' && (m.progress?.wire.sent.memory ?? 0) > 512 * 1024)
  await assert.rejects(a.call({ cmd: 'set-parameters', migration: started.id, parameters: { maxDowntimeMs: 0 } }), /maxDowntimeMs must be > 0/)
  await assert.rejects(a.call({ cmd: 'set-parameters', migration: 'no-such-migration', parameters: { bandwidth: 0 } }), /no running migration/)
  await a.call({ cmd: 'set-parameters', migration: started.id, parameters: { bandwidth: 0, maxDowntimeMs: 2000 } })
  const done = await wait(a, started.id)
  assert.equal(done.state, 'completed', String(done.error))
  const entries = await log(a, started.id)
  const change = entries.find((e) => e.kind === 'info' && (e.data.parameters as { maxDowntimeMs?: number } | undefined)?.maxDowntimeMs === 2000)
  assert.ok(change !== undefined, 'the log records the change')
  // Read back from the driver after the change: both values reached it.
  assert.deepEqual(change.data.applied, { maxBandwidth: 0, downtimeLimitMs: 2000 })
  assert.deepEqual(done.result.parameters, { maxBandwidth: 0, downtimeLimitMs: 2000 })
  // The driver converged against the new limit (2000 ms), not the one requested (50 ms).
  const converged = entries.find((e) => e.data.converged === true)
  assert.ok(converged !== undefined && converged.seq > change.seq, 'converged after the change')
  assert.ok(Number(converged.data.expectedDowntimeMs) <= 2000)
  assert.ok((await vms(b)).some((vm) => vm.name === 'vm-params'))
})

test('five concurrent migrations complete, sharing the source link', async () => {
  const names = ['vm-c1', 'vm-c2', 'vm-c3', 'vm-c4', 'vm-c5']
  const workloads = ['idle', 'static', 'dynamic', 'cpu-intensive', 'network-intensive']
  for (const [i, name] of names.entries()) await createVm(name, 8 * MiB, workloads[i])
  const started = await Promise.all(names.map(async (name, i) => await migrate({ vm: name, to: i < 3 ? 'b' : 'c' })))
  const done = await Promise.all(started.map(async (m) => await wait(a, m.id)))
  for (const m of done) assert.equal(m.state, 'completed', `${m.vmName}: ${String(m.error)}`)
  const atB = (await vms(b)).map((vm) => vm.name)
  const atC = (await vms(c)).map((vm) => vm.name)
  for (const [i, name] of names.entries()) assert.ok((i < 3 ? atB : atC).includes(name), `${name} runs at its target`)
  const left = (await vms(a)).map((vm) => vm.name)
  for (const name of names) assert.ok(!left.includes(name))
  for (const name of names.slice(3)) await assertRunning(c, name)
  // The source's link shaper served every one of them.
  const grants = (await a.call<{ grants: Record<string, number> }>({ cmd: 'grants' })).grants
  for (const m of started) assert.ok((grants[m.id] ?? 0) > 2 * MiB, `${m.vmName} got ${grants[m.id]} bytes through the link shaper`)
})

test('the log exports as ndjson, csv and json', async () => {
  const migrations = (await a.call<{ migrations: MigrationInfo[] }>({ cmd: 'list' })).migrations
  const id = (migrations.find((m) => m.vmName === 'vm-1') as MigrationInfo).id
  const ndjson = (await a.call<{ text: string }>({ cmd: 'export', format: 'ndjson', migration: id })).text
  const lines = ndjson.trim().split('\n').map((l) => JSON.parse(l) as LogEntry)
  assert.ok(lines.length > 5 && lines.every((e) => e.migration === id))
  assert.deepEqual(lines.filter((e) => e.kind === 'phase').map((e) => e.phase), ['request', 'plan', 'agree', 'transfer', 'precopy', 'switchover', 'committed', 'resumed', 'released', 'record'])
  const csv = (await a.call<{ text: string }>({ cmd: 'export', format: 'csv', migration: id })).text.trim().split('\n')
  assert.equal(csv[0], 'seq,time,migration,kind,phase,data')
  assert.equal(csv.length, lines.length + 1)
  const json = JSON.parse((await a.call<{ text: string }>({ cmd: 'export', format: 'json', migration: id })).text) as { migrations: MigrationInfo[], entries: LogEntry[] }
  assert.equal(json.entries.length, lines.length)
  assert.equal(json.migrations.find((m) => m.role === 'source')?.state, 'completed')
})

test('kill -9 the target half-way: the VM runs on at the source and the log says why', async () => {
  const started = await slowMigrationInPrecopy('vm-kill')
  await b.kill()
  const done = await wait(a, started.id)
  assert.equal(done.state, 'failed')
  assert.match(String(done.error), /precopy: .*(closed|reset|lost|reach|ended)/i)
  const errors = (await log(a, started.id)).filter((e) => e.kind === 'error')
  assert.ok(errors.some((e) => /runs on at a/.test(String(e.data.error))), JSON.stringify(errors))
  const here = (await vms(a)).find((vm) => vm.name === 'vm-kill')
  assert.ok(here !== undefined && !here.migrating)
  await assertRunning(a, 'vm-kill')
  // b restarts: its record is not left running — it says it failed, and why; no partial VM is there.
  b = await restartSite(root, sites, 'b')
  const row = (await b.call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: started.id })).migrations.find((m) => m.role === 'target')
  assert.equal(row?.state, 'failed')
  assert.match(String(row?.error), /restarted during (transfer|precopy); the partial VM was dropped/)
  assert.ok(!(await vms(b)).some((vm) => vm.name === 'vm-kill'))
})

test('kill -9 the target while the source waits for room in its delivery window: the source fails, the VM runs on there', { timeout: 120_000 }, async () => {
  const started = await slowMigrationInPrecopy('vm-window')
  // Frozen, the target reads nothing and reports nothing: the source's writes fill the window and
  // wait there. Then it dies, and the only news of it is the end of the control stream.
  b.signal('SIGSTOP')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  await b.kill()
  const done = await wait(a, started.id)
  assert.equal(done.state, 'failed')
  assert.match(String(done.error), /runs on at a/)
  const here = (await vms(a)).find((vm) => vm.name === 'vm-window')
  assert.ok(here !== undefined && !here.migrating)
  await assertRunning(a, 'vm-window')
  b = await restartSite(root, sites, 'b')
})

test('kill -9 the source half-way and restart it: the migration is marked failed there, the VM boots again at the source, the target dropped its copy', async () => {
  const started = await slowMigrationInPrecopy('vm-src-kill')
  await a.kill()
  const target = await targetRow(b, started.id)
  assert.equal(target.state, 'failed')
  assert.match(String(target.error), /partial VM was dropped/)
  assert.ok(!(await vms(b)).some((vm) => vm.name === 'vm-src-kill'))
  a = await restartSite(root, sites, 'a')
  const row = (await a.call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: started.id })).migrations.find((m) => m.role === 'source')
  assert.equal(row?.state, 'failed')
  assert.match(String(row?.error), /restarted during precopy; the VM runs on at a/)
  await assertRunning(a, 'vm-src-kill')
})
