#!/usr/bin/env node
// `npm start`: this machine's site with embedded defaults. With the Electron binary installed it
// opens the desktop app (which runs the agent itself, data in the app's userData; `npm start --
// --site NAME` picks a per-site profile). Without it (offline installs), it founds a one-site swarm
// on first start, runs `hgmig agent` serving the UI on loopback, and prints the address to open in
// a browser; Ctrl-C stops the agent cleanly.
// Detects the Electron binary WITHOUT require('electron'): in Electron 45 that call downloads
// the binary on demand (no postinstall), which hangs/fails on machines without that download host.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'bin', 'hgmig.js');
const uiDir = path.join(root, 'dist', 'ui');
const { defaultDataDir } = await import(path.join(root, 'dist', 'p2p', 'cli', 'data-dir.js'));
const extraArgs = process.argv.slice(2);

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

/** Runs `child` in the foreground: signals go to it, its exit is ours. */
function foreground(child) {
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => { child.kill(signal); });
  child.on('exit', (code, signal) => { process.exit(code ?? (signal === null ? 1 : 0)); });
}

const bin = electronBinary();
if (bin !== null) {
  console.log(`hgmig: opening the desktop app (Electron ${bin})`);
  // The app runs the agent with the Node that runs npm (the ABI better-sqlite3 was built for).
  foreground(spawn(bin, [path.join(root, 'dist', 'main', 'main.js'), ...extraArgs], {
    stdio: 'inherit',
    env: { ...process.env, npm_node_execpath: process.execPath },
  }));
} else {
  const dataDir = defaultDataDir();
  console.log('hgmig: Electron binary not installed: serving the UI to a browser instead');
  console.log(`hgmig: data directory ${dataDir} (set HGMIG_DATA to use another)`);
  if (!existsSync(path.join(uiDir, 'index.html'))) {
    console.error(`hgmig: the UI is not built in ${uiDir} (run npm run build)`);
    process.exit(1);
  }
  if (!existsSync(path.join(dataDir, 'swarm.json'))) {
    const site = defaultSiteName();
    console.log(`hgmig: no swarm here yet: founding a one-site swarm as "${site}"`);
    const created = spawnSync(process.execPath, [cli, '--data', dataDir, 'swarm', 'create', '--name', site], { stdio: 'inherit' });
    if (created.status !== 0) process.exit(created.status ?? 1);
  }
  const help = spawnSync(process.execPath, [cli, 'agent', '--help'], { encoding: 'utf8' });
  const servesUi = /--ui\b/.test(help.stdout ?? '');
  if (!servesUi) console.log('hgmig: this agent build cannot serve the UI yet (no `hgmig agent --ui`): running it headless');
  const agent = spawn(process.execPath, [cli, '--data', dataDir, 'agent', ...(servesUi ? ['--ui', uiDir] : []), ...extraArgs], { stdio: 'inherit' });
  foreground(agent);
  if (servesUi) {
    // The address carries the token in its fragment (never sent over HTTP); the page moves it to
    // sessionStorage and erases it from the address bar.
    for (let waited = 0; waited < 120_000 && agent.exitCode === null; waited += 200) {
      try {
        const api = JSON.parse(readFileSync(path.join(dataDir, 'api.json'), 'utf8'));
        if (api.pid === agent.pid) {
          console.log(`\nhgmig: open the UI in a browser: http://127.0.0.1:${api.port}/#token=${api.token}\n`);
          break;
        }
      } catch { /* not written yet */ }
      await sleep(200);
    }
  }
}
