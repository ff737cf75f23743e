/**
 * The Migration Agent of one site: loads the site's key and the swarm's genesis, replays the
 * event log into the hashgraph and the replicated state, joins the swarm, gossips, applies the
 * consensus order, and serves the local API. `createAgent(init)` → `start()` … `stop()`.
 */
import '../polyfills.js'
import { createHash, randomBytes } from 'node:crypto'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { ApiRequestError, createApiServer, removeApiFile, writeApiFile, type AgentBackend, type AgentEvent, type AgentStatus, type ApiServer, type LatencySample, type MetricsText, type PingRequest, type PingResponse } from '../api/index.js'
import { EventLog, Hashgraph, type OrderedTransaction } from '../hashgraph/index.js'
import { createSwarmNode, HashgraphGossip, parseSwarmKey, type SwarmNode } from '../swarm/index.js'
import { dataDirLayout, loadGenesis, loadIdentity, type DataDirLayout } from './data-dir.js'
import { AgentConfigError, ListenAddressError, OrderGapError } from './errors.js'
import { memberPublicKeys, type Genesis } from './genesis.js'
import { ConsensusLatency } from './latency.js'
import { DataDirLock } from './lock.js'
import { createAgentMetrics, type AgentMetrics } from './metrics.js'
import { siteNameProblem } from './site-name.js'
import { encodeTransaction, SwarmState, type AppliedTransaction } from './state.js'

export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']

export interface AgentInit {
  dataDir: string
  /** Announce this site name (a site-name transaction) if the replicated state has another. */
  siteName?: string
  /** libp2p listen multiaddrs; default loopback only, so a first try exposes nothing. */
  listen?: string[]
  /** Multiaddrs (with /p2p/<peer id>) of members to connect to. */
  bootstrap?: string[]
  /** 0 (default): any free port. */
  apiPort?: number
  /** One line per significant event (start, stop, peers, names, rejections, errors). */
  log?: (line: string) => void
  /** How often connected members are pinged for their round-trip time, and the others dialled again. */
  memberCheckIntervalMs?: number
}

export interface Agent extends AgentBackend {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Valid after start. */
  readonly apiOrigin: string
}

export function createAgent (init: AgentInit): Agent {
  return new MigrationAgent(init)
}

/** What exists from the replay on: the site's place in the swarm and the consensus state. */
interface Core {
  genesis: Genesis
  self: number
  peerId: string
  memberPeers: PeerId[]
  state: SwarmState
  eventLog: EventLog
  hashgraph: Hashgraph
  metrics: AgentMetrics
  lock: DataDirLock
  startedAt: Date
}

/** What is started after the replay. */
interface Network {
  node: SwarmNode
  gossip: HashgraphGossip
  api: ApiServer
}

const SAMPLE_INTERVAL_MS = 250

class MigrationAgent implements Agent {
  private core: Core | null = null
  private network: Network | null = null
  private readonly listeners = new Set<(event: AgentEvent) => void>()
  private readonly latency: ConsensusLatency
  private readonly rtt = new Map<string, number | null>()
  private readonly dialing = new Set<string>()
  /** Members whose last dial failed (their failure was logged). */
  private readonly unreachable = new Set<string>()
  private readonly timers: NodeJS.Timeout[] = []
  private readonly eventCountSamples: Array<{ at: number, events: number }> = []
  private lastReportedRound = 0
  private replaying = false
  /** Why the state machine stopped applying the order (a gap in it), or null. */
  private halted: string | null = null
  private stopping: Promise<void> | null = null
  private readonly say: (line: string) => void

  constructor (private readonly init: AgentInit) {
    this.say = init.log ?? (() => {})
    this.latency = new ConsensusLatency({
      onSample: (sample) => {
        this.core?.metrics.consensusLatency.observe(sample.latencyMs / 1000)
        this.emit({ type: 'latency', sample })
      }
    })
  }

  get apiOrigin (): string { return this.needNetwork().api.origin }

