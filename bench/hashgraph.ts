/**
 * Hashgraph engine benchmark (issue 2). Not a test: nothing here asserts a timing.
 *
 *   node dist/bench/run.js hashgraph [--n 4,8,16,32] [--events N] [--runs R] ...   (--help for all)
 *
 * Sections (each can be selected with --sections):
 *  throughput  A gossip history is generated first (untimed): n members, each step a random i
 *              syncs with a random j≠i and creates an event whose other-parent is j's newest event.
 *              One fresh observer Hashgraph (no `self`) then receives every event's wire bytes in
 *              creation order (a topological order): decode + verify + insert + consensus + order.
 *              Timed with signature checks on and off, next to the reference rates measured in the
 *              same run over the same events: Verifier.verify (node:crypto, cached KeyObject: the
 *              engine's path), @libp2p/crypto publicKey.verify (a sample), decodeEvent alone and
 *              receive(pre-decoded event) without verification (the consensus bookkeeping alone).
 *              Variants are interleaved, their order rotated each run; medians are reported.
 *  batch       The same with many small transactions per event: ordered transactions/s.
 *  latency     Full gossip simulation with one Hashgraph per member (plus an observer that sees
 *              every event as soon as it exists): one transaction per step is submitted to a random
 *              member; latency = events created globally between the submission and the ordering
 *              of the transaction at the submitter, at every member, and at the observer.
 *  rss         A child process (the receiver, measured alone) receives a stream of signed events
 *              over a pipe from this process (the generator, which never holds the history); the
 *              receiver samples process.memoryUsage() every --rss-sample events.
 */
import { startLoadMeter } from './machine-load.js';
import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { PrivateKey, PublicKey } from '@libp2p/interface';
import {
  Hashgraph,
  Verifier,
  decodeEvent,
  ed25519Signer,
  signEvent,
  type OrderedTransaction,
  type SignedEvent,
  type Signer,
} from '../p2p/hashgraph/index.js';

// ------------------------------------------------------------------ options

const SECTIONS = ['throughput', 'batch', 'latency', 'rss'] as const;
type Section = (typeof SECTIONS)[number];
const VARIANTS = ['signed', 'unsigned', 'verify', 'libp2p', 'decode', 'consensus', 'interleaved'] as const;
type Variant = (typeof VARIANTS)[number];

interface Options {
  n: number[];
  events: number;
  runs: number;
  txPerEvent: number;
  txBytes: number;
  libp2pSample: number;
  variants: Variant[];
  batch: number[];
  batchN: number[];
  batchEvents: number;
  latencyN: number[];
  latencySteps: number;
  rssN: number[];
  rssEvents: number;
  rssSample: number;
  rssVerify: boolean;
  /** Node/V8 flags for the receiver child (e.g. "--max-semi-space-size=4"); none by default. */
  rssExecArgv: string[];
  sections: Section[];
  seed: number;
  out: string | null;
}

const HELP = `usage: node dist/bench/run.js hashgraph [flags]

  --n 4,8,16,32          member counts (default 4,8,16,32)
  --events N             events in each throughput history (default 20000)
  --runs R               timed runs per variant, interleaved; the median is reported (default 5)
  --tx-per-event K       transactions per event in the throughput history (default 1)
  --tx-bytes B           bytes per transaction (default 64)
  --libp2p-sample S      events verified with @libp2p/crypto per run (default 1000)
  --variants LIST        ${VARIANTS.join(',')} (default all; e.g. "signed" to profile one path)
  --batch 100,1000       transactions per event for the batching section (default 100,1000)
  --batch-n LIST         member counts for the batching section (default 4)
  --batch-events N       events per batching history (default 2000)
  --latency-n LIST       member counts for the latency section (default: --n)
  --latency-steps N      gossip steps with one submitted transaction each (default 5000)
  --rss-n LIST           member counts for the 1M-event RSS run (default: smallest and largest --n)
  --rss-events N         events streamed to the RSS receiver (default 1000000)
  --rss-sample N         RSS sampling interval in events (default 100000)
  --rss-unsigned         RSS run without signing/verifying (fast; memory does not depend on it)
  --rss-node-flags "F"   Node/V8 flags for the receiver process, e.g. "--max-semi-space-size=4" (default none)
  --sections LIST        ${SECTIONS.join(',')} (default all)
  --seed S               gossip and key seed (default 1)
  --out FILE             markdown output (default bench/out/hashgraph-<date>.md); --no-write: none

Quick run:  node dist/bench/run.js hashgraph --n 4 --events 5000 --runs 3 --latency-steps 1000 --rss-events 100000 --rss-sample 20000
`;

