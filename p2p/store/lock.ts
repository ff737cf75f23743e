import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { StoreLockedError } from './errors.js'

/** Directories locked by this process: a second store object on the same directory is refused too. */
const lockedHere = new Set<string>()

/**
 * An exclusive lock on a store directory: a file `LOCK` holding the owner's pid, created with
 * O_EXCL. A lock left by a process that no longer exists (killed -9) is taken over, so a crash
 * never locks the store for good.
 */
export class DirectoryLock {
  private constructor (private readonly file: string, private readonly directory: string) {}

  static acquire (directory: string): DirectoryLock {
    if (lockedHere.has(directory)) throw new StoreLockedError(directory, undefined)
    const file = join(directory, 'LOCK')
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx')
        writeSync(fd, `${process.pid}\n`)
        closeSync(fd)
        lockedHere.add(directory)
        return new DirectoryLock(file, directory)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        const holder = readHolder(file)
        if (holder !== undefined && holder !== process.pid && isAlive(holder)) throw new StoreLockedError(directory, holder)
        // Stale (its process is gone) or unreadable (a crash between create and write): take it over.
        try { unlinkSync(file) } catch { /* another process removed it first; retry the create */ }
      }
    }
    throw new StoreLockedError(directory, readHolder(file))
  }

  release (): void {
    lockedHere.delete(this.directory)
    try { unlinkSync(this.file) } catch { /* already gone */ }
  }
}

function readHolder (file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8'), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
