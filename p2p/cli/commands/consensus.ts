import { readFile } from 'node:fs/promises'
import { type Command, Option } from 'commander'
import { parseReplayInput, replay } from '../../hashgraph/index.js'
import { agentClient } from '../agent-client.js'
import { saveDownload } from '../download.js'
import { formatBytes } from '../progress-bar.js'

export function register (program: Command): void {
  const consensus = program.command('consensus').description('inspect and audit hashgraph consensus')
  consensus
    .command('replay')
    .argument('<file>', 'JSON graph: {"members": N, "coinRoundFrequency"?: c, "events": [...]} in topological order; "-" reads stdin')
    .description('run the live consensus code over an unsigned graph (signature checks off) and print rounds, fame, round received, consensus timestamps and the order')
    .action(async (file: string) => {
      const text = file === '-' ? await readStdin() : await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new Error(`cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
      })
      const output = replay(parseReplayInput(text))
      process.stdout.write(JSON.stringify(output) + '\n')
    })
  consensus
    .command('export')
    .argument('<out>', 'output file ("-" for stdout)')
    .description('the consensus audit from the running agent: every ordered event with its creator, round, witness, fame, round received, consensus time and position')
    .addOption(new Option('--format <format>', 'ndjson, csv or json').choices(['ndjson', 'csv', 'json']).default('ndjson'))
    .option('--since <time>', 'only events ordered at or after this ISO time (consensus time)')
    .option('--until <time>', 'only events ordered before this ISO time (consensus time)')
    .option('--limit <n>', 'at most this many events (the earliest in the window)', (value) => Number(value))
    .action(async (out: string, options: { format: 'ndjson' | 'csv' | 'json', since?: string, until?: string, limit?: number }, command: Command) => {
      const { format, ...query } = options
      const size = await saveDownload(out, await (await agentClient(command)).consensusAuditStream(format, query), 'consensus export')
      if (size !== null) process.stderr.write(`wrote ${formatBytes(size)} of ${format} to ${out}\n`)
    })
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