function parseOptions(args: string[]): Options | null {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const booleans = new Set(['help', 'no-write', 'rss-unsigned']);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument "${arg}" (try --help)`);
    const eq = arg.indexOf('=');
    const key = arg.slice(2, eq < 0 ? undefined : eq);
    if (booleans.has(key)) {
      flags.add(key);
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new Error(`--${key} needs a value`);
    values.set(key, value);
  }
  if (flags.has('help')) return null;
  const known = new Set([
    'n', 'events', 'runs', 'tx-per-event', 'tx-bytes', 'libp2p-sample', 'variants', 'batch', 'batch-n',
    'batch-events', 'latency-n', 'latency-steps', 'rss-n', 'rss-events', 'rss-sample', 'rss-node-flags', 'sections', 'seed', 'out',
  ]);
  for (const key of values.keys()) if (!known.has(key)) throw new Error(`unknown flag --${key} (try --help)`);
  const int = (key: string, fallback: number, min = 0): number => {
    const raw = values.get(key);
    if (raw === undefined) return fallback;
    const v = Number(raw.replace(/_/g, ''));
    if (!Number.isSafeInteger(v) || v < min) throw new Error(`--${key} must be an integer >= ${min}, got "${raw}"`);
    return v;
  };
  const ints = (key: string, fallback: number[], min = 0): number[] => {
    const raw = values.get(key);
    if (raw === undefined) return fallback;
    if (raw.trim() === '' || raw === 'none') return [];
    return raw.split(',').map((s) => {
      const v = Number(s.trim());
      if (!Number.isSafeInteger(v) || v < min) throw new Error(`--${key}: "${s}" is not an integer >= ${min}`);
      return v;
    });
  };
  const choice = <T extends string>(key: string, all: readonly T[]): T[] => {
    const raw = values.get(key);
    if (raw === undefined) return [...all];
    return raw.split(',').map((s) => {
      const v = s.trim() as T;
      if (!all.includes(v)) throw new Error(`--${key}: "${s}" is not one of ${all.join(', ')}`);
      return v;
    });
  };
  const n = ints('n', [4, 8, 16, 32], 2);
  return {
    n,
    events: int('events', 20_000, 1),
    runs: int('runs', 5, 1),
    txPerEvent: int('tx-per-event', 1),
    txBytes: int('tx-bytes', 64, 1),
    libp2pSample: int('libp2p-sample', 1000),
    variants: choice('variants', VARIANTS),
    batch: ints('batch', [100, 1000], 1),
    batchN: ints('batch-n', [4], 2),
    batchEvents: int('batch-events', 2000, 1),
    latencyN: ints('latency-n', n, 2),
    latencySteps: int('latency-steps', 5000, 1),
    rssN: ints('rss-n', n.length === 0 ? [] : [...new Set([Math.min(...n), Math.max(...n)])], 2),
    rssEvents: int('rss-events', 1_000_000),
    rssSample: int('rss-sample', 100_000, 1),
    rssVerify: !flags.has('rss-unsigned'),
    rssExecArgv: (values.get('rss-node-flags') ?? '').split(/\s+/).filter((f) => f !== ''),
    sections: choice('sections', SECTIONS),
    seed: int('seed', 1),
    out: flags.has('no-write') ? null : values.get('out') ?? defaultOutPath(),
  };
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function defaultOutPath(): string {
  const stamp = new Date().toISOString().replace(/:\d\d\.\d+Z$/, '').replace(':', '').replace('T', '-');
  return path.join(repoRoot, 'bench', 'out', `hashgraph-${stamp}.md`);
}

// ------------------------------------------------------------------ helpers

/** Deterministic PRNG (mulberry32): the same seed gives the same gossip. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pickPair(rand: () => number, n: number): [number, number] {
  const i = Math.floor(rand() * n);
  let j = Math.floor(rand() * (n - 1));
  if (j >= i) j++;
  return [i, j];
}

async function memberKeys(n: number, seed: number): Promise<PrivateKey[]> {
  const keys: PrivateKey[] = [];
  for (let i = 0; i < n; i++) {
    const s = new Uint8Array(32);
    new DataView(s.buffer).setUint32(0, seed);
    new DataView(s.buffer).setUint32(4, n);
    new DataView(s.buffer).setUint32(8, i);
    keys.push(await generateKeyPairFromSeed('Ed25519', s));
  }
  return keys;
}

let gcFn: (() => void) | null = null;
function gc(): void {
  if (gcFn === null) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile. */
function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '—';
const mb = (bytes: number): string => (bytes / (1024 * 1024)).toFixed(1);

function table(header: string[], rows: Array<Array<string | number>>): string {
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map((h) => (h === '' ? '---' : '---:')).join(' | ')} |`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

const BASE_TIME = 1_700_000_000_000_000_000n;

/** How busy the machine was with *other* processes during a section (average cores); NaN without /proc/stat. */
function startMeter(): { stop: (childCpuMicros?: number) => number } {
  const meter = startLoadMeter();
  return { stop: (childCpuMicros = 0) => meter.stop(childCpuMicros / 1e6) };
}

// ------------------------------------------------------------------ gossip history

interface GossipSpec {
  n: number;
  events: number;
  txPerEvent: number;
  txBytes: number;
  seed: number;
  /** One per member; a signer that returns random bytes makes an unsigned history. */
  signers: Signer[];
}

/**
 * The cheap gossip loop: each step a random member i syncs with a random j≠i (receiving all j
 * knows) and creates an event on top of j's newest. Only the members' newest events are kept;
 * events come out in creation order, which is a topological order. The first n steps are the
 * members' first events (no parents).
 */
function* gossip(spec: GossipSpec): Generator<SignedEvent> {
  const { n, txPerEvent, txBytes } = spec;
  const rand = rng(spec.seed * 7919 + n);
  const last: Array<SignedEvent | null> = new Array<SignedEvent | null>(n).fill(null);
  // Transactions are slices of a random pool (their content does not matter to the engine).
  const pool = new Uint8Array(Math.max(1 << 20, txBytes * 2));
  for (let o = 0; o < pool.length; o += 65536) crypto.getRandomValues(pool.subarray(o, Math.min(pool.length, o + 65536)));
  let offset = 0;
  const txs = (): Uint8Array[] => {
    const out: Uint8Array[] = new Array<Uint8Array>(txPerEvent);
    for (let k = 0; k < txPerEvent; k++) {
      if (offset + txBytes > pool.length) offset = 0;
      out[k] = pool.subarray(offset, offset + txBytes);
      offset += txBytes;
    }
    return out;
  };
  for (let step = 0; step < spec.events; step++) {
    let i: number;
    let j = -1;
    if (step < n) i = step;
    else [i, j] = pickPair(rand, n);
    const event = signEvent({
      creator: i,
      selfParent: last[i]?.hash ?? null,
      otherParent: j < 0 ? null : last[j]!.hash,
      timestamp: BASE_TIME + BigInt(step) * 1_000_000n,
      transactions: txs(),
    }, spec.signers[i]!);
    last[i] = event;
    yield event;
  }
}

const randomSigner: Signer = { sign: () => crypto.getRandomValues(new Uint8Array(64)) };

// ------------------------------------------------------------------ throughput

/** Wall-clock seconds, and CPU seconds of this process (all its threads: GC helpers included). */
interface Timing {
  wall: number;
  cpu: number;
}

function startTimer(): () => Timing {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / 1e6 };
  };
}

