/**
 * VMs and migrations through the running agent: `hgmig vm create|ls|stats|destroy`, `hgmig migrate
 * VM --to SITE` (or `--suggest`), `hgmig migration set|cancel ID`, `hgmig migrations`, `hgmig logs export`.
 */
import { Command, Option } from 'commander'
import { agentClient } from '../agent-client.js'
import { saveDownload } from '../download.js'
import { formatBytes } from '../progress-bar.js'

interface JsonOption { json?: boolean }

function print (json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(`${json === true ? JSON.stringify(value) : text()}\n`)
}

/** "1GiB", "256MiB", "512M", "300ms", "2s", "100Mbit": sizes in bytes, durations in ms, rates in bytes/s. */
export function parseSize (text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|K|M|G|T|KB|MB|GB|TB)?$/i.exec(text.trim())
  if (match === null) throw new Error(`${what}: "${text}" is not a size (e.g. 1GiB, 512MiB)`)
  const units: Record<string, number> = { b: 1, k: 1024, kib: 1024, kb: 1000, m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6, g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9, t: 1024 ** 4, tib: 1024 ** 4, tb: 1e12 }
  return Math.round(Number(match[1]) * units[(match[2] ?? 'b').toLowerCase()]!)
}

export function parseDuration (text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s)?$/.exec(text.trim())
  if (match === null) throw new Error(`${what}: "${text}" is not a duration (e.g. 300ms, 1.5s)`)
  return Number(match[1]) * (match[2] === 's' ? 1000 : 1)
}

export function parseRate (text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)$/i.exec(text.trim())
  if (match !== null) return Number(match[1]) * ({ bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 } as Record<string, number>)[match[2]!.toLowerCase()]! / 8
  return parseSize(text.replace(/\/s$/, ''), what)
}

