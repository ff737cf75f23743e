/**
 * The libp2p host of a site: TCP, noise, yamux, identify, ping, gossipsub, mDNS and bootstrap
 * discovery, all behind a private-network pre-shared swarm key, so that a node without the key
 * cannot even complete a connection handshake. The protector is our own (./private-network.ts):
 * @libp2p/pnet's protocol and key file with libsodium's cipher: several times as fast, and no per-process limit.
 *
 * Gossip is @libp2p/gossipsub: @chainsafe/libp2p-gossipsub, which the design card names, is built on
 * the libp2p 2 interfaces and fails at run time with libp2p 3; its code continues as @libp2p/gossipsub.
 */
import '../polyfills.js'
import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, StrictNoSign, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Registry } from 'prom-client'
import { decodeSwarmKey, privateNetwork } from './private-network.js'

// A type alias, not an interface: libp2p's ServiceMap needs an index signature.
export type SwarmServices = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
}

export type SwarmNode = Libp2p<SwarmServices>

export interface SwarmNodeInit {
  /**
   * Gossipsub topics whose invalid messages (rejected by the topic validator) lower the sender's
   * peer score, until gossipsub ignores and then graylists it. Nothing else counts: a member that
   * is quiet (an idle swarm sends nothing) is never penalised for it.
   */
  scoredTopics?: string[]
  /** A prom-client registry for libp2p's metrics (bytes in/out, connections, streams); none if omitted. */
  metricsRegistry?: Registry
  privateKey: PrivateKey
  /** Pre-shared swarm key in its text form (see createSwarmKey), as @libp2p/pnet reads it. */
  swarmKey: Uint8Array
  listen: string[]
  /** Addresses to tell peers instead of the listen addresses (NAT, a relay in front of the site). */
  announce?: string[]
  bootstrap?: string[]
  /** Discover peers on the LAN by multicast DNS; the tag keeps different swarms apart. */
  mdns?: false | { serviceTag: string, interval?: number }
  /** Largest gossip message accepted, in bytes. */
  maxMessageBytes?: number
  /**
   * Filled with the bytes each open connection carried so far (on the wire: protector, encryption
   * and muxing included), by the connection's remote address without /p2p/<id>; an entry goes when its connection
   * closes. Needs `metricsRegistry` (libp2p hands connections to its metrics component).
   */
  connectionBytes?: Map<string, ConnectionBytes>
  /**
   * Liveness from the bytes each connection receives (needs `connectionBytes`): a connection that
   * received nothing for `silentMs` (default 30 s; libp2p's monitor pings every connection each
   * 10 s, so an idle live one receives pongs) gets a ping of its own; if that fails within
   * `probeTimeoutMs` (default 15 s) and still nothing came in, the connection is aborted, with every
   * stream on it. A busy connection whose pings wait behind queued data is left alone as long as
   * its bytes come in. `false`: off. `onDead` hears each connection closed this way.
   */
  liveness?: false | { silentMs?: number, probeTimeoutMs?: number, intervalMs?: number, onDead?: (peer: string, reason: string) => void }
}

export interface ConnectionBytes { sent: number, received: number }

