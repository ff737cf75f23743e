/**
 * Agents serving the UI, for the browser tests: real `hgmig agent` processes on loopback, one of
 * them serving dist/ui. While `hgmig agent` has no `--ui` option yet, a stand-in front end on
 * another loopback port serves dist/ui with the same static.ts and relays /v1/* and the WebSocket
 * to the agent unchanged but for Host and Origin (so the agent's same-origin checks still run).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, request as httpRequest, type Server } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createStaticSite } from '../../p2p/api/static.js'
import type { ApiClient, ApiFile } from '../../p2p/api/index.js'
import { AgentProcess, createSwarm, hgmig, tempDataDir } from './agent-process.js'

export const uiDir = fileURLToPath(new URL('../../ui', import.meta.url))
export const chromiumPath = '/usr/bin/chromium'
export const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
export const screenshotDir = fileURLToPath(new URL('../../../test-results', import.meta.url))

/** Where the README's screenshots live (committed; refreshed only on request, see publishScreenshots). */
export const publishedScreenshotDir = fileURLToPath(new URL('../../../renderer/screenshots', import.meta.url))

/**
 * With HGMIG_UPDATE_SCREENSHOTS=1, copies these screenshots (names without .png) from
 * test-results/ to renderer/screenshots/, where the README shows them; otherwise does nothing, so
 * an ordinary test run never changes tracked files.
 */
export function publishScreenshots (names: string[]): void {
  if (process.env['HGMIG_UPDATE_SCREENSHOTS'] !== '1') return
  mkdirSync(publishedScreenshotDir, { recursive: true })
  for (const name of names) {
    const from = join(screenshotDir, `${name}.png`)
    if (existsSync(from)) copyFileSync(from, join(publishedScreenshotDir, `${name}.png`))
  }
}

/** Why the browser tests cannot run here, or null. */
export function browserSkipReason (): string | null {
  if (!existsSync(chromiumPath)) return `${chromiumPath} is missing (apt-get install -y chromium)`
  if (!existsSync(join(uiDir, 'index.html'))) return `the UI is not built in ${uiDir} (npm run build)`
  return null
}

let uiOption: boolean | undefined
/** Whether this build's `hgmig agent` serves the UI itself (`--ui DIR`). */
export function agentServesUi (): boolean {
  uiOption ??= /--ui\b/.test(hgmig('agent', '--help').stdout)
  return uiOption
}

/** n sites in one swarm: the first site's genesis with the others added as members, in every data directory. */
export function swarmOf (names: string[]): string[] {
  const dirs = names.map(() => tempDataDir())
  names.forEach((name, i) => createSwarm(dirs[i]!, name))
  const genesis = JSON.parse(readFileSync(join(dirs[0]!, 'swarm.json'), 'utf8')) as { members: unknown[] }
  for (const dir of dirs.slice(1)) genesis.members.push((JSON.parse(readFileSync(join(dir, 'swarm.json'), 'utf8')) as { members: unknown[] }).members[0])
  for (const dir of dirs) writeFileSync(join(dir, 'swarm.json'), JSON.stringify(genesis, null, 2), { mode: 0o600 })
  return dirs
}

export interface UiAgent {
  agent: AgentProcess
  client: ApiClient
  api: ApiFile
  /** Where the browser opens the UI (the agent's own origin, or the stand-in's). */
  uiOrigin: string
  stop: () => Promise<void>
}

/** Starts an agent on `dataDir` whose UI a browser can open at `uiOrigin`. */
export async function startUiAgent (dataDir: string, args: string[] = []): Promise<UiAgent> {
  const serves = agentServesUi()
  const agent = new AgentProcess(dataDir, serves ? [...args, '--ui', uiDir] : args)
  try {
    const { client, api } = await agent.ready()
    if (serves) return { agent, client, api, uiOrigin: client.origin, stop: async () => { await agent.kill() } }
    const front = await startStandInFront(api.port)
    return { agent, client, api, uiOrigin: front.origin, stop: async () => { await front.close(); await agent.kill() } }
  } catch (err) {
    await agent.kill()
    throw err
  }
}

/** The stand-in for `--ui`: static.ts for the page, everything else relayed to the agent as if same-origin. */
async function startStandInFront (apiPort: number): Promise<{ origin: string, close: () => Promise<void> }> {
  const site = createStaticSite(uiDir)
  const apiOrigin = `http://127.0.0.1:${apiPort}`
  let origin = ''
  const relayed = new Set<{ destroy: () => void }>()
  const rewrite = (headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> => {
    const out: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value
    out['host'] = `127.0.0.1:${apiPort}`
    if (out['origin'] === origin) out['origin'] = apiOrigin
    return out
  }
  const server: Server = createServer((request, response) => {
    if (site.handles(request)) { void site.serve(request, response, origin); return }
    const upstream = httpRequest({ host: '127.0.0.1', port: apiPort, method: request.method, path: request.url, headers: rewrite(request.headers) }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(response)
    })
    upstream.on('error', () => { response.destroy() })
    request.pipe(upstream)
  })
  server.on('upgrade', (request, socket, head) => {
    const upstream = connect(apiPort, '127.0.0.1', () => {
      const headers = rewrite(request.headers)
      const lines = [`${request.method ?? 'GET'} ${request.url ?? '/'} HTTP/1.1`, ...Object.entries(headers).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((one) => `${k}: ${one}`))]
      upstream.write(lines.join('\r\n') + '\r\n\r\n')
      upstream.write(head)
      upstream.pipe(socket)
      socket.pipe(upstream)
    })
    relayed.add(socket).add(upstream)
    upstream.on('error', () => { socket.destroy() })
    socket.on('error', () => { upstream.destroy() })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('stand-in UI front end has no TCP address')
  origin = `http://127.0.0.1:${address.port}`
  return {
    origin,
    close: async () => {
      server.closeAllConnections()
      for (const socket of relayed) socket.destroy()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
