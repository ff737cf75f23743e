/**
 * A bare libp2p host (TCP, noise, yamux) behind a private-network protector, for the interop tests
 * of the swarm's protector against @libp2p/pnet. Driven by JSON lines on stdin (see PeerProcess).
 *   argv: <protector: swarm | pnet> <swarm key text>
 * It echoes every stream of /hgmig-test/echo/1.0.0 back to its sender.
 * Commands: {cmd:'addr'} → {addr}; {cmd:'echo', addr, bytes} → {sent, received, same} after
 * sending `bytes` of a pattern in uneven writes and reading them back; a failed dial answers
 * {error}.
 */
import '../../p2p/polyfills.js'
import './exchange-pnet-guard.js'
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { privateNetwork } from '../../p2p/swarm/index.js'

const ECHO = '/hgmig-test/echo/1.0.0'
const [kind, keyText] = process.argv.slice(2)
if (kind !== 'swarm' && kind !== 'pnet') throw new Error(`protector must be swarm or pnet, got ${String(kind)}`)
const psk = new TextEncoder().encode(keyText)

const node = await createLibp2p({
  privateKey: await generateKeyPair('Ed25519'),
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionProtector: kind === 'pnet' ? preSharedKey({ psk }) : privateNetwork({ psk })
})
await node.handle(ECHO, (stream) => {
  stream.addEventListener('message', (event) => { stream.send(event.data) })
  stream.addEventListener('remoteCloseWrite', () => { void stream.close() })
})

/** Bytes whose every position differs from its neighbours', so a shifted keystream shows. */
function pattern (length: number): Uint8Array {
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + (i >> 8)) & 0xff
  return bytes
}

async function echo (addr: string, bytes: number): Promise<{ sent: number, received: number, same: boolean }> {
  const stream = await node.dialProtocol(multiaddr(addr), ECHO, { signal: AbortSignal.timeout(20_000) })
  const data = pattern(bytes)
  const back = createHash('sha256')
  let received = 0
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', (event) => {
      const piece = event.data instanceof Uint8Array ? event.data : event.data.subarray()
      back.update(piece)
      received += piece.byteLength
    })
    stream.addEventListener('remoteCloseWrite', () => { resolve() })
    stream.addEventListener('close', (event) => { if (event.error !== undefined) reject(event.error) })
  })
  // Uneven writes (1 byte to 200 KiB): the ciphers must keep their place across any split.
  const sizes = [1, 63, 64, 65, 1000, 65_536, 200_000]
  for (let offset = 0, i = 0; offset < bytes; i++) {
    const end = Math.min(bytes, offset + sizes[i % sizes.length]!)
    if (!stream.send(data.subarray(offset, end))) await stream.onDrain()
    offset = end
  }
  await stream.close()
  await done
  const same = back.digest('hex') === createHash('sha256').update(data).digest('hex')
  return { sent: bytes, received, same }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  const command = JSON.parse(line) as { cmd: string, addr?: string, bytes?: number }
  try {
    if (command.cmd === 'addr') process.stdout.write(JSON.stringify({ addr: node.getMultiaddrs()[0]!.toString() }) + '\n')
    else if (command.cmd === 'echo') process.stdout.write(JSON.stringify(await echo(command.addr!, command.bytes!)) + '\n')
    else process.stdout.write(JSON.stringify({ error: `unknown command ${command.cmd}` }) + '\n')
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: String((err as Error).message ?? err) }) + '\n')
  }
}
await node.stop()
process.exit(0)
