/**
 * A bare swarm node in its own OS process, for test/swarm-liveness.test.ts (which freezes it with
 * SIGSTOP: a peer that keeps its TCP connections open but answers nothing).
 *   argv: <swarm key text>
 * Prints its listen address as one line on stdout, then runs until killed.
 */
import '../../p2p/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createSwarmNode, parseSwarmKey } from '../../p2p/swarm/index.js'

const node = await createSwarmNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey: parseSwarmKey(process.argv[2] as string), listen: ['/ip4/127.0.0.1/tcp/0'] })
process.stdout.write(`${node.getMultiaddrs()[0]?.toString() ?? ''}\n`)
setInterval(() => {}, 60_000)
