import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { processExists } from '../api/index.js'
import { AgentAlreadyRunningError } from './errors.js'

export const LOCK_FILE_NAME = 'agent.lock'

/**
 * One agent per data directory: `agent.lock` holds the owner's pid and is created with O_EXCL.
 * A lock whose process is gone (killed -9) is taken over, so a crash never locks a site out.
 * (A pid reused by an unrelated process after a crash reads as "running"; the message names the
 * pid so an operator can check and delete the file.)
 */
export class DataDirLock {
  private constructor (private readonly file: string) {}

  static acquire (dataDir: string): DataDirLock {
    const file = join(dataDir, LOCK_FILE_NAME)
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600)
        writeSync(fd, `${process.pid}\n`)
        closeSync(fd)
        return new DataDirLock(file)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        const holder = lockHolder(file)
        if (holder !== undefined && processExists(holder)) throw new AgentAlreadyRunningError(dataDir, holder)
        // Stale (its process is gone) or empty (a crash between create and write): take it over.
        try { unlinkSync(file) } catch { /* removed by a competitor first; the retry decides */ }
      }
    }
    throw new AgentAlreadyRunningError(dataDir, lockHolder(file))
  }

  release (): void {
    if (lockHolder(this.file) !== process.pid) return
    try { unlinkSync(this.file) } catch { /* already gone */ }
  }
}

function lockHolder (file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8'), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}
