import { join } from 'node:path'
import { PidFileLock } from '../common/pid-file-lock.js'
import { StoreLockedError } from './errors.js'

/** Directories locked by this process: a second store object on the same directory is refused too. */
const lockedHere = new Set<string>()

/** An exclusive lock on a store directory: a file `LOCK` holding the owner's pid (see PidFileLock). */
export class DirectoryLock {
  private constructor (private readonly lock: PidFileLock, private readonly directory: string) {}

  static acquire (directory: string): DirectoryLock {
    if (lockedHere.has(directory)) throw new StoreLockedError(directory, undefined)
    // A LOCK naming this process is left by a store object that was never closed: the set above
    // says none is open now, so it is taken over.
    const lock = PidFileLock.acquire(join(directory, 'LOCK'), (holder) => new StoreLockedError(directory, holder), { mode: 0o644, reclaimOwnPid: true })
    lockedHere.add(directory)
    return new DirectoryLock(lock, directory)
  }

  release (): void {
    lockedHere.delete(this.directory)
    this.lock.release()
  }
}
