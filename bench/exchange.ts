/**
 * Benchmark of the chunk exchange (issue 5). Every figure is measured against a baseline taken in
 * the same run, between separate OS processes on loopback:
 *
 *   node dist/bench/exchange.js streams  [--mib 512] [--runs 3] [--variant 0,5,7]   plain TCP copy vs libp2p stack variants (protector,
 *                                     noise or TLS, streams, yamux window, send size; ALL_STACK_VARIANTS), interleaved per run, CPU per side
 *   node dist/bench/exchange.js fetch    [--mib 256] [--runs 3] [--sources 1|2] [--compare DIST]   one-source and two-source image fetch vs plain TCP copy;
 *                                     with --compare, every run also fetches with the sites of another build (DIST = its dist/ directory), A/B interleaved;
 *                                     with --compare-options JSON, with this build's sites given these options (e.g. '{"sendCoalesceBytes":0}')
 *   node dist/bench/exchange.js limited  [--mib 32] [--mbit 40] [--runs 3]   one vs two sources, each egress-limited (token bucket)
 *   node dist/bench/exchange.js knockout [--mib 64] [--mbit 100] [--runs 3]  two rate-limited sources, one killed at 50 %
 *   node dist/bench/exchange.js tbf      [--mib 64] [--mbit 100] [--runs 3]   sites in network namespaces, tbf-shaped links (root): TCP, one vs two sources, knockout
 *
 * (`npm run bench -- exchange <mode> ...` runs the same.) Child roles (`--child ...`) are this
 * script run again as the other process.
 */
import '../p2p/polyfills.js'
import '../test/support/exchange-pnet-guard.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { createSwarmKey, privateNetwork } from '../p2p/swarm/index.js'
import { CHUNK, missingBytes, plan, Site, writeImage, writeSwarmFile, type ChunkPlan, type FetchStatus, type SiteOptions } from '../test/support/exchange-sites.js'
import { NetnsLab, netnsLabUnavailable } from '../test/support/exchange-netns.js'

const self = fileURLToPath(import.meta.url)
const MiB = 1024 * 1024
const WRITE_SIZE = 64 * 1024

function option (args: string[], name: string, fallback: number): number {
  const index = args.indexOf(`--${name}`)
  if (index < 0) return fallback
  const value = Number(args[index + 1])
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`)
  return value
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

const fmt = (bytesPerSecond: number): string => `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`

// ------------------------------------------------------------------ child processes

/** Starts this script as a child in `role` (in network namespace `netns`, if given); resolves with the child and its first stdout line. */
async function child (role: string[], netns?: string): Promise<{ proc: ChildProcess, line: string, lines: AsyncIterator<string> }> {
  // HGMIG_BENCH_PROFILE=DIR: the child writes a V8 CPU profile there (where the sender's time goes).
  const profile = process.env.HGMIG_BENCH_PROFILE
  const flags = profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`]
  const command = [process.execPath, ...flags, self, '--child', ...role]
  // `ip netns exec` replaces itself with node: the child's pid is node's, so kill() reaches it.
  const proc = netns === undefined
    ? spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn('ip', ['netns', 'exec', netns, ...command], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]()
  const first = await lines.next()
  if (first.done === true) throw new Error(`child ${role.join(' ')} exited before answering`)
  return { proc, line: first.value, lines }
}

