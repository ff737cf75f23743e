/**
 * One site for the migration tests, in its own OS process: an image store, the synthetic driver,
 * a libp2p node and the migration engine. No hashgraph: the replica (who holds which image, and
 * the manifests) is written by the test, as the agent will derive it from its replicated state.
 * Driven by JSON lines on stdin, each with an `id`; answers with JSON lines on stdout carrying the
 * same id. Commands run concurrently (a `wait` does not hold up a `cancel`).
 *   argv: <config.json> <site> <data dir>
 *   config: { swarmId, swarmKey (text), keys: { site: hex protobuf private key }, chunkSize, linkBandwidth?, baseTransfer?, faults?: { site: driver faults },
 *             listen?: { site: multiaddr }, netns?: { site: network namespace } }
 * A site with a `listen` address (its network namespace's, when the bench runs the sites in
 * namespaces on tbf-shaped links) listens there; else on 127.0.0.1.
 * Base layers travel through the swarm's chunk exchange (p2p/exchange), as in the agent, unless
 * `baseTransfer` is 'direct' (the engine's built-in fetch). With a `linkBandwidth`, the chunks the
 * exchange serves wait for the engine's link shaper, so they share the site's upload with the
 * migrations' own streams.
 */
import '../../p2p/polyfills.js'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createBlockExchange } from '../../p2p/exchange/index.js'
import { createMigrationEngine, createSyntheticDriver, exchangeChunkFetch, type ExportFormat, type ImageManifestData, type ReplicaView, type SyntheticDriverInit, type WorkloadName } from '../../p2p/migration/index.js'
import { createImageStore, type Layer } from '../../p2p/store/index.js'
import { createSwarmNode, parseSwarmKey } from '../../p2p/swarm/index.js'

interface Config {
  swarmId: string
  swarmKey: string
  keys: Record<string, string>
  chunkSize: number
  linkBandwidth?: number
  baseTransfer?: 'exchange' | 'direct'
  /** Per site: the synthetic driver's fault injection (tests of the end-to-end check). */
  faults?: Record<string, SyntheticDriverInit['faults']>
  /** Per site: the address to listen on (default `/ip4/127.0.0.1/tcp/0`). */
  listen?: Record<string, string>
  /** Per site: the network namespace it runs in (read by the spawner, test/support/migration-sites.ts). */
  netns?: Record<string, string>
}

const [configPath, site, dataDir] = process.argv.slice(2) as [string, string, string]
const config = JSON.parse(readFileSync(configPath, 'utf8')) as Config
const keys = Object.fromEntries(Object.entries(config.keys).map(([name, hex]) => [name, privateKeyFromProtobuf(Buffer.from(hex, 'hex'))]))
const peerIds = new Map<string, PeerId>(Object.entries(keys).map(([name, key]) => [name, peerIdFromPrivateKey(key)]))
const addresses = new Map<string, Multiaddr>()
const replicaPath = join(dataDir, 'replica.json')

const store = createImageStore({ directory: join(dataDir, 'store'), chunkSize: config.chunkSize })
await store.open()
const driver = createSyntheticDriver({ directory: dataDir, images: store, faults: config.faults?.[site] })
await driver.start()
const node = await createSwarmNode({ privateKey: keys[site]!, swarmKey: parseSwarmKey(config.swarmKey), listen: [config.listen?.[site] ?? '/ip4/127.0.0.1/tcp/0'] })
const siteOfPeer = (peer: PeerId | string): string | undefined => [...peerIds].find(([, id]) => id.toString() === peer.toString())?.[0]
const shaped: { engine?: { shapeServed: (migration: string, bytes: number) => Promise<void> } } = {}
/** Chunk sources the exchange fetch dropped, with when (the knock-out bench times detection from them). */
const droppedSources: Array<{ site: string, reason: string, at: number }> = []
const exchange = createBlockExchange({
  node,
  store,
  swarmId: config.swarmId,
  directory: join(dataDir, 'exchange'),
  policy: {
    isMember: (peer) => siteOfPeer(peer) !== undefined,
    mayServe: async (_peer, _cid, context) => {
      if ((config.linkBandwidth ?? 0) > 0) await shaped.engine?.shapeServed(context.migration ?? 'exchange', config.chunkSize)
      return true
    }
  }
})
await exchange.start()
const engine = createMigrationEngine({
  site,
  swarmId: config.swarmId,
  node,
  peerOf: (name) => addresses.get(name),
  siteOf: (peer) => siteOfPeer(peer),
  driver,
  store,
  replica: () => existsSync(replicaPath) ? JSON.parse(readFileSync(replicaPath, 'utf8')) as ReplicaView : { holdings: [], manifests: [] },
  directory: dataDir,
  linkBandwidth: config.linkBandwidth ?? 0,
  ...(config.baseTransfer === 'direct'
    ? {}
    : {
        fetchMissingChunks: exchangeChunkFetch({
          exchange,
          store,
          sourceOf: (name) => {
            const peer = peerIds.get(name)
            const addr = addresses.get(name)
            return peer === undefined ? undefined : { peer, ...(addr === undefined ? {} : { addrs: [addr] }) }
          },
          siteOf: (peer) => siteOfPeer(peer),
          onSourceDropped: (name, reason) => { droppedSources.push({ site: name, reason, at: Date.now() }) }
        })
      })
})
shaped.engine = engine
await engine.start()

