/**
 * The views whose endpoints the agent does not offer yet (migrations, similarity, the agent's log),
 * rendered in Chromium from answers in the planned shapes (docs: the API plan), while the rest of
 * the page talks to a real agent: the wizard submits the planned request, a running migration
 * shows its phases and bars and can be cancelled, the heat map fills, the agent's log exports as
 * the agent formats it. Where the agent answers these endpoints itself, its answers are used
 * instead and only the rendering is checked.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page, type Route } from 'playwright-core'
import { createSwarm, tempDataDir } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'
import { browserSkipReason, chromiumArgs, chromiumPath, screenshotDir, startUiAgent, type UiAgent } from './support/ui-agents.js'

const skip = browserSkipReason()
if (skip !== null) console.log(`planned-view tests skipped: ${skip}`)

const started = Date.now() - 40_000
const iso = (offsetMs: number): string => new Date(started + offsetMs).toISOString()
const running = {
  id: 'm-1',
  vm: 'web-1',
  from: 'site-a',
  to: 'site-b',
  phase: 'precopy',
  state: 'running',
  phases: [{ name: 'planning', startedAt: iso(0), endedAt: iso(2000) }, { name: 'base', startedAt: iso(2000), endedAt: iso(20_000) }, { name: 'precopy', startedAt: iso(20_000), endedAt: null }],
  bars: {
    base: { done: 800 * 2 ** 20, total: 800 * 2 ** 20, bytesPerSecond: 40 * 2 ** 20 },
    ud: { done: 120 * 2 ** 20, total: 300 * 2 ** 20, bytesPerSecond: 25 * 2 ** 20, etaMs: 7200 },
    memory: { done: 1 * 2 ** 30, total: 2 * 2 ** 30, bytesPerSecond: 90 * 2 ** 20, etaMs: 11_000 }
  },
  sources: [{ site: 'site-a', bytesPerSecond: 60 * 2 ** 20 }, { site: 'site-c', bytesPerSecond: 30 * 2 ** 20 }],
  dirtyPages: [52_000, 18_000, 6100],
  plan: { m: 2, n: 1 },
  expectedDowntimeMs: 180,
  actualDowntimeMs: null
}
const finished = { id: 'm-0', vm: 'db-1', from: 'site-b', to: 'site-a', phase: 'failed', state: 'failed', error: 'target ran out of disk space', endedAt: iso(-600_000), actualDowntimeMs: null }
const logEntries = [
  { at: iso(0), level: 'info', site: 'site-a', migration: 'm-1', phase: 'planning', message: 'plan: 2 sources, (m, n) = (2, 1)' },
  { at: iso(2000), level: 'info', site: 'site-a', migration: 'm-1', phase: 'base', message: 'base layers: 800 MiB from site-a and site-c' },
  { at: iso(20_000), level: 'info', site: 'site-a', migration: 'm-1', phase: 'precopy', message: 'pre-copy pass 1: 52000 dirty pages' }
]

describe('views against the planned endpoints, in Chromium', { skip: skip ?? false }, () => {
  let agent: UiAgent
  let browser: Browser
  let page: Page
  const posted: Array<{ path: string, body: unknown }> = []
  const errors: string[] = []

  /** Answers `path` in the planned shape (only used while the agent does not offer it: see offers). */
  const planned = async (path: string, answer: (route: Route) => Promise<void>): Promise<void> => {
    await page.route((url) => url.pathname === path, answer)
  }
  /** Whether the agent answers GET `path` itself: then its real answers are for the three-agent test, and this one stands down. */
  const offers = async (path: string): Promise<boolean> => {
    const response = await fetch(`${agent.client.origin}${path}`, { headers: { Authorization: `Bearer ${agent.api.token}` } })
    return response.status !== 404 && response.status !== 405
  }

  before(async () => {
    mkdirSync(screenshotDir, { recursive: true })
    const dir = tempDataDir()
    createSwarm(dir, 'site-a')
    agent = await startUiAgent(dir)
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs })
    page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true })
    page.on('console', (message) => { if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) errors.push(message.text()) })
    page.on('pageerror', (err) => { errors.push(err.message) })
    await planned('/v1/vms', async (route) => { await route.fulfill({ json: { vms: [{ id: 'vm-web-1', name: 'web-1', site: 'site-a', memoryBytes: 2 * 2 ** 30, diskBytes: 20 * 2 ** 30 }] } }) })
    await planned('/v1/migrations/plan', async (route) => { await route.fulfill({ json: { suggested: [{ site: 'site-b', predictedBytes: 900 * 2 ** 20, predictedMs: 42_000, m: 2, n: 1 }, { site: 'site-c', predictedBytes: 2 * 2 ** 30, predictedMs: 95_000, m: 1, n: 0 }], bitmapSummary: '61 % of chunks already at site-b' } }) })
    await planned('/v1/migrations', async (route) => {
      if (route.request().method() === 'POST') {
        posted.push({ path: '/v1/migrations', body: route.request().postDataJSON() })
        await route.fulfill({ status: 202, json: { id: 'm-2' } })
      } else {
        await route.fulfill({ json: { migrations: [running, finished] } })
      }
    })
    await planned('/v1/migrations/m-1/cancel', async (route) => { posted.push({ path: '/v1/migrations/m-1/cancel', body: route.request().postDataJSON() }); await route.fulfill({ status: 202, json: {} }) })
    await planned('/v1/images/similarity', async (route) => {
      await route.fulfill({ json: { images: ['c1', 'c2', 'c3'], labels: ['debian-12 (os)', 'web (we)', 'debian-11 (os)'], matrix: [[1, 0.92, 0.05], [0.415, 1, 0.02], [0.05, 0.02, 1]] } })
    })
    await planned('/v1/logs', async (route) => {
      const format = new URL(route.request().url()).searchParams.get('format')
      if (format === 'ndjson') await route.fulfill({ body: logEntries.map((e) => JSON.stringify(e)).join('\n') + '\n', contentType: 'application/x-ndjson' })
      else await route.fulfill({ json: logEntries })
    })
    await page.goto(`${agent.uiOrigin}/#token=${agent.api.token}`)
    await page.waitForSelector('[data-testid="members"]')
  })

  after(async () => {
    await browser?.close()
    await agent?.stop()
  })

  test('migrations: the wizard submits VM and target; a running one shows phases, bars and rates, and cancels; a failed one says why', async (t) => {
    if (await offers('/v1/migrations')) { t.skip('the agent offers /v1/migrations itself'); return }
    page.on('dialog', (dialog) => { void dialog.accept() })
    await page.getByRole('tab', { name: 'Migrations' }).click()
    await page.getByRole('radio', { name: /web-1/ }).check()
    await page.getByRole('button', { name: 'Next' }).click()
    await page.getByRole('button', { name: 'Choose site-b' }).click()
    await page.getByLabel('Maximum downtime (ms, optional)').fill('250')
    await page.getByRole('button', { name: 'Next' }).click()
    await page.getByText('61 % of chunks already at site-b').waitFor()

    const bars = page.getByTestId('migration-m-1')
    assert.equal(await bars.getByRole('progressbar', { name: 'Base layers' }).getAttribute('value'), String(800 * 2 ** 20))
    assert.equal(await bars.getByRole('progressbar', { name: 'Memory' }).getAttribute('max'), String(2 * 2 ** 30))
    assert.match(await bars.textContent() ?? '', /User data \(UD\)40 % · 120\.0 MiB of 300\.0 MiB · 25\.0 MiB\/s · ETA 7\.2 s/)
    assert.match(await bars.textContent() ?? '', /Downtime expected 180 ms, actual — · \(m, n\) = \(2, 1\)/)
    assert.equal(await bars.locator('[role="img"][aria-label^="Phase timeline"]').getAttribute('data-points'), '3')
    assert.equal(await bars.locator('[role="img"][aria-label="Dirty pages per pre-copy pass"]').getAttribute('data-points'), '3')
    assert.match(await page.getByTestId('migration-history').textContent() ?? '', /failed: target ran out of disk space/)
    await page.screenshot({ path: join(screenshotDir, 'migrations-planned.png'), fullPage: true })

    await page.getByRole('button', { name: 'Start migration' }).click()
    await page.getByText('step 1 of 3').waitFor()
    assert.deepEqual(posted.shift(), { path: '/v1/migrations', body: { vm: 'vm-web-1', to: 'site-b', maxDowntimeMs: 250 } }, 'the planned request')
    await bars.getByRole('button', { name: 'Cancel' }).click()
    await eventually('the cancel request', async () => posted.length > 0 ? true : undefined)
    assert.deepEqual(posted.shift(), { path: '/v1/migrations/m-1/cancel', body: {} })
  })

  test('images: the similarity heat map has one cell per image pair', async (t) => {
    if (await offers('/v1/images/similarity')) { t.skip('the agent offers /v1/images/similarity itself'); return }
    await page.getByRole('tab', { name: 'Images' }).click()
    const heat = page.getByTestId('similarity-chart')
    await heat.waitFor()
    assert.equal(await heat.getAttribute('data-points'), '9', 'a 3 × 3 matrix')
    assert.match(await heat.textContent() ?? '', /debian-12 \(os\)/)
    await page.screenshot({ path: join(screenshotDir, 'images-similarity-planned.png'), fullPage: true })
  })

  test('logs: the agent\'s migration log, filtered by migration, exported as the agent formats it', async (t) => {
    if (await offers('/v1/logs')) { t.skip('the agent offers /v1/logs itself'); return }
    await page.getByRole('tab', { name: 'Logs' }).click()
    await page.getByTestId('log-source').filter({ hasText: 'The agent\'s migration log' }).waitFor()
    await page.getByLabel('Migration').selectOption('m-1')
    assert.deepEqual(await page.locator('[data-testid="log-table"] tbody tr td:nth-child(4)').allTextContents(), ['m-1 · precopy', 'm-1 · base', 'm-1 · planning'], 'newest first, with phases')
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export as NDJSON' }).click()])
    assert.equal(download.suggestedFilename(), 'hgmig-site-a-log-m-1.ndjson')
    const phases = readFileSync(await download.path(), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { phase: string }).phase)
    assert.deepEqual(phases, ['planning', 'base', 'precopy'], 'the exported log holds the migration\'s phases')
    await page.screenshot({ path: join(screenshotDir, 'logs-planned.png'), fullPage: true })
  })

  test('no script error while rendering them', () => {
    assert.deepEqual(errors, [])
  })
})