  async start (): Promise<void> {
    if (this.core !== null) return
    const layout = dataDirLayout(this.init.dataDir)
    const listen = checkAddresses('--listen', this.init.listen ?? DEFAULT_LISTEN, false)
    const bootstrap = checkAddresses('--bootstrap', this.init.bootstrap ?? [], true)
    if (this.init.siteName !== undefined) {
      const problem = siteNameProblem(this.init.siteName)
      if (problem !== undefined) throw new AgentConfigError(`--site: ${problem}`)
    }
    const genesis = await loadGenesis(layout)
    // Undo stack: a start that fails half-way leaves nothing running and nothing locked.
    const undo: Array<() => unknown> = []
    try {
      const { core, key } = await this.openCore(layout, genesis, undo)
      const network = await this.startNetwork(core, key, listen, bootstrap, undo)
      await writeApiFile(layout.root, { port: network.api.port, token: network.api.token, pid: process.pid })
      undo.push(async () => { await removeApiFile(layout.root, process.pid) })
      this.timers.push(setInterval(() => { this.sample() }, SAMPLE_INTERVAL_MS))
      this.timers.push(setInterval(() => { void this.maintainMembers() }, this.init.memberCheckIntervalMs ?? 5000))
      this.say(`agent started: site ${core.state.member(core.self)!.name} (member ${core.self} of ${genesis.members.length}), peer id ${core.peerId}, swarm "${genesis.swarmName}" ${genesis.swarmId}`)
      for (const addr of network.node.getMultiaddrs()) this.say(`listening on ${addr.toString()}`)
      this.say(`local API on ${network.api.origin} (token in ${layout.root}/api.json)`)
      this.announceSiteName()
      void network.gossip.syncWithAll()
    } catch (err) {
      for (const step of undo.reverse()) {
        try { await step() } catch { /* keep undoing: the original error is what matters */ }
      }
      this.core = null
      this.network = null
      throw err
    }
  }

  /** Lock, key, event log, hashgraph, and the replicated state rebuilt by replaying the log. */
  private async openCore (layout: DataDirLayout, genesis: Genesis, undo: Array<() => unknown>): Promise<{ core: Core, key: PrivateKey }> {
    const lock = DataDirLock.acquire(layout.root)
    undo.push(() => { lock.release() })
    const key = await loadIdentity(layout)
    const peerId = peerIdFromPrivateKey(key).toString()
    const self = genesis.members.findIndex((m) => m.peerId === peerId)
    if (self === -1) {
      throw new AgentConfigError(`this site (peer id ${peerId}) is not a member of swarm "${genesis.swarmName}" (members: ${genesis.members.map((m) => `${m.name} ${m.peerId}`).join(', ')})`)
    }
    const state = new SwarmState(genesis.members)
    const eventLog = new EventLog(layout.eventLog)
    undo.push(() => { eventLog.close() })
    const hashgraph = new Hashgraph({
      members: memberPublicKeys(genesis),
      self: { creator: self, key },
      coinRoundFrequency: genesis.coinRoundFrequency,
      log: eventLog,
      onTransactions: (transactions) => { this.applyOrdered(transactions) },
      onStaleTransactions: (transactions) => { this.resubmitStale(transactions) },
      onFork: (evidence) => { this.say(`fork by member ${evidence.creator}: events ${evidence.eventIds.join(', ')}`) },
      onAnomaly: (message) => { this.say(`consensus anomaly: ${message}`) }
    })
    const memberPeers = genesis.members.map((m) => peerIdFromString(m.peerId))
    const metrics = createAgentMetrics({
      members: () => genesis.members.length,
      connectedMembers: () => memberPeers.filter((p, i) => i !== self && this.isConnected(p)).length,
      lastDecidedRound: () => hashgraph.lastOrderedRound,
      hashgraphEvents: () => countEvents(hashgraph),
      eventsPerSecond: () => this.eventsPerSecond(),
      pendingTransactions: () => this.latency.pendingCount
    })
    const core: Core = { genesis, self, peerId, memberPeers, state, eventLog, hashgraph, metrics, lock, startedAt: new Date() }
    this.core = core
    undo.push(() => { this.core = null })
    // The state is rebuilt from the replay: Hashgraph.start emits the whole order again from position 0.
    this.replaying = true
    try {
      hashgraph.start()
    } finally {
      this.replaying = false
    }
    undo.push(() => { hashgraph.stop() })
    this.lastReportedRound = hashgraph.lastOrderedRound
    this.say(`replayed ${countEvents(hashgraph)} events from ${layout.eventLog}: ${state.applied + state.rejected} transactions, last decided round ${hashgraph.lastOrderedRound}, state hash ${state.stateHash}`)
    return { core, key }
  }

