import os from 'node:os';
import path from 'node:path';

/**
 * Default data directory: `HGMIG_DATA` if set, otherwise the OS per-user
 * application-data folder + "/hgmig" (the same place Electron's
 * `app.getPath('appData')` points to).
 */
export function defaultDataDir(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  home: string = os.homedir(),
): string {
  const override = env['HGMIG_DATA'];
  if (override !== undefined && override !== '') return path.resolve(override);
  return path.join(appDataDir(env, platform, home), 'hgmig');
}

function appDataDir(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, home: string): string {
  switch (platform) {
    case 'win32':
      return env['APPDATA'] || path.join(home, 'AppData', 'Roaming');
    case 'darwin':
      return path.join(home, 'Library', 'Application Support');
    default:
      return env['XDG_CONFIG_HOME'] || path.join(home, '.config');
  }
}
