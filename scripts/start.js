#!/usr/bin/env node
// `npm start` for now: report what exists and show the CLI help. Rewritten when the UI/agent land.
// Detects the Electron binary WITHOUT require('electron'): in Electron 45 that call downloads
// the binary on demand (no postinstall), which hangs/fails on machines without that download host.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function electronBinary() {
  try {
    const dir = path.dirname(createRequire(import.meta.url).resolve('electron/package.json'));
    const rel = readFileSync(path.join(dir, 'path.txt'), 'utf8').trim();
    const bin = path.join(dir, 'dist', rel);
    return existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

const bin = electronBinary();
console.log(
  `hgmig: Electron binary ${bin ? `found (${bin})` : 'not installed'}; ` +
    'the agent and UI arrive in later issues.\n' +
    'Available now: `npx hgmig --help`, `npx hgmig consensus replay FILE.json` (once the engine lands).\n',
);
const r = spawnSync(process.execPath, [path.join(root, 'bin', 'hgmig.js'), '--help'], { stdio: 'inherit' });
process.exit(r.status ?? 1);
