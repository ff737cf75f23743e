/**
 * The desktop shell's logic, with Electron handed in (so tests can run it against a stub of the
 * electron module): one instance per site profile, the agent as a child process with its data in
 * the profile's userData, one locked-down window on the agent's own origin, a small IPC surface
 * whose every message's sender is checked, a tray with the swarm's status, and a graceful stop.
 */
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type * as ElectronModule from 'electron'
import type { AgentRunnerInit, JoinInit, RunningAgent } from './agent-runner.js'

export type ShellElectron = Pick<typeof ElectronModule, 'app' | 'BrowserWindow' | 'ipcMain' | 'dialog' | 'Tray' | 'Menu' | 'nativeImage' | 'session'>
type Window = InstanceType<typeof ElectronModule.BrowserWindow>

/** IPC channels; the preload (main/preload.cts) names the same ones. */
export const IPC = { token: 'hgmig:token', openImage: 'hgmig:open-image', saveFile: 'hgmig:save-file', joinSwarm: 'hgmig:join-swarm' } as const

export class UntrustedSenderError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'UntrustedSenderError'
  }
}

export class SiteArgumentError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'SiteArgumentError'
  }
}

export class BadIpcRequestError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'BadIpcRequestError'
  }
}

export interface ShellConfig {
  argv: string[]
  /** Compiled preload (dist/main/preload.cjs). */
  preload: string
  /** Everything the agent runner needs but the data directory and site, which the profile gives. */
  agent: Omit<AgentRunnerInit, 'dataDir' | 'site'>
  /** The site name when --site is not given (the host name). */
  defaultSite: string
  startAgent: (init: AgentRunnerInit) => Promise<RunningAgent>
  joinSwarm: (init: JoinInit) => Promise<void>
  statusPollMs?: number
}

export function windowOptions (preload: string): ElectronModule.BrowserWindowConstructorOptions {
  return {
    width: 1280,
    height: 860,
    minWidth: 900,
    minHeight: 600,
    title: 'hgmig',
    show: false,
    autoHideMenuBar: true,
    webPreferences: {
      preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      spellcheck: false
    }
  }
}

/** `--site NAME` / `--site=NAME` from the command line; null if absent. Names as the agent accepts them. */
export function siteArgument (argv: string[]): string | null {
  const index = argv.findIndex((a) => a === '--site' || a.startsWith('--site='))
  if (index === -1) return null
  const arg = argv[index]!
  const name = arg.startsWith('--site=') ? arg.slice('--site='.length) : argv[index + 1]
  if (name === undefined || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new SiteArgumentError(`--site needs a site name of letters, digits, ".", "_" or "-" (up to 63, starting with a letter or digit), got ${JSON.stringify(name ?? '')}`)
  }
  return name
}

export function isAppUrl (url: string, appOrigin: string): boolean {
  try {
    return new URL(url).origin === appOrigin
  } catch {
    return false
  }
}

/** Throws unless an IPC message comes from the app's own window showing a page of the app's origin. */
export function assertTrustedSender (event: { sender: { id: number }, senderFrame: { url: string } | null }, trusted: { webContentsId: number | null, origin: string | null }): void {
  if (trusted.webContentsId === null || event.sender.id !== trusted.webContentsId) throw new UntrustedSenderError('IPC from a window that is not the app\'s')
  const url = event.senderFrame?.url ?? ''
  if (trusted.origin === null || !isAppUrl(url, trusted.origin)) throw new UntrustedSenderError(`IPC from ${url === '' ? 'an unknown frame' : url}, not the app's origin ${trusted.origin ?? '(none yet)'}`)
}

const MAX_SAVE_BYTES = 64 * 1024 * 1024

export function parseSaveRequest (value: unknown): { suggestedName: string, content: string } {
  if (typeof value !== 'object' || value === null) throw new BadIpcRequestError('save request must be an object')
  const { suggestedName, content } = value as Record<string, unknown>
  if (typeof suggestedName !== 'string' || !/^[^/\\:\0]{1,200}$/.test(suggestedName) || suggestedName.startsWith('.')) {
    throw new BadIpcRequestError(`save request: "suggestedName" must be a plain file name, got ${JSON.stringify(suggestedName)}`)
  }
  if (typeof content !== 'string') throw new BadIpcRequestError('save request: "content" must be a string')
  if (Buffer.byteLength(content) > MAX_SAVE_BYTES) throw new BadIpcRequestError(`save request: content is larger than ${MAX_SAVE_BYTES} bytes`)
  return { suggestedName, content }
}

