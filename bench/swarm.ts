/**
 * Swarm benchmark (issue 4): consensus latency p50/p95/p99 and ordered transactions/s for 3, 5
 * and 10 agents (separate `hgmig agent` processes) on loopback, and with one-way link delays.
 *
 *   node dist/bench/run.js swarm [--agents 3,5,10] [--delays 0,0.05,5,15] [--seconds 15] [--rate 4] [--burst 300]
 *                                [--repeat 1] [--ab OTHER/bin/hgmig.js] [--ab-env KEY=VALUE] [--trace] [--profile DIR]
 *                                [--data-root DIR]
 *
 * --ab: A/B in the same run: every configuration is measured with this build and with the agents of
 * another build (e.g. an older commit built with `npx tsc --outDir`), alternating, `repeat` times
 * each; a table of the per-run ratios (this ÷ other) follows. --ab-env: an environment variable for
 * the other build's agents only (the same build with another setting: `--ab dist/../bin/hgmig.js`).
 * --trace: the agents of this build write each event's timestamps (HGMIG_HOP_TRACE, see
 * p2p/swarm/hashgraph-gossip.ts); a table splits one gossip hop — an event received at A, A's next
 * event built on it, that event received at B — into its parts (latency phase only).
 * --profile DIR: the agents of this build run with `node --cpu-prof` and write their profiles to DIR.
 * --data-root DIR: where the agents' data directories are made (default: the system's temporary
 * directory). A tmpfs such as /dev/shm takes the disk out of the measurement (an fdatasync there
 * returns at once): a diagnostic of what the disk flushes cost, not a configuration to report.
 *
 * Delay: this kernel has no netem qdisc, so every agent sits behind a user-space TCP relay in this
 * process that holds each chunk for the one-way delay in each direction; agents announce the
 * relay's address (`--announce`), so every connection between two agents crosses one relay (the
 * dialled agent's): RTT = 2 × delay + relay cost. Delay 0 = no relay. Sub-millisecond delays are
 * held by polling the clock (timers have 1 ms granularity).
 *
 * Latency: each agent submits `rate` probes per second for `seconds`; a probe's latency is from its
 * submission to its consensus position at the submitting site (own) and at every other site
 * (remote: from the submitter's clock, one host here). Throughput: every agent submits `burst`
 * probes at once; ordered transactions per second until the last is ordered at every site.
 * Baseline in the same run: the libp2p ping RTT between the agents (through the relays).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiClient, type ApiFile, type LatencySample } from '../p2p/api/index.js'
import { processCpuSeconds, startLoadMeter } from './machine-load.js'

const thisBin = fileURLToPath(new URL('../../bin/hgmig.js', import.meta.url))

interface Options { agents: number[], delays: number[], seconds: number, rate: number, burst: number, repeat: number, ab: string | null, trace: boolean, profile: string | null, abEnv: Record<string, string>, dataRoot: string }

function parse (args: string[]): Options {
  const options: Options = { agents: [3, 5, 10], delays: [0, 0.05, 5, 15], seconds: 15, rate: 4, burst: 300, repeat: 1, ab: null, trace: false, profile: null, abEnv: {}, dataRoot: tmpdir() }
  for (let i = 0; i < args.length; i++) {
    const value = args[i + 1]
    const list = (): number[] => (value ?? '').split(',').map(Number)
    switch (args[i]) {
      case '--agents': options.agents = list(); i++; break
      case '--delays': options.delays = list(); i++; break
      case '--seconds': options.seconds = Number(value); i++; break
      case '--rate': options.rate = Number(value); i++; break
      case '--burst': options.burst = Number(value); i++; break
      case '--repeat': options.repeat = Number(value); i++; break
      case '--ab': options.ab = value ?? null; i++; break
      case '--trace': options.trace = true; break
      case '--profile': options.profile = value ?? null; i++; break
      case '--data-root': options.dataRoot = value ?? tmpdir(); i++; break
      case '--ab-env': {
        const [key, setting] = (value ?? '').split(/=(.*)/s)
        if (key === undefined || key === '' || setting === undefined) throw new Error(`--ab-env wants KEY=VALUE, not ${value}`)
        options.abEnv[key] = setting
        i++
        break
      }
      case '--help': process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]! + '*/\n'); process.exit(0); break
      default: throw new Error(`unknown option ${args[i]} (see --help)`)
    }
  }
  return options
}

// ------------------------------------------------------------------ the delaying relay

