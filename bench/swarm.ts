/**
 * Swarm benchmark (issue 4): consensus latency p50/p95/p99 and ordered transactions/s for 3, 5
 * and 10 agents (separate `hgmig agent` processes) on loopback, and with one-way link delays.
 *
 *   node dist/bench/run.js swarm [--agents 3,5,10] [--delays 0,0.05,5,15] [--seconds 15] [--rate 4] [--burst 300]
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
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiClient, type ApiFile, type LatencySample } from '../p2p/api/index.js'
import { startLoadMeter } from './machine-load.js'

const bin = fileURLToPath(new URL('../../bin/hgmig.js', import.meta.url))

interface Options { agents: number[], delays: number[], seconds: number, rate: number, burst: number }

function parse (args: string[]): Options {
  const options: Options = { agents: [3, 5, 10], delays: [0, 0.05, 5, 15], seconds: 15, rate: 4, burst: 300 }
  for (let i = 0; i < args.length; i++) {
    const value = args[i + 1]
    const list = (): number[] => (value ?? '').split(',').map(Number)
    switch (args[i]) {
      case '--agents': options.agents = list(); i++; break
      case '--delays': options.delays = list(); i++; break
      case '--seconds': options.seconds = Number(value); i++; break
      case '--rate': options.rate = Number(value); i++; break
      case '--burst': options.burst = Number(value); i++; break
      case '--help': process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]! + '*/\n'); process.exit(0); break
      default: throw new Error(`unknown option ${args[i]} (see --help)`)
    }
  }
  return options
}

// ------------------------------------------------------------------ the delaying relay

/** Forwards 127.0.0.1:listen → 127.0.0.1:target, holding every chunk `delayMs` in each direction, in order. */
async function startRelay (target: number, delayMs: number): Promise<{ port: number, server: Server }> {
  const server = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1')
    pipeDelayed(inbound, outbound, delayMs)
    pipeDelayed(outbound, inbound, delayMs)
    const close = (): void => { inbound.destroy(); outbound.destroy() }
    inbound.on('error', close).on('close', close)
    outbound.on('error', close).on('close', close)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as { port: number }).port, server }
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

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return port
}

// ------------------------------------------------------------------ a swarm of agents

interface Swarm { clients: ApiClient[], children: ChildProcess[], relays: Server[], root: string }