  /** The libp2p host, gossip over it, and the local API. */
  private async startNetwork (core: Core, key: PrivateKey, listen: string[], bootstrap: string[], undo: Array<() => unknown>): Promise<Network> {
    const { genesis } = core
    // Multicast discovery only where the site listens beyond loopback.
    const mdns = listen.some((a) => !isLoopback(a))
    const node = await startNode({
      privateKey: key,
      swarmKey: parseSwarmKey(genesis.swarmKey),
      listen,
      bootstrap,
      mdns: mdns ? { serviceTag: `_hgmig-${genesis.swarmId}._udp.local` } : false
    })
    undo.push(async () => { await node.stop() })
    this.watchPeers(node)
    if (mdns) this.say('mDNS discovery on (listening beyond loopback)')
    const gossip = new HashgraphGossip({
      node,
      hashgraph: core.hashgraph,
      swarmId: genesis.swarmId,
      peers: () => core.memberPeers,
      onError: (err) => { this.say(`gossip: ${err.message}`) }
    })
    await gossip.start()
    undo.push(async () => { await gossip.stop() })
    const api = createApiServer({ backend: this, port: this.init.apiPort, onError: (err) => { this.say(`api: ${err.stack ?? err.message}`) } })
    await api.start()
    undo.push(async () => { await api.stop() })
    this.network = { node, gossip, api }
    undo.push(() => { this.network = null })
    return this.network
  }

  async stop (): Promise<void> {
    this.stopping ??= this.shutdown()
    await this.stopping
  }

  private async shutdown (): Promise<void> {
    const { core, network } = this
    if (core === null || network === null) return
    for (const timer of this.timers.splice(0)) clearInterval(timer)
    // API first: clients see the agent go away before anything else does.
    await this.attempt('stopping the API', async () => { await network.api.stop() })
    await removeApiFile(this.init.dataDir, process.pid)
    await this.attempt('stopping gossip', async () => { await network.gossip.stop() })
    await this.attempt('stopping libp2p', async () => { await network.node.stop() })
    this.network = null
    // Flushes the received events still queued, so the next start replays everything this run saw.
    core.hashgraph.stop()
    core.eventLog.close()
    this.core = null
    this.listeners.clear()
    core.lock.release()
    this.say(`agent stopped: state hash ${core.state.stateHash}`)
  }

  private async attempt (what: string, step: () => Promise<void>): Promise<void> {
    try {
      await step()
    } catch (err) {
      this.say(`${what}: ${(err as Error).message}`)
    }
  }

  // ------------------------------------------------------------ consensus

  private applyOrdered (transactions: OrderedTransaction[]): void {
    const core = this.needCore()
    if (this.halted !== null) return
    for (const ordered of transactions) {
      let applied: AppliedTransaction
      try {
        applied = core.state.apply(ordered)
      } catch (err) {
        // Not thrown into the engine (it is in the middle of ordering): the state freezes, loudly.
        if (!(err instanceof OrderGapError)) throw err
        this.halted = err.message
        this.say(`STATE MACHINE HALTED: ${err.message}`)
        return
      }
      core.metrics.orderedTransactions.inc({ outcome: applied.outcome })
      // During replay nothing is live: no latency (the submissions belong to an earlier run), no stream.
      if (this.replaying) continue
      if (ordered.creator === core.self) this.latency.ordered(transactionKey(ordered.transaction), ordered.position, applied.kind)
      this.report(applied)
    }
  }

  private report (applied: AppliedTransaction): void {
    const site = this.needCore().state.member(applied.creator)?.name ?? `member ${applied.creator}`
    if (applied.outcome === 'rejected') {
      this.say(`transaction ${applied.position} from ${site} rejected (${applied.reason}): ${applied.detail ?? ''}`)
    } else if (applied.transaction?.type === 'site-name') {
      this.say(`member ${applied.creator} is now named ${applied.transaction.name}`)
    }
    this.emit({
      type: 'transaction',
      position: applied.position,
      round: applied.round,
      creator: applied.creator,
      site,
      kind: applied.kind,
      outcome: applied.outcome,
      ...(applied.reason === undefined ? {} : { reason: applied.reason }),
      stateHash: applied.stateHash
    })
  }

  /** The engine gave up on an event (stale): own transactions in it are submitted again. */
  private resubmitStale (transactions: Array<{ transaction: Uint8Array }>): void {
    const network = this.network
    if (network === null) return
    for (const { transaction } of transactions) {
      if (!this.latency.isPending(transactionKey(transaction))) continue
      this.say('an own transaction landed in a stale event: submitting it again')
      network.gossip.submit(transaction)
    }
  }

