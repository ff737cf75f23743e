/**
 * Catch-up from a checkpoint (issue 4). Not a test: nothing here asserts a timing.
 *
 *   node dist/bench/run.js catchup [--events N] [--n 4] [--runs R] [--interval 100]
 *
 * 1. A swarm of n founding sites is created (real data directories); a history of N signed events
 *    (one ping transaction each; creators in turn, other-parent the newest event of a random other
 *    member) is generated straight into site 0's event log by an observer engine, untimed.
 * 2. Site 0's agent (`hgmig agent`, a separate process, no peers) is started once: it replays the
 *    whole log and writes the checkpoints a replay keeps (the newest two).
 * 3. R pairs of restarts, interleaved, the order swapped each pair: "with" (the checkpoints in
 *    place) and "without" (the checkpoints directory moved aside): wall time from spawn to the
 *    agent's "replayed … events" line and the agent's CPU seconds at that moment (/proc/<pid>/stat),
 *    events replayed. Medians and the ratio with / without.
 * 4. Bytes a joining site fetches: with = the newest checkpoint (as served) + the wire bytes of the
 *    events logged after it; without = the wire bytes of every logged event (what the sync protocol
 *    sends a site that starts from genesis), framing left out on both sides.
 */
import '../p2p/polyfills.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { PrivateKey } from '@libp2p/interface';
import { createSwarm, dataDirLayout, encodeTransaction } from '../p2p/agent/index.js';
import { CheckpointStore } from '../p2p/agent/checkpoint.js';
import { loadIdentity } from '../p2p/agent/data-dir.js';
import { memberPublicKeys, parseGenesis } from '../p2p/agent/genesis.js';
import { ed25519Signer, EventLog, Hashgraph, signEvent, type SignedEvent } from '../p2p/hashgraph/index.js';
import { startLoadMeter } from './machine-load.js';

interface Options {
  events: number;
  n: number;
  runs: number;
  interval: number;
}

function parse(args: string[]): Options {
  const options: Options = { events: 200_000, n: 4, runs: 3, interval: 100 };
  for (let i = 0; i < args.length; i++) {
    const name = args[i]!.replace(/^--/, '');
    if (name === 'help') {
      console.log('catchup [--events N (200000)] [--n MEMBERS (4)] [--runs PAIRS (3)] [--interval ROUNDS (100)]');
      process.exit(0);
    }
    const value = Number(args[++i]);
    if (!(name in options) || !Number.isSafeInteger(value) || value < 1) throw new Error(`bad option --${name} ${args[i]}`);
    (options as unknown as Record<string, number>)[name] = value;
  }
  return options;
}

const bin = fileURLToPath(new URL('../../bin/hgmig.js', import.meta.url));