interface ReceiveOutcome {
  time: Timing;
  orderedEvents: number;
  orderedTransactions: number;
  lastRound: number;
  eventsInMemory: number;
  runningHash: string;
}

function receiveAll(pubs: PublicKey[], input: ReadonlyArray<Uint8Array | SignedEvent>, verifySignatures: boolean): ReceiveOutcome {
  let orderedTransactions = 0;
  const hg = new Hashgraph({
    members: pubs,
    verifySignatures,
    onTransactions: (txs: OrderedTransaction[]) => { orderedTransactions += txs.length; },
  });
  hg.start();
  const stop = startTimer();
  for (const item of input) {
    const r = hg.receive(item);
    if (r.status !== 'inserted') throw new Error(`event ${r.event.id} parked: the history is not in topological order`);
  }
  const time = stop();
  return {
    time,
    orderedEvents: hg.orderedEvents,
    orderedTransactions,
    lastRound: hg.lastRound,
    eventsInMemory: hg.eventsInMemory,
    runningHash: hg.snapshot().runningHash,
  };
}

function timeVerify(pubs: PublicKey[], events: readonly SignedEvent[]): Timing {
  const verifier = new Verifier(pubs);
  const stop = startTimer();
  for (const e of events) if (!verifier.verify(e)) throw new Error(`signature of ${e.id} does not verify`);
  return stop();
}

async function timeLibp2pVerify(pubs: PublicKey[], events: readonly SignedEvent[]): Promise<Timing> {
  const stop = startTimer();
  for (const e of events) {
    let ok = pubs[e.creator]!.verify(e.signedBytes, e.signature);
    if (typeof ok !== 'boolean') ok = await ok;
    if (!ok) throw new Error(`signature of ${e.id} does not verify (@libp2p/crypto)`);
  }
  return stop();
}

/**
 * The ratio measured as tightly as possible: one receiver takes the events with signature checks
 * in chunks, and after each chunk Verifier.verify runs over the same chunk; both clocks add up
 * separately. Both halves see the same machine speed (a shared VM's speed drifts over seconds).
 */
const INTERLEAVE_CHUNK = 200;

function timeInterleaved(pubs: PublicKey[], bytes: readonly Uint8Array[], decoded: readonly SignedEvent[]): { signed: Timing, verify: Timing } {
  const hg = new Hashgraph({ members: pubs, verifySignatures: true });
  hg.start();
  const verifier = new Verifier(pubs);
  const signed = { wall: 0, cpu: 0 };
  const verify = { wall: 0, cpu: 0 };
  for (let k = 0; k < bytes.length; k += INTERLEAVE_CHUNK) {
    const end = Math.min(bytes.length, k + INTERLEAVE_CHUNK);
    let stop = startTimer();
    for (let i = k; i < end; i++) hg.receive(bytes[i]!);
    let t = stop();
    signed.wall += t.wall;
    signed.cpu += t.cpu;
    stop = startTimer();
    for (let i = k; i < end; i++) if (!verifier.verify(decoded[i]!)) throw new Error(`signature of ${decoded[i]!.id} does not verify`);
    t = stop();
    verify.wall += t.wall;
    verify.cpu += t.cpu;
  }
  return { signed, verify };
}

function timeDecode(bytes: readonly Uint8Array[]): Timing {
  const stop = startTimer();
  let sink = 0;
  for (const b of bytes) sink += decodeEvent(b).creator;
  if (sink < 0) throw new Error('unreachable');
  return stop();
}

interface ThroughputResult {
  n: number;
  events: number;
  bytesPerEvent: number;
  generateSeconds: number;
  /** Per variant, per run: operations per wall-clock second. */
  rates: Record<Variant, number[]>;
  /** Per variant, per run: operations per CPU second of the process. */
  cpuRates: Record<Variant, number[]>;
  /** Per run: signed events/s ÷ Verifier verify/s from that run's separate variants (wall clock, CPU time). */
  pairedRatios: number[];
  cpuPairedRatios: number[];
  /** Per run: the same ratio from the interleaved variant (wall clock, CPU time). */
  interleavedRatios: number[];
  cpuInterleavedRatios: number[];
  signedOutcome: ReceiveOutcome | null;
  /** Per run: average cores kept busy by other processes. */
  otherLoad: number[];
}