function hgmig (...args: string[]): string {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`hgmig ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

async function startSwarm (n: number, delayMs: number): Promise<Swarm> {
  const root = mkdtempSync(join(tmpdir(), 'hgmig-bench-swarm-'))
  const dirs = Array.from({ length: n }, (_, i) => join(root, `site-${i}`))
  const peerIds = dirs.map((dir, i) => (JSON.parse(hgmig('swarm', 'create', '--name', `site-${i}`, '--data', dir, '--json')) as { peerId: string }).peerId)
  // All founders: the benchmark measures consensus, not joining.
  const genesis = JSON.parse(readFileSync(join(dirs[0]!, 'swarm.json'), 'utf8')) as { members: unknown[] }
  genesis.members = dirs.map((dir) => (JSON.parse(readFileSync(join(dir, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0])
  for (const dir of dirs) writeFileSync(join(dir, 'swarm.json'), JSON.stringify(genesis), { mode: 0o600 })

  const swarm: Swarm = { clients: [], children: [], relays: [], root }
  const announced: string[] = []
  for (let i = 0; i < n; i++) {
    const port = await freePort()
    let announce = `/ip4/127.0.0.1/tcp/${port}`
    if (delayMs > 0) {
      const relay = await startRelay(port, delayMs)
      swarm.relays.push(relay.server)
      announce = `/ip4/127.0.0.1/tcp/${relay.port}`
    }
    announced.push(`${announce}/p2p/${peerIds[i]!}`)
    const args = ['agent', '--data', dirs[i]!, '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--announce', announce, ...(i === 0 ? [] : ['--bootstrap', announced[0]!])]
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'inherit'] })
    swarm.children.push(child)
  }
  for (const dir of dirs) swarm.clients.push(await clientFor(dir))
  // Everyone connected to everyone (the address book spreads the relays' addresses).
  await until('all agents connected', async () => (await Promise.all(swarm.clients.map(async (c) => await c.status()))).every((s) => s.members.every((m) => m.connected)), 120_000)
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
  load: number
}

async function measure (n: number, delayMs: number, options: Options): Promise<Result> {
  const swarm = await startSwarm(n, delayMs)
  try {
    const { clients } = swarm
    const ordered = async (): Promise<number[]> => (await Promise.all(clients.map(async (c) => await c.status()))).map((s) => s.transactions.ordered)
    // Warm-up: connections, meshes and JIT.
    await Promise.all(clients.map(async (c) => await c.ping({ count: 5 })))
    await until('warm-up ordered', async () => (await ordered()).every((o) => o >= 5 * n), 120_000)
    const rtts = (await Promise.all(clients.map(async (c) => await c.status()))).flatMap((s) => s.members.filter((m) => !m.self && m.rttMs !== null).map((m) => m.rttMs!))
    const meter = startLoadMeter(() => swarm.children.map((c) => c.pid ?? 0))

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
    const series = await Promise.all(clients.map(async (c) => await c.latencySeries()))
    const recent = (samples: LatencySample[]): number[] => samples.filter((s) => s.at >= since).map((s) => s.latencyMs)
    const own = series.flatMap((s) => recent(s.samples))
    const all = [...own, ...series.flatMap((s) => recent(s.remote))]

    const start = performance.now()
    const base = Math.min(...await ordered())
    await Promise.all(clients.map(async (c) => { for (let left = options.burst; left > 0; left -= 1000) await c.ping({ count: Math.min(1000, left) }) }))
    await until('burst ordered everywhere', async () => (await ordered()).every((o) => o >= base + n * options.burst), 600_000)
    const txPerSecond = n * options.burst / ((performance.now() - start) / 1000)
    return { agents: n, delayMs, rttMs: median(rtts), own: summary(own), all: summary(all), txPerSecond, load: meter.stop() }
  } finally {
    await stopSwarm(swarm)
  }
}

function summary (values: number[]): { p50: number, p95: number, p99: number, count: number } {
  const sorted = [...values].sort((a, b) => a - b)
  const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99), count: sorted.length }
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
  for (const n of options.agents) {
    for (const delay of options.delays) {
      process.stderr.write(`swarm bench: ${n} agents, one-way delay ${delay} ms ...\n`)
      const result = await measure(n, delay, options)
      results.push(result)
      process.stderr.write(`  own p50 ${fmt(result.own.p50)} ms, all sites p50 ${fmt(result.all.p50)} ms, ${fmt(result.txPerSecond, 0)} tx/s\n`)
    }
  }
  const paper: Record<string, string> = { 0.05: '19', 5: '590', 15: '1,050' }
  const lines = [
    `Command: node dist/bench/run.js swarm ${args.join(' ')}`.trim(),
    `Machine: ${cpus()[0]?.model ?? '?'} × ${cpus().length}, Node ${process.version}; ${new Date().toISOString()}`,
    '',
    '| agents | one-way delay (ms) | ping RTT (ms, baseline) | own p50 | p95 | p99 | all sites p50 | p95 | p99 | p50 ÷ RTT | goal | paper avg (ms) | ordered tx/s | other load (cores) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |'
  ]
  for (const r of results) {
    const goal = r.delayMs === 0 ? (r.agents === 3 ? (r.own.p50 <= 10 ? 'p50 ≤ 10: met' : 'p50 ≤ 10: missed') : '—') : (r.own.p50 <= 8 * r.delayMs + 10 ? `≤ ${fmt(8 * r.delayMs + 10)}: met` : `≤ ${fmt(8 * r.delayMs + 10)}: missed`)
    lines.push(`| ${r.agents} | ${r.delayMs} | ${fmt(r.rttMs, 2)} | ${fmt(r.own.p50)} | ${fmt(r.own.p95)} | ${fmt(r.own.p99)} | ${fmt(r.all.p50)} | ${fmt(r.all.p95)} | ${fmt(r.all.p99)} | ${r.rttMs === null || r.rttMs === 0 ? '—' : fmt(r.own.p50 / r.rttMs)} | ${goal} | ${paper[String(r.delayMs)] ?? '—'} | ${fmt(r.txPerSecond, 0)} | ${fmt(r.load, 2)} |`)
  }
  const text = lines.join('\n') + '\n'
  process.stdout.write(text)
  mkdirSync(fileURLToPath(new URL('../../bench/out/', import.meta.url)), { recursive: true })
  writeFileSync(fileURLToPath(new URL(`../../bench/out/swarm-${new Date().toISOString().slice(0, 16).replace(/[:T]/g, '')}.md`, import.meta.url)), text)
}
