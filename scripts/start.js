#!/usr/bin/env node
// `npm start`: runs this machine's site with embedded defaults. Until the desktop UI exists that
// is the headless agent: on first start it founds a one-site swarm named after the host, then it
// runs `hgmig agent` in the foreground (Ctrl-C stops it cleanly).
// Detects the Electron binary WITHOUT require('electron'): in Electron 45 that call downloads
// the binary on demand (no postinstall), which hangs/fails on machines without that download host.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'bin', 'hgmig.js');
const { defaultDataDir } = await import(path.join(root, 'dist', 'p2p', 'cli', 'data-dir.js'));

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

/** A valid site name from the host name (letters, digits, ".", "_", "-"). */
function defaultSiteName() {
  const name = hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63);
  return name.length > 0 ? name : 'site';
}

const dataDir = defaultDataDir();
const bin = electronBinary();
console.log(`hgmig: Electron binary ${bin ? `found (${bin})` : 'not installed'}; the desktop UI arrives in a later issue, so this starts the headless agent.`);
console.log(`hgmig: data directory ${dataDir} (set HGMIG_DATA to use another)`);

if (!existsSync(path.join(dataDir, 'swarm.json'))) {
  const site = defaultSiteName();
  console.log(`hgmig: no swarm here yet: founding a one-site swarm as "${site}"`);
  const created = spawnSync(process.execPath, [cli, '--data', dataDir, 'swarm', 'create', '--name', site], { stdio: 'inherit' });
  if (created.status !== 0) process.exit(created.status ?? 1);
}

const agent = spawn(process.execPath, [cli, '--data', dataDir, 'agent'], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => { agent.kill(signal); });
agent.on('exit', (code, signal) => { process.exit(code ?? (signal === null ? 1 : 0)); });
