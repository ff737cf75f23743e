/**
 * Runs an exchange site inside a network namespace: `node exchange-netns-launch.js NS SCRIPT ARGS…`
 * becomes `ip netns exec NS node SCRIPT ARGS…` with the same stdin/stdout/stderr, so PeerProcess
 * drives the site as if it were its own child. (`ip netns exec` replaces itself with node, so the
 * site's pid is this launcher's child's; the site reports it, and Site.kill kills it directly.)
 */
import { spawn } from 'node:child_process'

const [netns, script, ...args] = process.argv.slice(2)
if (netns === undefined || script === undefined) throw new Error('usage: exchange-netns-launch.js NETNS SCRIPT [ARGS...]')
const site = spawn('ip', ['netns', 'exec', netns, process.execPath, script, ...args], { stdio: 'inherit' })
site.on('error', (err) => {
  process.stderr.write(`cannot start a site in network namespace ${netns}: ${err.message}\n`)
  process.exit(1)
})
site.on('exit', (code, signal) => { process.exit(code ?? (signal === null ? 1 : 128)) })
// Killed (not SIGKILL): take the site along.
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => { site.kill(signal) })
