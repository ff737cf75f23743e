// Electron main process (kept thin: window management only).
// The UI URL comes from `--url=<URL>` or env HGMIG_UI_URL.
import '../p2p/polyfills.js';

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { app, BrowserWindow } from 'electron';

const here = path.dirname(fileURLToPath(import.meta.url));

function uiUrl(): string {
  const arg = process.argv.find((a) => a.startsWith('--url='));
  const url = arg?.slice('--url='.length) ?? process.env['HGMIG_UI_URL'];
  if (!url) throw new Error('no UI URL: pass --url=<URL> or set HGMIG_UI_URL');
  return url;
}

let win: BrowserWindow | null = null;

function createWindow(url: string): void {
  win = new BrowserWindow({
    width: 1200,
    height: 800,
    title: 'hgmig',
    webPreferences: {
      preload: path.join(here, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
    },
  });
  win.on('closed', () => (win = null));
  void win.loadURL(url);
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => {
    if (win) {
      if (win.isMinimized()) win.restore();
      win.focus();
    }
  });
  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });
  void app.whenReady().then(() => {
    const url = uiUrl();
    createWindow(url);
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) createWindow(url);
    });
  });
}
