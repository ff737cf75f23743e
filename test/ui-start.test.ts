/**
 * `npm start` without the Electron binary (as on these machines): founds a one-site swarm, runs the
 * agent serving the UI, prints the browser address with the token in its fragment, and stops
 * cleanly on Ctrl-C.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { eventually } from './support/peer-process.js'
import { agentServesUi } from './support/ui-agents.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const electronInstalled = existsSync(join(root, 'node_modules', 'electron', 'dist'))

test('npm start serves the UI to a browser where Electron is absent, and Ctrl-C stops it cleanly', { skip: electronInstalled ? 'the Electron binary is installed: npm start would open the desktop app' : false }, async () => {
  const data = join(mkdtempSync(join(tmpdir(), 'hgmig-start-')), 'data')
  const child = spawn(process.execPath, [join(root, 'scripts', 'start.js')], { env: { ...process.env, HGMIG_DATA: data, HGMIG_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => { child.once('exit', (code) => { resolve(code) }) })
  try {
    // (Its lines arrive in separate chunks: wait for the second before reading the first.)
    const said = await eventually('start.js founds a swarm', async () => /founding a one-site swarm/.test(output) ? output : undefined, 60_000)
    assert.match(said, /not installed: serving the UI to a browser/)
    if (agentServesUi()) {
      const [, origin, token] = await eventually('the printed browser address', async () => /open the UI in a browser: (http:\/\/127\.0\.0\.1:\d+)\/#token=([0-9a-f]+)/.exec(output) ?? undefined, 60_000)
      const page = await fetch(`${origin!}/`)
      assert.equal(page.status, 200)
      assert.match(await page.text(), /<div id="root">/)
      const status = await fetch(`${origin!}/v1/status`, { headers: { Authorization: `Bearer ${token!}` } })
      assert.equal(status.status, 200, 'the printed token is the agent\'s')
    } else {
      await eventually('the agent (headless: this build has no --ui)', async () => existsSync(join(data, 'api.json')) ? true : undefined, 60_000)
      assert.match(output, /cannot serve the UI yet/)
    }
    assert.ok(existsSync(join(data, 'swarm.json')))
    child.kill('SIGINT')
    assert.equal(await exited, 0, `start.js exits 0 after the agent stopped cleanly:\n${output}`)
    assert.equal(existsSync(join(data, 'api.json')), false)
  } finally {
    if (child.exitCode === null) {
      // The agent is start.js's child: stop it too, by the pid it published.
      try { process.kill((JSON.parse(readFileSync(join(data, 'api.json'), 'utf8')) as { pid: number }).pid, 'SIGKILL') } catch { /* not started or gone */ }
      child.kill('SIGKILL')
    }
  }
})