async function runChild (args: string[]): Promise<void> {
  const [role, bytesArg, variantArg, keyArg] = args
  const bytes = Number(bytesArg)
  const payload = Buffer.alloc(WRITE_SIZE, 7)
  if (role === 'tcp-source') {
    const server = createServer((socket) => {
      const started = process.cpuUsage()
      let sent = 0
      const pump = (): void => {
        while (sent < bytes) {
          sent += WRITE_SIZE
          if (!socket.write(payload)) { socket.once('drain', pump); return }
        }
        socket.end(() => {
          const cpu = process.cpuUsage(started)
          process.stdout.write(JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n')
        })
      }
      pump()
    })
    // A host as third argument: a source in a network namespace listens on its own address.
    server.listen(0, variantArg ?? '127.0.0.1', () => { process.stdout.write(`${(server.address() as { port: number }).port}\n`) })
    return
  }
  if (role === 'tcp-sink') {
    // tcp-sink HOST PORT BYTES: the receiving end of a plain TCP copy, in another namespace.
    const [host, port] = [variantArg as string, Number(keyArg)]
    const started = performance.now()
    let received = 0
    await new Promise<void>((resolve, reject) => {
      const socket = createConnection({ host, port })
      socket.on('data', (data: Buffer) => { received += data.byteLength })
      socket.on('end', resolve)
      socket.on('error', reject)
    })
    process.stdout.write(JSON.stringify({ received, bytesPerSecond: received / ((performance.now() - started) / 1000) }) + '\n')
    process.exit(0)
  }
  if (role === 'p2p-source') {
    const variant = JSON.parse(variantArg as string) as StackVariant
    const node = await stackNode(variant, new TextEncoder().encode(keyArg as string))
    await node.handle('/bench/bytes/1.0.0', (stream) => {
      const started = process.cpuUsage()
      sendBytes(stream, bytes, Buffer.alloc(variant.sendSize ?? WRITE_SIZE, 7)).then(() => {
        const cpu = process.cpuUsage(started)
        process.stdout.write(JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n')
      }, (err: unknown) => {
        const reason = err instanceof Event ? (err as Event & { error?: Error }).error : err
        process.stderr.write(`p2p-source: sending failed: ${String((reason as Error | undefined)?.stack ?? reason)}\n`)
        process.exit(1)
      })
    }, { maxInboundStreams: 64 })
    process.stdout.write(`${node.getMultiaddrs()[0]!.toString()}\n`)
    process.once('SIGINT', () => { void Promise.resolve(node.stop()).then(() => process.exit(0)) })
  }
}

/** Acknowledged bytes the sender may run ahead of: the exchange's own window works the same way. */
const ACK_EVERY = MiB
const ACK = new Uint8Array(1)
const SEND_AHEAD = 8 * MiB

/**
 * Sends `bytes` and keeps at most SEND_AHEAD unacknowledged: muxer backpressure alone lets the
 * sender queue tens of MiB under the pnet layer, which then fails (see bench/RESULTS.md, issue 5).
 */
async function sendBytes (stream: Stream, bytes: number, payload: Uint8Array): Promise<void> {
  let acked = 0
  let wake: (() => void) | undefined
  stream.addEventListener('message', (event) => {
    acked += event.data.byteLength * ACK_EVERY
    wake?.()
  })
  for (let sent = 0; sent < bytes; sent += payload.byteLength) {
    while (sent - acked >= SEND_AHEAD) await new Promise<void>((resolve) => { wake = resolve })
    if (!stream.send(payload)) await stream.onDrain()
  }
  await stream.close()
}

// ------------------------------------------------------------------ streams: where the time goes

interface StackVariant {
  name: string
  /** 'swarm': the swarm's own private-network protector (libsodium XSalsa20); 'pnet': @libp2p/pnet's. */
  protector: 'swarm' | 'pnet' | 'none'
  streams: number
  /** yamux per-stream receive window, bytes (default 256 KiB). */
  window?: number
  /** Bytes per stream.send (default 64 KiB, one block): the exchange's server now gathers answers into sends of up to 256 KiB. */
  sendSize?: number
  /** Connection encryption: noise (default, what createSwarmNode runs) or TLS 1.3 (@libp2p/tls: Node's TLS, OpenSSL). */
  encrypter?: 'noise' | 'tls'
}

async function stackNode (variant: StackVariant, swarmKey: Uint8Array): Promise<Libp2p> {
  const window = variant.window
  return await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [variant.encrypter === 'tls' ? tls() : noise()],
    streamMuxers: [yamux(window === undefined ? {} : { streamOptions: { initialStreamWindowSize: window, maxStreamWindowSize: Math.max(window, 16 * MiB) } })],
    ...(variant.protector === 'pnet' ? { connectionProtector: preSharedKey({ psk: swarmKey }) } : {}),
    ...(variant.protector === 'swarm' ? { connectionProtector: privateNetwork({ psk: swarmKey }) } : {})
  })
}

/** Plain TCP: one process writes `bytes` in 64 KiB writes, this one reads them. */
async function tcpCopy (bytes: number): Promise<{ bytesPerSecond: number, receiverCpuMs: number, senderCpuMs: number }> {
  const { proc, line, lines } = await child(['tcp-source', String(bytes)])
  try {
    const cpu = process.cpuUsage()
    const started = performance.now()
    let received = 0
    await new Promise<void>((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port: Number(line) })
      socket.on('data', (data: Buffer) => { received += data.byteLength })
      socket.on('end', resolve)
      socket.on('error', reject)
    })
    const seconds = (performance.now() - started) / 1000
    const used = process.cpuUsage(cpu)
    const sender = JSON.parse((await lines.next()).value as string) as { cpuMs: number }
    if (received !== bytes) throw new Error(`tcp copy: received ${received} of ${bytes} bytes`)
    return { bytesPerSecond: bytes / seconds, receiverCpuMs: (used.user + used.system) / 1000, senderCpuMs: sender.cpuMs }
  } finally {
    proc.kill('SIGKILL')
  }
}

