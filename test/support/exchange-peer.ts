/**
 * One site for multi-process tests of the block exchange: an image store, a swarm node (shared
 * pnet key) and a block exchange, with a stand-in for the agent's serving policy. Driven by JSON
 * lines on stdin (see PeerProcess); answers with JSON lines on stdout.
 *   argv: <swarm.json> <key index> <data dir> [options JSON]
 *   swarm.json: { swarmId, swarmKey (text), keys: [hex protobuf private keys] }
 *   options: { listen?: libp2p listen address, members?: key indices this site serves (default all), corrupt?: serve wrong bytes,
 *              egressBytesPerSecond?: this site's upload limit, stallTimeoutMs?, sendCoalesceBytes? }
 * Every block the exchange stores is appended to <data dir>/received.log (one CID per line) the
 * moment its position is committed, so a test can tell whether a chunk was ever received twice,
 * across a kill -9 and a restart.
 */
import '../../p2p/polyfills.js'
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Session } from 'node:inspector/promises'
import { createInterface } from 'node:readline'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { createBlockExchange, type ExchangeStore, type FetchRequest, type FetchResult, type TransferProgress } from '../../p2p/exchange/index.js'
import { createImageStore, type Layer } from '../../p2p/store/index.js'
import { createSwarmNode, parseSwarmKey } from '../../p2p/swarm/index.js'

interface PeerOptions {
  /** libp2p listen address (default 127.0.0.1, any port): a site in a network namespace listens on its own address. */
  listen?: string
  members?: number[]
  corrupt?: boolean
  egressBytesPerSecond?: number
  stallTimeoutMs?: number
  sendCoalesceBytes?: number
}

const [swarmPath, indexArg, dataDir, optionsArg] = process.argv.slice(2)
const swarm = JSON.parse(readFileSync(swarmPath!, 'utf8')) as { swarmId: string, swarmKey: string, keys: string[] }
const options = JSON.parse(optionsArg ?? '{}') as PeerOptions
const keys = swarm.keys.map((hex) => privateKeyFromProtobuf(Buffer.from(hex, 'hex')))
const self = keys[Number(indexArg)]!
const members = new Set((options.members ?? keys.map((_, i) => i)).map((i) => peerIdFromPrivateKey(keys[i]!).toString()))

// HGMIG_EXCHANGE_PROFILE=DIR: a V8 CPU profile of this site, written when it stops (the benchmark's "where the time goes").
const profileDir = process.env.HGMIG_EXCHANGE_PROFILE
const profiler = profileDir === undefined ? undefined : new Session()
if (profiler !== undefined) {
  profiler.connect()
  await profiler.post('Profiler.enable')
  await profiler.post('Profiler.start')
}

const store = createImageStore({ directory: join(dataDir!, 'store'), hashInWorker: false })
await store.open()
// A lying source: every block it serves has its first byte flipped (its own store stays intact).
const served: ExchangeStore = options.corrupt !== true
  ? store
  : {
      chunkSize: store.chunkSize,
      directory: store.directory,
      blockstore: () => store.blockstore(),
      readBlock: (cid: CID) => {
        const block = Uint8Array.from(store.readBlock(cid))
        block[0] = (block[0] as number) ^ 0xff
        return block
      },
      resolve: store.resolve.bind(store),
      pinLeaves: store.pinLeaves.bind(store),
      adoptLeaves: store.adoptLeaves.bind(store),
      registerAdopted: store.registerAdopted.bind(store),
      releaseAdoption: store.releaseAdoption.bind(store),
      adoptions: store.adoptions.bind(store)
    }

const privateChunks = new Set<string>()
/** "peer|image root|migration id" of migrations whose target may fetch private chunks. */
const migrations = new Set<string>()