async function throughput(n: number, opts: Options, log: (s: string) => void): Promise<ThroughputResult> {
  const keys = await memberKeys(n, opts.seed);
  const pubs = keys.map((k) => k.publicKey);
  const t0 = performance.now();
  const history: SignedEvent[] = [...gossip({
    n, events: opts.events, txPerEvent: opts.txPerEvent, txBytes: opts.txBytes, seed: opts.seed,
    signers: keys.map((k) => ed25519Signer(k)),
  })];
  const generateSeconds = (performance.now() - t0) / 1000;
  const bytes = history.map((e) => e.bytes);
  // What a receiver would hold after decoding (the reference and consensus-only variants use these).
  const decoded = bytes.map((b) => decodeEvent(b));
  history.length = 0;
  const sample = decoded.slice(0, Math.min(opts.libp2pSample, decoded.length));
  const bytesPerEvent = bytes.reduce((s, b) => s + b.byteLength, 0) / bytes.length;
  log(`  n=${n}: generated ${bytes.length} signed events in ${generateSeconds.toFixed(1)} s (${bytesPerEvent.toFixed(0)} B each)`);

  const perVariant = (): Record<Variant, number[]> => Object.fromEntries(VARIANTS.map((v) => [v, [] as number[]])) as unknown as Record<Variant, number[]>;
  const rates = perVariant();
  const cpuRates = perVariant();
  const pairedRatios: number[] = [];
  const cpuPairedRatios: number[] = [];
  const interleavedRatios: number[] = [];
  const cpuInterleavedRatios: number[] = [];
  const otherLoad: number[] = [];
  let signedOutcome: ReceiveOutcome | null = null;
  const hashes = new Set<string>();
  const runOne = async (v: Variant, events: number): Promise<{ count: number, time: Timing, outcome?: ReceiveOutcome, reference?: Timing }> => {
    const b = bytes.slice(0, events);
    const d = decoded.slice(0, events);
    gc();
    switch (v) {
      case 'signed': { const o = receiveAll(pubs, b, true); return { count: events, time: o.time, outcome: o }; }
      case 'unsigned': { const o = receiveAll(pubs, b, false); return { count: events, time: o.time, outcome: o }; }
      case 'consensus': { const o = receiveAll(pubs, d, false); return { count: events, time: o.time, outcome: o }; }
      case 'verify': return { count: events, time: timeVerify(pubs, d) };
      case 'libp2p': { const s = sample.slice(0, Math.min(events, sample.length)); return { count: s.length, time: await timeLibp2pVerify(pubs, s) }; }
      case 'decode': return { count: events, time: timeDecode(b) };
      case 'interleaved': { const t = timeInterleaved(pubs, b, d); return { count: events, time: t.signed, reference: t.verify }; }
    }
  };
  // Warm-up (JIT) on a prefix, not recorded.
  for (const v of opts.variants) await runOne(v, Math.min(2000, bytes.length));
  for (let r = 0; r < opts.runs; r++) {
    const order = opts.variants.map((_, k) => opts.variants[(k + r) % opts.variants.length]!);
    const line: string[] = [];
    const meter = startMeter();
    for (const v of order) {
      const { count, time, outcome, reference } = await runOne(v, bytes.length);
      const rate = count / time.wall;
      rates[v].push(rate);
      cpuRates[v].push(count / time.cpu);
      line.push(`${v} ${fmt(rate)}/s`);
      if (reference !== undefined) {
        interleavedRatios.push(reference.wall / time.wall);
        cpuInterleavedRatios.push(reference.cpu / time.cpu);
        line.push(`(ratio ${fmt(reference.wall / time.wall, 3)})`);
      }
      if (outcome !== undefined) {
        hashes.add(`${outcome.orderedEvents}:${outcome.runningHash}`);
        if (v === 'signed') signedOutcome = outcome;
      }
    }
    const signed = rates.signed[rates.signed.length - 1];
    const verify = rates.verify[rates.verify.length - 1];
    if (signed !== undefined && verify !== undefined && rates.signed.length === r + 1 && rates.verify.length === r + 1) {
      pairedRatios.push(signed / verify);
      cpuPairedRatios.push(cpuRates.signed[r]! / cpuRates.verify[r]!);
    }
    otherLoad.push(meter.stop());
    log(`  n=${n} run ${r + 1}/${opts.runs}: ${line.join(', ')}; other processes ${fmt(otherLoad[r]!, 2)} cores`);
  }
  if (hashes.size > 1) throw new Error(`n=${n}: receivers disagree on the consensus order: ${[...hashes].join(' / ')}`);
  return { n, events: bytes.length, bytesPerEvent, generateSeconds, rates, cpuRates, pairedRatios, cpuPairedRatios, interleavedRatios, cpuInterleavedRatios, signedOutcome, otherLoad };
}

// ------------------------------------------------------------------ batching

interface BatchResult {
  n: number;
  txPerEvent: number;
  events: number;
  bytesPerEvent: number;
  txRates: number[];
  eventRates: number[];
  orderedTxs: number;
  totalTxs: number;
  otherLoad: number;
}

async function batching(n: number, txPerEvent: number, opts: Options, log: (s: string) => void): Promise<BatchResult> {
  const keys = await memberKeys(n, opts.seed);
  const pubs = keys.map((k) => k.publicKey);
  const bytes = [...gossip({
    n, events: opts.batchEvents, txPerEvent, txBytes: opts.txBytes, seed: opts.seed + 1,
    signers: keys.map((k) => ed25519Signer(k)),
  })].map((e) => e.bytes);
  const bytesPerEvent = bytes.reduce((s, b) => s + b.byteLength, 0) / bytes.length;
  gc();
  receiveAll(pubs, bytes.slice(0, Math.min(200, bytes.length)), true); // warm-up
  const txRates: number[] = [];
  const eventRates: number[] = [];
  let orderedTxs = 0;
  const meter = startMeter();
  for (let r = 0; r < opts.runs; r++) {
    gc();
    const o = receiveAll(pubs, bytes, true);
    txRates.push(o.orderedTransactions / o.time.wall);
    eventRates.push(bytes.length / o.time.wall);
    orderedTxs = o.orderedTransactions;
  }
  const otherLoad = meter.stop();
  log(`  n=${n}, ${txPerEvent} tx/event: ordered ${fmt(median(txRates))} tx/s (${fmt(orderedTxs)} of ${fmt(bytes.length * txPerEvent)} txs ordered)`);
  return { n, txPerEvent, events: bytes.length, bytesPerEvent, txRates, eventRates, orderedTxs, totalTxs: bytes.length * txPerEvent, otherLoad };
}

// ------------------------------------------------------------------ latency

interface LatencyResult {
  n: number;
  steps: number;
  totalEvents: number;
  rounds: number;
  submitted: number;
  atSubmitter: Int32Array;
  atAll: Int32Array;
  atObserver: Int32Array;
  unordered: number;
  seconds: number;
  otherLoad: number;
}

