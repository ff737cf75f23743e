/**
 * `hgmig image transfers` and `hgmig image abandon IMAGE`: what the agent is fetching (and has
 * fetched), and ending a transfer for good so that its chunks stop being pinned. Both go through
 * the running agent's API (GET /v1/transfers, DELETE /v1/transfers/:root).
 */
import { Option, type Command } from 'commander'
import type { AbandonTransferResponse, TransferSourceView, TransferView } from '../../api/index.js'
import { agentClient } from '../agent-client.js'
import { formatBytes } from '../progress-bar.js'

interface JsonOption { json?: boolean }

export function registerTransferCommands (image: Command): void {
  image.command('transfers')
    .description('every transfer at this site: running, interrupted, failed and done, with progress, rate, ETA and what each source sent; needs the running agent')
    .addOption(new Option('--json', 'machine-readable output (the API\'s answer)'))
    .action(async (options: JsonOption, command: Command) => {
      const { transfers } = await (await agentClient(command)).transfers()
      print(options, { transfers }, () => transfers.length === 0 ? 'no transfers at this site' : transfers.map(transferText).join('\n'))
    })

  image.command('abandon')
    .description('stop a transfer if it runs, forget it and release its chunks (those other images use stay; "hgmig image gc" gives the disk space back); needs the running agent')
    .argument('<image>', 'the image\'s name or root CID, as "hgmig image transfers" lists it')
    .addOption(new Option('--json', 'machine-readable output (the API\'s answer)'))
    .action(async (reference: string, options: JsonOption, command: Command) => {
      const abandoned = await (await agentClient(command)).abandonTransfer(reference)
      print(options, abandoned, () => abandonText(abandoned))
    })
}

export function transferText (t: TransferView): string {
  const percent = t.bytesTotal === 0 ? 100 : Math.floor(100 * t.bytesDone / t.bytesTotal)
  const pace = t.state === 'running'
    ? `  ${formatBytes(t.bytesPerSecond ?? 0)}/s${t.etaSeconds === null ? '' : `  ETA ${formatSeconds(t.etaSeconds)}`}`
    : ''
  const lines = [
    `${t.name}  ${t.state}  ${t.chunksDone}/${t.chunksTotal} chunks  ${formatBytes(t.bytesDone)} of ${formatBytes(t.bytesTotal)} (${percent} %)${pace}`,
    `  ${t.layer.toUpperCase()} ${t.purpose}  root ${t.rootCid}  started ${t.startedAt}${t.finishedAt === null ? '' : `  ended ${t.finishedAt}`}`,
    ...t.sources.map(sourceText)
  ]
  if (t.lastError !== null) lines.push(`  last error: ${t.lastError}`)
  return lines.join('\n')
}

function sourceText (s: TransferSourceView): string {
  const who = s.site === null ? 'here (zeros, chunks already at this site)' : `from ${s.site}`
  const live = s.state === undefined ? '' : ` (${s.state}${s.bytesPerSecond === undefined ? '' : `, ${formatBytes(s.bytesPerSecond)}/s`}${s.dropReason === undefined ? '' : `: ${s.dropReason}`})`
  return `  ${who}: ${s.chunks} chunks, ${formatBytes(s.bytes)}${live}`
}

export function abandonText (a: AbandonTransferResponse): string {
  return `abandoned the transfer of ${a.name} (${a.rootCid}): ${a.wasRunning ? 'stopped; ' : ''}${a.chunksDone}/${a.chunksTotal} chunks were done; ` +
    `${a.freedChunks} chunks (${formatBytes(a.freedBytes)}) released — "hgmig image gc" gives the disk space back`
}

function formatSeconds (seconds: number): string {
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

function print (options: JsonOption, value: unknown, text: () => string): void {
  process.stdout.write(`${options.json === true ? JSON.stringify(value) : text()}\n`)
}