/** A libp2p stack between two processes: `bytes` over `variant.streams` streams in 64 KiB sends. */
async function streamCopy (variant: StackVariant, bytes: number): Promise<{ bytesPerSecond: number, receiverCpuMs: number, senderCpuMs: number }> {
  const swarmKey = createSwarmKey()
  const sendSize = variant.sendSize ?? WRITE_SIZE
  const perStream = Math.ceil(bytes / variant.streams / sendSize) * sendSize
  const { proc, line, lines } = await child(['p2p-source', String(perStream), JSON.stringify(variant), new TextDecoder().decode(swarmKey)])
  const node = await stackNode(variant, swarmKey)
  try {
    const connection = await node.dial(multiaddr(line))
    const cpu = process.cpuUsage()
    const started = performance.now()
    let received = 0
    await Promise.all(Array.from({ length: variant.streams }, async () => {
      const stream = await connection.newStream('/bench/bytes/1.0.0')
      let unacked = 0
      await new Promise<void>((resolve, reject) => {
        stream.addEventListener('message', (event) => {
          received += event.data.byteLength
          unacked += event.data.byteLength
          for (; unacked >= ACK_EVERY; unacked -= ACK_EVERY) stream.send(ACK)
        })
        stream.addEventListener('remoteCloseWrite', () => { resolve() })
        stream.addEventListener('close', (event) => { if (event.error !== undefined) reject(event.error) })
      })
    }))
    const seconds = (performance.now() - started) / 1000
    const used = process.cpuUsage(cpu)
    let senderCpuMs = 0
    for (let i = 0; i < variant.streams; i++) senderCpuMs += (JSON.parse((await lines.next()).value as string) as { cpuMs: number }).cpuMs
    if (received !== perStream * variant.streams) throw new Error(`${variant.name}: received ${received} of ${perStream * variant.streams} bytes`)
    return { bytesPerSecond: received / seconds, receiverCpuMs: (used.user + used.system) / 1000, senderCpuMs }
  } finally {
    await node.stop()
    // SIGTERM, not SIGKILL: a profiled child writes its profile on the way out.
    proc.kill(process.env.HGMIG_BENCH_PROFILE === undefined ? 'SIGKILL' : 'SIGINT')
  }
}

const ALL_STACK_VARIANTS: StackVariant[] = [
  { name: 'tcp+noise+yamux+swarm protector (createSwarmNode), 1 stream, 4 MiB yamux window', protector: 'swarm', streams: 1, window: 4 * MiB },
  { name: 'tcp+noise+yamux+@libp2p/pnet, 1 stream, 4 MiB yamux window', protector: 'pnet', streams: 1, window: 4 * MiB },
  { name: 'tcp+noise+yamux (no protector), 1 stream, 4 MiB yamux window', protector: 'none', streams: 1, window: 4 * MiB },
  { name: 'tcp+noise+yamux+swarm protector, 4 streams, 4 MiB yamux window', protector: 'swarm', streams: 4, window: 4 * MiB },
  { name: 'tcp+noise+yamux+swarm protector, 1 stream, 256 KiB yamux window (default)', protector: 'swarm', streams: 1 },
  { name: 'tcp+noise+yamux+swarm protector, 1 stream, 4 MiB yamux window, 256 KiB sends (the exchange server\'s gathering)', protector: 'swarm', streams: 1, window: 4 * MiB, sendSize: 256 * 1024 },
  { name: 'tcp+noise+yamux+swarm protector, 1 stream, 4 MiB yamux window, 1 MiB sends', protector: 'swarm', streams: 1, window: 4 * MiB, sendSize: 1024 * 1024 },
  { name: 'tcp+TLS 1.3+yamux+swarm protector, 1 stream, 4 MiB yamux window, 256 KiB sends', protector: 'swarm', streams: 1, window: 4 * MiB, sendSize: 256 * 1024, encrypter: 'tls' },
  { name: 'tcp+TLS 1.3+yamux (no protector), 1 stream, 4 MiB yamux window, 256 KiB sends', protector: 'none', streams: 1, window: 4 * MiB, sendSize: 256 * 1024, encrypter: 'tls' },
  { name: 'tcp+noise+yamux (no protector), 1 stream, 4 MiB yamux window, 256 KiB sends', protector: 'none', streams: 1, window: 4 * MiB, sendSize: 256 * 1024 }
]