const node = await createSwarmNode({ privateKey: self, swarmKey: parseSwarmKey(swarm.swarmKey), listen: [options.listen ?? '/ip4/127.0.0.1/tcp/0'] })
const exchange = createBlockExchange({
  node,
  store: served,
  swarmId: swarm.swarmId,
  directory: join(dataDir!, 'exchange'),
  policy: {
    isMember: (peer: PeerId) => members.has(peer.toString()),
    mayServe: (peer, cid, context) => !privateChunks.has(cid.toString()) ||
      migrations.has(`${peer.toString()}|${context.image ?? ''}|${context.migration ?? ''}`)
  },
  ...(options.egressBytesPerSecond === undefined ? {} : { rateLimits: { egress: { bytesPerSecond: options.egressBytesPerSecond } } }),
  ...(options.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: options.stallTimeoutMs }),
  ...(options.sendCoalesceBytes === undefined ? {} : { sendCoalesceBytes: options.sendCoalesceBytes })
})
await exchange.start()
const receivedLog = join(dataDir!, 'received.log')
exchange.addEventListener('block:stored', (event) => { appendFileSync(receivedLog, `${event.detail.cid} ${event.detail.peer}\n`) })
const penalties: unknown[] = []
exchange.addEventListener('peer:penalised', (event) => { penalties.push(event.detail) })

let fetching: { progress: TransferProgress | undefined, result: FetchResult | undefined, error: string | undefined, errorName: string | undefined } | undefined

const reply = (value: unknown): void => { process.stdout.write(JSON.stringify(value) + '\n') }
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as Record<string, unknown> & { cmd: string }
  try {
    switch (command.cmd) {
      case 'addr': reply({ addr: node.getMultiaddrs()[0]!.toString(), peerId: node.peerId.toString(), pid: process.pid }); break
      case 'dial': await node.dial(multiaddr(command.addr as string)); reply({ ok: true }); break
      case 'addImage': {
        const image = await store.add(command.path as string, { layer: command.layer as Layer, name: command.name as string, private: command.private === true })
        if (image.public === false) for await (const cid of store.manifest(image.id)) privateChunks.add(cid.toString())
        reply({ image })
        break
      }
      case 'manifest': {
        const image = await store.resolve(command.image as string)
        const chunks: string[] = []
        for await (const cid of store.manifest(image.id)) chunks.push(cid.toString())
        reply({ rootCid: image.rootCid, size: image.size, layer: image.layer, chunks })
        break
      }
      case 'allowMigration': migrations.add(`${command.peer as string}|${command.image as string}|${command.migration as string}`); reply({ ok: true }); break
      case 'fetchStart': {
        const state: NonNullable<typeof fetching> = { progress: undefined, result: undefined, error: undefined, errorName: undefined }
        fetching = state
        exchange.fetch({ ...(command.request as FetchRequest), onProgress: (p) => { state.progress = p } })
          .then((result) => { state.result = result }, (err: Error) => { state.error = err.message; state.errorName = err.name })
        reply({ ok: true })
        break
      }
      // failure, not error: PeerProcess takes an `error` field for a failed command.
      case 'status': reply({ progress: fetching?.progress, result: fetching?.result, failure: fetching?.error, failureName: fetching?.errorName, transfers: exchange.transfers() }); break
      case 'served': reply(exchange.served()); break
      case 'cpu': { const cpu = process.cpuUsage(); reply({ cpuMs: (cpu.user + cpu.system) / 1000 }); break }
      case 'penalties': reply({ penalties, penalised: exchange.penalised() }); break
      case 'export': await store.export(command.image as string, command.path as string, { overwrite: true }); reply({ ok: true }); break
      case 'show': reply({ show: await store.show(command.image as string), verify: await store.verify(command.image as string) }); break
      case 'cancel': await exchange.cancel(command.rootCid as string, { forget: command.forget === true }); reply({ ok: true }); break
      case 'storeStats': reply({ gc: command.gc === true ? await store.gc() : undefined, stats: await store.stats(), adoptions: await store.adoptions(), transfers: exchange.transfers() }); break
      default: reply({ error: `unknown command ${command.cmd}` })
    }
  } catch (err) {
    reply({ error: `${(err as Error).name}: ${(err as Error).message}` })
  }
}
if (profiler !== undefined) {
  const { profile } = await profiler.post('Profiler.stop')
  writeFileSync(join(profileDir!, `site${indexArg!}-${process.pid}.cpuprofile`), JSON.stringify(profile))
}
await exchange.stop()
await node.stop()
await store.close()
