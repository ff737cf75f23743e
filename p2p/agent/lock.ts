import { join } from 'node:path'
import { PidFileLock } from '../common/pid-file-lock.js'
import { AgentAlreadyRunningError } from './errors.js'

export const LOCK_FILE_NAME = 'agent.lock'

/** One agent per data directory: `agent.lock` holds the owner's pid (see PidFileLock). */
export class DataDirLock {
  private constructor (private readonly lock: PidFileLock) {}

  static acquire (dataDir: string): DataDirLock {
    return new DataDirLock(PidFileLock.acquire(join(dataDir, LOCK_FILE_NAME), (holder) => new AgentAlreadyRunningError(dataDir, holder)))
  }

  release (): void { this.lock.release() }
}
