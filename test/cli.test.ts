import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// dist/test/cli.test.js -> repo root
const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = fileURLToPath(new URL('../../bin/hgmig.js', import.meta.url));

function hgmig(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, HGMIG_DEBUG: '' },
  });
}

test('--version prints package.json version', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  const r = hgmig('--version');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('unknown subcommand exits non-zero with a message on stderr', () => {
  const r = hgmig('no-such-command');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /^hgmig: unknown command 'no-such-command'/m);
});

test('--help lists the global --data option', () => {
  const r = hgmig('--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /--data <dir>/);
});
