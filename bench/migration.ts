/**
 * The H-GMIG paper's experiment (section 4) in one harness, scaled to this machine:
 *   node dist/bench/migration.js [--runs 3] [--memory-mib 32] [--os-mib 192] [--we-mib 96] [--link-mbs 40]
 *                                [--similarities 5,20,40,60] [--workloads idle,static,dynamic,compilation] [--skip-single] [--skip-concurrent] [--skip-knockout]
 *                                [--base exchange|direct] [--phases] [--timeline]
 *                                [--strategies nss,ss,h-gmig] [--links tbf|shaper] [--mbit 100]
 *
 * Defaults: 32 MiB VM memory, a 192 MiB OS image and a 96 MiB WE image on it, 8 MiB of user data:
 * images about 9 times the memory, as in the paper (tens of GB of image against 1 GiB). The
 * proportion decides what the figures show: at 2 : 1 five VMs' own memory and user data, all
 * leaving one source, outweigh their shared base and bound every strategy alike.
 *
 * Three sites, each its own process (store, synthetic driver, libp2p node, chunk exchange, engine).
 * Links (`--links`): `tbf` (the default where it can be built: root, iproute2) runs each site in a
 * network namespace of its own on a bridge (test/support/exchange-netns.ts) with its egress shaped
 * by a tbf qdisc to `--mbit` Mbit/s, the paper's WAN links; the engine's in-process shaper is off.
 * `shaper` (the fallback) runs the sites on loopback, each one's upload limited by the engine's
 * FairShaper at `--link-mbs` MB/s (every block the exchange serves waits for it too). The output
 * says which. Base chunks travel through the chunk exchange (p2p/exchange), as in the agent;
 * `--base direct` uses the engine's built-in fetch instead. Site a runs the VM; b is the target, with OS/WE images of similarity (m, n) to a's
 * (the generator's ground truth); c holds copies of a's base images (the paper's other data
 * centres' redundant copies) and is SS's central repository.
 *
 * Per similarity × workload × strategy (NSS, SS, H-GMIG): total migration time (the source's, from
 * request to record) and bytes on the wire (every byte the target sent or received for the
 * migration: control, hash lists, base chunks, UD, memory), median of `--runs`. Then 5 concurrent
 * migrations at (5,5) and (40,40), and H-GMIG with chunk source c killed at 50 % of the base
 * transfer against the same migration without.
 */
import '../p2p/polyfills.js'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import type { LogEntry, MigrationInfo, Strategy } from '../p2p/migration/index.js'
import { NetnsLab, netnsLabUnavailable } from '../test/support/exchange-netns.js'
import { generateSitePair, writePlan } from '../test/support/image-generator.js'
import { buildReplica, restartSite, startSites, until, type MigrationSite, type SitesLab } from '../test/support/migration-sites.js'

const MiB = 1024 * 1024
const UNIT = 64 * 1024

interface Options {
  runs: number
  memoryMiB: number
  osMiB: number
  weMiB: number
  linkMBs: number
  similarities: number[]
  workloads: string[]
  single: boolean
  concurrent: boolean
  knockout: boolean
  base: 'exchange' | 'direct'
  phases: boolean
  timeline: boolean
  /** The strategies measured (a subset for profiling one of them; ratios then show NaN). */
  strategies: Strategy[]
  /** `tbf`: sites in network namespaces, egress shaped by tbf; `shaper`: loopback, the engine's in-process shaper. */
  links: 'tbf' | 'shaper'
  /** Each site's egress under tbf, Mbit/s. */
  mbit: number
}

