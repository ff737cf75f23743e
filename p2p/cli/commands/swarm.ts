import type { Command } from 'commander'
import { agentClient } from '../agent-client.js'

type WithData = { data: string }

function print (json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json === true ? JSON.stringify(value) + '\n' : text)
}

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

  swarm
    .command('invite')
    .description('print an invite code for a new site (a secret: it carries the swarm key); needs the running agent')
    .option('--ttl <hours>', 'hours the code admits join requests', '24')
    .option('--json', 'print the result as JSON')
    .action(async (options: { ttl: string, json?: boolean }, command: Command) => {
      const ttlHours = Number(options.ttl)
      if (!Number.isFinite(ttlHours) || ttlHours <= 0) throw new Error(`--ttl must be a positive number of hours, got ${options.ttl}`)
      const invite = await (await agentClient(command)).invite({ ttlHours })
      print(options.json, invite, `${invite.code}\n` +
        `(valid until ${invite.expiresAt}; on the new site run: hgmig swarm join <code> --name SITE, then start its agent;\n` +
        ` approve it here with: hgmig swarm approve SITE)\n`)
    })
  swarm
    .command('join')
    .description('prepare this data directory to join a swarm with an invite code; the agent then asks the members to admit it')
    .argument('<code>', 'the invite code a member printed ("-" reads it from stdin)')
    .option('--name <site>', 'this site\'s name, unique in the swarm (default: the host name)')
    .option('--json', 'print the result as JSON')
    .action(async (code: string, options: { name?: string, json?: boolean }, command: Command) => {
      const { data } = command.optsWithGlobals<WithData>()
      const { joinSwarm } = await import('../../agent/index.js')
      const { hostname } = await import('node:os')
      const text = code === '-' ? await readStdin() : code
      const joined = await joinSwarm(data, text, { siteName: options.name ?? hostname().split('.')[0]! })
      print(options.json, { swarmId: joined.genesis.swarmId, swarmName: joined.genesis.swarmName, site: joined.name, peerId: joined.peerId, dataDir: data, bootstrap: joined.bootstrap },
        `ready to join swarm "${joined.genesis.swarmName}" (${joined.genesis.swarmId}) as ${joined.name} (${joined.peerId})\n` +
        `start the agent: hgmig agent --data ${data}   — it asks the members to admit this site; a member approves with: hgmig swarm approve ${joined.name}\n`)
    })
  swarm
    .command('requests')
    .description('list the join requests waiting at this site for approval')
    .option('--json', 'print the result as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const requests = await (await agentClient(command)).joinRequests()
      print(options.json, requests, requests.length === 0
        ? 'no join request is waiting here\n'
        : requests.map((r) => `${r.name.padEnd(20)} ${r.peerId}  invited by ${r.inviter}  at ${r.at}`).join('\n') + '\n')
    })
  swarm
    .command('approve')
    .description('admit a site that asked to join (submits a member-add transaction; it takes part from a round the consensus fixes)')
    .argument('<peer>', 'the requesting site\'s name or peer id')
    .option('--json', 'print the result as JSON')
    .action(async (peer: string, options: { json?: boolean }, command: Command) => {
      const result = await (await agentClient(command)).approve({ peer })
      print(options.json, result, `submitted the approval of ${peer}; "hgmig status" shows it among the members once ordered\n`)
    })
  swarm
    .command('remove')
    .description('remove a member from the swarm (by consensus)')
    .argument('<site>', 'the member\'s name or peer id')
    .option('--json', 'print the result as JSON')
    .action(async (site: string, options: { json?: boolean }, command: Command) => {
      const result = await (await agentClient(command)).removeMember({ site })
      print(options.json, result, `submitted the removal of ${site}\n`)
    })
  swarm
    .command('leave')
    .description('leave the swarm: this site removes itself (by consensus)')
    .option('--json', 'print the result as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const result = await (await agentClient(command)).leave()
      print(options.json, result, 'submitted this site\'s removal; it stops taking part once ordered\n')
    })
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').trim()
}
