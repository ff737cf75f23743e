import '../p2p/polyfills.js';

// Benchmark runner placeholder; the real runner replaces this file.
const args = process.argv.slice(2);
if (args.length === 0) {
  console.log('no benchmarks yet');
} else {
  console.error(`hgmig bench: no benchmarks yet (unknown: ${args.join(' ')})`);
  process.exitCode = 1;
}