function parse (args: string[]): Options {
  const value = (name: string, fallback: string): string => {
    const i = args.indexOf(name)
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] as string : fallback
  }
  return {
    runs: Number(value('--runs', '3')),
    memoryMiB: Number(value('--memory-mib', '32')),
    osMiB: Number(value('--os-mib', '192')),
    weMiB: Number(value('--we-mib', '96')),
    linkMBs: Number(value('--link-mbs', '40')),
    similarities: value('--similarities', '5,20,40,60').split(',').map(Number),
    workloads: value('--workloads', 'idle,static,dynamic,compilation').split(','),
    single: !args.includes('--skip-single'),
    concurrent: !args.includes('--skip-concurrent'),
    knockout: !args.includes('--skip-knockout'),
    base: value('--base', 'exchange') === 'direct' ? 'direct' : 'exchange',
    phases: args.includes('--phases') || args.includes('--timeline'),
    timeline: args.includes('--timeline'),
    strategies: value('--strategies', 'nss,ss,h-gmig').split(',') as Strategy[],
    links: value('--links', 'tbf') === 'shaper' ? 'shaper' : 'tbf',
    mbit: Number(value('--mbit', '100'))
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** "control 0.41 MB, chunks 250.12 MB, …": each channel's median over the runs (decimal MB, to see small differences). */
function channelMedians (outcomes: Outcome[]): string {
  const names = [...new Set(outcomes.flatMap((o) => Object.keys(o.channels ?? {})))].sort()
  return names.map((name) => `${name} ${(median(outcomes.map((o) => o.channels?.[name] ?? 0)) / 1e6).toFixed(3)} MB`).join(', ')
}

interface Outcome {
  totalMs: number
  wireBytes: number
  downtimeMs: number
  baseBytes: number
  /** Base bytes each chunk source delivered to the target (the knock-out compares them). */
  baseSources?: Record<string, number>
  /** The target's bytes per channel (control, chunks, disk, memory, …), both directions. */
  channels?: Record<string, number>
}

class Harness {
  private vmCount = 0
  imported: string[] = []

  constructor (readonly root: string, readonly sites: Map<string, MigrationSite>, readonly options: Options) {}

  site (name: string): MigrationSite { return this.sites.get(name) as MigrationSite }

  /** Fresh images at similarity (m, n) = (s, s): a's and c's the same, b's similar. */
  async images (similarity: number): Promise<void> {
    for (const [name, site] of this.sites) {
      const { images } = await site.call<{ images: Array<{ name: string, layer: string }> }>({ cmd: 'images' })
      for (const layer of ['ud', 'we', 'os']) for (const image of images.filter((i) => i.layer === layer)) await site.call({ cmd: 'remove-image', image: image.name })
      void name
    }
    const pair = generateSitePair({
      seed: 1000 + similarity, osUnits: this.options.osMiB * MiB / UNIT, weUnits: this.options.weMiB * MiB / UNIT, udUnits: 1, zeroShare: 0.1,
      similarity: { os: similarity / 100, we: similarity / 100 }
    })
    for (const [name, plan] of Object.entries({ 'a-os': pair.a.os, 'a-we': pair.a.we, 'b-os': pair.b.os, 'b-we': pair.b.we })) await writePlan(plan, join(this.root, `${name}.img`))
    for (const name of ['a', 'c']) {
      await this.site(name).call({ cmd: 'import', layer: 'os', path: join(this.root, 'a-os.img'), name: 'a-os' })
      await this.site(name).call({ cmd: 'import', layer: 'we', path: join(this.root, 'a-we.img'), name: 'a-we', base: 'a-os' })
    }
    await this.site('b').call({ cmd: 'import', layer: 'os', path: join(this.root, 'b-os.img'), name: 'b-os' })
    await this.site('b').call({ cmd: 'import', layer: 'we', path: join(this.root, 'b-we.img'), name: 'b-we', base: 'b-os' })
    const replica = await buildReplica(this.sites, [
      { site: 'a', image: 'a-os' }, { site: 'a', image: 'a-we' }, { site: 'b', image: 'b-os' }, { site: 'b', image: 'b-we' },
      { site: 'c', image: 'a-os' }, { site: 'c', image: 'a-we' }
    ])
    for (const site of this.sites.values()) await site.call({ cmd: 'replica', replica })
  }

  async createVm (workload: string): Promise<string> {
    const name = `vm-${++this.vmCount}`
    await this.site('a').call({ cmd: 'create-vm', name, os: 'a-os', we: 'a-we', memoryBytes: this.options.memoryMiB * MiB, workload, initialUserDataBytes: 8 * MiB })
    return name
  }

  /** The target back to its own images only: drop the migrated VM and the base images it rebuilt. */
  async resetTarget (vm: string): Promise<void> {
    const b = this.site('b')
    await b.call({ cmd: 'destroy-vm', vm })
    for (const image of ['a-we', 'a-os']) await b.call({ cmd: 'remove-image', image }).catch(() => {})
  }

  async start (vm: string, strategy: Strategy): Promise<MigrationInfo> {
    return (await this.site('a').call<{ migration: MigrationInfo }>({ cmd: 'migrate', request: { vm, to: 'b', strategy, repository: strategy === 'ss' ? 'c' : undefined } })).migration
  }

  async finish (id: string): Promise<Outcome> {
    const done = (await this.site('a').call<{ migration: MigrationInfo }>({ cmd: 'wait', migration: id })).migration
    if (done.state !== 'completed') {
      const target = await this.site('b').call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: id }).catch(() => ({ migrations: [] }))
      const logs = [...this.sites.values()].map((site) => `--- ${site.name} stderr:\n${site.stderr.join('').slice(-3000)}`).join('\n') +
        `\n--- target: ${target.migrations.map((m) => `${m.state} ${String(m.error)}`).join('; ')}`
      throw new Error(`migration ${done.vmName} ${done.strategy}: ${done.state} ${String(done.error)}\n${logs}`)
    }
    const target = await until('the target record', async () => {
      const row = (await this.site('b').call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: id })).migrations.find((m) => m.role === 'target')
      return row?.state === 'completed' ? row : undefined
    })
    const wire = target.result.wire as { sent: Record<string, number>, received: Record<string, number> }
    const sum = (r: Record<string, number>): number => Object.values(r).reduce((x, y) => x + y, 0)
    if (this.options.phases) await this.printPhases(done, id)
    const targetLog = (await this.site('b').call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
    const baseDone = targetLog.find((e) => e.data.baseDone === true)?.data.sources as Array<{ site: string, bytes: number }> | undefined
    return {
      totalMs: Number(done.result.totalMs),
      wireBytes: sum(wire.sent) + sum(wire.received),
      downtimeMs: Number(done.result.downtimeMs),
      baseBytes: wire.received.chunks ?? 0,
      channels: Object.fromEntries([...new Set([...Object.keys(wire.sent), ...Object.keys(wire.received)])].map((k) => [k, (wire.sent[k] ?? 0) + (wire.received[k] ?? 0)])),
      baseSources: Object.fromEntries((baseDone ?? []).map((f) => [f.site, f.bytes]))
    }
  }

  /** Where the time went: the source's phases, the target's base transfer and rebuild, the hashing of NSS/SS (from both logs). */
  async printPhases (done: MigrationInfo, id: string): Promise<void> {
    const source = (await this.site('a').call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
    const target = (await this.site('b').call<{ entries: LogEntry[] }>({ cmd: 'log', migration: id })).entries
    const start = source[0]?.time ?? 0
    const at = (phase: string): string => {
      const entry = source.find((e) => e.kind === 'phase' && e.phase === phase)
      return entry === undefined ? '-' : ((entry.time - start) / 1000).toFixed(2)
    }
    const baseDone = target.find((e) => e.data.baseDone === true)
    const dedup = source.find((e) => typeof e.data.dedupMs === 'number')
    const converged = source.find((e) => e.data.converged === true)
    const passes = source.filter((e) => e.kind === 'pass').length
    const memoryStart = source.find((e) => e.data.memoryStart === true)
    const sent = source.find((e) => typeof e.data.pauseToSentMs === 'number')
    const verified = target.find((e) => typeof e.data.verifyMs === 'number')
    const wire = (done.result.wire ?? {}) as { sent?: Record<string, number>, received?: Record<string, number> }
    const mib = (n: number | undefined): string => ((n ?? 0) / 2 ** 20).toFixed(1)
    console.log(`#     source sent: memory ${mib(wire.sent?.memory)} MiB, disk ${mib(wire.sent?.disk)} MiB, control ${mib(wire.sent?.control)} MiB; received control ${mib(wire.received?.control)} MiB`)
    console.log(`#     memory start: ${memoryStart === undefined ? 'at once' : JSON.stringify(memoryStart.data)}; downtime ${Number(done.result.downtimeMs).toFixed(0)} ms ` +
      `(pause → checksums sent ${sent === undefined ? '-' : Number(sent.data.pauseToSentMs).toFixed(0)} ms, target verify ${verified === undefined ? '-' : Number(verified.data.verifyMs).toFixed(0)} ms)`)
    if (this.options.timeline) {
      // The base's arrival at the target, in 0.5 s steps: fetched and stored MB, and the source's memory pass marks.
      const steps: string[] = []
      let next = 0
      for (const e of target.filter((x) => x.kind === 'batch')) {
        const t = (e.time - start) / 1000
        if (t < next) continue
        next = Math.floor(t / 0.5) * 0.5 + 0.5
        steps.push(`${t.toFixed(1)}:${mib(Number(e.data.bytes))}/${mib(Number(e.data.storedBytes ?? e.data.bytes))}`)
      }
      const passes = source.filter((x) => x.kind === 'pass').map((x) => `${((x.time - start) / 1000).toFixed(1)}`)
      console.log(`#     base timeline (s:fetched/stored MiB): ${steps.join(' ')}; memory passes end at ${passes.join(', ')} s`)
      const ms = (n: unknown): string => typeof n === 'number' ? (n / 1000).toFixed(2) : '-'
      const images = target.filter((x) => x.data.image !== undefined).map((x) => x.data.image as Record<string, unknown>)
      if (images.length > 0) console.log(`#     images (s): ${images.map((i) => `${String(i.layer)} from ${ms(i.startedMs)} for ${ms(i.durationMs)} (first block ${ms(i.firstBlockMs)}, fetch ${ms(i.fetchMs)}, import ${ms(i.importMs)})`).join('; ')}`)
    }
    console.log(`#   ${done.strategy} ${done.vmName}: agree ${at('agree')} s, transfer ${at('transfer')}, precopy ${at('precopy')}, switchover ${at('switchover')}, record ${at('record')}; ` +
      `source hashing ${dedup === undefined ? '-' : (Number(dedup.data.dedupMs) / 1000).toFixed(2)} s; base done at ${baseDone === undefined ? '-' : ((baseDone.time - start) / 1000).toFixed(2)} s ` +
      `(${baseDone === undefined ? '' : JSON.stringify(baseDone.data.sources)}); converged at ${converged === undefined ? '-' : ((converged.time - start) / 1000).toFixed(2)} s after ${passes} passes`)
  }

  /** Failed migrations (the VM stayed at its source) seen so far, retried once each. */
  failures: string[] = []

  async migrateOne (workload: string, strategy: Strategy, retry = true): Promise<Outcome> {
    const vm = await this.createVm(workload)
    try {
      return await this.finish((await this.start(vm, strategy)).id)
    } catch (err) {
      if (!retry) throw err
      const reason = (err as Error).message.split('\n')[0] ?? ''
      this.failures.push(`${strategy} ${workload}: ${reason}`)
      console.log(`# FAILED, measured again: ${strategy} ${workload}: ${reason}`)
      console.log((err as Error).message.split('\n').slice(1).map((line) => `#   | ${line}`).join('\n'))
      // It runs on at the source: stop its workload there.
      await this.site('a').call({ cmd: 'destroy-vm', vm }).catch(() => {})
      return await this.migrateOne(workload, strategy, false)
    } finally {
      await this.resetTarget(vm).catch(() => {})
    }
  }

  async migrateFive (workload: string, strategy: Strategy, retry = true): Promise<Outcome> {
    const vms: string[] = []
    for (let i = 0; i < 5; i++) vms.push(await this.createVm(workload))
    const started = performance.now()
    try {
      const ids = await Promise.all(vms.map(async (vm) => (await this.start(vm, strategy)).id))
      const outcomes = await Promise.all(ids.map(async (id) => await this.finish(id)))
      const totalMs = performance.now() - started
      return { totalMs, wireBytes: outcomes.reduce((s, o) => s + o.wireBytes, 0), downtimeMs: Math.max(...outcomes.map((o) => o.downtimeMs)), baseBytes: outcomes.reduce((s, o) => s + o.baseBytes, 0) }
    } catch (err) {
      if (!retry) throw err
      const reason = (err as Error).message.split('\n')[0] ?? ''
      this.failures.push(`5 × ${strategy} ${workload}: ${reason}`)
      console.log(`# FAILED, the batch is measured again: 5 × ${strategy} ${workload}: ${reason}`)
      // What the sites said (their stderr tails, e.g. libp2p's DEBUG lines): why a connection went.
      console.log((err as Error).message.split('\n').slice(1).map((line) => `#   | ${line}`).join('\n'))
      // Let the batch's other migrations end before the next one starts.
      await new Promise((resolve) => setTimeout(resolve, 30_000))
      for (const vm of vms) await this.site('a').call({ cmd: 'destroy-vm', vm }).catch(() => {})
      return await this.migrateFive(workload, strategy, false)
    } finally {
      for (const vm of vms) await this.resetTarget(vm).catch(() => {})
    }
  }

  /**
   * H-GMIG with chunk source c killed once the target has half of the base chunks. Also when the
   * target's fetch dropped c, from the kill (`detectionMs`: the "communication delay between
   * MAs" the paper's 0.9 s is).
   */
  async migrateKnockout (workload: string): Promise<Outcome & { detectionMs: number }> {
    const vm = await this.createVm(workload)
    const { id } = await this.start(vm, 'h-gmig')
    await until('half of the base transfer', async () => {
      const row = (await this.site('b').call<{ migrations: MigrationInfo[] }>({ cmd: 'get', migration: id })).migrations.find((m) => m.role === 'target')
      const p = row?.progress
      return p !== undefined && p.baseTotal > 0 && p.baseBytes >= p.baseTotal / 2 ? true : undefined
    }, 120_000)
    await this.site('b').call({ cmd: 'dropped' })
    const killedAt = Date.now()
    await this.site('c').kill()
    const outcome = await this.finish(id)
    const { dropped } = await this.site('b').call<{ dropped: Array<{ site: string, at: number }> }>({ cmd: 'dropped' })
    const detectedAt = dropped.find((d) => d.site === 'c')?.at
    await this.resetTarget(vm)
    await restartSite(this.root, this.sites, 'c')
    return { ...outcome, detectionMs: detectedAt === undefined ? NaN : detectedAt - killedAt }
  }
}

