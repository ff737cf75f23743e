// Preload script: runs in the sandboxed renderer before page scripts.
// Must be CommonJS (.cts -> .cjs): sandboxed preloads cannot be ES modules.
// Exposes a minimal, explicit API; the UI's local-API bridge arrives with the desktop-app issue.
import { contextBridge } from 'electron';

contextBridge.exposeInMainWorld('hgmig', {
  platform: process.platform,
  versions: { electron: process.versions['electron'] ?? '', chrome: process.versions['chrome'] ?? '' },
});
