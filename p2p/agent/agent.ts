/**
 * The Migration Agent of one site: loads the site's key and the swarm's genesis, replays the
 * event log into the hashgraph and the replicated state, joins the swarm, gossips, applies the
 * consensus order, and serves the local API. `createAgent(init)` → `start()` … `stop()`.
 */
import '../polyfills.js'
import { createHash, randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { ApiRequestError, createApiServer, parseIntegerQuery, parseTimeQuery, removeApiFile, writeApiFile, type AgentBackend, type AgentEvent, type AgentStatus, type ApiServer, type ApproveRequest, type ChunkMapView, type ConsensusAuditQuery, type LanPeerView, type HashgraphEventView, type HashgraphView, type ImagesResponse, type ImportImageRequest, type InviteRequest, type InviteResponse, type JoinRequestView, type LatencySample, type LogExportQuery, type MetricsText, type PingRequest, type PingResponse, type RemoveRequest, type SiteRole, type StoreCall, type SubmittedResponse, type TextExport, type TransfersResponse, type AbandonTransferResponse } from '../api/index.js'
import { EventLog, Hashgraph, toHex, type ConsensusSnapshot, type OrderedTransaction } from '../hashgraph/index.js'
import { createImageStore, type ImageInfo, type ImageStore } from '../store/index.js'
import { createSwarmNode, eventsTopic, handleRequests, HashgraphGossip, parseSwarmKey, sendRequest, type ConnectionBytes, type SwarmNode } from '../swarm/index.js'
import { dataDirLayout, loadGenesis, loadIdentity, loadJoinIntent, type DataDirLayout, type JoinIntent } from './data-dir.js'
import { AgentConfigError, InvalidCheckpointError, ListenAddressError, OrderGapError } from './errors.js'
import { agreementOf, answerCheckpointRequest, CHECKPOINT_MAX_MESSAGE_BYTES, CHECKPOINTS_KEPT, checkpointInterval, checkpointProtocol, CheckpointStore, decodeCheckpoint, encodeCheckpoint, fetchCheckpoint, type CheckpointAgreement, type DecodedCheckpoint, type StoredCheckpoint } from './checkpoint.js'
import { memberPublicKeys, type Genesis } from './genesis.js'
import { createInvite } from './invite.js'
import { SiteImages } from './images.js'
import { ImageTransfers } from './transfers.js'
import { PublicImagePolicy } from './serving-policy.js'
import { ConsensusAuditLog } from './audit.js'
import { SiteMigrations } from './migrations.js'
import { createBlockExchange, type BlockExchange } from '../exchange/index.js'
import { askToJoin, isCurrentMember, JoinDesk, joinProtocol } from './join.js'
import { ConsensusLatency } from './latency.js'
import { DataDirLock } from './lock.js'
import { createAgentMetrics, type AgentMetrics } from './metrics.js'
import { siteNameProblem } from './site-name.js'
import { encodeTransaction, SwarmState, type AppliedTransaction, type StateMember, type SwarmTransaction } from './state.js'

export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']

export interface AgentInit {
  dataDir: string
  /** Announce this site name (a site-name transaction) if the replicated state has another. */
  siteName?: string
  /** libp2p listen multiaddrs; default loopback only, so a first try exposes nothing. */
  listen?: string[]
  /** Addresses announced to peers instead of the listen addresses (a NAT or relay in front of the site). */
  announce?: string[]
  /** Multiaddrs (with /p2p/<peer id>) of members to connect to. */
  bootstrap?: string[]
  /** 0 (default): any free port. */
  apiPort?: number
  /** The built UI (dist/ui) to serve on the API's origin (no token for its files; the API still needs it). */
  uiDir?: string
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
  key: PrivateKey
  peerId: string
  /** Set if this site was not a founder: how it asked to join. */
  join: JoinIntent | undefined
  desk: JoinDesk
  state: SwarmState
  store: ImageStore
  eventLog: EventLog
  audit: ConsensusAuditLog
  hashgraph: Hashgraph
  metrics: AgentMetrics
  lock: DataDirLock
  startedAt: Date
  checkpoints: CheckpointStore
}

/** What is started after the replay. */
interface Network {
  node: SwarmNode
  gossip: HashgraphGossip
  images: SiteImages
  exchange: BlockExchange
  transfers: ImageTransfers
  migrations: SiteMigrations
  api: ApiServer
}

const SAMPLE_INTERVAL_MS = 250

class MigrationAgent implements Agent {
  private core: Core | null = null
  private network: Network | null = null
  private readonly listeners = new Set<(event: AgentEvent) => void>()
  private readonly latency: ConsensusLatency
  private readonly remoteLatency: ConsensusLatency
  private readonly rtt = new Map<string, number | null>()
  private readonly peerIds = new Map<string, PeerId>()
  /** Bytes each open connection carried, by remote address (filled by the swarm node). */
  private readonly connectionBytes = new Map<string, ConnectionBytes>()
  /** Per peer, cumulative bytes over its connections, sampled over the last THROUGHPUT_WINDOW_MS. */
  private readonly trafficSamples = new Map<string, Array<{ at: number, sent: number, received: number }>>()
  /** Peers discovery found (mDNS on the LAN, the bootstrap list), by peer id. */
  private readonly discovered = new Map<string, { addrs: string[], lastSeen: number }>()
  /** What each member last reported of its replicated state (for comparing sites at a glance). */
  private readonly reportedState = new Map<string, { stateHash: string, ordered: number }>()
  /** Last answer per member to this site's join request (logged when it changes). */
  private readonly joinAnswers = new Map<string, string>()
  private asking = false
  private readonly dialing = new Set<string>()
  /** Members whose last dial failed (their failure was logged). */
  private readonly unreachable = new Set<string>()
  /** Which connected member maintainMembers() asks for the address book next. */
  private addressBookTurn = 0
  private readonly timers: NodeJS.Timeout[] = []
  /** Aborts the imports the API started (they run after the request answered): the agent's stop must not wait for them. */
  private readonly apiImports = new AbortController()
  private readonly eventCountSamples: Array<{ at: number, events: number }> = []
  private lastReportedRound = 0
  private replaying = false
  /** Why the state machine stopped applying the order (a gap in it), or null. */
  private halted: string | null = null
  private stopping: Promise<void> | null = null
  private readonly say: (line: string) => void
  /** Decided rounds between checkpoints (see checkpoint.ts). */
  private readonly checkpointEvery: number
  /** Recent checkpoint rounds' agreements, which a joining site asks members to confirm. */
  private readonly agreements = new Map<number, CheckpointAgreement>()
  /** A checkpoint round's agreement and state, waiting for the next quiet point. */
  private pendingCheckpoint: { agreement: CheckpointAgreement, state: Uint8Array } | null = null
  /** The newest valid checkpoint on disk (what the checkpoint protocol serves). */
  private servedCheckpoint: StoredCheckpoint | null = null
  /** The checkpoint this run started from, the last one it wrote, the one it fetched to join. */
  private startedFrom: { round: number, at: string } | null = null
  private lastCheckpoint: { round: number, at: string } | null = null
  private fetchedCheckpoint: { round: number, bytes: number } | null = null
  /** The last round the log recorded as ordered (where a replay will arrive). */
  private replayTargetRound = 0

  constructor (private readonly init: AgentInit) {
    this.say = init.log ?? (() => {})
    this.checkpointEvery = checkpointInterval()
    this.latency = new ConsensusLatency({
      onSample: (sample) => {
        this.core?.metrics.consensusLatency.observe(sample.latencyMs / 1000)
        this.emit({ type: 'latency', sample })
      }
    })
    this.remoteLatency = new ConsensusLatency({ onSample: (sample) => { this.emit({ type: 'latency', sample, remote: true }) } })
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
      const self = this.selfMember()
      this.say(`agent started: site ${this.siteName()} (${self === undefined ? 'asking to join' : `member ${self.index} of ${core.state.activeMembers().length}`}), peer id ${core.peerId}, swarm "${genesis.swarmName}" ${genesis.swarmId}`)
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
    const founder = genesis.members.some((m) => m.peerId === peerId)
    const joinIntent = founder ? undefined : await loadJoinIntent(layout)
    if (!founder && joinIntent === undefined) {
      throw new AgentConfigError(`this site (peer id ${peerId}) is not a member of swarm "${genesis.swarmName}" and has not asked to join it (no join.json; founding members: ${genesis.members.map((m) => `${m.name} ${m.peerId}`).join(', ')})`)
    }
    // The agent holds the store while it runs; the CLI's image commands then go through the API.
    const store = createImageStore({ directory: join(layout.root, 'store'), chunkSize: genesis.chunkSize })
    await store.open()
    undo.push(async () => { await store.close() })
    const eventLog = new EventLog(layout.eventLog)
    undo.push(() => { eventLog.close() })
    const audit = new ConsensusAuditLog(layout.auditLog, genesis.swarmId)
    undo.push(() => { audit.close() })
    const checkpoints = new CheckpointStore(join(layout.root, 'checkpoints'))
    // Filled by startEngine (from a checkpoint, or by replaying the whole log).
    const core: Core = { genesis, key, peerId, join: joinIntent, desk: undefined as unknown as JoinDesk, state: new SwarmState(genesis.members), store, eventLog, audit, hashgraph: undefined as unknown as Hashgraph, metrics: undefined as unknown as AgentMetrics, lock, startedAt: new Date(), checkpoints }
    core.metrics = createAgentMetrics({
      members: () => core.state.activeMembers().length,
      connectedMembers: () => this.otherMembers().filter((m) => this.isConnected(this.peerOf(m.peerId))).length,
      lastDecidedRound: () => core.hashgraph.lastOrderedRound,
      hashgraphEvents: () => countEvents(core.hashgraph),
      eventsPerSecond: () => this.eventsPerSecond(),
      pendingTransactions: () => this.latency.pendingCount
    })
    core.desk = new JoinDesk({
      swarmId: genesis.swarmId,
      state: () => core.state,
      isMember: () => { const role = this.role(); return role === 'member' || role === 'approved' },
      onRequest: (request, isNew) => {
        if (!isNew) return
        this.say(`join request from ${request.name} (${request.peerId}), invited by ${request.inviter}: approve with "hgmig swarm approve ${request.name}"`)
        this.emit({ type: 'join-request', request })
      }
    })
    this.core = core
    undo.push(() => { this.core = null })
    // A site joining with nothing yet starts from a member's checkpoint, confirmed by f + 1 members.
    if (joinIntent !== undefined && eventLog.position() === 0 && checkpoints.rounds().length === 0) await this.joinFromCheckpoint(core, joinIntent)
    this.startEngine(core)
    undo.push(() => { core.hashgraph.stop() })
    this.lastReportedRound = core.hashgraph.lastOrderedRound
    const from = this.startedFrom === null ? 'the whole log' : `the checkpoint of round ${this.startedFrom.round}`
    this.say(`replayed ${core.hashgraph.replayedEvents} events from ${layout.eventLog} after ${from}: ${core.state.applied + core.state.rejected} transactions, last decided round ${core.hashgraph.lastOrderedRound}, state hash ${core.state.stateHash}`)
    return { core, key }
  }

  /**
   * The hashgraph and the replicated state: from the newest checkpoint that works (the log's
   * events after it replayed), else from the previous one, else by replaying the whole log. A
   * checkpoint that is damaged, does not match the log, or whose replay fails is logged and
   * skipped; the state is then rebuilt from scratch for the next attempt (nothing half-applied).
   */
  private startEngine (core: Core): void {
    // A site that joined from a checkpoint has no history before it: its log cannot be replayed alone.
    const logStartsAt = core.eventLog.getMeta(LOG_STARTS_AT_CHECKPOINT)
    const rounds = core.checkpoints.rounds()
    for (const round of [...rounds, null]) {
      let stored: StoredCheckpoint | null = null
      let checkpoint: DecodedCheckpoint | null = null
      try {
        if (round !== null) {
          stored = core.checkpoints.read(round)
          checkpoint = decodeCheckpoint(stored.bytes)
          if (checkpoint.agreement.round !== round) throw new InvalidCheckpointError(`file of round ${round} holds round ${checkpoint.agreement.round}`)
          // The audit is derived from the log like the state: one that lacks the rows before the checkpoint (lost, or older) needs the whole replay.
          if (logStartsAt === undefined && core.audit.size < checkpoint.agreement.eventPosition) {
            this.say(`not starting from the checkpoint of round ${round}: the consensus audit holds ${core.audit.size} of its ${checkpoint.agreement.eventPosition} ordered events (replaying the whole log rebuilds it)`)
            continue
          }
          if (logStartsAt !== undefined && stored.logPosition !== 0 && core.eventLog.position() < stored.logPosition) throw new InvalidCheckpointError(`the log holds fewer events than the checkpoint's position ${stored.logPosition}`)
        } else if (logStartsAt !== undefined) {
          throw new AgentConfigError(`this site joined from the checkpoint of round ${logStartsAt} and its log holds nothing before it, but no checkpoint in ${core.checkpoints.directory} can be used: start on a new data directory and join again`)
        }
        core.state = checkpoint?.restoredState ?? new SwarmState(core.genesis.members)
        core.hashgraph = this.newHashgraph(core, stored === null || checkpoint === null ? undefined : { frontier: checkpoint.frontier, logPosition: stored.logPosition })
        this.agreements.clear()
        this.pendingCheckpoint = null
        if (checkpoint !== null) this.agreements.set(checkpoint.agreement.round, checkpoint.agreement)
        this.servedCheckpoint = stored
        this.halted = null
        this.replayTargetRound = core.eventLog.lastSnapshot()?.round ?? 0
        this.replaying = true
        try {
          core.hashgraph.start()
        } finally {
          this.replaying = false
        }
        if (this.halted !== null) throw new Error(`the state machine halted during the replay: ${String(this.halted)}`)
        this.startedFrom = stored === null ? null : { round: stored.round, at: new Date().toISOString() }
        this.servedCheckpoint ??= this.newestValidCheckpoint(core, rounds)
        return
      } catch (err) {
        if (round === null) throw err
        const next = rounds.find((r) => r < round)
        this.say(`checkpoint of round ${round} unusable (${(err as Error).message}): ${next === undefined ? (logStartsAt === undefined ? 'replaying the whole log' : 'no other checkpoint') : `trying the checkpoint of round ${next}`}`)
      }
    }
  }

  private newestValidCheckpoint (core: Core, rounds: number[]): StoredCheckpoint | null {
    for (const round of rounds) {
      try {
        const stored = core.checkpoints.read(round)
        decodeCheckpoint(stored.bytes)
        return stored
      } catch { /* said when the engine started */ }
    }
    return null
  }

  private newHashgraph (core: Core, from: { frontier: Uint8Array, logPosition: number } | undefined): Hashgraph {
    const { genesis, key, eventLog, audit } = core
    return new Hashgraph({
      members: memberPublicKeys(genesis),
      // A joining site starts as an observer; the engine makes it a creator once its member-add applies.
      self: { key },
      coinRoundFrequency: genesis.coinRoundFrequency,
      log: eventLog,
      ...(from === undefined ? {} : { frontier: from.frontier, frontierLogPosition: from.logPosition }),
      onOrderedEvents: (events, round) => { audit.record(events, round) },
      onTransactions: (transactions) => { this.applyOrdered(transactions) },
      onStaleTransactions: (transactions) => { this.resubmitStale(transactions) },
      onFork: (evidence) => { this.say(`fork by member ${evidence.creator}: events ${evidence.eventIds.join(', ')}`) },
      onAnomaly: (message) => { this.say(`consensus anomaly: ${message}`) },
      onRoundOrdered: (snapshot) => { this.noteCheckpointRound(snapshot) },
      onSettled: (round) => { this.writeCheckpoint(round) }
    })
  }

  /**
   * At a checkpoint round (inside the engine's ordering, right after the round's transactions):
   * the round's agreement, which every member computes identically, and the state snapshot the
   * checkpoint will hold. Never throws into the engine.
   */
  private noteCheckpointRound (snapshot: ConsensusSnapshot): void {
    if (snapshot.round % this.checkpointEvery !== 0 || this.halted !== null) return
    const core = this.core
    if (core === null) return
    try {
      const stateBytes = core.state.snapshot()
      const agreement = agreementOf(snapshot, core.state, stateBytes)
      this.agreements.set(snapshot.round, agreement)
      for (const round of this.agreements.keys()) if (this.agreements.size > AGREEMENTS_KEPT) this.agreements.delete(round)
      this.pendingCheckpoint = { agreement, state: stateBytes }
    } catch (err) {
      this.say(`checkpoint of round ${snapshot.round}: ${(err as Error).message}`)
    }
  }

  /** At a quiet point still at the checkpoint round: frontier + state + agreement, written atomically. */
  private writeCheckpoint (lastOrderedRound: number): void {
    const pending = this.pendingCheckpoint
    const core = this.core
    if (pending === null || core === null) return
    this.pendingCheckpoint = null
    const { round } = pending.agreement
    // Several rounds were ordered by one insertion: the frontier is past the state snapshot's round; the next checkpoint round will do.
    if (lastOrderedRound !== round) return
    if (this.servedCheckpoint !== null && this.servedCheckpoint.round >= round) return
    // A replay writes only the checkpoints that will be among the newest kept: the others would be deleted at once.
    if (this.replaying && round + CHECKPOINTS_KEPT * this.checkpointEvery <= this.replayTargetRound) return
    try {
      const started = performance.now()
      const frontier = core.hashgraph.exportFrontier()
      // Every event the frontier holds must be on disk before a checkpoint names it.
      core.eventLog.syncAll()
      const logPosition = core.hashgraph.logPosition()
      const bytes = encodeCheckpoint({ agreement: pending.agreement, frontier, state: pending.state })
      const file = core.checkpoints.save(round, bytes, logPosition)
      this.servedCheckpoint = { round, file, bytes, logPosition }
      this.lastCheckpoint = { round, at: new Date().toISOString() }
      this.say(`checkpoint of round ${round} saved: ${bytes.byteLength} bytes, log position ${logPosition}, ${(performance.now() - started).toFixed(1)} ms`)
    } catch (err) {
      this.say(`checkpoint of round ${round} not saved: ${(err as Error).message}`)
    }
  }

  /**
   * A joining site with an empty data directory: a temporary libp2p host reaches its inviter, asks
   * to be admitted (which lets it fetch), learns where the other members listen, fetches the
   * inviter's newest checkpoint and has it confirmed by f + 1 members. Saved as this site's base
   * checkpoint (its log then starts after it). Any failure: logged, and the site syncs the whole
   * history as before.
   */
  private async joinFromCheckpoint (core: Core, intent: JoinIntent): Promise<void> {
    if (process.env.HGMIG_JOIN_FROM_CHECKPOINT === '0') return
    const { genesis } = core
    let node: SwarmNode | null = null
    try {
      node = await createSwarmNode({ privateKey: core.key, swarmKey: parseSwarmKey(genesis.swarmKey), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], mdns: false })
      const signal = AbortSignal.timeout(JOIN_CHECKPOINT_TIMEOUT_MS)
      const reached: PeerId[] = []
      for (const address of intent.bootstrap) {
        try {
          const connection = await node.dial(multiaddr(address), { signal })
          if (!reached.some((p) => p.equals(connection.remotePeer))) reached.push(connection.remotePeer)
        } catch (err) {
          this.say(`checkpoint: cannot reach ${address}: ${(err as Error).message}`)
        }
      }
      for (const peer of reached) {
        const answer = await askToJoin(node, peer, genesis.swarmId, intent, signal).catch((err: Error) => err)
        if (answer instanceof Error) continue
        // The other members, to confirm the checkpoint.
        const book = await sendRequest(node, peer, addressBookProtocol(genesis.swarmId), {}, { signal }).catch(() => [])
        for (const entry of (Array.isArray(book) ? book : []).slice(0, 1024) as Array<{ peerId?: unknown, addrs?: unknown }>) {
          if (typeof entry?.peerId !== 'string' || entry.peerId === core.peerId || !Array.isArray(entry.addrs)) continue
          const target = this.peerOf(entry.peerId)
          const addrs = (entry.addrs as unknown[]).filter((a): a is string => typeof a === 'string').slice(0, 16)
          try {
            await node.peerStore.merge(target, { multiaddrs: addrs.map((a) => multiaddr(a)) })
            await node.dial(target, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) })
          } catch { /* unreachable now: the others may do */ }
        }
        const fetched = await fetchCheckpoint(node, peer, genesis.swarmId, { signal, candidates: () => node?.getPeers() ?? [] })
        if (fetched === null) {
          this.say(`checkpoint: ${peer.toString()} has none yet: syncing the whole history`)
          return
        }
        const { round } = fetched.checkpoint.agreement
        core.checkpoints.save(round, fetched.bytes, 0)
        core.eventLog.setMeta(LOG_STARTS_AT_CHECKPOINT, String(round))
        this.fetchedCheckpoint = { round, bytes: fetched.bytes.byteLength }
        this.say(`checkpoint of round ${round} fetched from ${fetched.from} (${fetched.bytes.byteLength} bytes), confirmed by ${fetched.confirmedBy.length} members (f + 1 = ${fetched.f + 1} of n = ${fetched.members}): starting from it`)
        return
      }
      this.say('checkpoint: no member answered: syncing the whole history')
    } catch (err) {
      this.say(`checkpoint refused (${(err as Error).message}): syncing the whole history`)
    } finally {
      try { await node?.stop() } catch { /* a temporary host: nothing to keep */ }
    }
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
      bootstrap: [...bootstrap, ...(core.join?.bootstrap ?? [])],
      announce: this.init.announce === undefined ? undefined : checkAddresses('--announce', this.init.announce, false),
      metricsRegistry: core.metrics.registry,
      connectionBytes: this.connectionBytes,
      // An operator reading the log learns why a member's connection went, not only that it did.
      liveness: { onDead: (peer, reason) => { this.say(`connection to ${this.core?.state.memberByPeerId(peer)?.name ?? 'non-member'} ${peer} closed: ${reason}`) } },
      scoredTopics: [eventsTopic(genesis.swarmId)],
      mdns: mdns ? { serviceTag: `_hgmig-${genesis.swarmId}._udp.local` } : false
    })
    undo.push(async () => { await node.stop() })
    this.watchPeers(node)
    if (mdns) this.say('mDNS discovery on (listening beyond loopback)')
    const gossip = new HashgraphGossip({
      node,
      hashgraph: core.hashgraph,
      swarmId: genesis.swarmId,
      peers: () => this.syncPeers(),
      onError: (err) => { this.say(`gossip: ${err.message}`) }
    })
    await gossip.start()
    undo.push(async () => { await gossip.stop() })
    await handleRequests(node, joinProtocol(genesis.swarmId), async (request, peer) => await core.desk.answer(request, peer))
    undo.push(async () => { await node.unhandle(joinProtocol(genesis.swarmId)) })
    await handleRequests(node, stateProtocol(genesis.swarmId), async (_request, peer) => {
      if (!isCurrentMember(core.state.memberByPeerId(peer.toString()))) throw new Error('only members may ask')
      return { stateHash: core.state.stateHash, ordered: core.state.applied + core.state.rejected }
    })
    undo.push(async () => { await node.unhandle(stateProtocol(genesis.swarmId)) })
    await handleRequests(node, addressBookProtocol(genesis.swarmId), async () => await this.memberAddresses(node))
    undo.push(async () => { await node.unhandle(addressBookProtocol(genesis.swarmId)) })
    // Checkpoints: their data to members and sites asking to join; agreement digests (hashes) to any peer on the swarm's network.
    await handleRequests(node, checkpointProtocol(genesis.swarmId), async (request, peer) => answerCheckpointRequest(request, {
      latest: () => this.servedCheckpoint,
      agreement: (round) => this.agreements.get(round),
      mayFetch: isCurrentMember(core.state.memberByPeerId(peer.toString())) || core.desk.has(peer)
    }), { maxResponseBytes: CHECKPOINT_MAX_MESSAGE_BYTES })
    undo.push(async () => { await node.unhandle(checkpointProtocol(genesis.swarmId)) })
    const images = new SiteImages({
      store: core.store,
      node,
      swarmId: genesis.swarmId,
      state: () => core.state,
      selfPeerId: core.peerId,
      isMember: () => { const role = this.role(); return role === 'member' || role === 'approved' },
      submit: (transaction) => { this.submitTransaction(transaction) },
      isConnected: (peerId) => this.isConnected(this.peerOf(peerId)),
      peerOf: (peerId) => this.peerOf(peerId),
      say: this.say,
      onProgress: (task, done, total, message) => { this.emit({ type: 'progress', task, done, total, ...(message === undefined ? {} : { message }) }) }
    })
    await images.start()
    undo.push(async () => { await images.stop() })
    // The replay has passed every announcement already: note the manifests this site lacks.
    images.wantAnnounced()
    const isMemberPeer = (peerId: string): boolean => isCurrentMember(core.state.memberByPeerId(peerId))
    const publicImages = new PublicImagePolicy({ store: core.store, state: () => core.state, selfPeerId: core.peerId, isMember: isMemberPeer })
    // The migrations' policy needs the exchange: tied in once they exist.
    const policyOf: { migrations?: SiteMigrations } = {}
    const exchange = createBlockExchange({
      node,
      store: core.store,
      swarmId: genesis.swarmId,
      directory: join(this.init.dataDir, 'exchange'),
      policy: {
        isMember: (peer) => isMemberPeer(peer.toString()),
        mayServe: async (peer, cid, context) => (await publicImages.mayServe(peer, cid, context)) || (policyOf.migrations?.mayServe(peer, context) ?? false)
      }
    })
    exchange.addEventListener('peer:penalised', (evt) => { this.say(`peer ${evt.detail.peer} sent a block that does not match ${evt.detail.cid} (${evt.detail.reason}); ${evt.detail.dropped ? 'dropped as a source' : 'fetching it elsewhere'}`) })
    exchange.addEventListener('serve:refused', (evt) => { this.say(`refused to serve ${evt.detail.peer}: ${evt.detail.reason}`) })
    await exchange.start()
    undo.push(async () => { await exchange.stop() })
    const transfers = new ImageTransfers({
      exchange,
      store: core.store,
      node,
      swarmId: genesis.swarmId,
      state: () => core.state,
      selfPeerId: core.peerId,
      peerOf: (peerId) => this.peerOf(peerId),
      isMember: isMemberPeer,
      announce: async (info) => { await images.announce(info) },
      say: this.say,
      onProgress: (progress) => { this.emit({ type: 'transfer', progress }) },
      onEvent: (event) => { this.emit(event) }
    })
    await transfers.start()
    undo.push(async () => { await transfers.stop() })
    const migrations = new SiteMigrations({
      dataDir: this.init.dataDir,
      store: core.store,
      node,
      swarmId: genesis.swarmId,
      state: () => core.state,
      siteName: () => this.siteName(),
      peerOf: (peerId) => this.peerOf(peerId),
      submit: (transaction) => { this.submitTransaction(transaction) },
      say: this.say,
      onEvent: (event) => { this.emit({ type: 'migration', event }) },
      exchange,
      announce: async (info) => { await images.announce(info) }
    })
    policyOf.migrations = migrations
    await migrations.start()
    undo.push(async () => { await migrations.stop() })
    const api = createApiServer({ backend: this, port: this.init.apiPort, staticDir: this.init.uiDir, onError: (err) => { this.say(`api: ${err.stack ?? err.message}`) } })
    await api.start()
    undo.push(async () => { await api.stop() })
    this.network = { node, gossip, images, exchange, transfers, migrations, api }
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
    this.apiImports.abort(new Error('the agent is stopping'))
    // API first: clients see the agent go away before anything else does.
    await this.attempt('stopping the API', async () => { await network.api.stop() })
    await removeApiFile(this.init.dataDir, process.pid)
    await this.attempt('stopping gossip', async () => { await network.gossip.stop() })
    await this.attempt('stopping the manifest service', async () => { await network.images.stop() })
    // Migrations first: a running one is cancelled and leaves its VM at the source.
    await this.attempt('stopping migrations', async () => { await network.migrations.stop() })
    await this.attempt('stopping transfers', async () => { await network.transfers.stop() })
    await this.attempt('stopping the block exchange', async () => { await network.exchange.stop() })
    await this.attempt('stopping libp2p', async () => { await network.node.stop() })
    this.network = null
    // Flushes the received events still queued, so the next start replays everything this run saw.
    core.hashgraph.stop()
    core.eventLog.close()
    core.audit.close()
    await this.attempt('closing the image store', async () => { await core.store.close() })
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
      if (applied.membership !== undefined && !this.changeMembership(applied)) return
      // During replay nothing is live: no latency (the submissions belong to an earlier run), no stream.
      if (this.replaying) continue
      if (ordered.creator === this.selfMember()?.index) this.latency.ordered(transactionKey(ordered.transaction), ordered.position, applied.kind)
      else if (applied.transaction?.type === 'ping') {
        const site = core.state.member(ordered.creator)?.name ?? `member ${ordered.creator}`
        this.remoteLatency.record({ at: Date.now(), latencyMs: Math.max(0, Date.now() - applied.transaction.submittedAt), position: ordered.position, kind: 'ping', site })
      }
      this.report(applied)
      if (this.network?.images.applied(applied) === true) void this.network.images.maintain().catch((err: Error) => { this.say(`images: ${err.message}`) })
    }
  }

  /**
   * Tells the engine about a member added or removed by the order, at the same point of the order
   * at every site. False (and the state machine halted) if the engine and the state disagree.
   */
  private changeMembership (applied: AppliedTransaction): boolean {
    const { hashgraph, state, peerId } = this.needCore()
    const change = applied.membership!
    try {
      const fromRound = change.change === 'add'
        ? (() => {
            const added = hashgraph.addMember(this.peerOf(change.peerId).publicKey!)
            if (added.creator !== change.index) throw new Error(`the engine gave the new member creator id ${added.creator}, the state index ${change.index}`)
            return added.fromRound
          })()
        : hashgraph.removeMember(change.index)
      if (fromRound !== change.fromRound) throw new Error(`the engine's first round for the change is ${fromRound}, the state's ${change.fromRound}`)
    } catch (err) {
      this.halted = `membership change at position ${applied.position}: ${(err as Error).message}`
      this.say(`STATE MACHINE HALTED: ${this.halted}`)
      return false
    }
    if (this.replaying) return true
    const name = state.member(change.index)?.name ?? change.peerId
    const who = change.peerId === peerId ? 'this site' : name
    this.say(change.change === 'add'
      ? `${who} (${change.peerId}) added as member ${change.index}, taking part from round ${change.fromRound}`
      : `${who} (${change.peerId}) removed: its events stop counting from round ${change.fromRound}`)
    this.emit({ type: 'membership', change: change.change, index: change.index, peerId: change.peerId, name, fromRound: change.fromRound })
    return true
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
    const { state } = this.needCore()
    const self = this.selfMember()
    // A joining site asked under its name already; it can rename itself once it is a member.
    if (wanted === undefined || !isCurrentMember(self) || self.name === wanted) return
    const holder = state.memberByName(wanted)
    if (holder !== undefined && holder.index !== self.index) {
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
      const member = this.core?.state.memberByPeerId(peer.toString())
      return isCurrentMember(member) ? member.index : null
    }
    node.addEventListener('peer:connect', (evt) => {
      const member = memberIndex(evt.detail)
      this.say(`connected to ${member === null ? 'non-member' : `member ${member} (${this.core?.state.member(member)?.name})`} ${evt.detail.toString()}`)
      this.emit({ type: 'peer', peerId: evt.detail.toString(), member, connected: true })
      if (this.role() === 'joining') void this.askMembersToAdmit()
      if (member !== null || this.role() === 'joining') void this.learnAddresses(node, evt.detail)
      if (member !== null) {
        this.unreachable.delete(evt.detail.toString())
        void this.network?.gossip.syncWithAll()
        void this.pingMember(evt.detail)
      }
    })
    // libp2p 3 does not dial what discovery (mDNS, bootstrap) finds: the agent connects to the members among it.
    node.addEventListener('peer:discovery', (evt) => {
      const member = memberIndex(evt.detail.id)
      this.noteDiscovered(evt.detail.id.toString(), evt.detail.multiaddrs.map((a) => a.toString()))
      // A joining site knows only the founders from its genesis: it dials whoever it is pointed at.
      if ((member !== null || this.role() === 'joining') && evt.detail.id.toString() !== this.core?.peerId) void this.connectMember(node, evt.detail.id)
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
    if (this.role() === 'joining') void this.askMembersToAdmit()
    void network.images.maintain().catch((err: Error) => { this.say(`images: ${err.message}`) })
    if (this.role() === 'member') network.transfers.resumeInterrupted()
    // A member we are not connected to and cannot dial may be one our bootstrap peer had not met yet
    // when we asked it where the members listen (at connect only): ask a connected member again,
    // a different one each pass.
    const others = this.otherMembers().map((member) => this.peerOf(member.peerId))
    const connected = others.filter((peer) => this.isConnected(peer))
    if (connected.length > 0 && connected.length < others.length) void this.learnAddresses(network.node, connected[this.addressBookTurn++ % connected.length]!)
    await Promise.all(this.otherMembers().map(async (member) => {
      const peer = this.peerOf(member.peerId)
      if (this.isConnected(peer)) {
        await this.pingMember(peer)
        await this.askState(network.node, peer)
      } else {
        await this.connectMember(network.node, peer)
      }
    }))
  }

  /**
   * Where the members listen, as this site's peer store has them (from identify). A site reached
   * only through its bootstrap peer learns this way how to reach the others; so does a member that
   * restarted on a new port, once it reaches one member.
   */
  private async memberAddresses (node: SwarmNode): Promise<Array<{ peerId: string, addrs: string[] }>> {
    const book: Array<{ peerId: string, addrs: string[] }> = []
    for (const member of this.otherMembers()) {
      try {
        const peer = await node.peerStore.get(this.peerOf(member.peerId))
        const addrs = peer.addresses.map((a) => a.multiaddr.toString())
        if (addrs.length > 0) book.push({ peerId: member.peerId, addrs })
      } catch { /* never seen: nothing to tell */ }
    }
    const self = this.core?.peerId
    if (self !== undefined) book.push({ peerId: self, addrs: node.getMultiaddrs().map((a) => a.toString().replace(/\/p2p\/[^/]+$/, '')) })
    return book
  }

  /** Asks `peer` where the members listen, records it, and connects to the members not connected yet. */
  private async learnAddresses (node: SwarmNode, peer: PeerId): Promise<void> {
    const core = this.core
    if (core === null) return
    let book: unknown
    try {
      book = await sendRequest(node, peer, addressBookProtocol(core.genesis.swarmId), {}, { signal: AbortSignal.timeout(10_000) })
    } catch {
      return
    }
    if (!Array.isArray(book)) return
    for (const entry of book.slice(0, 1024) as Array<{ peerId?: unknown, addrs?: unknown }>) {
      if (typeof entry?.peerId !== 'string' || entry.peerId === core.peerId || !Array.isArray(entry.addrs)) continue
      const member = core.state.memberByPeerId(entry.peerId)
      // Only members' addresses, and only for a joining site any peer's: nobody steers dials elsewhere.
      if (!isCurrentMember(member) && this.role() !== 'joining') continue
      try {
        const target = this.peerOf(entry.peerId)
        const multiaddrs = (entry.addrs as unknown[]).filter((a): a is string => typeof a === 'string').slice(0, 16).map((a) => multiaddr(a))
        await node.peerStore.merge(target, { multiaddrs })
        if (isCurrentMember(member)) void this.connectMember(node, target)
      } catch { /* a bad entry: skip it */ }
    }
  }

  /** A joining site asks every member it is connected to, until one approves and the order adds it. */
  private async askMembersToAdmit (): Promise<void> {
    const { core, network } = this
    if (core?.join === undefined || network === null || this.asking) return
    this.asking = true
    try {
      // Everyone reached, not only the members this site knows of: until it has synced the history it
      // knows only the founders, and its bootstrap peer may be a member added later.
      await Promise.all(network.node.getPeers().map(async (peer) => {
        try {
          const answer = await askToJoin(network.node, peer, core.genesis.swarmId, core.join!, AbortSignal.timeout(10_000))
          if (!this.joinAnswers.has(peer.toString())) this.say(`asked ${peer.toString()} to admit this site: ${answer.status === 'pending' ? 'waiting for a member to approve' : `already added (member ${answer.index} from round ${answer.fromRound})`}`)
          this.joinAnswers.set(peer.toString(), answer.status)
        } catch (err) {
          const message = (err as Error).message
          if (this.joinAnswers.get(peer.toString()) !== message) this.say(`join request to ${peer.toString()}: ${message}`)
          this.joinAnswers.set(peer.toString(), message)
        }
      }))
    } finally {
      this.asking = false
    }
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

  private async askState (node: SwarmNode, peer: PeerId): Promise<void> {
    const core = this.core
    if (core === null) return
    try {
      const reported = await sendRequest(node, peer, stateProtocol(core.genesis.swarmId), {}, { signal: AbortSignal.timeout(5000) }) as { stateHash?: unknown, ordered?: unknown }
      if (typeof reported.stateHash === 'string' && typeof reported.ordered === 'number') this.reportedState.set(peer.toString(), { stateHash: reported.stateHash, ordered: reported.ordered })
    } catch { /* an older agent or a busy one: keep the last report */ }
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
    this.sampleTraffic(now)
    const round = core.hashgraph.lastOrderedRound
    if (round !== this.lastReportedRound) {
      this.lastReportedRound = round
      this.emit({ type: 'rounds', lastDecidedRound: round, orderedEvents: core.hashgraph.orderedEvents })
    }
  }

  private sampleTraffic (now: number): void {
    const node = this.network?.node
    if (node === undefined) return
    const totals = new Map<string, { sent: number, received: number }>()
    for (const connection of node.getConnections()) {
      // The transport's address, as the metrics component saw it (the connection adds /p2p/<id>).
      const bytes = this.connectionBytes.get(connection.remoteAddr.decapsulateCode(P2P_CODE).toString())
      if (bytes === undefined) continue
      const peer = connection.remotePeer.toString()
      const total = totals.get(peer) ?? { sent: 0, received: 0 }
      total.sent += bytes.sent
      total.received += bytes.received
      totals.set(peer, total)
    }
    for (const [peer, total] of totals) {
      const samples = this.trafficSamples.get(peer) ?? []
      samples.push({ at: now, ...total })
      while (samples.length > 1 && now - samples[0]!.at > THROUGHPUT_WINDOW_MS) samples.shift()
      this.trafficSamples.set(peer, samples)
    }
    for (const peer of this.trafficSamples.keys()) if (!totals.has(peer)) this.trafficSamples.delete(peer)
  }

  /** Bytes/s to and from a peer over the sampling window; null without a connection or two samples. */
  private throughputOf (peerId: string): { sentBytesPerSecond: number, receivedBytesPerSecond: number } | null {
    const samples = this.trafficSamples.get(peerId)
    if (samples === undefined || samples.length < 2) return null
    const first = samples[0]!
    const last = samples[samples.length - 1]!
    const seconds = (last.at - first.at) / 1000
    // A connection that closed and reopened restarts its counters: never report a negative rate.
    return {
      sentBytesPerSecond: Math.max(0, Math.round((last.sent - first.sent) / seconds)),
      receivedBytesPerSecond: Math.max(0, Math.round((last.received - first.received) / seconds))
    }
  }

  private eventsPerSecond (): number {
    const first = this.eventCountSamples[0]
    const last = this.eventCountSamples[this.eventCountSamples.length - 1]
    if (first === undefined || last === undefined || last.at === first.at) return 0
    return (last.events - first.events) * 1000 / (last.at - first.at)
  }

  // ------------------------------------------------------------ AgentBackend (the local API)

  /**
   * This site's checkpoints: the newest on disk (written or fetched), the one this run started
   * from, and the one fetched to join (null where none). For `status` (AgentStatus.checkpoint).
   */
  checkpointStatus (): { latest: { round: number, at: string } | null, startedFrom: { round: number, at: string } | null, fetched: { round: number, bytes: number } | null } {
    const served = this.servedCheckpoint
    return {
      latest: this.lastCheckpoint ?? (served === null ? null : { round: served.round, at: fileTime(served.file) }),
      startedFrom: this.startedFrom,
      fetched: this.fetchedCheckpoint
    }
  }

  status (): AgentStatus {
    const core = this.needCore()
    const network = this.needNetwork()
    const { genesis, state, hashgraph } = core
    return {
      site: this.siteName(),
      peerId: core.peerId,
      role: this.role(),
      swarm: { id: genesis.swarmId, name: genesis.swarmName },
      members: state.memberList().map((m) => {
        const isSelf = m.peerId === core.peerId
        return {
          index: m.index,
          name: m.name,
          peerId: m.peerId,
          self: isSelf,
          connected: isSelf || this.isConnected(this.peerOf(m.peerId)),
          rttMs: isSelf ? 0 : this.rtt.get(m.peerId) ?? null,
          gossipScore: isSelf ? null : gossipScore(network.node, m.peerId),
          throughput: isSelf ? null : this.throughputOf(m.peerId),
          stateHash: isSelf ? state.stateHash : this.reportedState.get(m.peerId)?.stateHash ?? null,
          ordered: isSelf ? state.applied + state.rejected : this.reportedState.get(m.peerId)?.ordered ?? null,
          since: m.fromRound,
          until: m.untilRound
        }
      }),
      lastDecidedRound: hashgraph.lastOrderedRound,
      hashgraph: { lastRound: hashgraph.lastRound, eventsInMemory: hashgraph.eventsInMemory, waiting: hashgraph.parkedCount },
      stateHash: state.stateHash,
      halted: this.halted,
      transactions: { ordered: state.applied + state.rejected, applied: state.applied, rejected: state.rejected, pending: this.latency.pendingCount },
      latency: this.latency.summary(),
      remoteLatency: this.remoteLatency.summary(),
      eventsPerSecond: Math.round(this.eventsPerSecond() * 10) / 10,
      checkpoint: this.checkpointStatus().latest,
      listen: network.node.getMultiaddrs().map((a) => a.toString()),
      startedAt: core.startedAt.toISOString(),
      pid: process.pid
    }
  }

  latencySeries (): { samples: LatencySample[], remote: LatencySample[] } {
    return { samples: this.latency.series(), remote: this.remoteLatency.series() }
  }

  submitPing (request: PingRequest): PingResponse {
    if (this.network === null || this.stopping !== null) throw new ApiRequestError(503, 'the agent is stopping')
    const role = this.role()
    if (role === 'joining' || role === 'removed') throw new ApiRequestError(409, `this site is ${role}: only members submit transactions`)
    const submitted: string[] = []
    for (let i = 0; i < (request.count ?? 1); i++) {
      submitted.push(this.submit(encodeTransaction({ type: 'ping', nonce: randomBytes(16), submittedAt: Date.now() })))
    }
    return { submitted }
  }

  async storeCall (call: StoreCall, options: { signal: AbortSignal, onProgress: (event: { type: string, detail: unknown }) => void }): Promise<unknown> {
    const network = this.needNetwork()
    if (call.method === 'fetch') {
      const [reference] = call.args
      if (typeof reference !== 'string') throw new ApiRequestError(400, 'fetch takes an image: its name or root CID')
      return await network.transfers.fetch(reference, { signal: options.signal, onProgress: (progress) => { options.onProgress({ type: 'exchange:fetch:progress', detail: progress }) } })
    }
    if (call.method === 'replicate') {
      const [reference, site] = call.args
      if (typeof reference !== 'string' || typeof site !== 'string') throw new ApiRequestError(400, 'replicate takes an image (name or root CID) and a site (name or peer id)')
      return await network.transfers.replicate(reference, site)
    }
    return await network.images.call(call, options)
  }

  async similarity (): Promise<{ images: string[], labels: string[], matrix: number[][] }> {
    const matrix = await this.needCore().store.similarityMatrix()
    return { images: matrix.images.map((i) => i.id), labels: matrix.images.map((i) => `${i.name} (${i.layer.toUpperCase()})`), matrix: matrix.ratios }
  }

  async vms (): Promise<unknown[]> { return await this.needNetwork().migrations.vms() }
  async createVm (body: unknown): Promise<unknown> { return await this.needNetwork().migrations.createVm(body) }
  migrations (): { migrations: unknown[], history: unknown[] } {
    return { ...this.needNetwork().migrations.list(), history: this.needCore().state.migrations() }
  }

  async migrate (body: unknown): Promise<unknown> {
    this.needRole('member', 'migrate')
    return await this.needNetwork().migrations.migrate(body)
  }

  async cancelMigration (id: string): Promise<unknown> { return await this.needNetwork().migrations.cancel(id) }
  async updateMigration (id: string, body: unknown): Promise<unknown> { return this.needNetwork().migrations.updateParameters(id, body) }
  async chunkMap (rootCid: string, buckets: number): Promise<ChunkMapView> {
    const network = this.needNetwork()
    const transfer = network.exchange.transfers().find((t) => t.rootCid === rootCid && t.running)
    return await network.images.chunkMap(rootCid, buckets, transfer === undefined ? null : { pending: transfer.chunksTotal - transfer.chunksDone })
  }

  async transfers (): Promise<TransfersResponse> {
    return { transfers: await this.needNetwork().transfers.list() }
  }

  async abandonTransfer (reference: string): Promise<AbandonTransferResponse> {
    return await this.needNetwork().transfers.abandon(reference)
  }

  lanPeers (): LanPeerView[] {
    const core = this.needCore()
    const cutoff = Date.now() - DISCOVERY_MEMORY_MS
    return [...this.discovered.entries()]
      .filter(([, seen]) => seen.lastSeen >= cutoff)
      .sort((a, b) => b[1].lastSeen - a[1].lastSeen)
      .map(([peerId, seen]) => ({ peerId, addrs: seen.addrs, lastSeen: new Date(seen.lastSeen).toISOString(), member: isCurrentMember(core.state.memberByPeerId(peerId)) }))
  }

  private noteDiscovered (peerId: string, addrs: string[]): void {
    if (peerId === this.core?.peerId) return
    this.discovered.set(peerId, { addrs, lastSeen: Date.now() })
    // Bounded: a busy LAN must not grow this without end.
    const cutoff = Date.now() - DISCOVERY_MEMORY_MS
    if (this.discovered.size > 256) for (const [id, seen] of this.discovered) if (seen.lastSeen < cutoff || this.discovered.size > 256) this.discovered.delete(id)
  }

  async vmStats (name: string): Promise<unknown> { return await this.needNetwork().migrations.vmStats(name) }
  async destroyVm (name: string): Promise<unknown> { return await this.needNetwork().migrations.destroyVm(name) }
  async migrationPlan (vm: string, to: string | null, bandwidth?: number): Promise<unknown> { return await this.needNetwork().migrations.plan(vm, to, bandwidth) }
  consensusAudit (query: ConsensusAuditQuery): TextExport {
    const { audit, state } = this.needCore()
    const since = parseTimeQuery('since', query.since)
    const until = parseTimeQuery('until', query.until)
    if (since !== undefined && until !== undefined && until <= since) throw new ApiRequestError(400, `query "until" (${query.until ?? ''}) must be after "since" (${query.since ?? ''})`)
    const limit = parseIntegerQuery('limit', query.limit, 1)
    return audit.export(query.format, { ...(since === undefined ? {} : { since }), ...(until === undefined ? {} : { until }), ...(limit === undefined ? {} : { limit }) }, (creator) => state.member(creator)?.name ?? `member ${creator}`)
  }

  exportLog (query: LogExportQuery): TextExport {
    return this.needNetwork().migrations.exportLog(query)
  }

  importImage (request: ImportImageRequest): { task: string } {
    const network = this.needNetwork()
    const task = `import:${randomBytes(6).toString('hex')}`
    const site = this.siteName()
    const { path, ...options } = request
    this.say(`importing ${path} (${request.layer}) for the API`)
    network.images.call({ method: 'add', args: [path, options] }, {
      signal: AbortSignal.any([this.apiImports.signal, AbortSignal.timeout(24 * 3600 * 1000)]),
      onProgress: (event) => {
        const detail = event.detail as { bytesDone: number, bytesTotal: number, bytesPerSecond: number }
        this.emit({ type: 'progress', task, done: detail.bytesDone, total: detail.bytesTotal, message: `importing ${request.name ?? path}` })
      }
    }).then((info) => {
      const image = info as ImageInfo
      this.emit({ type: 'image', task, site, image: { rootCid: image.rootCid, name: image.name, layer: image.layer, size: image.size, chunkCount: image.chunkCount, public: image.public } })
    }, (err: Error) => {
      this.say(`import of ${path} failed: ${err.message}`)
      this.emit({ type: 'image', task, site, error: err.message })
    })
    return { task }
  }

  hashgraph (limit: number): HashgraphView {
    const { hashgraph, state } = this.needCore()
    const events: HashgraphEventView[] = []
    for (const event of hashgraph.recentEvents()) {
      const body = event.payload
      events.push({
        id: event.id,
        creator: event.creator,
        seq: event.seq,
        selfParent: body.selfParent === null ? null : toHex(body.selfParent),
        otherParent: body.otherParent === null ? null : toHex(body.otherParent),
        round: event.round,
        witness: event.witness,
        famous: event.famous,
        order: event.position,
        timestamp: new Date(Number(event.timestamp / 1_000_000n)).toISOString(),
        transactions: body.transactions.length
      })
    }
    // Rounds in order, creation order within a round: the newest `limit` are the last ones.
    return { members: state.memberList().map((m) => m.name), events: events.slice(-limit) }
  }

  async images (): Promise<ImagesResponse> {
    return await this.needNetwork().images.view()
  }

  async invite (request: InviteRequest): Promise<InviteResponse> {
    const core = this.needCore()
    const network = this.needNetwork()
    // Only a member's ticket can be checked by the others.
    if (this.role() !== 'member') throw new ApiRequestError(409, `only a member can invite, and this site is ${this.role()}`)
    const bootstrap = network.node.getMultiaddrs().map((a) => a.toString())
    const ttlMs = (request.ttlHours ?? 24) * 3600 * 1000
    const code = await createInvite({ genesis: core.genesis, key: core.key, bootstrap, ttlMs })
    this.say(`invite issued (valid ${request.ttlHours ?? 24} h, bootstrap ${bootstrap.join(' ')})`)
    return { code, expiresAt: new Date(Date.now() + ttlMs).toISOString(), bootstrap }
  }

  joinRequests (): JoinRequestView[] {
    return this.needCore().desk.list()
  }

  approve (request: ApproveRequest): SubmittedResponse {
    const { desk } = this.needCore()
    this.needRole('member', 'approve a join request')
    const found = desk.find(request.peer)
    this.say(`approving ${found.name} (${found.peerId})`)
    return { submitted: this.submitTransaction({ type: 'member-add', peerId: found.peerId, name: found.name }) }
  }

  removeMember (request: RemoveRequest): SubmittedResponse {
    const { state } = this.needCore()
    this.needRole('member', 'remove a member')
    const member = this.findMember(request.site)
    if (state.activeMembers().length === 1) throw new ApiRequestError(409, `${member.name} is the swarm's last member`)
    this.say(`removing ${member.name} (${member.peerId})`)
    return { submitted: this.submitTransaction({ type: 'member-remove', peerId: member.peerId }) }
  }

  leave (): SubmittedResponse {
    const self = this.needRole('member', 'leave the swarm')
    return this.removeMember({ site: self.peerId })
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

  // ------------------------------------------------------------ membership views

  /** This site's entry in the replicated state (any role), or undefined while it is joining. */
  private selfMember (): StateMember | undefined {
    const core = this.core
    return core === null ? undefined : core.state.memberByPeerId(core.peerId)
  }

  private role (): SiteRole {
    const self = this.selfMember()
    if (self === undefined) return 'joining'
    const decided = this.core?.hashgraph.lastOrderedRound ?? 0
    // Removal takes effect from a later round: until it is decided the site must keep taking part.
    if (self.untilRound !== null) return self.untilRound > decided ? 'leaving' : 'removed'
    // Founders (round 1) are members from the start; an added site once its first round is decided.
    return self.fromRound > 1 && self.fromRound > decided ? 'approved' : 'member'
  }

  private siteName (): string {
    return this.selfMember()?.name ?? this.core?.join?.name ?? this.core?.peerId ?? '?'
  }

  private needRole (role: SiteRole, action: string): StateMember {
    const current = this.role()
    if (current !== role) throw new ApiRequestError(409, `cannot ${action}: this site is ${current}, not a ${role}`)
    return this.selfMember()!
  }

  /** Current members other than this site. */
  private otherMembers (): StateMember[] {
    const core = this.core
    return core === null ? [] : core.state.activeMembers().filter((m) => m.peerId !== core.peerId)
  }

  /** Who may sync events with us: members, and sites asking to join (they need the history to catch up). */
  private syncPeers (): PeerId[] {
    const core = this.core
    if (core === null) return []
    const peers = this.otherMembers().map((m) => this.peerOf(m.peerId))
    for (const request of core.desk.list()) peers.push(this.peerOf(request.peerId))
    // A joining site syncs from whoever it reached: its bootstrap peers may be members its genesis does not list.
    if (this.role() === 'joining' && this.network !== null) peers.push(...this.network.node.getPeers())
    return peers
  }

  private findMember (reference: string): StateMember {
    const { state } = this.needCore()
    const member = state.activeMembers().find((m) => m.peerId === reference) ?? state.memberByName(reference)
    if (!isCurrentMember(member)) {
      throw new ApiRequestError(404, `no current member ${JSON.stringify(reference)} (members: ${state.activeMembers().map((m) => `${m.name} ${m.peerId}`).join(', ')})`)
    }
    return member
  }

  private peerOf (peerId: string): PeerId {
    let peer = this.peerIds.get(peerId)
    if (peer === undefined) {
      peer = peerIdFromString(peerId)
      this.peerIds.set(peerId, peer)
    }
    return peer
  }

  private submitTransaction (transaction: SwarmTransaction): string {
    if (this.network === null || this.stopping !== null) throw new ApiRequestError(503, 'the agent is stopping')
    return this.submit(encodeTransaction(transaction))
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

/** When a file was last written (ISO), or the epoch if it is gone. */
function fileTime (file: string): string {
  try {
    return statSync(file).mtime.toISOString()
  } catch {
    return new Date(0).toISOString()
  }
}

/** Checkpoint agreements kept in memory for joining sites to confirm (the newest this many checkpoint rounds). */
const AGREEMENTS_KEPT = 16
/** How long a joining site tries to fetch and confirm a checkpoint before it syncs the whole history instead. */
const JOIN_CHECKPOINT_TIMEOUT_MS = 60_000
/** Event-log meta key: the round of the checkpoint a joined site's log starts after. */
const LOG_STARTS_AT_CHECKPOINT = 'starts-at-checkpoint'

/** Multiaddr protocol code of /p2p/<peer id>. */
const P2P_CODE = 421
/** Throughput per member is averaged over this window. */
const THROUGHPUT_WINDOW_MS = 5000

/** How long a peer found by discovery is listed after it was last seen. */
const DISCOVERY_MEMORY_MS = 10 * 60_000

/** Identifies a submitted transaction when it comes back in the order. */
function transactionKey (transaction: Uint8Array): string {
  return createHash('sha256').update(transaction).digest('hex')
}

/** Events the hashgraph holds: per creator, its next sequence number. */
function countEvents (hashgraph: Hashgraph): number {
  return hashgraph.knownCounts().reduce((a, b) => a + b, 0)
}

/** gossipsub's score of a peer (its class has the method; the interface it exports does not). */
function gossipScore (node: SwarmNode, peerId: string): number {
  return (node.services.pubsub as unknown as { getScore: (peer: string) => number }).getScore(peerId)
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

function stateProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/state/1.0.0`
}

function addressBookProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/addresses/1.0.0`
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