/** A new swarm key ("/key/swarm/psk/1.0.0/" + base16 of 32 random bytes), pnet's key file format. */
export function createSwarmKey (): Uint8Array {
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}`)
}

/** A swarm key's text, checked and normalised (throws SwarmConfigError naming the expected form). */
export function parseSwarmKey (text: string): Uint8Array {
  decodeSwarmKey(new TextEncoder().encode(text))
  return new TextEncoder().encode(text.trim().split(/\r?\n/).map((line) => line.trim()).join('\n'))
}

/** Topic score parameters that count invalid messages only (P4), decaying by a tenth per second. */
const INVALID_MESSAGES_ONLY = {
  topicWeight: 1,
  timeInMeshWeight: 0,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 0,
  firstMessageDeliveriesWeight: 0,
  firstMessageDeliveriesDecay: 0.5,
  firstMessageDeliveriesCap: 0,
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 0,
  meshMessageDeliveriesThreshold: 0,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  // Squared: 3 invalid messages take a peer below gossipsub's gossip threshold (-10), 7 to its graylist (-80).
  invalidMessageDeliveriesWeight: -2,
  invalidMessageDeliveriesDecay: 0.9
}

/** The multiaddr protocol code of /p2p/<peer id>: connection byte counters are keyed without it. */
const P2P_CODE = 421

/**
 * libp2p's metrics factory, also counting each connection's bytes into `counters`: its metrics
 * component is the one place that sees every raw connection. Observes without adding a `message`
 * listener (a listener would make the connection hand out data before its readers attach), as
 * @libp2p/prometheus-metrics itself does.
 */
function countingConnections (factory: ReturnType<typeof prometheusMetrics>, counters: Map<string, ConnectionBytes> | undefined): ReturnType<typeof prometheusMetrics> {
  if (counters === undefined) return factory
  return (components) => {
    const metrics = factory(components)
    const track = metrics.trackMultiaddrConnection.bind(metrics)
    metrics.trackMultiaddrConnection = (connection) => {
      track(connection)
      // Without /p2p/<id>: a dialled connection's address carries it, an accepted one's does not,
      // and readers look a Connection up by its address without it.
      const key = connection.remoteAddr.decapsulateCode(P2P_CODE).toString()
      const bytes: ConnectionBytes = { sent: 0, received: 0 }
      counters.set(key, bytes)
      const dispatchEvent = connection.dispatchEvent.bind(connection)
      connection.dispatchEvent = (event) => {
        if (event.type === 'message') bytes.received += (event as unknown as { data: { byteLength: number } }).data.byteLength
        return dispatchEvent(event)
      }
      const send = connection.send.bind(connection)
      connection.send = (data) => {
        bytes.sent += data.byteLength
        return send(data)
      }
      connection.addEventListener('close', () => { if (counters.get(key) === bytes) counters.delete(key) })
    }
    return metrics
  }
}

export async function createSwarmNode (init: SwarmNodeInit): Promise<SwarmNode> {
  const discovery: Array<ReturnType<typeof bootstrap> | ReturnType<typeof mdns>> = []
  if (init.bootstrap !== undefined && init.bootstrap.length > 0) discovery.push(bootstrap({ list: init.bootstrap }))
  if (init.mdns !== undefined && init.mdns !== false) discovery.push(mdns({ serviceTag: init.mdns.serviceTag, interval: init.mdns.interval ?? 1000 }))
  const node = await createLibp2pNode(init, discovery)
  if (init.liveness !== false && init.connectionBytes !== undefined) watchLiveness(node, init.connectionBytes, init.liveness ?? {})
  return node
}

/**
 * Closes connections that receive nothing and do not answer a ping (see `SwarmNodeInit.liveness`).
 * With libp2p's monitor no longer aborting on a failed ping (a ping stuck behind queued data says
 * nothing about the peer), a peer gone without a reset (power cut, cable, a frozen process) was
 * found only by TCP's retransmission limit (minutes, with data outstanding) or by whichever
 * transfer stalled on it.
 */
function watchLiveness (node: SwarmNode, counters: Map<string, ConnectionBytes>, options: { silentMs?: number, probeTimeoutMs?: number, intervalMs?: number, onDead?: (peer: string, reason: string) => void }): void {
  const silentMs = options.silentMs ?? 30_000
  const probeTimeoutMs = options.probeTimeoutMs ?? 15_000
  /** Per connection id: the received count last seen, since when, and whether a probe is out. */
  const seen = new Map<string, { received: number, since: number, probing: boolean }>()
  const check = (): void => {
    const now = performance.now()
    const open = new Set<string>()
    for (const connection of node.getConnections()) {
      open.add(connection.id)
      const bytes = counters.get(connection.remoteAddr.decapsulateCode(P2P_CODE).toString())
      if (bytes === undefined || connection.status !== 'open') continue
      const last = seen.get(connection.id)
      if (last === undefined || last.received !== bytes.received) {
        seen.set(connection.id, { received: bytes.received, since: now, probing: false })
        continue
      }
      if (last.probing || now - last.since < silentMs) continue
      last.probing = true
      node.services.ping.ping(connection.remotePeer, { signal: AbortSignal.timeout(probeTimeoutMs) }).then(() => {}, (err: unknown) => {
        // Bytes that came in meanwhile (the pong may have lost a race with its timeout) keep it open.
        if (bytes.received !== last.received || connection.status !== 'open') return
        const reason = `nothing received for ${Math.round((performance.now() - last.since) / 1000)} s and a ping failed (${err instanceof Error ? err.message : String(err)})`
        connection.abort(new Error(`connection to ${connection.remotePeer.toString()} is dead: ${reason}`))
        options.onDead?.(connection.remotePeer.toString(), reason)
      }).finally(() => { last.probing = false })
    }
    for (const id of seen.keys()) if (!open.has(id)) seen.delete(id)
  }
  let timer: ReturnType<typeof setInterval> | undefined
  const start = (): void => {
    if (timer !== undefined) return
    timer = setInterval(check, options.intervalMs ?? Math.min(5_000, silentMs / 2))
    timer.unref()
  }
  node.addEventListener('start', start)
  node.addEventListener('stop', () => { clearInterval(timer); timer = undefined; seen.clear() })
  if (node.status === 'started') start()
}

async function createLibp2pNode (init: SwarmNodeInit, discovery: Array<ReturnType<typeof bootstrap> | ReturnType<typeof mdns>>): Promise<SwarmNode> {
  return await createLibp2p({
    privateKey: init.privateKey,
    // libp2p's own counters (bytes in/out per protocol and per transport, connections, streams) on the agent's /metrics.
    ...(init.metricsRegistry === undefined ? {} : { metrics: countingConnections(prometheusMetrics({ registry: init.metricsRegistry, collectDefaultMetrics: false, preserveExistingMetrics: true }), init.connectionBytes) }),
    addresses: { listen: init.listen, ...(init.announce === undefined || init.announce.length === 0 ? {} : { announce: init.announce }) },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // 4 MiB per-stream windows (default 256 KiB): chunk transfers keep a window's worth of blocks in flight.
    streamMuxers: [yamux({ streamOptions: { initialStreamWindowSize: 4 * 1024 * 1024, maxStreamWindowSize: 16 * 1024 * 1024 } })],
    connectionProtector: privateNetwork({ psk: init.swarmKey }),
    // libp2p pings every connection each 10 s; by default it aborts the connection when a ping
    // fails. A ping opens a stream behind whatever the connection carries: a fetcher starved of
    // CPU behind 8 MiB of queued blocks (session 4), then 1 GiB VMs on 100 Mbit/s tbf links
    // (session 6), where every H-GMIG migration failed — the ping waited behind the queued memory
    // pages and base chunks, and the monitor aborted the connection with every migration and
    // exchange stream on it (a longer ping timeout on both sides was not enough; without the abort
    // the same migration completes). A ping that cannot get through a saturated link says nothing
    // about the peer: the monitor now only measures RTT. Dead connections are found by TCP (resets,
    // keep-alive, retransmission limits), the exchange's stall detection and the migration
    // engine's own timeouts.
    connectionMonitor: { pingTimeout: { minTimeout: 30_000 }, abortConnectionOnPingFailure: false },
    peerDiscovery: discovery,
    services: {
      identify: identify(),
      // The answering side of a ping resets it after 10 s by default, before the asking side gives up.
      ping: ping({ timeout: 60_000 }),
      pubsub: gossipsub({
        emitSelf: false,
        // Every hashgraph event carries its creator's Ed25519 signature, which the engine checks:
        // gossipsub's own envelope signature would be a second sign and verify per message (a
        // profile of three loopback agents: ~7 % of an agent's CPU, twice the engine's checks).
        // Message ids are then the SHA-256 of the data, so a repeated event is dropped as seen.
        globalSignaturePolicy: StrictNoSign,
        // A swarm of one site still orders its own transactions.
        allowPublishToZeroTopicPeers: true,
        maxInboundDataLength: init.maxMessageBytes ?? 1024 * 1024 + 4096,
        scoreParams: {
          topics: Object.fromEntries((init.scoredTopics ?? []).map((topic) => [topic, INVALID_MESSAGES_ONLY])),
          // Invalid frames on an event push stream count here (event-push.ts): forgotten as slowly
          // as invalid gossip (gossipsub's default forgets a penalty within two seconds).
          behaviourPenaltyDecay: INVALID_MESSAGES_ONLY.invalidMessageDeliveriesDecay
        }
      })
    }
  })
}
