import type { Command } from 'commander'
import { ApiClient, type AgentStatus } from '../../api/index.js'

export function register (program: Command): void {
  program
    .command('status')
    .description('show the running agent\'s site, swarm, members, consensus round, state hash and latency')
    .option('--json', 'print the status as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { data } = command.optsWithGlobals<{ data: string }>()
      const client = await ApiClient.forDataDir(data)
      const status = await client.status({ signal: AbortSignal.timeout(10_000) })
      process.stdout.write(options.json === true ? JSON.stringify(status) + '\n' : formatStatus(status))
    })
}

function formatStatus (s: AgentStatus): string {
  const ms = (v: number | null): string => v === null ? '-' : `${v.toFixed(1)} ms`
  const lines = [
    `site         ${s.site}  (${s.peerId})`,
    `swarm        ${s.swarm.name}  (${s.swarm.id})`,
    `round        ${s.lastDecidedRound} decided`,
    // == null: an older agent's status has no checkpoint field at all.
    `checkpoint   ${s.checkpoint == null ? 'none yet' : `round ${s.checkpoint.round} (${s.checkpoint.at})`}`,
    `state hash   ${s.stateHash}${s.halted === null ? '' : `  HALTED: ${s.halted}`}`,
    `transactions ${s.transactions.ordered} ordered (${s.transactions.applied} applied, ${s.transactions.rejected} rejected), ${s.transactions.pending} own pending`,
    `latency      p50 ${ms(s.latency.p50Ms)}  p95 ${ms(s.latency.p95Ms)}  p99 ${ms(s.latency.p99Ms)}  (${s.latency.count} own transactions)`,
    `events/s     ${s.eventsPerSecond}`,
    'members'
  ]
  for (const m of s.members) {
    const state = m.self ? 'this site' : m.connected ? `connected, rtt ${ms(m.rttMs)}` : 'not connected'
    // Only worth a word when negative: it relayed invalid events, and below -80 its gossip is ignored.
    const score = m.gossipScore !== null && m.gossipScore < 0 ? `, gossip score ${m.gossipScore.toFixed(0)}` : ''
    lines.push(`  ${String(m.index).padStart(3)}  ${m.name.padEnd(20)} ${m.peerId}  ${state}${score}`)
  }
  return lines.join('\n') + '\n'
}