/** Forwards 127.0.0.1:listen → 127.0.0.1:target, holding every chunk `delayMs` in each direction, in order. */
async function startRelay (target: number, delayMs: number, taken: Set<number>): Promise<{ port: number, server: Server }> {
  const server = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1')
    pipeDelayed(inbound, outbound, delayMs)
    pipeDelayed(outbound, inbound, delayMs)
    const close = (): void => { inbound.destroy(); outbound.destroy() }
    inbound.on('error', close).on('close', close)
    outbound.on('error', close).on('close', close)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  if (taken.has(port)) {
    // An agent's port, not bound yet: try again (this one stays taken).
    const again = await startRelay(target, delayMs, taken)
    server.close()
    return again
  }
  taken.add(port)
  return { port, server }
}

function pipeDelayed (from: Socket, to: Socket, delayMs: number): void {
  const queue: Array<{ due: bigint, chunk: Buffer }> = []
  const delayNs = BigInt(Math.round(delayMs * 1e6))
  let timer: NodeJS.Timeout | NodeJS.Immediate | null = null
  const flush = (): void => {
    timer = null
    const now = process.hrtime.bigint()
    while (queue.length > 0 && queue[0]!.due <= now) to.write(queue.shift()!.chunk)
    if (queue.length > 0) arm()
  }
  const arm = (): void => {
    if (timer !== null) return
    const waitMs = Number(queue[0]!.due - process.hrtime.bigint()) / 1e6
    // Timers fire no sooner than 1 ms: shorter waits poll the clock between I/O turns.
    timer = waitMs >= 1 ? setTimeout(flush, Math.floor(waitMs)) : setImmediate(flush)
  }
  from.on('data', (chunk: Buffer) => {
    if (delayNs === 0n) { to.write(chunk); return }
    queue.push({ due: process.hrtime.bigint() + delayNs, chunk })
    arm()
  })
  from.on('end', () => { to.end() })
}

/**
 * A port for an agent to listen on, not among `taken`: the agents bind theirs only when they
 * start, so a relay listening on port 0 meanwhile could be given one of them (a 10-agent run
 * failed with "listen address … already in use").
 */
async function freePort (taken: Set<number>): Promise<number> {
  for (;;) {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
    if (!taken.has(port)) {
      taken.add(port)
      return port
    }
  }
}

// ------------------------------------------------------------------ a swarm of agents

interface Swarm { clients: ApiClient[], children: ChildProcess[], relays: Server[], root: string }

function hgmig (bin: string, ...args: string[]): string {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`hgmig ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** `bin`: the hgmig.js whose agents run; `traceDir`: where each agent writes its hop trace (site-i.trace). */
async function startSwarm (n: number, delayMs: number, bin: string, traceDir: string | null, profileDir: string | null, extraEnv: Record<string, string>, dataRoot: string): Promise<Swarm> {
  const root = mkdtempSync(join(dataRoot, 'hgmig-bench-swarm-'))
  const dirs = Array.from({ length: n }, (_, i) => join(root, `site-${i}`))
  const peerIds = dirs.map((dir, i) => (JSON.parse(hgmig(bin, 'swarm', 'create', '--name', `site-${i}`, '--data', dir, '--json')) as { peerId: string }).peerId)
  // All founders: the benchmark measures consensus, not joining.
  const genesis = JSON.parse(readFileSync(join(dirs[0]!, 'swarm.json'), 'utf8')) as { members: unknown[] }
  genesis.members = dirs.map((dir) => (JSON.parse(readFileSync(join(dir, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0])
  for (const dir of dirs) writeFileSync(join(dir, 'swarm.json'), JSON.stringify(genesis), { mode: 0o600 })

  const swarm: Swarm = { clients: [], children: [], relays: [], root }
  const announced: string[] = []
  const taken = new Set<number>()
  for (let i = 0; i < n; i++) {
    const port = await freePort(taken)
    let announce = `/ip4/127.0.0.1/tcp/${port}`
    if (delayMs > 0) {
      const relay = await startRelay(port, delayMs, taken)
      swarm.relays.push(relay.server)
      announce = `/ip4/127.0.0.1/tcp/${relay.port}`
    }
    announced.push(`${announce}/p2p/${peerIds[i]!}`)
    // Every earlier agent as a bootstrap peer: with only the first, two later agents met only if
    // the first had learned one's address before the other asked it for the members' addresses
    // (a race that left runs waiting for 'all agents connected' until they timed out).
    const args = ['agent', '--data', dirs[i]!, '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--announce', announce, ...(i === 0 ? [] : ['--bootstrap', ...announced.slice(0, i)])]
    const env = { ...process.env, ...extraEnv, ...(traceDir === null ? {} : { HGMIG_HOP_TRACE: join(traceDir, `site-${i}.trace`) }) }
    const profile = profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]
    const child = spawn(process.execPath, [...profile, bin, ...args], { stdio: ['ignore', 'ignore', 'inherit'], env })
    swarm.children.push(child)
  }
  try {
    for (const dir of dirs) swarm.clients.push(await clientFor(dir))
    // Everyone connected to everyone (the address book spreads the relays' addresses).
    await until('all agents connected', async () => (await Promise.all(swarm.clients.map(async (c) => await c.status()))).every((s) => s.members.every((m) => m.connected)), 300_000)
  } catch (err) {
    // Agents that never formed a swarm must not outlive the bench.
    await stopSwarm(swarm)
    throw err
  }
  return swarm
}

async function clientFor (dir: string): Promise<ApiClient> {
  const started = Date.now()
  for (;;) {
    try {
      const api = JSON.parse(readFileSync(join(dir, 'api.json'), 'utf8')) as ApiFile
      return new ApiClient({ origin: `http://127.0.0.1:${api.port}`, token: api.token })
    } catch {
      if (Date.now() - started > 60_000) throw new Error(`agent in ${dir} did not start`)
      await sleep(200)
    }
  }
}

