/**
 * The real desktop app through Playwright's Electron driver: the window shows the UI of an agent
 * it started, with the preload's bridge and the CSP in force. Skipped, with the reason printed,
 * where the Electron binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD=1 installs).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { _electron as electron } from 'playwright-core'
import { screenshotDir } from './support/ui-agents.js'

// Found without require('electron'), which would try to download the binary.
function electronBinary (): string | null {
  try {
    const dir = dirname(createRequire(import.meta.url).resolve('electron/package.json'))
    const bin = join(dir, 'dist', readFileSync(join(dir, 'path.txt'), 'utf8').trim())
    return existsSync(bin) ? bin : null
  } catch {
    return null
  }
}

const binary = electronBinary()
const skip = binary === null ? 'the Electron binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD=1): the shell is covered by electron-shell.test.ts against a stub' : false
if (skip !== false) console.log(`electron app test skipped: ${skip}`)

test('the desktop app opens the UI of the agent it started, with the preload bridge', { skip }, async () => {
  const home = mkdtempSync(join(tmpdir(), 'hgmig-electron-'))
  const main = fileURLToPath(new URL('../main/main.js', import.meta.url))
  const app = await electron.launch({
    executablePath: binary!,
    args: [main, '--site', 'desk-e2e', ...(process.getuid?.() === 0 ? ['--no-sandbox'] : [])],
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), npm_node_execpath: process.execPath }
  })
  try {
    const window = await app.firstWindow()
    await window.waitForSelector('[data-testid="members"] tbody tr', { timeout: 60_000 })
    assert.equal(await window.getByTestId('site-name').textContent(), 'desk-e2e')
    assert.equal(await window.evaluate('typeof window.hgmig?.token'), 'function', 'the preload exposed its bridge')
    assert.equal(await window.evaluate('typeof require'), 'undefined', 'no Node in the page')
    mkdirSync(screenshotDir, { recursive: true })
    await window.screenshot({ path: join(screenshotDir, 'electron.png') })
  } finally {
    await app.close()
  }
})