/**
 * Full simulation: one Hashgraph per member. A step: random i syncs with random j≠i (receives,
 * in creation order, every event j knows and i does not), then creates an event with
 * other-parent = j's newest. Before each step one transaction is submitted to a random member.
 * Counters are "events created so far, the one being created included".
 */
async function latency(n: number, opts: Options): Promise<LatencyResult> {
  const t0 = performance.now();
  const meter = startMeter();
  const keys = await memberKeys(n, opts.seed);
  const pubs = keys.map((k) => k.publicKey);
  const rand = rng(opts.seed * 104729 + n);
  const steps = opts.latencySteps;
  let created = 0;
  const clock = (): bigint => BASE_TIME + BigInt(created) * 1_000_000n;
  const submitAt = new Int32Array(steps).fill(-1);
  const submitter = new Int32Array(steps).fill(-1);
  const atSubmitter = new Int32Array(steps).fill(-1);
  const atAll = new Int32Array(steps).fill(-1);
  const atObserver = new Int32Array(steps).fill(-1);
  const orderedAt = new Int32Array(steps);
  let orderedEverywhere = 0;
  const txId = (tx: Uint8Array): number => new DataView(tx.buffer, tx.byteOffset, tx.byteLength).getUint32(0);
  const members = keys.map((key, i) => new Hashgraph({
    members: pubs,
    self: { creator: i, key },
    verifySignatures: false,
    clock,
    onTransactions: (txs) => {
      for (const { transaction } of txs) {
        const id = txId(transaction);
        if (submitter[id] === i) atSubmitter[id] = created;
        if (++orderedAt[id]! === n) { atAll[id] = created; orderedEverywhere++; }
      }
    },
  }));
  const observer = new Hashgraph({
    members: pubs,
    verifySignatures: false,
    onTransactions: (txs) => { for (const { transaction } of txs) atObserver[txId(transaction)] = created; },
  });
  for (const m of members) m.start();
  observer.start();
  const events: SignedEvent[] = [];
  const byCreator: number[][] = Array.from({ length: n }, () => []);
  const known: Int32Array[] = Array.from({ length: n }, () => new Int32Array(n));

  const step = (i: number, j: number): void => {
    if (j >= 0) {
      const incoming: number[] = [];
      const ki = known[i]!;
      const kj = known[j]!;
      for (let m = 0; m < n; m++) {
        for (let s = ki[m]!; s < kj[m]!; s++) incoming.push(byCreator[m]![s]!);
        if (kj[m]! > ki[m]!) ki[m] = kj[m]!;
      }
      incoming.sort((a, b) => a - b);
      for (const g of incoming) members[i]!.receive(events[g]!);
    }
    created++;
    const event = members[i]!.createEvent({ otherParent: j < 0 ? null : members[j]!.lastEventOf(j)!.id });
    byCreator[i]!.push(events.length);
    events.push(event);
    known[i]![i]!++;
    observer.receive(event);
  };

  for (let i = 0; i < n; i++) step(i, -1);
  let submitted = 0;
  const tx = new Uint8Array(8);
  for (let s = 0; s < steps; s++) {
    const k = Math.floor(rand() * n);
    new DataView(tx.buffer).setUint32(0, submitted);
    submitAt[submitted] = created;
    submitter[submitted] = k;
    members[k]!.submit(tx.slice());
    submitted++;
    const [i, j] = pickPair(rand, n);
    step(i, j);
  }
  // Drain: keep gossiping (no new transactions) until every transaction is ordered everywhere.
  const cap = created + Math.max(steps, 200 * n);
  while (orderedEverywhere < submitted && created < cap) {
    const [i, j] = pickPair(rand, n);
    step(i, j);
  }
  const sub = (xs: Int32Array): Int32Array => {
    const out: number[] = [];
    for (let id = 0; id < submitted; id++) if (xs[id]! >= 0) out.push(xs[id]! - submitAt[id]!);
    return Int32Array.from(out).sort();
  };
  return {
    n,
    steps,
    totalEvents: created,
    rounds: observer.lastRound,
    submitted,
    atSubmitter: sub(atSubmitter),
    atAll: sub(atAll),
    atObserver: sub(atObserver),
    unordered: submitted - orderedEverywhere,
    seconds: (performance.now() - t0) / 1000,
    otherLoad: meter.stop(),
  };
}

// ------------------------------------------------------------------ RSS (child receiver)

interface RssSample {
  events: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  eventsInMemory: number;
  lastRound: number;
  orderedEvents: number;
  seconds: number;
}

interface RssInit { members: string[], events: number, sampleEvery: number, verify: boolean }
interface RssDone {
  samples: RssSample[];
  /**
   * Peak RSS of the receiver: VmHWM of /proc/self/status. (getrusage's maxRSS is no use here: on
   * Linux it carries over the forking parent's resident pages.) NaN where unavailable.
   */
  peakRssKiB: number;
  orderedTransactions: number;
  parkedCount: number;
  cpuMicros: number;
  /** After the last sample: a forced full GC, then heapUsed (the live set) and RSS. */
  liveHeapAfterGc: number;
  rssAfterGc: number;
}