async function stopSwarm (swarm: Swarm): Promise<void> {
  await Promise.all(swarm.children.map(async (child) => await new Promise((resolve) => {
    if (child.exitCode !== null) { resolve(null); return }
    child.once('exit', resolve)
    child.kill('SIGTERM')
    setTimeout(() => { child.kill('SIGKILL') }, 10_000).unref()
  })))
  for (const relay of swarm.relays) relay.close()
  rmSync(swarm.root, { recursive: true, force: true })
}

// ------------------------------------------------------------------ measurement

interface Result {
  agents: number
  delayMs: number
  rttMs: number | null
  own: { p50: number, p95: number, p99: number, count: number }
  all: { p50: number, p95: number, p99: number, count: number }
  txPerSecond: number
  /** The agents' CPU time (user + system) per probe during the latency phase. */
  cpuMsPerProbe: number
  load: number
  /** The machine's 1-minute load average at the end of the run (what `uptime` shows). */
  loadAverage: number
  hops: HopBreakdown | null
}

async function measure (n: number, delayMs: number, options: Options, which: 'self' | 'other'): Promise<Result> {
  const bin = which === 'self' ? thisBin : options.ab!
  const traced = which === 'self' && options.trace
  const traceDir = traced ? mkdtempSync(join(tmpdir(), 'hgmig-bench-trace-')) : null
  const swarm = await startSwarm(n, delayMs, bin, traceDir, which === 'self' ? options.profile : null, which === 'self' ? {} : options.abEnv, options.dataRoot)
  const window = { from: 0, to: 0 }
  let result: Result
  try {
    const { clients } = swarm
    const ordered = async (): Promise<number[]> => (await Promise.all(clients.map(async (c) => await c.status()))).map((s) => s.transactions.ordered)
    // Warm-up: connections, meshes and JIT.
    await Promise.all(clients.map(async (c) => await c.ping({ count: 5 })))
    await until('warm-up ordered', async () => (await ordered()).every((o) => o >= 5 * n), 120_000)
    const rtts = (await Promise.all(clients.map(async (c) => await c.status()))).flatMap((s) => s.members.filter((m) => !m.self && m.rttMs !== null).map((m) => m.rttMs!))
    const meter = startLoadMeter(() => swarm.children.map((c) => c.pid ?? 0))
    const agentCpu = (): number => swarm.children.reduce((sum, c) => sum + processCpuSeconds(c.pid ?? 0), 0)
    const cpu0 = agentCpu()

    const since = Date.now()
    const before = (await ordered())[0]!
    const interval = 1000 / options.rate
    await Promise.all(clients.map(async (c, i) => {
      await sleep(interval * i / n)
      for (let k = 0; k < options.seconds * options.rate; k++) {
        const next = since + (k + 1) * interval
        await c.ping()
        await sleep(Math.max(0, next - Date.now()))
      }
    }))
    const probes = n * options.seconds * options.rate
    await until('latency probes ordered everywhere', async () => (await ordered()).every((o) => o >= before + probes), 300_000)
    const cpuMsPerProbe = (agentCpu() - cpu0) * 1000 / probes
    window.from = since
    window.to = Date.now()
    const series = await Promise.all(clients.map(async (c) => await c.latencySeries()))
    const recent = (samples: LatencySample[]): number[] => samples.filter((s) => s.at >= since).map((s) => s.latencyMs)
    const own = series.flatMap((s) => recent(s.samples))
    const all = [...own, ...series.flatMap((s) => recent(s.remote))]

    const start = performance.now()
    const base = Math.min(...await ordered())
    await Promise.all(clients.map(async (c) => { for (let left = options.burst; left > 0; left -= 1000) await c.ping({ count: Math.min(1000, left) }) }))
    await until('burst ordered everywhere', async () => (await ordered()).every((o) => o >= base + n * options.burst), 600_000)
    const txPerSecond = n * options.burst / ((performance.now() - start) / 1000)
    result = { agents: n, delayMs, rttMs: median(rtts), own: summary(own), all: summary(all), txPerSecond, cpuMsPerProbe, load: meter.stop(), loadAverage: loadavg()[0]!, hops: null }
  } finally {
    await stopSwarm(swarm)
  }
  if (traceDir !== null) {
    // The agents flushed their traces when they stopped.
    result.hops = analyseHops(traceDir, n, window.from, window.to, n * options.seconds * options.rate)
    rmSync(traceDir, { recursive: true, force: true })
  }
  return result
}

