import type { Command } from 'commander'

export function register (program: Command): void {
  const swarm = program.command('swarm').description('create and manage the swarm this site belongs to')
  swarm
    .command('create')
    .description('found a new swarm with this site as its only member (creates the site key if missing)')
    .requiredOption('--name <site>', 'this site\'s name, unique in the swarm (letters, digits, ".", "_", "-")')
    .option('--swarm-name <name>', 'a name for the swarm (default: <site>-swarm)')
    .option('--json', 'print the result as JSON')
    .action(async (options: { name: string, swarmName?: string, json?: boolean }, command: Command) => {
      const { data } = command.optsWithGlobals<{ data: string }>()
      // Loaded here, not at the top: libp2p takes a second to load, and other commands do not need it.
      const { createSwarm } = await import('../../agent/index.js')
      const created = await createSwarm(data, { siteName: options.name, swarmName: options.swarmName })
      const { genesis } = created
      if (options.json === true) {
        process.stdout.write(JSON.stringify({ swarmId: genesis.swarmId, swarmName: genesis.swarmName, site: options.name, peerId: created.peerId, dataDir: data }) + '\n')
        return
      }
      process.stdout.write(`created swarm "${genesis.swarmName}"\n` +
        `  swarm id  ${genesis.swarmId}\n` +
        `  site      ${options.name}\n` +
        `  peer id   ${created.peerId}\n` +
        `  data      ${data}\n` +
        `start the agent with: hgmig agent --data ${data}\n`)
    })
}
