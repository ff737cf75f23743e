#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with `node --test`.
// Explicit file list because: Node 20 does not expand globs in `--test` args, and a directory
// arg would also execute every non-test .js under a `test/` dir (helpers, fixtures) as a test.
// Extra args are forwarded, e.g. `node scripts/run-tests.js --test-name-pattern=cli`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, 'dist', 'test');

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return find(p);
    return e.isFile() && e.name.endsWith('.test.js') ? [p] : [];
  });
}

const files = find(testDir).sort();
if (files.length === 0) {
  console.error(`run-tests: no *.test.js under ${path.relative(root, testDir)} (did the build run?)`);
  process.exit(1);
}
const args = ['--test', '--test-concurrency=1', ...process.argv.slice(2), ...files.map((f) => path.relative(root, f))];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
