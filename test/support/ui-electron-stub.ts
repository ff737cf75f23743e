/**
 * A stand-in for the electron module, for testing main/shell.ts where the Electron binary cannot
 * run: records what the shell asks of Electron (window options, IPC handlers, navigation hooks,
 * dialogs, tray) and lets the test fire the events Electron would.
 */
import { EventEmitter } from 'node:events'
import type { ShellElectron } from '../../main/shell.js'

type Listener = (...args: unknown[]) => unknown

export class StubEvent {
  prevented = false
  preventDefault (): void { this.prevented = true }
}

export class StubWebContents extends EventEmitter {
  static nextId = 1
  readonly id = StubWebContents.nextId++
  openHandler: ((details: { url: string }) => { action: string }) | null = null
  setWindowOpenHandler (handler: (details: { url: string }) => { action: string }): void { this.openHandler = handler }
  /** Fires `name` with a fresh event; returns whether a listener prevented it. */
  fire (name: string, ...args: unknown[]): boolean {
    const event = new StubEvent()
    this.emit(name, event, ...args)
    return event.prevented
  }
}

export interface ElectronStub {
  electron: ShellElectron
  paths: Record<string, string>
  lockAvailable: boolean
  quitCalls: number
  windows: StubWindow[]
  ipc: Map<string, Listener>
  errors: Array<[string, string]>
  tooltips: string[]
  permissionHandler: Listener | null
  saveDialogPath: string
  /** What the shell passed to nativeImage.createFromDataURL (the tray icon). */
  icons: string[]
  app: EventEmitter
}

export class StubWindow extends EventEmitter {
  readonly webContents = new StubWebContents()
  readonly loaded: string[] = []
  visible = false
  constructor (readonly options: Record<string, unknown>, onCreate: (contents: StubWebContents) => void) {
    super()
    onCreate(this.webContents)
  }

  async loadURL (url: string): Promise<void> {
    this.loaded.push(url)
    this.emit('ready-to-show')
  }

  isMinimized (): boolean { return false }
  restore (): void {}
  show (): void { this.visible = true }
  focus (): void {}
}

export function electronStub (paths: Record<string, string>): ElectronStub {
  const app = new EventEmitter()
  const stub: ElectronStub = {
    electron: undefined as unknown as ShellElectron,
    paths,
    lockAvailable: true,
    quitCalls: 0,
    windows: [],
    ipc: new Map(),
    errors: [],
    tooltips: [],
    permissionHandler: null,
    saveDialogPath: '',
    icons: [],
    app
  }
  const appApi = Object.assign(app, {
    isPackaged: false,
    requestSingleInstanceLock: () => stub.lockAvailable,
    whenReady: async () => {},
    getPath: (name: string) => {
      const value = stub.paths[name]
      if (value === undefined) throw new Error(`stub app.getPath: no path "${name}"`)
      return value
    },
    setPath: (name: string, value: string) => { stub.paths[name] = value },
    // As Electron: before-quit listeners may cancel; otherwise will-quit follows.
    quit: () => {
      stub.quitCalls++
      const event = new StubEvent()
      app.emit('before-quit', event)
      if (!event.prevented) app.emit('will-quit', new StubEvent())
    }
  })
  class Window extends StubWindow {
    constructor (options: Record<string, unknown>) {
      super(options, (contents) => { app.emit('web-contents-created', new StubEvent(), contents) })
      stub.windows.push(this)
    }
  }
  class Tray {
    setToolTip (text: string): void { stub.tooltips.push(text) }
    setContextMenu (): void {}
    destroy (): void {}
  }
  stub.electron = {
    app: appApi,
    BrowserWindow: Window,
    ipcMain: { handle: (channel: string, listener: Listener) => { stub.ipc.set(channel, listener) } },
    dialog: {
      showOpenDialog: async () => ({ canceled: false, filePaths: ['/images/chosen.img'] }),
      showSaveDialog: async () => ({ canceled: false, filePath: stub.saveDialogPath }),
      showErrorBox: (title: string, content: string) => { stub.errors.push([title, content]) }
    },
    Tray,
    Menu: { buildFromTemplate: (template: unknown) => template },
    nativeImage: { createFromDataURL: (url: string) => { stub.icons.push(url); return url } },
    session: { defaultSession: { setPermissionRequestHandler: (handler: Listener) => { stub.permissionHandler = handler } } }
  } as unknown as ShellElectron
  return stub
}