async function streams (args: string[]): Promise<void> {
  const bytes = option(args, 'mib', 512) * MiB
  const runs = option(args, 'runs', 3)
  const only = args.indexOf('--variant')
  // --variant 0,5: those variants only; each run goes through all of them in turn (so they share the machine's load).
  const variants = only < 0 ? ALL_STACK_VARIANTS : (args[only + 1] ?? '').split(',').map((i) => ALL_STACK_VARIANTS[Number(i)] as StackVariant)
  console.log(`streams: ${bytes / MiB} MiB per run, ${runs} runs, median; variants interleaved within each run; ratio = variant / plain TCP measured right before it`)
  type Figures = { rates: number[], ratios: number[], cpuRecv: number[], cpuSend: number[] }
  const figures = variants.map((): Figures => ({ rates: [], ratios: [], cpuRecv: [], cpuSend: [] }))
  const tcpRates: number[] = []
  for (let run = 0; run < runs; run++) {
    for (const [i, variant] of variants.entries()) {
      const base = await tcpCopy(bytes)
      tcpRates.push(base.bytesPerSecond)
      const r = await streamCopy(variant, bytes)
      const f = figures[i] as Figures
      f.rates.push(r.bytesPerSecond)
      f.ratios.push(r.bytesPerSecond / base.bytesPerSecond)
      // CPU seconds per GB moved: what each side spends, independent of the wall clock.
      f.cpuRecv.push(r.receiverCpuMs / (bytes / 1e9) / 1000)
      f.cpuSend.push(r.senderCpuMs / (bytes / 1e9) / 1000)
      console.log(`  run ${run + 1}, ${variant.name}: ${fmt(r.bytesPerSecond)}, ${(r.bytesPerSecond / base.bytesPerSecond).toFixed(2)} x TCP (${fmt(base.bytesPerSecond)}), CPU s/GB receiver ${(r.receiverCpuMs / (bytes / 1e9) / 1000).toFixed(2)} sender ${(r.senderCpuMs / (bytes / 1e9) / 1000).toFixed(2)}`)
    }
  }
  for (const [i, variant] of variants.entries()) {
    const f = figures[i] as Figures
    console.log(`${variant.name}: ${fmt(median(f.rates))}, ${median(f.ratios).toFixed(2)} x TCP, CPU s/GB receiver ${median(f.cpuRecv).toFixed(2)} sender ${median(f.cpuSend).toFixed(2)}`)
  }
  const base = await tcpCopy(bytes)
  console.log(`plain TCP: ${fmt(median(tcpRates))} (median of ${tcpRates.length}), CPU s/GB receiver ${(base.receiverCpuMs / (bytes / 1e9) / 1000).toFixed(2)} sender ${(base.senderCpuMs / (bytes / 1e9) / 1000).toFixed(2)}`)
}

// ------------------------------------------------------------------ image fetch

interface FetchRun {
  /** CPU seconds per GB fetched, of the fetcher and of the sources together (load-independent, unlike rates). */
  fetcherCpuPerGB: number
  sourcesCpuPerGB: number
  seconds: number
  fetchSeconds: number
  bytes: number
  status: FetchStatus
}

/** Site options for every source, or per source index; `fetcher` for the fetching site. */
type SourceOptions = SiteOptions | ((index: number) => SiteOptions)

async function fetchRun (dir: string, swarm: string, image: string, sourceCount: number, sourceOptions: SourceOptions = {}, during?: (sites: { sources: Site[], fetcher: Site, total: number }) => Promise<void>, fetcherOptions: SiteOptions = {}): Promise<FetchRun> {
  const runDir = mkdtempSync(join(dir, 'run-'))
  const sources: Site[] = []
  let fetcher: Site | undefined
  try {
    for (let i = 0; i < sourceCount; i++) {
      const site = await Site.start(swarm, i, join(runDir, `source${i}`), typeof sourceOptions === 'function' ? sourceOptions(i) : sourceOptions)
      sources.push(site)
      await site.call({ cmd: 'addImage', path: image, layer: 'os', name: 'img' })
    }
    fetcher = await Site.start(swarm, 3, join(runDir, 'fetcher'), fetcherOptions)
    const request = await sources[0]!.requestFor('img', sources)
    const cpu = async (site: Site): Promise<number> => (await site.call<{ cpuMs: number }>({ cmd: 'cpu' })).cpuMs
    const fetcherCpu = await cpu(fetcher)
    const sourcesCpu = await Promise.all(sources.map(cpu))
    const started = performance.now()
    await fetcher.fetchStart(request)
    const total = (request.chunks as string[]).length
    const watching = during?.({ sources, fetcher, total })
    // A failure names what every site wrote to stderr (a source that crashed says why).
    const sitesSaid = (): string => [...sources, fetcher!].map((site) => `\n  site ${site.index} stderr: ${site.process.stderr.join('').trim().slice(-2000)}`).join('')
    const status = await fetcher.fetchEnd(600_000)
    try {
      await watching
    } catch (err) {
      throw new Error(`${(err as Error).message}${sitesSaid()}`, { cause: err })
    }
    const seconds = (performance.now() - started) / 1000
    if (status.result === undefined) throw new Error(`fetch failed: ${status.failure ?? ''}${sitesSaid()}`)
    const gb = status.result.bytesFetched / 1e9
    const fetcherCpuPerGB = (await cpu(fetcher) - fetcherCpu) / 1000 / gb
    let sourcesCpuMs = 0
    for (const [i, site] of sources.entries()) sourcesCpuMs += await cpu(site).catch(() => sourcesCpu[i] as number) - (sourcesCpu[i] as number)
    const result = status.result as FetchStatus['result'] & { fetchMs: number, firstBlockMs: number }
    // From the first block on: dialling and handshakes (a second or more on a loaded machine) are not transfer.
    return { seconds, fetchSeconds: (result.fetchMs - result.firstBlockMs) / 1000, bytes: result.bytesFetched, status, fetcherCpuPerGB, sourcesCpuPerGB: sourcesCpuMs / 1000 / gb }
  } finally {
    await fetcher?.stop()
    for (const s of sources) await s.stop()
    rmSync(runDir, { recursive: true, force: true })
  }
}