  private announceSiteName (): void {
    const wanted = this.init.siteName
    const { state, self } = this.needCore()
    if (wanted === undefined || state.member(self)!.name === wanted) return
    const holder = state.memberByName(wanted)
    if (holder !== undefined && holder.index !== self) {
      this.say(`not announcing site name ${wanted}: it is the name of member ${holder.index} (${holder.peerId})`)
      return
    }
    this.say(`announcing site name ${wanted}`)
    this.submit(encodeTransaction({ type: 'site-name', name: wanted }))
  }

  private submit (transaction: Uint8Array): string {
    const key = transactionKey(transaction)
    this.latency.submitted(key)
    this.needNetwork().gossip.submit(transaction)
    return key
  }

  // ------------------------------------------------------------ peers and sampling

  private watchPeers (node: SwarmNode): void {
    const memberIndex = (peer: PeerId): number | null => {
      const index = this.core?.memberPeers.findIndex((p) => p.equals(peer)) ?? -1
      return index === -1 ? null : index
    }
    node.addEventListener('peer:connect', (evt) => {
      const member = memberIndex(evt.detail)
      this.say(`connected to ${member === null ? 'non-member' : `member ${member} (${this.core?.state.member(member)?.name})`} ${evt.detail.toString()}`)
      this.emit({ type: 'peer', peerId: evt.detail.toString(), member, connected: true })
      if (member !== null) {
        this.unreachable.delete(evt.detail.toString())
        void this.network?.gossip.syncWithAll()
        void this.pingMember(evt.detail)
      }
    })
    // libp2p 3 does not dial what discovery (mDNS, bootstrap) finds: the agent connects to the members among it.
    node.addEventListener('peer:discovery', (evt) => {
      const member = memberIndex(evt.detail.id)
      if (member !== null && member !== this.core?.self) void this.connectMember(node, evt.detail.id)
    })
    node.addEventListener('peer:disconnect', (evt) => {
      const member = memberIndex(evt.detail)
      this.say(`disconnected from ${member === null ? 'non-member' : `member ${member}`} ${evt.detail.toString()}`)
      this.rtt.delete(evt.detail.toString())
      this.emit({ type: 'peer', peerId: evt.detail.toString(), member, connected: false })
    })
  }

  private isConnected (peer: PeerId): boolean {
    return (this.network?.node.getConnections(peer).length ?? 0) > 0
  }

  /** Pings the connected members (RTT) and dials the others again (a restarted member comes back). */
  private async maintainMembers (): Promise<void> {
    const { core, network } = this
    if (core === null || network === null) return
    await Promise.all(core.memberPeers.filter((_, i) => i !== core.self).map(async (peer) => {
      if (this.isConnected(peer)) await this.pingMember(peer)
      else await this.connectMember(network.node, peer)
    }))
  }

  private async connectMember (node: SwarmNode, peer: PeerId): Promise<void> {
    const key = peer.toString()
    if (this.dialing.has(key) || node.getConnections(peer).length > 0) return
    this.dialing.add(key)
    try {
      await node.dial(peer, { signal: AbortSignal.timeout(10_000) })
    } catch (err) {
      // Said once per outage, not at every retry.
      if (!this.unreachable.has(key)) this.say(`cannot reach member ${key}: ${(err as Error).message}`)
      this.unreachable.add(key)
    } finally {
      this.dialing.delete(key)
    }
  }

  private async pingMember (peer: PeerId): Promise<void> {
    const network = this.network
    if (network === null) return
    try {
      this.rtt.set(peer.toString(), await network.node.services.ping.ping(peer, { signal: AbortSignal.timeout(5000) }))
    } catch {
      this.rtt.set(peer.toString(), null)
    }
  }

  /** Events/s over the last second, and a `rounds` event when consensus has advanced. */
  private sample (): void {
    const core = this.core
    if (core === null) return
    const now = performance.now()
    this.eventCountSamples.push({ at: now, events: countEvents(core.hashgraph) })
    while (this.eventCountSamples.length > 1 && now - this.eventCountSamples[0]!.at > 1000 + SAMPLE_INTERVAL_MS / 2) this.eventCountSamples.shift()
    const round = core.hashgraph.lastOrderedRound
    if (round !== this.lastReportedRound) {
      this.lastReportedRound = round
      this.emit({ type: 'rounds', lastDecidedRound: round, orderedEvents: core.hashgraph.orderedEvents })
    }
  }