export function register (program: Command): void {
  const vm = program.command('vm').description('VMs at this site (the synthetic driver by default); needs the running agent')
  vm.command('create')
    .description('create a VM on an OS and a WE image of this site, with a workload that dirties memory and disk')
    .addOption(new Option('--driver <driver>', 'hypervisor driver').choices(['synthetic']).default('synthetic'))
    .requiredOption('--os <image>', 'OS image: name, id or root CID')
    .requiredOption('--we <image>', 'WE image (built on the OS image)')
    .option('--memory <size>', 'memory size, e.g. 1GiB', '256MiB')
    .option('--workload <profile>', 'idle, static, dynamic, compilation, memory, cpu, network', 'idle')
    .option('--name <name>', 'VM name (default vm-<time>)')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (options: { os: string, we: string, memory: string, workload: string, name?: string } & JsonOption, command: Command) => {
      const created = await (await agentClient(command)).createVm({ name: options.name ?? `vm-${Date.now().toString(36)}`, os: options.os, we: options.we, memoryBytes: parseSize(options.memory, '--memory'), workload: options.workload }) as { name: string, id: string }
      print(options.json, created, () => `created VM ${created.name} (${created.id})`)
    })
  vm.command('ls')
    .description('the VMs running at this site')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (options: JsonOption, command: Command) => {
      const vms = await (await agentClient(command)).vms() as Array<{ id: string, name: string, driver: string, state: string, migrating: boolean }>
      print(options.json, vms, () => vms.length === 0 ? 'no VM at this site' : vms.map((v) => `${v.name.padEnd(20)} ${v.id}  ${v.driver}  ${v.state}${v.migrating ? ' (migrating)' : ''}`).join('\n'))
    })

  vm.command('stats')
    .description('live statistics of a VM at this site: memory and CPU use, its network throughput, dirty rates')
    .argument('<name>', 'VM name or id')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (name: string, options: JsonOption, command: Command) => {
      const stats = await (await agentClient(command)).vmStats(name)
      print(options.json, stats, () => Object.entries(stats as Record<string, unknown>).map(([k, v]) => `${k.padEnd(24)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n'))
    })
  vm.command('destroy')
    .description('stop and delete a VM at this site (refused while it migrates)')
    .argument('<name>', 'VM name or id')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (name: string, options: JsonOption, command: Command) => {
      const result = await (await agentClient(command)).destroyVm(name)
      print(options.json, result, () => `destroyed VM ${name}`)
    })

  const migration = program.command('migration').description('one running migration: change its parameters, cancel it')
  migration.command('set')
    .description('change a running migration\'s bandwidth cap and downtime limit (at its source site)')
    .argument('<id>', 'migration id')
    .option('--bandwidth <rate>', 'new cap on the migration\'s streams, e.g. 100Mbit or 10MiB; 0 removes the cap')
    .option('--max-downtime <duration>', 'new downtime limit, e.g. 300ms')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (id: string, options: { bandwidth?: string, maxDowntime?: string } & JsonOption, command: Command) => {
      if (options.bandwidth === undefined && options.maxDowntime === undefined) throw new Error('give --bandwidth and/or --max-downtime')
      const updated = await (await agentClient(command)).updateMigration(id, {
        ...(options.bandwidth === undefined ? {} : { bandwidth: options.bandwidth === '0' ? 0 : parseRate(options.bandwidth, '--bandwidth') }),
        ...(options.maxDowntime === undefined ? {} : { maxDowntimeMs: parseDuration(options.maxDowntime, '--max-downtime') })
      }) as { id: string, result?: { parameters?: unknown } }
      print(options.json, updated, () => `migration ${updated.id}: now ${JSON.stringify(updated.result?.parameters ?? {})}`)
    })
  migration.command('cancel')
    .description('cancel a running migration; before the switch-over the VM stays at its source')
    .argument('<id>', 'migration id')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (id: string, options: JsonOption, command: Command) => {
      const cancelled = await (await agentClient(command)).cancelMigration(id) as { id: string, state?: string, error?: string | null }
      print(options.json, cancelled, () => `migration ${cancelled.id}: ${cancelled.state ?? '?'}${cancelled.error == null ? '' : ` (${cancelled.error})`}`)
    })

  program.command('migrate')
    .description('move a running VM to another site (H-GMIG: only the chunks the target lacks cross the WAN)')
    .argument('<vm>', 'VM name or id at this site')
    .option('--to <site>', 'target site')
    .option('--suggest', 'rank candidate sites by bytes to send and estimated time instead of migrating')
    .option('--max-downtime <duration>', 'downtime limit for the final stop-and-copy', '300ms')
    .option('--bandwidth <rate>', 'cap on the migration\'s streams, e.g. 100Mbit or 10MiB')
    .addOption(new Option('--strategy <strategy>', 'h-gmig, or the paper\'s baselines nss and ss').choices(['h-gmig', 'nss', 'ss']).default('h-gmig'))
    .option('--repository <site>', 'SS only: the central repository site')
    .option('--no-wait', 'return once started instead of following it to the end')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (vmName: string, options: { to?: string, suggest?: boolean, maxDowntime: string, bandwidth?: string, strategy: string, repository?: string, wait: boolean } & JsonOption, command: Command) => {
      const api = await agentClient(command)
      if (options.suggest === true) {
        const ranking = await api.migrationPlan(vmName)
        print(options.json, ranking, () => JSON.stringify(ranking, null, 2))
        return
      }
      if (options.to === undefined) throw new Error('--to <site> is required (or --suggest)')
      const started = await api.migrate({
        vm: vmName,
        to: options.to,
        strategy: options.strategy,
        maxDowntimeMs: parseDuration(options.maxDowntime, '--max-downtime'),
        ...(options.bandwidth === undefined ? {} : { bandwidth: parseRate(options.bandwidth, '--bandwidth') }),
        ...(options.repository === undefined ? {} : { repository: options.repository })
      }) as { id: string, state?: string }
      if (!options.wait) {
        print(options.json, started, () => `migration ${started.id} started`)
        return
      }
      // Follow it on the agent's event stream until it ends.
      const controller = new AbortController()
      process.once('SIGINT', () => { void api.cancelMigration(started.id).finally(() => { controller.abort() }) })
      let last: { id: string, state?: string, error?: string | null } = started
      for await (const event of api.events({ signal: controller.signal })) {
        if (event.type !== 'migration') continue
        const detail = event.event.detail as { id?: string, migration?: string, state?: string, phase?: string | null, kind?: string, error?: string | null, data?: unknown }
        if ((event.event.type === 'migration:log' ? detail.migration : detail.id) !== started.id) continue
        if (event.event.type === 'migration:log' && options.json !== true) process.stderr.write(`${detail.phase ?? '-'} ${detail.kind ?? ''} ${JSON.stringify(detail.data ?? {})}\n`)
        if (event.event.type === 'migration:state') {
          last = detail as typeof last
          if (!['running', 'in-doubt'].includes(detail.state ?? '')) break
        }
      }
      print(options.json, last, () => `migration ${last.id}: ${last.state ?? '?'}${last.error === undefined || last.error === null ? '' : ` (${last.error})`}`)
      if (last.state !== 'completed') process.exitCode = 1
    })

  program.command('migrations')
    .description('migrations at this site, and the swarm\'s history of completed ones')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (options: JsonOption, command: Command) => {
      const view = await (await agentClient(command)).migrations()
      print(options.json, view, () => JSON.stringify(view, null, 2))
    })

  const logs = program.command('logs').description('migration logs')
  logs.command('export')
    .description('write the migration log to OUT')
    .argument('<out>', 'output file ("-" for stdout)')
    .addOption(new Option('--format <format>', 'ndjson, csv or json').choices(['ndjson', 'csv', 'json']).default('ndjson'))
    .option('--migration <id>', 'only this migration')
    .option('--since <time>', 'only entries from this ISO time on')
    .action(async (out: string, options: { format: 'ndjson' | 'csv' | 'json', migration?: string, since?: string }, command: Command) => {
      const download = await (await agentClient(command)).exportLogStream(options.format, { ...(options.migration === undefined ? {} : { migration: options.migration }), ...(options.since === undefined ? {} : { since: options.since }) })
      const size = await saveDownload(out, download, 'log export')
      if (size !== null) process.stdout.write(`wrote ${formatBytes(size)} of ${options.format} to ${out}\n`)
    })
}