/** A scratch directory with a swarm file and a `mib` MiB image of the usual plan; removed afterwards. */
async function withImage (name: string, mib: number, body: (fixture: { dir: string, swarm: string, image: string, chunkPlan: ChunkPlan, missing: { chunks: number, bytes: number } }) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `hgmig-bench-${name}-`))
  try {
    const swarm = await writeSwarmFile(dir, 4)
    const image = join(dir, 'image.img')
    const chunkPlan = plan(Math.round(mib * MiB / CHUNK), 1)
    writeImage(image, chunkPlan, new Map())
    await body({ dir, swarm, image, chunkPlan, missing: missingBytes(chunkPlan, undefined) })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** One build's sites: this one, or another build's (an A/B in the same run). */
interface Build {
  label: string
  /** Its exchange-peer.js; undefined: this build's. */
  script: string | undefined
  /** Options for every site of it. */
  options?: SiteOptions
}

async function fetchBench (args: string[]): Promise<void> {
  const mib = option(args, 'mib', 256)
  const runs = option(args, 'runs', 3)
  const compareAt = args.indexOf('--compare')
  const optionsAt = args.indexOf('--compare-options')
  const builds: Build[] = [{ label: 'this build', script: undefined }]
  if (compareAt >= 0) builds.unshift({ label: `before (${args[compareAt + 1] ?? ''})`, script: join(args[compareAt + 1] ?? '', 'test', 'support', 'exchange-peer.js') })
  if (optionsAt >= 0) builds.unshift({ label: `with ${args[optionsAt + 1] ?? ''}`, script: undefined, options: JSON.parse(args[optionsAt + 1] ?? '{}') as SiteOptions })
  await withImage('fetch', mib, async ({ dir, swarm, image, missing }) => {
    console.log(`fetch: ${mib} MiB image, ${(missing.bytes / MiB).toFixed(0)} MiB of distinct non-zero chunks to fetch, ${runs} runs, median${builds.length > 1 ? '; builds alternate within each run (order reversed every other run), every ratio is this build / the other in the same run' : ''}`)
    const only = args.indexOf('--sources')
    for (const sources of only < 0 ? [1, 2] : [option(args, 'sources', 1)]) {
      type Figures = { rates: number[], ratios: number[], totals: number[], imports: number[], cpuFetcher: number[], cpuSources: number[] }
      const figures = builds.map((): Figures => ({ rates: [], ratios: [], totals: [], imports: [], cpuFetcher: [], cpuSources: [] }))
      const tcpRates: number[] = []
      /** Per other build: this build's figure over its figure, per run. */
      const versus = builds.slice(0, -1).map(() => ({ cpuFetcher: [] as number[], totals: [] as number[], rates: [] as number[] }))
      for (let run = 0; run < runs; run++) {
        const base = await tcpCopy(Math.ceil(missing.bytes / WRITE_SIZE) * WRITE_SIZE)
        tcpRates.push(base.bytesPerSecond)
        const order = builds.map((_, i) => i)
        if (run % 2 === 1) order.reverse()
        const results: FetchRun[] = []
        for (const i of order) {
          const build = builds[i] as Build
          const options: SiteOptions = { ...build.options, ...(build.script === undefined ? {} : { script: build.script }) }
          const r = await fetchRun(dir, swarm, image, sources, options, undefined, options)
          results[i] = r
          const f = figures[i] as Figures
          f.rates.push(r.bytes / r.fetchSeconds)
          f.ratios.push(r.bytes / r.fetchSeconds / base.bytesPerSecond)
          f.totals.push(r.seconds)
          f.imports.push((r.status.result?.importMs ?? 0) / 1000)
          f.cpuFetcher.push(r.fetcherCpuPerGB)
          f.cpuSources.push(r.sourcesCpuPerGB)
          const contributions = r.status.result!.sources.map((s) => `${(s.bytes / MiB).toFixed(0)} MiB`).join(' + ')
          console.log(`  run ${run + 1}, ${sources} source(s), ${build.label}: network phase ${fmt(r.bytes / r.fetchSeconds)} (${contributions}), whole fetch ${r.seconds.toFixed(2)} s (registration/import ${((r.status.result?.importMs ?? 0) / 1000).toFixed(2)} s); plain TCP ${fmt(base.bytesPerSecond)}; CPU s/GB fetcher ${r.fetcherCpuPerGB.toFixed(1)}, sources ${r.sourcesCpuPerGB.toFixed(1)}`)
        }
        const after = results[results.length - 1] as FetchRun
        versus.forEach((v, i) => {
          const before = results[i] as FetchRun
          v.cpuFetcher.push(after.fetcherCpuPerGB / before.fetcherCpuPerGB)
          v.totals.push(after.seconds / before.seconds)
          v.rates.push((after.bytes / after.fetchSeconds) / (before.bytes / before.fetchSeconds))
        })
      }
      builds.forEach((build, i) => {
        const f = figures[i] as Figures
        console.log(`${sources} source(s), ${build.label}: ${fmt(median(f.rates))} = ${median(f.ratios).toFixed(2)} x plain TCP (${fmt(median(tcpRates))}); whole fetch ${median(f.totals).toFixed(2)} s (registration/import ${median(f.imports).toFixed(2)} s); CPU s/GB fetcher ${median(f.cpuFetcher).toFixed(1)}, sources ${median(f.cpuSources).toFixed(1)}`)
      })
      versus.forEach((v, i) => {
        console.log(`${sources} source(s), this build / ${(builds[i] as Build).label} (median of per-run ratios): fetcher CPU s/GB ${median(v.cpuFetcher).toFixed(2)} x, whole fetch ${median(v.totals).toFixed(2)} x, network-phase rate ${median(v.rates).toFixed(2)} x`)
      })
    }
  })
}

// ------------------------------------------------------------------ knockout

/**
 * Follows a running fetch until its network phase ends; at `killAtShare` of the chunks done it
 * kill -9s the first source. Times on this process's clock from the fetch request.
 */
async function watchFetch (sites: { sources: Site[], fetcher: Site, total: number }, killAtShare: number | undefined): Promise<{ end: number, killedAt: number, doneAtKill: number }> {
  const t0 = performance.now()
  let killedAt = 0
  let doneAtKill = 0
  for (;;) {
    const { progress, result, failure } = await sites.fetcher.status()
    if (failure !== undefined) throw new Error(failure)
    if (result !== undefined || (progress !== undefined && progress.phase !== 'fetching' && progress.phase !== 'preparing')) {
      return { end: (performance.now() - t0) / 1000, killedAt, doneAtKill }
    }
    if (killAtShare !== undefined && killedAt === 0 && progress !== undefined && progress.fetchChunksDone >= killAtShare * sites.total) {
      killedAt = (performance.now() - t0) / 1000
      doneAtKill = progress.fetchChunksDone
      await sites.sources[0]!.kill()
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function knockout (args: string[]): Promise<void> {
  const mib = option(args, 'mib', 64)
  const mbit = option(args, 'mbit', 100)
  const runs = option(args, 'runs', 3)
  const rate = mbit * 1e6 / 8
  await withImage('knockout', mib, async ({ dir, swarm, image, missing }) => {
    console.log(`knockout: ${mib} MiB image (${(missing.bytes / MiB).toFixed(1)} MiB to fetch), two sources each limited to ${mbit} Mbit/s (egress token bucket), ${runs} runs`)
    const added: number[] = []
    const addedReached: number[] = []
    const bothRuns: number[] = []
    for (let run = 0; run < runs; run++) {
      const both = (await fetchRun(dir, swarm, image, 2, { egressBytesPerSecond: rate })).fetchSeconds
      bothRuns.push(both)
      let knocked = { end: 0, killedAt: 0, doneAtKill: 0 }
      const r = await fetchRun(dir, swarm, image, 2, { egressBytesPerSecond: rate }, async (sites) => { knocked = await watchFetch(sites, 0.5) })
      // Ideal, from the fetcher's own figures: the survivor C sends at its full rate from the first
      // block to the last (plus its bucket's initial burst), and everything A sent before it died
      // counts. Then the fetch cannot end before (bytes - A's bytes - burst) / rate.
      const result = r.status.result!
      const fromA = result.sources.find((s) => s.state === 'dropped')
      const aBytes = fromA?.bytes ?? 0
      const burst = Math.max(256 * 1024, rate / 4)
      const ideal = (missing.bytes - aBytes - burst) / rate
      // The same with the per-source rate this machine actually reached in the run with both sources.
      const reached = missing.bytes / (2 * both)
      const idealReached = (missing.bytes - aBytes) / reached
      added.push(r.fetchSeconds - ideal)
      addedReached.push(r.fetchSeconds - idealReached)
      console.log(`  run ${run + 1}: both sources ${both.toFixed(2)} s (ideal ${(missing.bytes / (2 * rate)).toFixed(2)} s); A killed at ~${knocked.killedAt.toFixed(2)} s after sending ${(aBytes / MiB).toFixed(1)} MiB: network phase ${r.fetchSeconds.toFixed(2)} s, ideal ${ideal.toFixed(2)} s at the configured rate (added ${(r.fetchSeconds - ideal).toFixed(2)} s), ${idealReached.toFixed(2)} s at the rate reached with both (added ${(r.fetchSeconds - idealReached).toFixed(2)} s)`)
    }
    console.log(`knockout: median time added beyond the ideal ${median(added).toFixed(2)} s at the configured rate, ${median(addedReached).toFixed(2)} s at the rate reached with both sources (both sources: ${median(bothRuns).toFixed(2)} s for ${(missing.bytes / MiB).toFixed(1)} MiB, ideal ${(missing.bytes / (2 * rate)).toFixed(2)} s)`)
  })
}

// ------------------------------------------------------------------ rate-limited sources: one vs two

async function limited (args: string[]): Promise<void> {
  const mib = option(args, 'mib', 32)
  const mbit = option(args, 'mbit', 40)
  const runs = option(args, 'runs', 3)
  const rate = mbit * 1e6 / 8
  await withImage('limited', mib, async ({ dir, swarm, image }) => {
    console.log(`limited: ${mib} MiB image, every source's egress limited to ${mbit} Mbit/s (token bucket), ${runs} runs; ratio = two sources / one source in the same run`)
    const ratios: number[] = []
    for (let run = 0; run < runs; run++) {
      const one = await fetchRun(dir, swarm, image, 1, { egressBytesPerSecond: rate })
      const two = await fetchRun(dir, swarm, image, 2, { egressBytesPerSecond: rate })
      const r1 = one.bytes / one.fetchSeconds
      const r2 = two.bytes / two.fetchSeconds
      ratios.push(r2 / r1)
      console.log(`  run ${run + 1}: one source ${fmt(r1)} (${(r1 / rate * 100).toFixed(0)} % of its limit), two ${fmt(r2)} (${two.status.result!.sources.map((x) => `${(x.bytes / MiB).toFixed(1)} MiB`).join(' + ')}): ${(r2 / r1).toFixed(2)} x`)
    }
    console.log(`limited: two sources = ${median(ratios).toFixed(2)} x one source (median)`)
  })
}

// ------------------------------------------------------------------ tbf in network namespaces

/** Plain TCP copy of `bytes` from `from` to `to`, two lab namespaces: what the shaped link itself carries. */
async function labTcpCopy (lab: NetnsLab, from: string, to: string, bytes: number): Promise<number> {
  const source = await child(['tcp-source', String(bytes), lab.site(from).ip], lab.site(from).netns)
  try {
    const sink = await child(['tcp-sink', String(bytes), lab.site(from).ip, source.line], lab.site(to).netns)
    sink.proc.kill('SIGKILL')
    const { received, bytesPerSecond } = JSON.parse(sink.line) as { received: number, bytesPerSecond: number }
    if (received !== bytes) throw new Error(`lab tcp copy: received ${received} of ${bytes} bytes`)
    return bytesPerSecond
  } finally {
    source.proc.kill('SIGKILL')
  }
}

/**
 * Sites in their own network namespaces on a bridge, each source's link shaped by tbf to `--mbit`:
 * plain TCP over one shaped link (the baseline), one source, two sources, and two sources with the
 * first killed at 50 %, `--runs` times each; medians.
 */
async function tbf (args: string[]): Promise<void> {
  const unavailable = netnsLabUnavailable()
  if (unavailable !== undefined) {
    console.log(`tbf: cannot build network namespaces here: ${unavailable}`)
    process.exitCode = 1
    return
  }
  const mib = option(args, 'mib', 64)
  const mbit = option(args, 'mbit', 100)
  const runs = option(args, 'runs', 3)
  const lab = new NetnsLab([{ name: 's0', egressMbit: mbit }, { name: 's1', egressMbit: mbit }, { name: 'f' }], String(process.pid))
  try {
    const onLab = (name: string): SiteOptions => ({ netns: lab.site(name).netns, listen: `/ip4/${lab.site(name).ip}/tcp/0` })
    const sourceOptions = (i: number): SiteOptions => onLab(`s${i}`)
    await withImage('tbf', mib, async ({ dir, swarm, image, missing }) => {
      console.log(`tbf: ${mib} MiB image (${(missing.bytes / MiB).toFixed(1)} MiB of distinct non-zero chunks to fetch); sites in network namespaces on a bridge, each source's egress shaped by tbf to ${mbit} Mbit/s, the fetcher's link unshaped, no added delay; ${runs} runs, medians`)
      const link: number[] = []
      const one: number[] = []
      const oneOfLink: number[] = []
      const twoOfOne: number[] = []
      const added: number[] = []
      const addedReached: number[] = []
      for (let run = 0; run < runs; run++) {
        const tcpRate = await labTcpCopy(lab, 's0', 'f', Math.ceil(missing.bytes / WRITE_SIZE) * WRITE_SIZE)
        const r1 = await fetchRun(dir, swarm, image, 1, sourceOptions, undefined, onLab('f'))
        const r2 = await fetchRun(dir, swarm, image, 2, sourceOptions, undefined, onLab('f'))
        let knocked = { end: 0, killedAt: 0, doneAtKill: 0 }
        const rk = await fetchRun(dir, swarm, image, 2, sourceOptions, async (sites) => { knocked = await watchFetch(sites, 0.5) }, onLab('f'))
        const rate1 = r1.bytes / r1.fetchSeconds
        const rate2 = r2.bytes / r2.fetchSeconds
        // Ideal for the knockout: the survivor's link carries, at the rate plain TCP reached over
        // it, everything the killed source had not delivered.
        const fromA = rk.status.result!.sources.find((x) => x.state === 'dropped')?.bytes ?? 0
        const ideal = (missing.bytes - fromA) / tcpRate
        // The same at the per-source rate the two-source fetch reached in this run: on a loaded
        // machine the fetcher's CPU, not the links, may set the pace.
        const idealReached = (missing.bytes - fromA) / Math.min(tcpRate, rate2 / 2)
        addedReached.push(rk.fetchSeconds - idealReached)
        link.push(tcpRate)
        one.push(rate1)
        oneOfLink.push(rate1 / tcpRate)
        twoOfOne.push(rate2 / rate1)
        added.push(rk.fetchSeconds - ideal)
        console.log(`  run ${run + 1}: plain TCP over one shaped link ${fmt(tcpRate)}; one source ${fmt(rate1)} (${(rate1 / tcpRate).toFixed(2)} x TCP); two sources ${fmt(rate2)} (${r2.status.result!.sources.map((x) => `${(x.bytes / MiB).toFixed(1)} MiB`).join(' + ')}) = ${(rate2 / rate1).toFixed(2)} x one; knockout at ${knocked.killedAt.toFixed(2)} s (A sent ${(fromA / MiB).toFixed(1)} MiB): ${rk.fetchSeconds.toFixed(2)} s, ideal ${ideal.toFixed(2)} s at the link's rate (added ${(rk.fetchSeconds - ideal).toFixed(2)} s), ${idealReached.toFixed(2)} s at the rate reached with two sources (added ${(rk.fetchSeconds - idealReached).toFixed(2)} s)`)
      }
      console.log(`tbf ${mbit} Mbit/s: plain TCP ${fmt(median(link))}; one source ${fmt(median(one))} = ${median(oneOfLink).toFixed(2)} x TCP; two sources = ${median(twoOfOne).toFixed(2)} x one source; knockout adds ${median(added).toFixed(2)} s beyond the ideal at the link's rate, ${median(addedReached).toFixed(2)} s at the rate reached with two sources (medians of ${runs})`)
    })
  } finally {
    lab.destroy()
  }
}

// ------------------------------------------------------------------ entry

const argv = process.argv.slice(2)
if (argv[0] === '--child') {
  await runChild(argv.slice(1))
} else {
  const [mode, ...rest] = argv
  switch (mode) {
    case 'streams': await streams(rest); break
    case 'fetch': await fetchBench(rest); break
    case 'knockout': await knockout(rest); break
    case 'limited': await limited(rest); break
    case 'tbf': await tbf(rest); break
    default:
      console.log('usage: node dist/bench/exchange.js streams|fetch|limited|knockout|tbf [--mib N] [--runs N] [--mbit N]')
      process.exitCode = mode === undefined ? 0 : 2
  }
  // libp2p leaves timers behind in this process.
  process.exit()
}