  private eventsPerSecond (): number {
    const first = this.eventCountSamples[0]
    const last = this.eventCountSamples[this.eventCountSamples.length - 1]
    if (first === undefined || last === undefined || last.at === first.at) return 0
    return (last.events - first.events) * 1000 / (last.at - first.at)
  }

  // ------------------------------------------------------------ AgentBackend (the local API)

  status (): AgentStatus {
    const core = this.needCore()
    const network = this.needNetwork()
    const { genesis, state, hashgraph, self } = core
    return {
      site: state.member(self)!.name,
      peerId: core.peerId,
      swarm: { id: genesis.swarmId, name: genesis.swarmName },
      members: state.memberList().map((m) => {
        const peer = core.memberPeers[m.index]!
        const isSelf = m.index === self
        return { index: m.index, name: m.name, peerId: m.peerId, self: isSelf, connected: isSelf || this.isConnected(peer), rttMs: isSelf ? 0 : this.rtt.get(m.peerId) ?? null }
      }),
      lastDecidedRound: hashgraph.lastOrderedRound,
      stateHash: state.stateHash,
      halted: this.halted,
      transactions: { ordered: state.applied + state.rejected, applied: state.applied, rejected: state.rejected, pending: this.latency.pendingCount },
      latency: this.latency.summary(),
      eventsPerSecond: Math.round(this.eventsPerSecond() * 10) / 10,
      listen: network.node.getMultiaddrs().map((a) => a.toString()),
      startedAt: core.startedAt.toISOString(),
      pid: process.pid
    }
  }

  latencySeries (): LatencySample[] {
    return this.latency.series()
  }

  submitPing (request: PingRequest): PingResponse {
    if (this.network === null || this.stopping !== null) throw new ApiRequestError(503, 'the agent is stopping')
    const submitted: string[] = []
    for (let i = 0; i < (request.count ?? 1); i++) {
      submitted.push(this.submit(encodeTransaction({ type: 'ping', nonce: randomBytes(16), submittedAt: Date.now() })))
    }
    return { submitted }
  }

  async metrics (): Promise<MetricsText> {
    const { registry } = this.needCore().metrics
    return { contentType: registry.contentType, text: await registry.metrics() }
  }

  subscribe (listener: (event: AgentEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private emit (event: AgentEvent): void {
    for (const listener of this.listeners) {
      try { listener(event) } catch (err) { this.say(`event listener failed: ${(err as Error).message}`) }
    }
  }

  private needCore (): Core {
    if (this.core === null) throw new ApiRequestError(503, 'the agent is not running')
    return this.core
  }

  private needNetwork (): Network {
    if (this.network === null) throw new ApiRequestError(503, 'the agent is not running')
    return this.network
  }
}


/** Identifies a submitted transaction when it comes back in the order. */
function transactionKey (transaction: Uint8Array): string {
  return createHash('sha256').update(transaction).digest('hex')
}

/** Events the hashgraph holds: per creator, its next sequence number. */
function countEvents (hashgraph: Hashgraph): number {
  return hashgraph.knownCounts().reduce((a, b) => a + b, 0)
}

function checkAddresses (option: string, addresses: string[], needPeerId: boolean): string[] {
  for (const address of addresses) {
    let components: Array<{ name: string }>
    try {
      components = multiaddr(address).getComponents()
    } catch (err) {
      throw new AgentConfigError(`${option} ${address}: not a multiaddr (${(err as Error).message})`)
    }
    if (needPeerId && !components.some((c) => c.name === 'p2p')) throw new AgentConfigError(`${option} ${address}: must end in /p2p/<peer id> (the member's peer id)`)
  }
  return addresses
}

function isLoopback (address: string): boolean {
  return address.startsWith('/ip4/127.') || address.startsWith('/ip6/::1/') || address.startsWith('/dns/localhost/')
}

async function startNode (init: Parameters<typeof createSwarmNode>[0]): Promise<SwarmNode> {
  try {
    return await createSwarmNode(init)
  } catch (err) {
    const message = (err as Error).message
    const inUse = /^\s*(\S+): Error: listen EADDRINUSE/m.exec(message)
    if (inUse !== null) throw new ListenAddressError(`listen address ${inUse[1]} is already in use (pick another with --listen, e.g. /ip4/127.0.0.1/tcp/0 for any free port)`)
    const failed = /^\s*(\/\S+): Error: (.*)$/m.exec(message)
    if (failed !== null) throw new ListenAddressError(`cannot listen on ${failed[1]}: ${failed[2]}`)
    throw err
  }
}