/** n founding sites of one swarm; returns their directories (site 0 first) and keys. */
async function foundSwarm(root: string, n: number): Promise<{ dirs: string[]; keys: PrivateKey[] }> {
  const dirs = Array.from({ length: n }, (_, i) => path.join(root, `site-${i}`));
  for (const [i, dir] of dirs.entries()) await createSwarm(dir, { swarmName: 'bench', siteName: `site-${i}` });
  const genesis = JSON.parse(readFileSync(path.join(dirs[0]!, 'swarm.json'), 'utf8')) as { members: unknown[] };
  genesis.members = dirs.map((dir) => (JSON.parse(readFileSync(path.join(dir, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0]);
  writeFileSync(path.join(dirs[0]!, 'swarm.json'), JSON.stringify(genesis), { mode: 0o600 });
  const keys = await Promise.all(dirs.map(async (dir) => await loadIdentity(dataDirLayout(dir))));
  return { dirs, keys };
}

/** Signs `count` events of n creators and inserts them into an observer engine writing site 0's log. */
async function generate(dir: string, keys: PrivateKey[], count: number): Promise<{ rounds: number; seconds: number }> {
  const started = performance.now();
  const genesis = parseGenesis(readFileSync(path.join(dir, 'swarm.json'), 'utf8'), 'swarm.json');
  const log = new EventLog(dataDirLayout(dir).eventLog);
  const hg = new Hashgraph({ members: memberPublicKeys(genesis), coinRoundFrequency: genesis.coinRoundFrequency, verifySignatures: false, log });
  hg.start();
  const signers = keys.map((k) => ed25519Signer(k));
  const last: Array<SignedEvent | null> = keys.map(() => null);
  let seed = 12345;
  const random = (below: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % below;
  };
  let timestamp = BigInt(Date.now() - 3_600_000) * 1_000_000n;
  for (let k = 0; k < count; k++) {
    const creator = k % keys.length;
    let other = random(keys.length - 1);
    if (other >= creator) other++;
    timestamp += 1_000_000n;
    const transaction = encodeTransaction({ type: 'ping', nonce: randomBytes(16), submittedAt: Number(timestamp / 1_000_000n) });
    const event = signEvent(
      { creator, selfParent: last[creator]?.hash ?? null, otherParent: last[other]?.hash ?? null, timestamp, transactions: [transaction] },
      signers[creator]!,
    );
    hg.receive(event.bytes);
    last[creator] = event;
    if (k % 50_000 === 0 && k > 0) process.stdout.write(`  generated ${k} events, round ${hg.lastOrderedRound}\n`);
  }
  hg.stop();
  log.close();
  return { rounds: hg.lastOrderedRound, seconds: (performance.now() - started) / 1000 };
}

interface Run {
  variant: 'with' | 'without';
  wallSeconds: number;
  cpuSeconds: number;
  replayed: number;
  after: string;
}

const CLOCK_TICKS = 100;

function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Starts site 0's agent, waits for its replay line, stops it. */
async function restart(dir: string, variant: Run['variant'], interval: number): Promise<Run> {
  const started = performance.now();
  const child = spawn(process.execPath, [bin, 'agent', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HGMIG_CHECKPOINT_ROUNDS: String(interval), HGMIG_DEBUG: '' } });
  let output = '';
  const line = await new Promise<RegExpExecArray>((resolve, reject) => {
    const look = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /replayed (\d+) events from \S+ after (the whole log|the checkpoint of round \d+)/.exec(output);
      if (match !== null) resolve(match);
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code) => { reject(new Error(`agent exited (${code}) before its replay line:\n${output}`)); });
  });
  const wallSeconds = (performance.now() - started) / 1000;
  const cpuSeconds = cpuSecondsOf(child.pid!);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  return { variant, wallSeconds, cpuSeconds, replayed: Number(line[1]), after: line[2]! };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function sumBytes(dir: string, afterPosition: number): number {
  const db = new Database(dataDirLayout(dir).eventLog, { readonly: true });
  try {
    return Number(db.prepare('SELECT COALESCE(SUM(length(bytes)), 0) FROM events WHERE seq > ?').pluck().get(afterPosition));
  } finally {
    db.close();
  }
}

export async function main(args: string[]): Promise<void> {
  const options = parse(args);
  const root = mkdtempSync(path.join(os.tmpdir(), 'hgmig-bench-catchup-'));
  const load = startLoadMeter();
  try {
    console.log(`catch-up from a checkpoint: ${options.events} events, n = ${options.n}, checkpoint every ${options.interval} rounds, ${options.runs} pairs; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    const { dirs, keys } = await foundSwarm(root, options.n);
    const site = dirs[0]!;
    const generated = await generate(site, keys, options.events);
    console.log(`history: ${options.events} events, ${generated.rounds} decided rounds, generated in ${generated.seconds.toFixed(1)} s`);
    const first = await restart(site, 'without', options.interval);
    console.log(`first start (full replay, writes the checkpoints): ${first.wallSeconds.toFixed(2)} s, ${first.cpuSeconds.toFixed(2)} CPU s, ${first.replayed} events`);
    const store = new CheckpointStore(path.join(site, 'checkpoints'));
    if (store.rounds().length === 0) throw new Error('the full replay wrote no checkpoint');
    const aside = path.join(root, 'checkpoints-aside');
    const runs: Run[] = [];
    for (let pair = 0; pair < options.runs; pair++) {
      const order: Array<Run['variant']> = pair % 2 === 0 ? ['with', 'without'] : ['without', 'with'];
      for (const variant of order) {
        if (variant === 'without') renameSync(path.join(site, 'checkpoints'), aside);
        try {
          runs.push(await restart(site, variant, options.interval));
        } finally {
          if (variant === 'without') {
            rmSync(path.join(site, 'checkpoints'), { recursive: true, force: true });
            renameSync(aside, path.join(site, 'checkpoints'));
          }
        }
        const r = runs.at(-1)!;
        console.log(`  ${r.variant.padEnd(7)} ${r.wallSeconds.toFixed(2)} s wall, ${r.cpuSeconds.toFixed(2)} CPU s, ${r.replayed} events replayed after ${r.after}`);
      }
    }
    const pick = (variant: Run['variant'], key: 'wallSeconds' | 'cpuSeconds' | 'replayed'): number => median(runs.filter((r) => r.variant === variant).map((r) => r[key]));
    const newest = store.read(store.rounds()[0]!);
    const withBytes = newest.bytes.byteLength + sumBytes(site, newest.logPosition);
    const withoutBytes = sumBytes(site, 0);
    const machine = load.stop(runs.reduce((sum, r) => sum + r.cpuSeconds, first.cpuSeconds));
    console.log('');
    console.log('| | with checkpoint | without | ratio |');
    console.log('| --- | --- | --- | --- |');
    console.log(`| restart, wall s (median of ${options.runs}) | ${pick('with', 'wallSeconds').toFixed(2)} | ${pick('without', 'wallSeconds').toFixed(2)} | ${(pick('with', 'wallSeconds') / pick('without', 'wallSeconds')).toFixed(3)} |`);
    console.log(`| restart, CPU s (median) | ${pick('with', 'cpuSeconds').toFixed(2)} | ${pick('without', 'cpuSeconds').toFixed(2)} | ${(pick('with', 'cpuSeconds') / pick('without', 'cpuSeconds')).toFixed(3)} |`);
    console.log(`| events replayed | ${pick('with', 'replayed')} | ${pick('without', 'replayed')} | ${(pick('with', 'replayed') / pick('without', 'replayed')).toFixed(4)} |`);
    console.log(`| bytes a joining site fetches | ${withBytes} (checkpoint ${newest.bytes.byteLength} + ${withBytes - newest.bytes.byteLength} of events) | ${withoutBytes} | ${(withBytes / withoutBytes).toFixed(4)} |`);
    console.log(`other processes' load during the run: ${machine.toFixed(2)} CPUs busy; load average now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
