// Preload: runs in the sandboxed renderer before page scripts and exposes window.hgmig, the small
// typed bridge the UI uses (renderer/src/contract.ts: DesktopBridge). Must be CommonJS (.cts ->
// .cjs): sandboxed preloads cannot be ES modules. The main process checks every message's sender.
import { contextBridge, ipcRenderer } from 'electron'

// The same channel names as IPC in main/shell.ts (a test checks they match).
const TOKEN = 'hgmig:token'
const OPEN_IMAGE = 'hgmig:open-image'
const SAVE_FILE = 'hgmig:save-file'
const JOIN_SWARM = 'hgmig:join-swarm'

contextBridge.exposeInMainWorld('hgmig', {
  platform: process.platform,
  token: async (): Promise<string> => await ipcRenderer.invoke(TOKEN) as string,
  openImageFile: async (): Promise<string | null> => await ipcRenderer.invoke(OPEN_IMAGE) as string | null,
  // Only the two fields cross: nothing else the page passes reaches the main process.
  saveFile: async (request: { suggestedName: string, content: string }): Promise<string | null> =>
    await ipcRenderer.invoke(SAVE_FILE, { suggestedName: String(request.suggestedName), content: String(request.content) }) as string | null,
  // The agent restarts on the joined swarm: the window then loads its new address.
  joinSwarm: async (code: string): Promise<{ site: string, previousData: string }> =>
    await ipcRenderer.invoke(JOIN_SWARM, { code: String(code) }) as { site: string, previousData: string }
})