// ------------------------------------------------------------------ one gossip hop, from the traces

interface HopBreakdown {
  /** Hops analysed (pairs: an event created at A on one it received, and its receipt at B). */
  samples: number
  /** Per part of the hop: [p50, p90] in ms. */
  parts: Record<HopPart, [number, number]>
  /** Events created (all agents) per latency probe: what one ordered transaction costs in events. */
  eventsPerProbe: number
  /** Own events per second per agent. */
  eventsPerSecond: number
  /** The agents' event-loop delay (monitorEventLoopDelay over the run), median over agents: [p50, p90, p99, mean] ms. */
  loopDelay: [number, number, number, number] | null
}

const HOP_PARTS = ['validate', 'wait', 'build', 'flush', 'publish', 'network', 'hop'] as const
type HopPart = typeof HOP_PARTS[number]
const HOP_PART_MEANING: Record<HopPart, string> = {
  validate: 'A decodes, verifies and inserts the event it received',
  wait: 'until A starts its next event (timers, minEventIntervalMs, a busy event loop)',
  build: 'A signs its event, inserts it (consensus, and the ordering and agent work that insertion completes) and commits it to SQLite',
  flush: 'until the event is on disk (the -wal fdatasync; on the event loop in the default \'inline\' mode)',
  publish: 'handing it to the push streams (the write through yamux, noise and pnet: synchronous) or gossipsub',
  network: 'until B\'s engine sees it (push stream or gossipsub, pnet, yamux, loopback or relay, B\'s event loop)',
  hop: 'the whole hop: received at A → received at B'
}

function analyseHops (dir: string, n: number, fromMs: number, toMs: number, probes: number): HopBreakdown {
  type Stages = Map<string, Map<string, number>>
  const sites: Array<{ stages: Stages, parentOf: Map<string, string>, loopDelay: number[] | null }> = []
  for (let i = 0; i < n; i++) {
    const stages: Stages = new Map()
    const parentOf = new Map<string, string>()
    let text = ''
    let loopDelay: number[] | null = null
    try { text = readFileSync(join(dir, `site-${i}.trace`), 'utf8') } catch { /* this build writes no trace */ }
    for (const line of text.split('\n')) {
      const [stage, id, at, otherParent] = line.split(' ')
      if (stage === 'loop-delay') {
        loopDelay = line.split(' ').slice(1).map(Number)
        continue
      }
      if (stage === undefined || id === undefined || at === undefined) continue
      let byId = stages.get(stage)
      if (byId === undefined) stages.set(stage, byId = new Map())
      byId.set(id, Number(at))
      if (otherParent !== undefined) parentOf.set(id, otherParent)
    }
    sites.push({ stages, parentOf, loopDelay })
  }
  const samples: Record<HopPart, number[]> = { validate: [], wait: [], build: [], flush: [], publish: [], network: [], hop: [] }
  let created = 0
  const inWindow = (t: number | undefined): t is number => t !== undefined && t >= fromMs && t <= toMs
  for (const [a, site] of sites.entries()) {
    const at = (stage: string, id: string): number | undefined => site.stages.get(stage)?.get(id)
    for (const [event, parent] of site.parentOf) {
      const creating = at('creating', event)
      if (!inWindow(creating)) continue
      created++
      const gotParent = at('received', parent)
      const insertedParent = at('inserted', parent)
      const [committed, durable, published] = [at('committed', event), at('durable', event), at('published', event)]
      if (gotParent === undefined || insertedParent === undefined || committed === undefined || durable === undefined || published === undefined) continue
      for (const [b, other] of sites.entries()) {
        const gotThere = other.stages.get('received')?.get(event)
        if (b === a || gotThere === undefined) continue
        samples.validate.push(insertedParent - gotParent)
        samples.wait.push(creating - insertedParent)
        samples.build.push(committed - creating)
        samples.flush.push(durable - committed)
        samples.publish.push(published - durable)
        samples.network.push(gotThere - published)
        samples.hop.push(gotThere - gotParent)
      }
    }
  }
  const parts = Object.fromEntries(HOP_PARTS.map((part) => {
    const s = summary(samples[part])
    return [part, [s.p50, quantile(samples[part], 0.9)]]
  })) as Record<HopPart, [number, number]>
  const delays = sites.map((s) => s.loopDelay).filter((d): d is number[] => d !== null)
  const loopDelay = delays.length === 0 ? null : [0, 1, 2, 3].map((k) => median(delays.map((d) => d[k]!))!) as [number, number, number, number]
  return { samples: samples.hop.length, parts, eventsPerProbe: created / probes, eventsPerSecond: created / n / ((toMs - fromMs) / 1000), loopDelay }
}

