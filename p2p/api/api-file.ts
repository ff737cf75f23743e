/**
 * `api.json` in the data directory: the running agent's API port, its per-start token and its pid.
 * Mode 0600, because the token is the only thing between a local user and the agent's API.
 */
import { chmod, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { processExists } from '../common/pid-file-lock.js'
import { AgentNotRunningError } from './errors.js'
import type { ApiFile } from './types.js'

export const API_FILE_NAME = 'api.json'

export function apiFilePath (dataDir: string): string {
  return join(dataDir, API_FILE_NAME)
}

export async function writeApiFile (dataDir: string, contents: ApiFile): Promise<void> {
  const path = apiFilePath(dataDir)
  // Written whole under another name, then renamed: a reader never sees half a token.
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, JSON.stringify(contents) + '\n', { mode: 0o600 })
  await chmod(temporary, 0o600)
  await rename(temporary, path)
}

/** Removes api.json if it still belongs to `pid` (a newer agent's file stays). */
export async function removeApiFile (dataDir: string, pid: number): Promise<void> {
  const path = apiFilePath(dataDir)
  try {
    const current = parseApiFile(await readFile(path, 'utf8'), path)
    if (current.pid !== pid) return
    await unlink(path)
  } catch {
    // Gone already, or unreadable: nothing of ours to remove.
  }
}

/** The running agent's api.json; AgentNotRunningError if there is none or its process is gone. */
export async function readApiFile (dataDir: string): Promise<ApiFile> {
  const path = apiFilePath(dataDir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new AgentNotRunningError(`no agent is running on ${dataDir} (no ${API_FILE_NAME}); start one with: hgmig agent --data ${dataDir}`)
    throw new AgentNotRunningError(`cannot read ${path}: ${(err as Error).message}`)
  }
  const contents = parseApiFile(text, path)
  if (!processExists(contents.pid)) throw new AgentNotRunningError(`no agent is running on ${dataDir} (${API_FILE_NAME} is left over from pid ${contents.pid}, which has exited)`)
  return contents
}

function parseApiFile (text: string, path: string): ApiFile {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new AgentNotRunningError(`${path} is not valid JSON`)
  }
  const { port, token, pid } = (value ?? {}) as Partial<Record<keyof ApiFile, unknown>>
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new AgentNotRunningError(`${path}: "port" must be a TCP port`)
  if (typeof token !== 'string' || token.length === 0) throw new AgentNotRunningError(`${path}: "token" must be a non-empty string`)
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid < 1) throw new AgentNotRunningError(`${path}: "pid" must be a process id`)
  return { port, token, pid }
}

export { processExists }