function peakRss(): number {
  try {
    return Number(/^VmHWM:\s*(\d+)\s*kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** The receiver side: run in a child process so the generator's memory is not in its RSS. */
function rssReceiver(): void {
  process.once('message', (message) => {
    const init = message as RssInit;
    let orderedTransactions = 0;
    const hg = new Hashgraph({
      members: init.members.map((hex) => publicKeyFromRaw(Buffer.from(hex, 'hex'))),
      verifySignatures: init.verify,
      onTransactions: (txs) => { orderedTransactions += txs.length; },
    });
    hg.start();
    const samples: RssSample[] = [];
    const t0 = performance.now();
    let received = 0;
    const sample = (): void => {
      const m = process.memoryUsage();
      samples.push({
        events: received, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers,
        eventsInMemory: hg.eventsInMemory, lastRound: hg.lastRound, orderedEvents: hg.orderedEvents,
        seconds: (performance.now() - t0) / 1000,
      });
      process.send?.({ progress: samples[samples.length - 1] });
    };
    sample();
    let pending: Buffer = Buffer.alloc(0);
    process.stdin.on('data', (chunk: Buffer) => {
      let buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let at = 0;
      while (buf.length - at >= 4) {
        const len = buf.readUInt32LE(at);
        if (buf.length - at - 4 < len) break;
        // A copy, as a socket read would give: the event must not pin the whole chunk.
        const bytes = new Uint8Array(buf.subarray(at + 4, at + 4 + len));
        at += 4 + len;
        hg.receive(bytes);
        received++;
        if (received % init.sampleEvery === 0) sample();
      }
      buf = buf.subarray(at);
      pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    });
    process.stdin.on('end', () => {
      if (received % init.sampleEvery !== 0) sample();
      const usage = process.resourceUsage();
      gc();
      const after = process.memoryUsage();
      const done: RssDone = {
        samples, peakRssKiB: peakRss(), orderedTransactions, parkedCount: hg.parkedCount, cpuMicros: usage.userCPUTime + usage.systemCPUTime,
        liveHeapAfterGc: after.heapUsed, rssAfterGc: after.rss,
      };
      process.send?.({ done }, () => process.exit(0));
    });
  });
  process.send?.({ ready: true });
}

interface RssResult extends RssDone { n: number, verify: boolean, seconds: number, otherLoad: number }

async function rssRun(n: number, opts: Options, log: (s: string) => void): Promise<RssResult> {
  const keys = await memberKeys(n, opts.seed);
  const runJs = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run.js');
  const child = fork(runJs, ['hashgraph', '--rss-receiver'], { stdio: ['pipe', 'inherit', 'inherit', 'ipc'], execArgv: opts.rssExecArgv });
  const exited = once(child, 'exit');
  let done: RssDone | null = null;
  const ready = new Promise<void>((resolve) => {
    child.on('message', (message: { ready?: true, progress?: RssSample, done?: RssDone }) => {
      if (message.ready === true) resolve();
      if (message.progress !== undefined) {
        const p = message.progress;
        log(`  n=${n}: ${fmt(p.events)} events, RSS ${mb(p.rss)} MB, heap ${mb(p.heapUsed)} MB, ${fmt(p.eventsInMemory)} in memory, ${p.seconds.toFixed(0)} s`);
      }
      if (message.done !== undefined) done = message.done;
    });
  });
  await ready;
  child.send({ members: keys.map((k) => Buffer.from(k.publicKey.raw).toString('hex')), events: opts.rssEvents, sampleEvery: opts.rssSample, verify: opts.rssVerify } satisfies RssInit);
  const stdin = child.stdin!;
  const t0 = performance.now();
  const meter = startMeter();
  const chunk: Buffer[] = [];
  let chunkBytes = 0;
  const flush = async (): Promise<void> => {
    if (chunk.length === 0) return;
    const ok = stdin.write(Buffer.concat(chunk, chunkBytes));
    chunk.length = 0;
    chunkBytes = 0;
    if (!ok) await once(stdin, 'drain');
  };
  for (const event of gossip({
    n, events: opts.rssEvents, txPerEvent: opts.txPerEvent, txBytes: opts.txBytes, seed: opts.seed + 2,
    signers: opts.rssVerify ? keys.map((k) => ed25519Signer(k)) : keys.map(() => randomSigner),
  })) {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32LE(event.bytes.byteLength);
    chunk.push(header, Buffer.from(event.bytes.buffer, event.bytes.byteOffset, event.bytes.byteLength));
    chunkBytes += 4 + event.bytes.byteLength;
    if (chunkBytes >= 256 * 1024) await flush();
  }
  await flush();
  stdin.end();
  const [code] = await exited;
  if (done === null) throw new Error(`RSS receiver (n=${n}) exited with code ${String(code)} without results`);
  const result: RssDone = done;
  return { ...result, n, verify: opts.rssVerify, seconds: (performance.now() - t0) / 1000, otherLoad: meter.stop(result.cpuMicros) };
}

// ------------------------------------------------------------------ report

function engineRevision(): string {
  try {
    const git = (...a: string[]): string => execFileSync('git', ['-C', repoRoot, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'p2p') !== '';
    return `git ${git('rev-parse', '--short=12', 'HEAD')}${dirty ? ' with uncommitted changes in p2p/' : ' (p2p/ clean)'}`;
  } catch {
    return 'not a git checkout';
  }
}

function machine(): string[] {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  let affinity = '';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpu;
    const mhz = /^cpu MHz\s*:\s*(.*)$/m.exec(info)?.[1];
    if (mhz !== undefined) cpu += ` @ ${Math.round(Number(mhz))} MHz`;
    affinity = /^Cpus_allowed_list:\s*(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  } catch { /* not Linux */ }
  return [
    `- CPU: ${cpu}; nproc ${os.availableParallelism()}${affinity === '' ? '' : ` (this process may run on CPUs ${affinity})`}; RAM ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- Node ${process.version} (V8 ${process.versions.v8}, OpenSSL ${process.versions.openssl}), ${os.type()} ${os.release()} ${os.arch()}`,
    `- Engine: ${engineRevision()}`,
  ];
}

const goal = (ok: boolean): string => (ok ? '**met**' : '**missed**');

function report(opts: Options, args: string[], started: Date, results: {
  throughput: ThroughputResult[], batch: BatchResult[], latency: LatencyResult[], rss: RssResult[]
}): string {
  const out: string[] = [];
  out.push(`# hashgraph engine benchmark — ${started.toISOString()}`, '');
  out.push(`Command: \`node dist/bench/run.js hashgraph${args.length > 0 ? ' ' + args.join(' ') : ''}\``, '');
  out.push(...machine(), '');
  out.push(`The receiver is one JS thread (one core); rates are medians of ${opts.runs} runs, variants interleaved with the order rotated each run.`, '');

  if (results.throughput.length > 0) {
    out.push('## Events/s inserted and ordered (one observer receiving wire bytes) vs Ed25519 verify/s', '');
    out.push(`History: ${fmt(opts.events)} events per n, random gossip, ${opts.txPerEvent} × ${opts.txBytes}-byte transaction(s) per event. ` +
      '"signed" = receive(bytes) with signature checks (decode + verify + insert + consensus + order); "unsigned" = the same with verifySignatures: false; ' +
      '"verify" = Verifier.verify alone (node:crypto, cached KeyObject — the engine\'s path) over the same events; ' +
      `"@libp2p/crypto" = publicKey.verify over the first ${fmt(opts.libp2pSample)} events. ` +
      `"ratio, interleaved" = signed ÷ verify with the two alternating every ${INTERLEAVE_CHUNK} events over the same history (one receiver; the goal is judged on it); ` +
      '"ratio, separate runs" = the signed and verify variants of the same run. Ratios: median of the per-run ratios.', '');
    const m = (r: ThroughputResult, v: Variant): number => median(r.rates[v]);
    out.push(table(['n', 'signed ev/s', 'unsigned ev/s', 'verify/s (node:crypto, cached)', 'verify/s (@libp2p/crypto)', 'ratio, interleaved', 'ratio, separate runs', 'goal (n=4: ≥ 0.75)', 'rounds', 'ordered', 'other load (cores)'],
      results.throughput.map((r) => {
        const ratio = r.interleavedRatios.length > 0 ? median(r.interleavedRatios) : median(r.pairedRatios);
        return [r.n, fmt(m(r, 'signed')), fmt(m(r, 'unsigned')), fmt(m(r, 'verify')), fmt(m(r, 'libp2p')), fmt(median(r.interleavedRatios), 3), fmt(median(r.pairedRatios), 3),
          r.n === 4 ? goal(ratio >= 0.75) : (ratio >= 0.75 ? '(≥ 0.75)' : '(< 0.75)'),
          r.signedOutcome?.lastRound ?? '—',
          r.signedOutcome === null ? '—' : `${fmt((100 * r.signedOutcome.orderedEvents) / r.events, 1)} %`,
          `${fmt(median(r.otherLoad), 2)} (max ${fmt(Math.max(...r.otherLoad), 2)})`];
      })), '');
    const c = (r: ThroughputResult, v: Variant): number => median(r.cpuRates[v]);
    out.push('The same runs timed by the CPU time of the process instead of the wall clock (less sensitive to other processes sharing the machine; includes V8\'s GC helper threads):', '');
    out.push(table(['n', 'signed ev/CPU-s', 'unsigned ev/CPU-s', 'verify/CPU-s (node:crypto, cached)', 'verify/CPU-s (@libp2p/crypto)', 'ratio, interleaved (CPU)', 'ratio, separate runs (CPU)'],
      results.throughput.map((r) => [r.n, fmt(c(r, 'signed')), fmt(c(r, 'unsigned')), fmt(c(r, 'verify')), fmt(c(r, 'libp2p')),
        fmt(median(r.cpuInterleavedRatios), 3), fmt(median(r.cpuPairedRatios), 3)])), '');
    out.push('Where the time of a signed receive goes (µs per event, from the medians; "consensus" = receive(decoded event) without verification, i.e. insert + rounds + fame + order + hashgraph bookkeeping):', '');
    out.push(table(['n', 'signed total', 'decode', 'verify', 'consensus', 'unexplained', 'bookkeeping share (1 − verify/signed)'],
      results.throughput.map((r) => {
        const us = (v: Variant): number => 1e6 / m(r, v);
        const total = us('signed');
        const rest = total - us('decode') - us('verify') - us('consensus');
        return [r.n, fmt(total, 1), fmt(us('decode'), 1), fmt(us('verify'), 1), fmt(us('consensus'), 1), fmt(rest, 1), `${fmt(100 * (1 - us('verify') / total), 1)} %`];
      })), '');
    out.push('<details><summary>all runs</summary>', '');
    for (const r of results.throughput) {
      out.push(`n=${r.n} (${fmt(r.bytesPerEvent)} B/event, generated in ${r.generateSeconds.toFixed(1)} s):`, '');
      for (const v of opts.variants) out.push(`- ${v}: ${r.rates[v].map((x) => fmt(x)).join(', ')} (per CPU-s: ${r.cpuRates[v].map((x) => fmt(x)).join(', ')})`);
      out.push(`- ratios, interleaved: ${r.interleavedRatios.map((x) => fmt(x, 3)).join(', ')} (CPU time: ${r.cpuInterleavedRatios.map((x) => fmt(x, 3)).join(', ')})`);
      out.push(`- ratios, separate runs: ${r.pairedRatios.map((x) => fmt(x, 3)).join(', ')} (CPU time: ${r.cpuPairedRatios.map((x) => fmt(x, 3)).join(', ')}); ratio of the medians: ${fmt(m(r, 'signed') / m(r, 'verify'), 3)}`);
      out.push(`- cores busy with other processes, per run: ${r.otherLoad.map((x) => fmt(x, 2)).join(', ')}`, '');
    }
    out.push('</details>', '');
  }

  if (results.batch.length > 0) {
    out.push('## Ordered transactions/s with batching (signed receive)', '');
    out.push(table(['n', 'tx/event', 'tx bytes', 'events', 'B/event', 'ordered tx/s', 'events/s', 'ordered / submitted txs', 'goal (≥ 100,000 tx/s)', 'other load (cores)'],
      results.batch.map((b) => [b.n, fmt(b.txPerEvent), opts.txBytes, fmt(b.events), fmt(b.bytesPerEvent), fmt(median(b.txRates)), fmt(median(b.eventRates)),
        `${fmt(b.orderedTxs)} / ${fmt(b.totalTxs)}`, goal(median(b.txRates) >= 100_000), fmt(b.otherLoad, 2)])), '');
    out.push('Ordered tx/s counts only transactions ordered by the end of the run (the last rounds are still undecided) over the whole receive time.', '');
  }

  if (results.latency.length > 0) {
    out.push('## Consensus latency in gossip steps', '');
    out.push('Events created (swarm-wide) between a transaction\'s submission to a random member and its ordering — at the submitter, at the last member to order it, and at an observer that receives every event the moment it exists (the lower bound). One Hashgraph per member, full sync with a random peer before each event.', '');
    out.push(table(['n', 'txs', 'events', 'events/round', 'submitter p50', 'p95', 'p99', 'all members p50', 'p95', 'p99', 'observer p50', 'p95', 'p99', 'submitter p50 ÷ n', 'not ordered'],
      results.latency.map((l) => [l.n, fmt(l.submitted), fmt(l.totalEvents), fmt(l.totalEvents / Math.max(1, l.rounds), 1),
        percentile(l.atSubmitter, 50), percentile(l.atSubmitter, 95), percentile(l.atSubmitter, 99),
        percentile(l.atAll, 50), percentile(l.atAll, 95), percentile(l.atAll, 99),
        percentile(l.atObserver, 50), percentile(l.atObserver, 95), percentile(l.atObserver, 99),
        fmt(percentile(l.atSubmitter, 50) / l.n, 1), l.unordered])), '');
  }

  if (results.rss.length > 0) {
    out.push('## Receiver RSS while receiving a stream of events', '');
    out.push(`A child process receives the events (${results.rss[0]!.verify ? 'signed, verified' : 'unsigned, verifySignatures: false'}) over a pipe from the generator process; ` +
      `process.memoryUsage() every ${fmt(opts.rssSample)} events; Node flags of the receiver: ${opts.rssExecArgv.length === 0 ? 'none (defaults)' : `\`${opts.rssExecArgv.join(' ')}\``}. MB = MiB.`, '');
    const samplesAt = results.rss[0]!.samples.map((s) => s.events);
    const label = (e: number): string => (e === 0 ? 'start' : e % 1_000_000 === 0 ? `${e / 1_000_000}M` : `${fmt(e / 1000)}k`);
    out.push(table(['n', ...samplesAt.map(label), 'peak (VmHWM)', 'growth 2nd sample → end', 'goal (≤ 200 MB, flat)'],
      results.rss.map((r) => {
        const max = Math.max(...r.samples.map((s) => s.rss), Number.isNaN(r.peakRssKiB) ? 0 : r.peakRssKiB * 1024);
        const growth = r.samples.length > 2 ? r.samples[r.samples.length - 1]!.rss - r.samples[1]!.rss : NaN;
        return [r.n, ...r.samples.map((s) => mb(s.rss)), mb(r.peakRssKiB * 1024), `${growth >= 0 ? '+' : ''}${mb(growth)}`, goal(max <= 200 * 1024 * 1024)];
      })), '');
    out.push('Heap used (MB) and events held in memory by the engine at the same points:', '');
    out.push(table(['n', ...samplesAt.map(label), 'live heap after full GC (end)', 'RSS after full GC (end)', 'receive ev/s', 'ordered tx', 'other load (cores)'],
      results.rss.map((r) => [r.n, ...r.samples.map((s) => `${mb(s.heapUsed)} / ${fmt(s.eventsInMemory)}`), mb(r.liveHeapAfterGc), mb(r.rssAfterGc),
        fmt(r.samples[r.samples.length - 1]!.events / r.samples[r.samples.length - 1]!.seconds), fmt(r.orderedTransactions), fmt(r.otherLoad, 2)])), '');
    out.push('"flat": the RSS stays within a band after the first sample (V8 heap and malloc arenas reach their working size) — see the growth column; the goal is judged on the peak.', '');
  }
  return out.join('\n');
}

// ------------------------------------------------------------------ main

export async function main(args: string[]): Promise<void> {
  if (args[0] === '--rss-receiver') {
    rssReceiver();
    return;
  }
  let opts: Options | null;
  try {
    opts = parseOptions(args);
  } catch (err) {
    console.error(`hashgraph bench: ${(err as Error).message}`);
    process.exitCode = 2;
    return;
  }
  if (opts === null) {
    console.log(HELP);
    return;
  }
  const started = new Date();
  const log = (s: string): void => { console.error(s); };
  const results = { throughput: [] as ThroughputResult[], batch: [] as BatchResult[], latency: [] as LatencyResult[], rss: [] as RssResult[] };
  if (opts.sections.includes('throughput')) {
    log('throughput:');
    for (const n of opts.n) results.throughput.push(await throughput(n, opts, log));
  }
  if (opts.sections.includes('batch')) {
    log('batching:');
    for (const n of opts.batchN) for (const k of opts.batch) results.batch.push(await batching(n, k, opts, log));
  }
  if (opts.sections.includes('latency')) {
    log('latency:');
    for (const n of opts.latencyN) {
      const l = await latency(n, opts);
      log(`  n=${n}: p50 at submitter ${percentile(l.atSubmitter, 50)} steps (${fmt(l.totalEvents)} events, ${l.seconds.toFixed(1)} s)`);
      results.latency.push(l);
    }
  }
  if (opts.sections.includes('rss') && opts.rssEvents > 0) {
    log(`rss (${fmt(opts.rssEvents)} events per n):`);
    for (const n of opts.rssN) results.rss.push(await rssRun(n, opts, log));
  }
  const md = report(opts, args, started, results);
  console.log(md);
  if (opts.out !== null) {
    mkdirSync(path.dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, md + '\n');
    log(`written to ${path.relative(process.cwd(), opts.out)}`);
  }
}