function quantile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN
}

function summary (values: number[]): { p50: number, p95: number, p99: number, count: number } {
  return { p50: quantile(values, 0.5), p95: quantile(values, 0.95), p99: quantile(values, 0.99), count: values.length }
}

function median (values: number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

async function until (what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const started = Date.now()
  for (;;) {
    try { if (await probe()) return } catch { /* not up yet */ }
    if (Date.now() - started > timeoutMs) throw new Error(`timed out: ${what}`)
    await sleep(100)
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

const fmt = (v: number | null, digits = 1): string => v === null || Number.isNaN(v) ? '—' : v.toFixed(digits)

export async function main (args: string[]): Promise<void> {
  const options = parse(args)
  const results: Result[] = []
  const pairs: Array<{ run: number, self: Result, other: Result }> = []
  for (const n of options.agents) {
    for (const delay of options.delays) {
      for (let run = 1; run <= options.repeat; run++) {
        process.stderr.write(`swarm bench: ${n} agents, one-way delay ${delay} ms, run ${run} ...\n`)
        // A/B alternates which build goes first, so that neither always runs on the warmer machine.
        const order: Array<'self' | 'other'> = options.ab === null ? ['self'] : run % 2 === 1 ? ['self', 'other'] : ['other', 'self']
        const got: Partial<Record<'self' | 'other', Result>> = {}
        for (const which of order) {
          const result = await measure(n, delay, options, which)
          got[which] = result
          process.stderr.write(`  ${which === 'self' ? 'this build' : 'other build'}: own p50 ${fmt(result.own.p50)} ms, all sites p50 ${fmt(result.all.p50)} ms, ${fmt(result.txPerSecond, 0)} tx/s, ${fmt(result.cpuMsPerProbe, 2)} agent CPU ms/probe, other load ${fmt(result.load, 2)}, load average ${fmt(result.loadAverage, 1)}\n`)
        }
        results.push(got.self!)
        if (got.other !== undefined) pairs.push({ run, self: got.self!, other: got.other })
      }
    }
  }
  const paper: Record<string, string> = { 0.05: '19', 5: '590', 15: '1,050' }
  const lines = [
    `Command: node dist/bench/run.js swarm ${args.join(' ')}`.trim(),
    `Machine: ${cpus()[0]?.model ?? '?'} × ${cpus().length}, Node ${process.version}; ${new Date().toISOString()}`,
    '',
    '| agents | one-way delay (ms) | ping RTT (ms, baseline) | own p50 | p95 | p99 | all sites p50 | p95 | p99 | p50 ÷ RTT | goal | paper avg (ms) | ordered tx/s | agent CPU ms/probe | other load (cores) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |'
  ]
  for (const r of results) {
    lines.push(`| ${r.agents} | ${r.delayMs} | ${fmt(r.rttMs, 2)} | ${fmt(r.own.p50)} | ${fmt(r.own.p95)} | ${fmt(r.own.p99)} | ${fmt(r.all.p50)} | ${fmt(r.all.p95)} | ${fmt(r.all.p99)} | ${r.rttMs === null || r.rttMs === 0 ? '—' : fmt(r.own.p50 / r.rttMs)} | ${goalOf(r)} | ${paper[String(r.delayMs)] ?? '—'} | ${fmt(r.txPerSecond, 0)} | ${fmt(r.cpuMsPerProbe, 2)} | ${fmt(r.load, 2)} |`)
  }
  if (pairs.length > 0) {
    lines.push('', `A/B against ${options.ab!} (ratio = this build ÷ other; < 1 is better for latency and CPU, > 1 for tx/s):`, '',
      '| agents | delay (ms) | run | own p50 this | other | ratio | tx/s this | other | ratio | CPU ms/probe this | other | ratio | other load (cores) this / other | load average this / other |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |')
    for (const { run, self, other } of pairs) {
      lines.push(`| ${self.agents} | ${self.delayMs} | ${run} | ${fmt(self.own.p50)} | ${fmt(other.own.p50)} | ${fmt(self.own.p50 / other.own.p50, 2)} | ${fmt(self.txPerSecond, 0)} | ${fmt(other.txPerSecond, 0)} | ${fmt(self.txPerSecond / other.txPerSecond, 2)} | ${fmt(self.cpuMsPerProbe, 2)} | ${fmt(other.cpuMsPerProbe, 2)} | ${fmt(self.cpuMsPerProbe / other.cpuMsPerProbe, 2)} | ${fmt(self.load, 2)} / ${fmt(other.load, 2)} | ${fmt(self.loadAverage, 1)} / ${fmt(other.loadAverage, 1)} |`)
    }
    lines.push('', '| agents | delay (ms) | runs | median own p50 ratio | median tx/s ratio | median CPU/probe ratio |', '| ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const n of options.agents) {
      for (const delay of options.delays) {
        const these = pairs.filter((p) => p.self.agents === n && p.self.delayMs === delay)
        if (these.length === 0) continue
        lines.push(`| ${n} | ${delay} | ${these.length} | ${fmt(median(these.map((p) => p.self.own.p50 / p.other.own.p50)), 2)} | ${fmt(median(these.map((p) => p.self.txPerSecond / p.other.txPerSecond)), 2)} | ${fmt(median(these.map((p) => p.self.cpuMsPerProbe / p.other.cpuMsPerProbe)), 2)} |`)
      }
    }
  }
  const traced = results.filter((r) => r.hops !== null)
  if (traced.length > 0) {
    lines.push('', 'One gossip hop (this build, latency phase): p50 / p90 in ms per part.', '',
      `| agents | delay (ms) | hops | ${HOP_PARTS.join(' | ')} | hops per ordering (own p50 ÷ hop p50) | events per probe | own events/s per agent | event-loop delay p50 / p90 / p99 / mean (ms) |`,
      `| ---: | ---: | ---: | ${HOP_PARTS.map(() => '---:').join(' | ')} | ---: | ---: | ---: | --- |`)
    for (const r of traced) {
      const h = r.hops!
      lines.push(`| ${r.agents} | ${r.delayMs} | ${h.samples} | ${HOP_PARTS.map((p) => `${fmt(h.parts[p][0], 2)} / ${fmt(h.parts[p][1], 2)}`).join(' | ')} | ${fmt(r.own.p50 / h.parts.hop[0], 1)} | ${fmt(h.eventsPerProbe, 1)} | ${fmt(h.eventsPerSecond, 0)} | ${h.loopDelay === null ? '—' : h.loopDelay.map((v) => fmt(v, 2)).join(' / ')} |`)
    }
    lines.push('', ...HOP_PARTS.map((p) => `- ${p}: ${HOP_PART_MEANING[p]}`))
  }
  const text = lines.join('\n') + '\n'
  process.stdout.write(text)
  mkdirSync(fileURLToPath(new URL('../../bench/out/', import.meta.url)), { recursive: true })
  writeFileSync(fileURLToPath(new URL(`../../bench/out/swarm-${new Date().toISOString().slice(0, 16).replace(/[:T]/g, '')}.md`, import.meta.url)), text)
}

function goalOf (r: Result): string {
  if (r.delayMs === 0) return r.agents === 3 ? (r.own.p50 <= 10 ? 'p50 ≤ 10: met' : 'p50 ≤ 10: missed') : '—'
  return r.own.p50 <= 8 * r.delayMs + 10 ? `≤ ${fmt(8 * r.delayMs + 10)}: met` : `≤ ${fmt(8 * r.delayMs + 10)}: missed`
}
