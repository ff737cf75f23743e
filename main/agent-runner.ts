/**
 * Runs this site's agent for the desktop app as a child process: founds a one-site swarm in the
 * profile's data directory on first start, starts `hgmig agent` serving the UI, waits for its
 * api.json, and stops it gracefully (SIGTERM, then SIGKILL after a grace period).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

export class AgentStartError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AgentStartError'
  }
}

export interface AgentRunnerInit {
  /** The JavaScript runtime: `node`, or Electron's own binary with ELECTRON_RUN_AS_NODE=1 in `env`. */
  runtime: string
  env?: NodeJS.ProcessEnv
  /** bin/hgmig.js */
  cli: string
  dataDir: string
  /** The site's name: the founding name on first start, announced with --site on later ones. */
  site: string
  /** Built UI the agent serves (dist/ui), passed as `hgmig agent --ui DIR`; null: an agent without the UI. */
  uiDir: string | null
  /** Agent output lines, for the app's log. */
  log?: (line: string) => void
  readyTimeoutMs?: number
  signal?: AbortSignal
}

export interface RunningAgent {
  readonly origin: string
  readonly token: string
  readonly pid: number
  /** Settles when the agent process ends, for whatever reason. */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop: (graceMs?: number) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export async function startSiteAgent (init: AgentRunnerInit): Promise<RunningAgent> {
  const run = (args: string[]): ChildProcess => {
    const child = spawn(init.runtime, [init.cli, '--data', init.dataDir, ...args], { env: init.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (text: string) => { for (const line of text.split('\n')) if (line !== '') init.log?.(line) })
    }
    return child
  }
  const exitOf = async (child: ChildProcess): Promise<{ code: number | null, signal: NodeJS.Signals | null }> =>
    await new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode })
      else child.once('exit', (code, signal) => { resolve({ code, signal }) })
    })

  if (!existsSync(join(init.dataDir, 'swarm.json'))) {
    const created = await exitOf(run(['swarm', 'create', '--name', init.site]))
    if (created.code !== 0) throw new AgentStartError(`could not found a swarm as "${init.site}" in ${init.dataDir} (exit ${created.code ?? created.signal})`)
  }
  // --site on every start: a no-op when the name is already the site's, a renaming transaction otherwise.
  const child = run(['agent', '--site', init.site, ...(init.uiDir === null ? [] : ['--ui', init.uiDir])])
  const exited = exitOf(child)
  const stop = async (graceMs = 10_000): Promise<{ code: number | null, signal: NodeJS.Signals | null }> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => { child.kill('SIGKILL') }, graceMs)
      try { return await exited } finally { clearTimeout(timer) }
    }
    return await exited
  }

  const deadline = Date.now() + (init.readyTimeoutMs ?? 60_000)
  let gone = false
  void exited.then(() => { gone = true })
  try {
    for (;;) {
      init.signal?.throwIfAborted()
      if (gone) throw new AgentStartError(`the agent in ${init.dataDir} exited before it was ready (see its log)`)
      const file = await readFile(join(init.dataDir, 'api.json'), 'utf8').then((text) => JSON.parse(text) as { port: number, token: string, pid: number }, () => null)
      if (file !== null && file.pid === child.pid) {
        return { origin: `http://127.0.0.1:${file.port}`, token: file.token, pid: file.pid, exited, stop }
      }
      if (Date.now() > deadline) throw new AgentStartError(`the agent in ${init.dataDir} did not publish its API within ${init.readyTimeoutMs ?? 60_000} ms`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  } catch (err) {
    await stop(2000)
    throw err
  }
}

export interface JoinInit {
  runtime: string
  env?: NodeJS.ProcessEnv
  cli: string
  /** An empty (or absent) data directory: `hgmig swarm join` refuses one that has a swarm. */
  dataDir: string
  site: string
  /** The invite code: a secret (it carries the swarm key), so it goes through stdin, never argv. */
  code: string
}

/** `hgmig swarm join - --name SITE`: prepares `dataDir` to ask the swarm's members to admit this site. */
export async function joinSiteSwarm (init: JoinInit): Promise<void> {
  const child = spawn(init.runtime, [init.cli, '--data', init.dataDir, 'swarm', 'join', '-', '--name', init.site], { env: init.env ?? process.env, stdio: ['pipe', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text })
  child.stdin.end(init.code)
  const code = await new Promise<number | null>((resolve) => { child.once('exit', resolve) })
  if (code !== 0) throw new AgentStartError(stderr.trim().replace(/^hgmig: /, '') || `hgmig swarm join exited with ${code}`)
}