export function parseJoinRequest (value: unknown): { code: string } {
  if (typeof value !== 'object' || value === null) throw new BadIpcRequestError('join request must be an object')
  const { code } = value as Record<string, unknown>
  if (typeof code !== 'string' || !/^hgmig-invite-\d+\.[A-Za-z0-9_-]+$/.test(code.trim()) || code.length > 64 * 1024) {
    throw new BadIpcRequestError('join request: "code" must be an invite code as `hgmig swarm invite` prints it (hgmig-invite-1.…)')
  }
  return { code: code.trim() }
}

export interface Shell {
  readonly window: Window | null
  readonly agent: RunningAgent | null
  /** Settles once the window shows the UI (or the shell gave up: another instance runs). */
  readonly ready: Promise<void>
}

/** 16×16 PNG: a filled circle (the tray icon; the status is in its tooltip and menu). */
const TRAY_ICON = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAAN0lEQVR42mNgoAVQTX79HxumSDNRhhDSjNcQYjVjNYRUzRiGjBpABQMojkaqJCSqJGWqZCZSAQAcdn2IzbpOsAAAAABJRU5ErkJggg=='

export function runShell (electron: ShellElectron, config: ShellConfig): Shell {
  const { app, BrowserWindow, ipcMain, dialog, Tray, Menu, nativeImage, session } = electron
  const state: { window: Window | null, agent: RunningAgent | null, ready: Promise<void> } = { window: null, agent: null, ready: Promise.resolve() }
  const site = siteArgument(config.argv)
  // One profile per site: its own userData (agent data, Electron state) and its own instance lock.
  if (site !== null) app.setPath('userData', join(app.getPath('userData'), 'sites', site))
  if (!app.requestSingleInstanceLock()) {
    app.quit()
    return state
  }

  let origin: string | null = null
  let stopping = false
  let stopped = false
  const trusted = (): { webContentsId: number | null, origin: string | null } => ({ webContentsId: state.window?.webContents.id ?? null, origin })

  const show = (): void => {
    const window = state.window
    if (window === null) return
    if (window.isMinimized()) window.restore()
    window.show()
    window.focus()
  }
  app.on('second-instance', show)

  // Nothing navigates or opens windows away from the agent's origin; no webviews, no permissions.
  app.on('web-contents-created', (_event, contents) => {
    contents.on('will-navigate', (event, url) => { if (origin === null || !isAppUrl(url, origin)) event.preventDefault() })
    contents.on('will-redirect', (event, url) => { if (origin === null || !isAppUrl(url, origin)) event.preventDefault() })
    contents.on('will-attach-webview', (event) => { event.preventDefault() })
    contents.setWindowOpenHandler(() => ({ action: 'deny' }))
  })

  ipcMain.handle(IPC.token, (event) => {
    assertTrustedSender(event, trusted())
    if (state.agent === null) throw new BadIpcRequestError('the agent is not running')
    return state.agent.token
  })
  ipcMain.handle(IPC.openImage, async (event) => {
    assertTrustedSender(event, trusted())
    const result = await dialog.showOpenDialog(state.window!, {
      title: 'Import a disk image',
      properties: ['openFile'],
      filters: [{ name: 'Disk images', extensions: ['img', 'raw', 'qcow2', 'iso'] }, { name: 'All files', extensions: ['*'] }]
    })
    return result.canceled ? null : result.filePaths[0] ?? null
  })
  ipcMain.handle(IPC.saveFile, async (event, request: unknown) => {
    assertTrustedSender(event, trusted())
    const { suggestedName, content } = parseSaveRequest(request)
    const result = await dialog.showSaveDialog(state.window!, { title: 'Save the export', defaultPath: join(app.getPath('downloads'), suggestedName) })
    if (result.canceled || result.filePath === undefined || result.filePath === '') return null
    await writeFile(result.filePath, content)
    return result.filePath
  })

  // Joining another swarm: the founding data is kept aside, the agent restarts in a fresh data
  // directory prepared by `hgmig swarm join`, and the window moves to its new origin.
  ipcMain.handle(IPC.joinSwarm, async (event, request: unknown) => {
    assertTrustedSender(event, trusted())
    const { code } = parseJoinRequest(request)
    const running = state.agent
    if (running === null || siteName === null) throw new BadIpcRequestError('the agent is not running')
    const dataDir = join(app.getPath('userData'), 'agent')
    const aside = `${dataDir}-left-${new Date().toISOString().replace(/[:.]/g, '-')}`
    stopping = true
    await running.stop()
    await rename(dataDir, aside)
    try {
      await config.joinSwarm({ runtime: config.agent.runtime, env: config.agent.env, cli: config.agent.cli, dataDir, site: siteName, code })
    } catch (err) {
      // Back to the swarm this site was in.
      await rename(aside, dataDir)
      await startAndShow()
      throw err
    }
    await startAndShow()
    return { site: siteName, previousData: aside }
  })

  // Graceful stop: the agent finishes its writes before the app exits.
  app.on('before-quit', (event) => {
    if (stopped || state.agent === null) return
    event.preventDefault()
    if (stopping) return
    stopping = true
    void state.agent.stop().finally(() => { stopped = true; app.quit() })
  })
  app.on('window-all-closed', () => { app.quit() })

  const startTray = (siteName: string): void => {
    const tray = new Tray(nativeImage.createFromDataURL(TRAY_ICON))
    const update = async (): Promise<void> => {
      let summary: string
      try {
        const response = await fetch(`${origin!}/v1/status`, { headers: { Authorization: `Bearer ${state.agent!.token}` } })
        const status = await response.json() as { members: Array<{ connected: boolean, until?: number | null }>, lastDecidedRound: number, halted: string | null, role?: string }
        const current = status.members.filter((m) => (m.until ?? null) === null)
        const connected = current.filter((m) => m.connected).length
        summary = status.halted !== null ? 'halted' : status.role === 'joining' ? 'waiting for approval' : `${connected}/${current.length} sites connected · round ${status.lastDecidedRound}`
      } catch {
        summary = 'agent not answering'
      }
      tray.setToolTip(`hgmig ${siteName}: ${summary}`)
      tray.setContextMenu(Menu.buildFromTemplate([
        { label: `${siteName}: ${summary}`, enabled: false },
        { type: 'separator' },
        { label: 'Open', click: show },
        { label: 'Quit', click: () => { app.quit() } }
      ]))
    }
    void update()
    const timer = setInterval(() => { void update() }, config.statusPollMs ?? 5000)
    app.on('will-quit', () => { clearInterval(timer); tray.destroy() })
  }

  let siteName: string | null = null
  const watch = (agent: RunningAgent): void => {
    void agent.exited.then(({ code, signal }) => {
      if (stopping || state.agent !== agent) return
      dialog.showErrorBox('hgmig: the agent stopped', `The site's agent exited (${code ?? signal}). The app closes; start it again to restart the agent.`)
      stopped = true
      app.quit()
    })
  }
  /** Starts the agent on the profile's data and shows its UI (a new window, or the same one at the new origin). */
  const startAndShow = async (): Promise<void> => {
    const agent = await config.startAgent({ ...config.agent, dataDir: join(app.getPath('userData'), 'agent'), site: siteName! })
    state.agent = agent
    origin = agent.origin
    stopping = false
    watch(agent)
    if (state.window === null) {
      const window = new BrowserWindow(windowOptions(config.preload))
      state.window = window
      window.on('closed', () => { state.window = null })
      window.once('ready-to-show', () => { window.show() })
    }
    await state.window.loadURL(`${origin}/`)
  }

  state.ready = (async () => {
    await app.whenReady()
    session.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => { callback(false) })
    siteName = site ?? config.defaultSite
    try {
      await startAndShow()
    } catch (err) {
      dialog.showErrorBox('hgmig: the agent did not start', (err as Error).message)
      app.quit()
      return
    }
    startTray(siteName)
  })()

  return {
    get window () { return state.window },
    get agent () { return state.agent },
    get ready () { return state.ready }
  }
}
