import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { parseReplayInput, replay } from '../../hashgraph/index.js'

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
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
