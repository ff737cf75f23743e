import type { Command } from 'commander'
import { ApiClient } from '../api/index.js'

/** The API client of the agent running on the command's data directory (`--data`, global). */
export async function agentClient (command: Command): Promise<ApiClient> {
  return await ApiClient.forDataDir(command.optsWithGlobals<{ data: string }>().data)
}