type Command = Record<string, unknown> & { cmd: string, id: number }

async function handle (c: Command): Promise<void> {
  const reply = (value: Record<string, unknown>): void => { process.stdout.write(JSON.stringify({ ...value, id: c.id }) + '\n') }
  try {
    switch (c.cmd) {
      case 'addr': reply({ addr: node.getMultiaddrs()[0]!.toString() }); break
      case 'peers':
        for (const [name, addr] of Object.entries(c.addrs as Record<string, string>)) if (name !== site) addresses.set(name, multiaddr(addr))
        // Connected to every other site, as an agent is to every member: no transfer starts with a dial.
        await Promise.all([...addresses.values()].map(async (addr) => await node.dial(addr).catch(() => {})))
        reply({ ok: true })
        break
      case 'import': {
        const image = await store.add(String(c.path), { layer: c.layer as Layer, name: String(c.name), base: c.base as string | undefined })
        reply({ image })
        break
      }
      case 'manifest': {
        const info = await store.resolve(String(c.image))
        const chunks: string[] = []
        for await (const cid of store.manifest(info.id)) chunks.push(cid.toString())
        const manifest: ImageManifestData = { rootCid: info.rootCid, layer: info.layer, size: info.size, chunkSize: info.chunkSize, chunks }
        reply({ manifest })
        break
      }
      case 'images': reply({ images: await store.list() }); break
      case 'remove-image': reply({ removed: await store.remove(String(c.image)) }); break
      case 'destroy-vm': await driver.destroy(String(c.vm)); reply({ ok: true }); break
      case 'replica': writeFileSync(replicaPath, JSON.stringify(c.replica)); reply({ ok: true }); break
      case 'create-vm':
        reply({ vm: await driver.create({ name: String(c.name), os: String(c.os), we: String(c.we), memoryBytes: Number(c.memoryBytes), workload: c.workload as WorkloadName, initialUserDataBytes: c.initialUserDataBytes as number | undefined }) })
        break
      case 'vms': reply({ vms: await driver.list() }); break
      case 'stats': reply({ stats: await driver.stats(String(c.vm)) }); break
      case 'plan': reply({ plan: await engine.plan(String(c.vm), String(c.to), (c.strategy as 'h-gmig' | undefined) ?? 'h-gmig') }); break
      case 'migrate': reply({ migration: await engine.migrate(c.request as Parameters<typeof engine.migrate>[0]) }); break
      case 'wait': reply({ migration: await engine.wait(String(c.migration)) }); break
      case 'get': reply({ migrations: engine.get(String(c.migration)) }); break
      case 'list': reply({ migrations: engine.list() }); break
      case 'cancel': reply({ migration: await engine.cancel(String(c.migration), c.reason as string | undefined) }); break
      case 'set-parameters': reply({ migration: engine.setParameters(String(c.migration), c.parameters as { bandwidth?: number, maxDowntimeMs?: number }) }); break
      case 'log': reply({ entries: engine.logEntries({ migration: c.migration as string | undefined }) }); break
      case 'export': reply({ text: engine.exportLog(c.format as ExportFormat, { migration: c.migration as string | undefined }) }); break
      case 'dropped': reply({ dropped: droppedSources.splice(0) }); break
      case 'grants': reply({ grants: Object.fromEntries(engine.linkGrants()) }); break
      // Migration-protocol streams open on this site's connections (a finished migration leaves none).
      case 'streams': reply({ open: node.getConnections().flatMap((c) => c.streams).filter((st) => st.protocol === engine.protocol).length }); break
      default: reply({ error: `unknown command ${c.cmd}` })
    }
  } catch (err) {
    reply({ error: `${(err as Error).name}: ${(err as Error).message}` })
  }
}

const running: Array<Promise<void>> = []
for await (const line of createInterface({ input: process.stdin })) running.push(handle(JSON.parse(line) as Command))
await Promise.allSettled(running)
await engine.stop()
await exchange.stop()
await driver.stop()
await node.stop()
await store.close()
