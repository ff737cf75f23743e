import type { Command } from 'commander'

interface AgentOptions {
  site?: string
  listen?: string[]
  announce?: string[]
  ui?: string
  bootstrap?: string[]
  apiPort?: number
}

export function register (program: Command): void {
  program
    .command('agent')
    .description('run this site\'s Migration Agent (headless): join the swarm, reach consensus, serve the local API')
    .option('--site <name>', 'announce this site name to the swarm (if it differs from the current one)')
    .option('--listen <multiaddr...>', 'libp2p listen addresses (default /ip4/127.0.0.1/tcp/0; a non-loopback address also turns on mDNS)')
    .option('--announce <multiaddr...>', 'addresses to tell peers instead of the listen addresses (a NAT or relay in front of this site)')
    .option('--ui <dir>', 'serve the built UI from DIR on the API origin (npm start passes dist/ui)')
    .option('--bootstrap <multiaddr...>', 'members to connect to, as /ip4/.../tcp/.../p2p/<peer id>')
    .option('--api-port <port>', 'local API port on 127.0.0.1 (default: any free port; see api.json)', parsePort)
    .action(async (options: AgentOptions, command: Command) => {
      const { data } = command.optsWithGlobals<{ data: string }>()
      // Loaded here, not at the top: libp2p takes a second to load, and other commands do not need it.
      const { createAgent } = await import('../../agent/index.js')
      const agent = createAgent({
        dataDir: data,
        siteName: options.site,
        listen: options.listen,
        announce: options.announce,
        uiDir: options.ui,
        bootstrap: options.bootstrap,
        apiPort: options.apiPort,
        log: (line) => { process.stdout.write(`${new Date().toISOString()} ${line}\n`) }
      })
      await agent.start()
      await new Promise<void>((resolve) => {
        const shutdown = (signal: string): void => {
          process.stdout.write(`${new Date().toISOString()} ${signal}: shutting down\n`)
          // A second signal while stopping means "now": exit without waiting.
          for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => { process.exit(130) })
          agent.stop().then(() => {
            // Everything is closed; should a library still hold a timer or socket, do not hang a service manager on it.
            setTimeout(() => { process.exit(0) }, 2000).unref()
            resolve()
          }, (err: Error) => {
            process.stderr.write(`hgmig: stopping the agent: ${err.message}\n`)
            process.exit(1)
          })
        }
        process.once('SIGINT', () => { shutdown('SIGINT') })
        process.once('SIGTERM', () => { shutdown('SIGTERM') })
      })
    })
}

function parsePort (value: string): number {
  const port = Number(value)
  if (!/^\d+$/.test(value) || port > 65535) throw new Error(`--api-port must be a TCP port number (0 to 65535), got ${JSON.stringify(value)}`)
  return port
}
