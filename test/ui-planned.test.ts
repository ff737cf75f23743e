/**
 * The views of data the agent does not report yet (requested from the lead, see
 * /work/briefs/lead-requests.md: per-member throughput in GET /v1/status, LAN peers in GET
 * /v1/swarm/requests, an image's chunk map at GET /v1/images/:rootCid/chunks), rendered in Chromium
 * from the agent's real answers with the requested fields added, while everything else comes from
 * a real agent. Where the agent reports them itself, its answers are used unchanged and only the
 * rendering is checked; where it does not, the page also says so without the stand-in.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { createSwarm, hgmigOk, tempDataDir } from './support/agent-process.js'
import { randomImage, writePlan } from './support/image-generator.js'
import { eventually } from './support/peer-process.js'
import { browserSkipReason, chromiumArgs, chromiumPath, publishScreenshots, screenshotDir, startUiAgent, type UiAgent } from './support/ui-agents.js'

// A browser global used inside page.waitForFunction (the tests' tsconfig has no DOM lib).
declare const document: { querySelector: (selector: string) => { getAttribute: (name: string) => string | null } | null }

const skip = browserSkipReason()
if (skip !== null) console.log(`planned-view tests skipped: ${skip}`)

interface Member { name: string, peerId: string, self: boolean, throughput?: unknown }

describe('views of requested API fields, in Chromium', { skip: skip ?? false }, () => {
  let agent: UiAgent
  let browser: Browser
  const errors: string[] = []
  let rootCid = ''

  const get = async (path: string): Promise<Response> => await fetch(`${agent.client.origin}${path}`, { headers: { Authorization: `Bearer ${agent.api.token}` } })
  const open = async (): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    page.on('console', (message) => { if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) errors.push(message.text()) })
    page.on('pageerror', (err) => { errors.push(err.message) })
    return page
  }
  const load = async (page: Page): Promise<void> => {
    await page.goto(`${agent.uiOrigin}/#token=${agent.api.token}`)
    await page.waitForSelector('[data-testid="members"] tbody tr')
  }

  before(async () => {
    mkdirSync(screenshotDir, { recursive: true })
    const dir = tempDataDir()
    createSwarm(dir, 'site-a')
    agent = await startUiAgent(dir)
    const file = join(mkdtempSync(join(tmpdir(), 'hgmig-ui-planned-')), 'map-os.img')
    await writePlan(randomImage('os', 40, 0.2, 41), file)
    hgmigOk('image', 'add', file, '--layer', 'os', '--name', 'map-os', '--data', dir)
    rootCid = await eventually('the image listed', async () => {
      const { images } = await (await get('/v1/images')).json() as { images: Array<{ name: string, rootCid: string }> }
      return images.find((i) => i.name === 'map-os')?.rootCid
    }, 60_000)
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs })
  })

  after(async () => {
    await browser?.close()
    await agent?.stop()
    publishScreenshots(['swarm-throughput-lan', 'images-chunk-map'])
  })

  test('swarm: each member\'s throughput (column and chart) and the LAN peers mDNS found', async () => {
    const page = await open()
    const status = await (await get('/v1/status')).json() as { members: Member[] }
    // A lone agent on loopback has no member to measure and no LAN peer: the figures are stood in
    // (added to its real answers) unless it reports some.
    const reportsThroughput = status.members.some((m) => m.throughput !== undefined && m.throughput !== null)
    const knowsThroughput = status.members.some((m) => m.throughput !== undefined)
    const requests = await (await get('/v1/swarm/requests')).json() as { lanPeers?: unknown[] }
    const reportsLan = requests.lanPeers !== undefined && requests.lanPeers.length > 0
    const lanPeer = '12D3KooWLanPeerNotAMemberXXXXXXXXXXXXXXXXXXXXXXXXXXXX'

    // Before any stand-in: what the page says of fields the agent does not report.
    await load(page)
    if (requests.lanPeers === undefined) await page.getByText('This agent does not report LAN peers yet').waitFor()
    else if (!reportsLan) await page.getByText('None (mDNS runs when the agent listens beyond loopback).').waitFor()
    if (!knowsThroughput) assert.equal(await page.locator('[data-testid="throughput"] [title^="This agent does not report"]').count(), status.members.length)
    else assert.deepEqual(await page.locator('[data-testid="throughput"]').allTextContents(), status.members.map(() => '—'), 'null: nothing measured')

    // The requested shapes, added to the agent's real answers (a second, made-up member gives the chart a line).
    let tick = 0
    if (!reportsThroughput) {
      await page.route((url) => url.pathname === '/v1/status', async (route) => {
        const real = await (await route.fetch()).json() as { members: Member[] }
        tick++
        const members: Member[] = real.members.map((m) => ({ ...m, throughput: m.self ? null : { sentBytesPerSecond: 1000 * tick, receivedBytesPerSecond: 2000 } }))
        members.push({ ...real.members[0]!, name: 'site-z', peerId: '12D3KooWSiteZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX', self: false, throughput: { sentBytesPerSecond: 5 * 2 ** 20, receivedBytesPerSecond: 2 ** 20 } } as Member)
        await route.fulfill({ json: { ...real, members } })
      })
    }
    if (!reportsLan) {
      await page.route((url) => url.pathname === '/v1/swarm/requests', async (route) => {
        const real = await (await route.fetch()).json() as { lanPeers?: unknown[] }
        await route.fulfill({ json: { ...real, lanPeers: [{ peerId: lanPeer, addrs: ['/ip4/192.168.1.23/tcp/4001'], lastSeen: new Date().toISOString(), member: false }, ...(real.lanPeers ?? [])] } })
      })
    }
    await load(page)
    const zRow = page.locator('[data-testid="members"] tr[data-site="site-z"] [data-testid="throughput"]')
    if (!reportsThroughput) {
      await zRow.waitFor()
      assert.equal((await zRow.textContent())?.trim(), '↑ 5.0 MiB/s · ↓ 1.0 MiB/s')
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="traffic-chart"]')?.getAttribute('data-points') ?? 0) >= 3, undefined, { timeout: 30_000 })
      assert.match(await page.getByTestId('traffic-chart').getAttribute('aria-label') ?? '', /Traffic with site-z/)
    }
    const lan = page.getByTestId('lan-peers')
    if (reportsLan) {
      await lan.waitFor()
    } else {
      await lan.waitFor()
      assert.match(await lan.textContent() ?? '', /12D3KooWLanPeerNotAM…not in this swarm \/ip4\/192\.168\.1\.23\/tcp\/4001 · seen/)
      await page.getByText('A site found on the LAN joins with an invite code').waitFor()
    }
    await page.screenshot({ path: join(screenshotDir, 'swarm-throughput-lan.png'), fullPage: true })
    await page.close()
  })

  test('images: the chunk map of an image, held / missing / in flight per site', async () => {
    const page = await open()
    const path = `/v1/images/${rootCid}/chunks`
    const offered = (await get(`${path}?buckets=200`)).status !== 404
    if (!offered) {
      await load(page)
      await page.getByRole('tab', { name: 'Images' }).click()
      await page.getByRole('button', { name: /map-os/ }).first().click()
      await page.getByText('This agent does not offer chunk maps yet').waitFor()
      // The requested shape: 40 chunks in 20 buckets of 2; site-a holds all, site-b half with some in flight.
      await page.route((url) => url.pathname === path, async (route) => {
        await route.fulfill({
          json: {
            rootCid, name: 'map-os', chunkCount: 40, chunkSize: 65536, buckets: 20, chunksPerBucket: 2,
            sites: [
              { site: 'site-a', held: 40, inFlight: 0, states: 'hhhhhhzzhhhhhhhhhhhh' },
              { site: 'site-b', held: 20, inFlight: 4, states: 'hhhhhpzzffmmmmmmhhhh' }
            ]
          }
        })
      })
    }
    await load(page)
    await page.getByRole('tab', { name: 'Images' }).click()
    // Keyboard: the image tree's items are buttons; Enter opens the chunk map.
    await page.getByRole('button', { name: /map-os/ }).first().focus()
    await page.keyboard.press('Enter')
    const map = page.getByTestId('chunk-map')
    await map.waitFor({ timeout: 30_000 })
    const table = page.getByTestId('chunk-map-table')
    if (!offered) {
      assert.equal(await map.getAttribute('data-points'), '40', 'one cell per bucket per site')
      assert.equal(await map.getAttribute('aria-label'), 'Chunk map of map-os: site-a holds 40 of 40; site-b holds 20 of 40, 4 in flight')
      assert.deepEqual(await table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.textContent)), ['site-a40 of 40 (100 %)00', 'site-b20 of 40 (50 %)416'])
      for (const label of ['held', 'partly held', 'in flight', 'missing', 'all-zero (never stored)']) assert.ok((await map.textContent())?.includes(label), `legend: ${label}`)
    } else {
      // The agent's own map of a one-site swarm: site-a holds every chunk of its own image.
      const real = await (await get(`${path}?buckets=200`)).json() as { buckets: number, chunkCount: number, sites: Array<{ site: string, held: number, states: string }> }
      assert.equal(await map.getAttribute('data-points'), String(real.sites.reduce((n, s) => n + s.states.length, 0)))
      assert.equal(real.chunkCount, 40)
      assert.deepEqual(await table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.textContent)), ['site-a40 of 40 (100 %)00'])
    }
    await page.screenshot({ path: join(screenshotDir, 'images-chunk-map.png'), fullPage: true })
    await page.close()
  })

  test('no script error while rendering them', () => {
    assert.deepEqual(errors, [])
  })
})