const STRATEGY_ORDER: Strategy[] = ['nss', 'ss', 'h-gmig']

/** The machine's load (1, 5, 15 min): the figures are only comparable within a run, and this says how loaded it was. */
function load (): string {
  return `load average ${os.loadavg().map((l) => l.toFixed(1)).join(', ')}`
}

export async function main (args: string[]): Promise<void> {
  const options = parse(args)
  const root = mkdtempSync(join(os.tmpdir(), 'hgmig-bench-migration-'))
  console.log(`# migration bench: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`)
  console.log(`# ${load()} at the start`)
  const unavailable = options.links === 'tbf' ? netnsLabUnavailable() : undefined
  const lab = options.links === 'tbf' && unavailable === undefined
    ? new NetnsLab(['a', 'b', 'c'].map((name) => ({ name, egressMbit: options.mbit })), String(process.pid), '10.214.0')
    : undefined
  // The namespaces outlive a killed bench unless removed here ('exit' does not run on a signal).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { lab?.destroy(); process.exit(128 + (signal === 'SIGINT' ? 2 : 15)) })
  const links = lab !== undefined
    ? `tbf, ${options.mbit} Mbit/s egress per site (network namespaces on a bridge, no added delay; the in-process shaper off)`
    : `in-process shaper, ${options.linkMBs} MB/s upload per site${options.links === 'tbf' ? ` (tbf asked for, but no network namespaces here: ${String(unavailable)})` : ''}`
  console.log(`# links: ${links}; VM ${options.memoryMiB} MiB memory, OS ${options.osMiB} MiB, WE +${options.weMiB} MiB, UD 8 MiB; runs ${options.runs} (median); base chunks: ${options.base}`)
  const sitesLab: SitesLab | undefined = lab === undefined
    ? undefined
    : { netns: Object.fromEntries(lab.sites.map((s) => [s.name, s.netns])), listen: Object.fromEntries(lab.sites.map((s) => [s.name, `/ip4/${s.ip}/tcp/0`])) }
  const sites = await startSites(root, ['a', 'b', 'c'], { linkBandwidth: lab === undefined ? options.linkMBs * 1e6 : 0, baseTransfer: options.base, lab: sitesLab })
  const harness = new Harness(root, sites, options)
  const row = (cells: Array<string | number>): void => { console.log(`| ${cells.join(' | ')} |`) }
  const fmt = (o: { totalMs: number, wireBytes: number }): string => `${(o.totalMs / 1000).toFixed(2)} s, ${(o.wireBytes / MiB).toFixed(1)} MiB`
  try {
    // Warm-up (JIT, first connections between the sites): measured nowhere.
    await harness.images(options.similarities[0] ?? 5)
    for (const strategy of (['h-gmig', 'nss'] as Strategy[]).filter((s) => options.strategies.includes(s))) await harness.migrateOne('idle', strategy)
    if (options.single) {
      console.log('\n## single migration: total time, bytes on the wire (median)\n')
      row(['(m, n)', 'workload', 'NSS', 'SS', 'H-GMIG', 'H-GMIG time vs NSS', 'H-GMIG bytes vs SS', 'H-GMIG downtime'])
      row(['---', '---', '---', '---', '---', '---', '---', '---'])
      for (const similarity of options.similarities) {
        await harness.images(similarity)
        for (const workload of options.workloads) {
          const results = new Map<Strategy, Outcome[]>(STRATEGY_ORDER.map((s) => [s, []]))
          // Interleaved: each run measures the three strategies back to back under the same load.
          for (let run = 0; run < options.runs; run++) for (const strategy of STRATEGY_ORDER.filter((s) => options.strategies.includes(s))) results.get(strategy)?.push(await harness.migrateOne(workload, strategy))
          const med = (s: Strategy): Outcome => {
            const list = results.get(s) as Outcome[]
            return { totalMs: median(list.map((o) => o.totalMs)), wireBytes: median(list.map((o) => o.wireBytes)), downtimeMs: median(list.map((o) => o.downtimeMs)), baseBytes: median(list.map((o) => o.baseBytes)) }
          }
          const [nss, ss, hg] = STRATEGY_ORDER.map(med) as [Outcome, Outcome, Outcome]
          row([`(${similarity}, ${similarity})`, workload, fmt(nss), fmt(ss), fmt(hg), `${((1 - hg.totalMs / nss.totalMs) * 100).toFixed(1)} % less`, `${(hg.wireBytes / ss.wireBytes).toFixed(3)} ×`, `${hg.downtimeMs.toFixed(0)} ms`])
          console.log(`#   ${load()}; downtime NSS ${nss.downtimeMs.toFixed(0)} ms, SS ${ss.downtimeMs.toFixed(0)} ms`)
          console.log(`#   bytes per channel, median: ${STRATEGY_ORDER.map((s) => `${s} ${channelMedians(results.get(s) as Outcome[])}`).join('; ')}`)
        }
      }
    }
    if (options.concurrent) {
      console.log('\n## 5 concurrent migrations (static): time until all five completed, bytes on the wire (all five)\n')
      row(['(m, n)', 'NSS', 'SS', 'H-GMIG', 'H-GMIG time vs NSS'])
      row(['---', '---', '---', '---', '---'])
      for (const similarity of [5, 40]) {
        await harness.images(similarity)
        const results = new Map<Strategy, Outcome[]>(STRATEGY_ORDER.map((s) => [s, []]))
        for (let run = 0; run < options.runs; run++) for (const strategy of STRATEGY_ORDER.filter((s) => options.strategies.includes(s))) results.get(strategy)?.push(await harness.migrateFive('static', strategy))
        const med = (s: Strategy): Outcome => {
          const list = results.get(s) as Outcome[]
          return { totalMs: median(list.map((o) => o.totalMs)), wireBytes: median(list.map((o) => o.wireBytes)), downtimeMs: 0, baseBytes: 0 }
        }
        const [nss, ss, hg] = STRATEGY_ORDER.map(med) as [Outcome, Outcome, Outcome]
        row([`(${similarity}, ${similarity})`, fmt(nss), fmt(ss), fmt(hg), `${((1 - hg.totalMs / nss.totalMs) * 100).toFixed(1)} % less`])
        console.log(`#   ${load()}; H-GMIG bytes vs SS ${(hg.wireBytes / ss.wireBytes).toFixed(3)} ×`)
      }
    }
    if (options.knockout) {
      console.log('\n## chunk source c killed (SIGKILL) at 50 % of the base transfer, H-GMIG, (5, 5), idle\n')
      await harness.images(5)
      // One link's rate: what the source left (a) adds to carry c's undelivered share alone.
      const linkBytesPerSecond = lab !== undefined ? options.mbit * 1e6 / 8 : options.linkMBs * 1e6
      const runs: Array<{ plain: number, knocked: number, ideal: number, detection: number }> = []
      for (let run = 0; run < options.runs; run++) {
        const plain = await harness.migrateOne('idle', 'h-gmig')
        const knocked = await harness.migrateKnockout('idle')
        // c's share that it did not deliver before the kill (the same plan splits the base the same way each run).
        const undelivered = Math.max(0, (plain.baseSources?.c ?? 0) - (knocked.baseSources?.c ?? 0))
        runs.push({ plain: plain.totalMs, knocked: knocked.totalMs, ideal: undelivered / linkBytesPerSecond * 1000, detection: knocked.detectionMs })
      }
      const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`
      const added = runs.map((r) => r.knocked - r.plain)
      const beyond = runs.map((r) => r.knocked - r.plain - r.ideal)
      row(['without', 'with c killed', 'added', 'ideal added (c\'s undelivered share on a\'s link)', 'added beyond the ideal', 'kill → c dropped'])
      row(['---', '---', '---', '---', '---', '---'])
      row([s(median(runs.map((r) => r.plain))), s(median(runs.map((r) => r.knocked))), s(median(added)), s(median(runs.map((r) => r.ideal))), s(median(beyond)), `${median(runs.map((r) => r.detection)).toFixed(0)} ms`])
      console.log(`#   per run (without / with / ideal added / beyond / detection): ${runs.map((r) => `${s(r.plain)} / ${s(r.knocked)} / ${s(r.ideal)} / ${s(r.knocked - r.plain - r.ideal)} / ${r.detection.toFixed(0)} ms`).join('; ')}; ${load()}`)
    }
    console.log(`\n# failed migrations (measured again): ${harness.failures.length}`)
  } finally {
    await Promise.all([...harness.sites.values()].map(async (site) => { await site.stop() }))
    lab?.destroy()
    rmSync(root, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main(process.argv.slice(2))
