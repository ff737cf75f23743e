import '../p2p/polyfills.js';

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Benchmark dispatcher: `node dist/bench/run.js <name> [args]` (or `npm run bench -- <name> [args]`).
// Benchmarks are loaded lazily so one bench's imports never weigh on another's measurements;
// standalone bench scripts run in their own process, with the arguments given here.

interface BenchModule {
  main: (args: string[]) => Promise<void>;
}

type Bench =
  | { description: string; load: () => Promise<BenchModule> }
  | { description: string; script: string };

const benches: Record<string, Bench> = {
  hashgraph: {
    description:
      'hashgraph engine (issue 2): signed/unsigned events/s inserted and ordered vs Ed25519 verify/s, ' +
      'batched transactions/s, consensus latency in gossip steps, RSS over 1,000,000 events (`hashgraph --help`)',
    load: () => import('./hashgraph.js'),
  },
  store: {
    description: 'image store (issue 3): import | layout | blocksize | scale (see bench/store.ts)',
    script: 'store.js',
  },
  exchange: { description: 'chunk exchange (issue 5): streams | fetch | knockout | tbf (see bench/exchange.ts)', script: 'exchange.js' },
  swarm: {
    description: 'swarm of agent processes (issue 4): consensus latency p50/p95/p99 and ordered tx/s for 3/5/10 agents, loopback and user-space link delays (`swarm --help`)',
    load: () => import('./swarm.js'),
  },
  catchup: { description: 'catch-up from a checkpoint (issue 4): agent restart time and CPU with vs without a checkpoint over a long log, bytes a joining site fetches (`catchup --help`)', load: () => import('./catchup.js') },
  migration: {
    description: 'migration engine (issue 6): NSS / SS / H-GMIG time and bytes per similarity and workload, 5 concurrent, source knock-out (see bench/migration.ts)',
    script: 'migration.js',
  },
};

function list(): void {
  console.log('usage: node dist/bench/run.js <name> [args]   (npm run bench -- <name> [args])\n');
  console.log('available benches:');
  for (const [name, bench] of Object.entries(benches)) console.log(`  ${name.padEnd(10)} ${bench.description}`);
}

const [name, ...rest] = process.argv.slice(2);
if (name === undefined || name === 'list' || name === '--help' || name === '-h') {
  list();
} else {
  const bench = benches[name];
  if (bench === undefined) {
    console.error(`hgmig bench: unknown bench "${name}"\n`);
    list();
    process.exitCode = 2;
  } else if ('script' in bench) {
    const script = fileURLToPath(new URL(bench.script, import.meta.url));
    const r = spawnSync(process.execPath, [script, ...rest], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  } else {
    await (await bench.load()).main(rest);
  }
}
