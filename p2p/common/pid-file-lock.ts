import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'

/** Whether a process with this pid exists (EPERM: it does, but belongs to another user). */
export function processExists (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export interface PidFileLockOptions {
  /** File mode of the lock file (default 0o600). */
  mode?: number
  /**
   * A lock file naming this very process is taken over rather than refused: for owners that keep
   * their own in-process registry and know such a file is left from an object that was not closed.
   */
  reclaimOwnPid?: boolean
}

/**
 * An exclusive lock: a file holding its owner's pid, created with O_EXCL. A lock whose process is
 * gone (killed -9), or that is empty (a crash between create and write), is taken over, so a crash
 * never locks anyone out for good. (A pid reused by an unrelated process after a crash reads as
 * held; the owner's error names the pid so that an operator can check and delete the file.)
 */
export class PidFileLock {
  private constructor (readonly file: string) {}

  /** Takes the lock or throws what `refuse(holderPid)` builds. */
  static acquire (file: string, refuse: (holderPid: number | undefined) => Error, options: PidFileLockOptions = {}): PidFileLock {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', options.mode ?? 0o600)
        try { writeSync(fd, `${process.pid}\n`) } finally { closeSync(fd) }
        return new PidFileLock(file)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        const holder = lockHolder(file)
        const ours = holder === process.pid && options.reclaimOwnPid === true
        if (holder !== undefined && !ours && processExists(holder)) throw refuse(holder)
        try { unlinkSync(file) } catch { /* removed by a competitor first; the retry decides */ }
      }
    }
    throw refuse(lockHolder(file))
  }

  /** Removes the file if it still names this process (a competitor may have taken a stale lock over). */
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
