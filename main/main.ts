// Electron main process: wires the real electron module into the shell (main/shell.ts). Kept thin:
// every decision lives in shell.ts, which the tests run against a stub of electron.
import '../p2p/polyfills.js'

import { hostname } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import electron from 'electron'
import { joinSiteSwarm, startSiteAgent } from './agent-runner.js'
import { runShell } from './shell.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..', '..')
const { app } = electron

runShell(electron, {
  argv: process.argv,
  preload: path.join(here, 'preload.cjs'),
  defaultSite: hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63) || 'site',
  startAgent: startSiteAgent,
  joinSwarm: joinSiteSwarm,
  agent: {
    // Packaged: Electron itself runs the agent as Node (better-sqlite3 is rebuilt for its ABI).
    // From a checkout: the Node that ran npm, whose ABI the installed better-sqlite3 was built for.
    runtime: app.isPackaged ? process.execPath : process.env['npm_node_execpath'] ?? 'node',
    env: app.isPackaged ? { ...process.env, ELECTRON_RUN_AS_NODE: '1' } : process.env,
    cli: path.join(root, 'bin', 'hgmig.js'),
    uiDir: path.join(root, 'dist', 'ui'),
    log: (line) => { console.log(`agent: ${line}`) }
  }
})
