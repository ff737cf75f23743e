/**
 * Runs a member's hashgraph over the swarm: new events are pushed to every connected member over
 * one long-lived stream each (./event-push.ts) and go out on a gossipsub topic when some member
 * is not reached that way; received ones are validated by the engine before gossipsub forwards
 * them (invalid ones lower the sender's score, by either path), and a request/response sync
 * protocol fetches what a member lacks (missing ancestors, or everything after a restart). Events are created only while there is something to order:
 * pending or unordered transactions, or a membership change on its way in. An idle swarm sends nothing but libp2p's own keep-alives.
 */
import { appendFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import * as dagCbor from '@ipld/dag-cbor'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { decodeEvent, EventRejectedError, type Hashgraph } from '../hashgraph/index.js'
import { EventPush, type PushVerdict } from './event-push.js'
import type { SwarmNode } from './node.js'
import { OtherParentChooser } from './other-parent.js'

export interface HashgraphGossipInit {
  node: SwarmNode
  hashgraph: Hashgraph
  swarmId: string
  /**
   * The peers allowed to sync with us: the members (index = creator id), plus whoever the
   * application admits (a site joining by invite). A function, because membership changes.
   */
  peers: () => Iterable<PeerId>
  /**
   * Lower bound between the starts of two own events: bounds the event rate under load (default
   * 2 ms; also HGMIG_MIN_EVENT_INTERVAL_MS).
   */
  minEventIntervalMs?: number
  /** While something awaits ordering, create an event at least this often even if nothing arrives. */
  heartbeatMs?: number
  /** Events per sync response; a member that lacks more asks again. */
  syncBatch?: number
  /**
   * While something awaits ordering, sync with one admitted peer (in turn) this often, whatever
   * gossipsub does: a mesh that pruned a peer (a low score, a partition that healed) cannot keep
   * its events away for long, and consensus does not depend on the mesh being whole.
   */
  antiEntropyMs?: number
  /**
   * An event whose parents are missing waits this long for them to arrive by gossip before a sync
   * with its sender fetches them (default 50 ms).
   */
  parkedSyncDelayMs?: number
  /**
   * How a member answers what it received. 'newest' (default): one own event, on the newest event
   * received. 'rotate': one own event, on the unreferenced event with the highest generation, then
   * the member taken least recently (OtherParentChooser). 'each': one own event per member whose
   * new event arrived since the previous answer (at most maxAnswerEvents, chosen as 'rotate'
   * does), all made durable by one sync and sent together, so that the last of them has every new
   * event in its ancestry — with n = 3 a round needs all three members' events, and one
   * other-parent per answer leaves one of them out until the next. In lock-step with the real
   * engine 'each' orders in 6–7 hops at 3–10 members instead of 11–33 (test/swarm-answer.test.ts);
   * on the shared 2-core bench machine it cut the hops per ordering from ~12.5 to ~8.5 but made
   * each hop ~1.5 × as long (two events to create and check per answer), so latency did not
   * improve there and 10 agents paid 1.8–2.9 × the CPU (bench/RESULTS.md, issue 4, session 6): not
   * the default until measured where each agent has its own cores. Also
   * HGMIG_OTHER_PARENT=newest|rotate|each.
   */
  otherParent?: 'newest' | 'rotate' | 'each'
  /** With otherParent 'each': the most own events one answer creates (default 4). Also HGMIG_ANSWER_EVENTS. */
  maxAnswerEvents?: number
  /**
   * Push own events over a stream per member (default true; see ./event-push.ts); gossipsub then
   * carries them only when some subscribed member has no push stream open. false: gossipsub only
   * (also HGMIG_EVENT_PUSH=off).
   */
  push?: boolean
  /**
   * Forward events received straight from their creator to the gossipsub mesh as well (default
   * false; see relay()). Also HGMIG_GOSSIP_RELAY=all.
   */
  relayCreatorsEvents?: boolean
  onError?: (err: Error) => void
  /**
   * Timestamps of each event's way through this member, for profiling one gossip hop (see
   * HopStage). Without it, the environment variable HGMIG_HOP_TRACE=FILE appends them to FILE as
   * lines `stage eventId epochMs [otherParentId]` (how bench/swarm.ts profiles agent processes).
   */
  onHop?: (stage: HopStage, eventId: string, atMs: number, otherParent: string | null) => void
}

/**
 * received: gossip (or a sync response) handed us another member's event (before validation); inserted: validated and
 * in the hashgraph; creating: this member starts its next event (with the other-parent given);
 * committed: signed, inserted (consensus, and whatever ordering that insertion completed) and
 * committed to SQLite; created: createPendingEvents returned (with the default 'inline' sync
 * mode, after the disk flush on this thread); durable: the promise that it is on disk resolved;
 * published: handed to the push streams (or gossipsub).
 */
export type HopStage = 'received' | 'inserted' | 'creating' | 'committed' | 'created' | 'durable' | 'published'

/**
 * The gossipsub topic a swarm's hashgraph events travel on. Version 2: gossipsub envelopes are
 * unsigned (the events are signed), which version-1 agents would reject as invalid.
 */
export function eventsTopic (swarmId: string): string {
  return `/hgmig/${swarmId}/events/2.0.0`
}

const MAX_MESSAGE_BYTES = 1024 * 1024 + 4096
/** Only to read an event's id: the engine applies its own limits when it receives the event. */
const NO_LIMITS = { maxEventBytes: Infinity, maxTransactions: Infinity }

export class HashgraphGossip {
  readonly topic: string
  readonly syncProtocol: string
  readonly pushProtocol: string
  private readonly init: Required<Omit<HashgraphGossipInit, 'onError' | 'onHop' | 'otherParent'>> & Pick<HashgraphGossipInit, 'onError'>
  private readonly onHop: NonNullable<HashgraphGossipInit['onHop']> | null
  private stopTrace: (() => void) | null = null
  /** Which received event the next own event takes as its other-parent (see other-parent.ts). */
  private readonly otherParents = new OtherParentChooser()
  private readonly answer: 'newest' | 'rotate' | 'each'
  private readonly push: EventPush | null
  /** When the last own event was created (performance.now()). */
  private lastCreated = -Infinity
  /** Cancels the pending tick (a timer or an immediate); null when none is pending. */
  private cancelTick: (() => void) | null = null
  /** An own event is waiting for its sync; what arrives meanwhile is answered by one event after it. */
  private ownEventInFlight = false
  private createWhenDurable = false
  private readonly syncing = new Set<string>()
  /** Per peer: a sync waiting to see whether what it sent us is still parked (see syncIfStillParked). */
  private readonly parkedSyncs = new Map<string, NodeJS.Timeout>()
  private running = false
  private lastAntiEntropy = 0
  /** When the pending timer fires (performance.now()). */
  private timerDue = 0
  private antiEntropyTurn = 0
  private readonly onSubscriptionChange = (): void => { this.schedule(0) }

  constructor (init: HashgraphGossipInit) {
    this.init = {
      minEventIntervalMs: Number(process.env.HGMIG_MIN_EVENT_INTERVAL_MS ?? 2),
      heartbeatMs: 100,
      syncBatch: 2000,
      antiEntropyMs: 1000,
      parkedSyncDelayMs: 50,
      relayCreatorsEvents: process.env.HGMIG_GOSSIP_RELAY === 'all',
      maxAnswerEvents: Number(process.env.HGMIG_ANSWER_EVENTS ?? 4),
      push: process.env.HGMIG_EVENT_PUSH !== 'off',
      ...init
    }
    if (!Number.isFinite(this.init.minEventIntervalMs) || this.init.minEventIntervalMs < 0) throw new RangeError(`minEventIntervalMs must be a number ≥ 0, not ${this.init.minEventIntervalMs} (HGMIG_MIN_EVENT_INTERVAL_MS?)`)
    if (!Number.isSafeInteger(this.init.maxAnswerEvents) || this.init.maxAnswerEvents < 1) throw new RangeError(`maxAnswerEvents must be a positive integer, not ${this.init.maxAnswerEvents} (HGMIG_ANSWER_EVENTS?)`)
    const traceFile = process.env.HGMIG_HOP_TRACE
    if (init.onHop !== undefined) this.onHop = init.onHop
    else if (traceFile !== undefined && traceFile !== '') ({ onHop: this.onHop, stop: this.stopTrace } = fileTracer(traceFile))
    else this.onHop = null
    const answer = init.otherParent ?? process.env.HGMIG_OTHER_PARENT ?? 'newest'
    if (answer !== 'newest' && answer !== 'rotate' && answer !== 'each') throw new RangeError(`otherParent must be 'newest', 'rotate' or 'each', not '${answer}' (HGMIG_OTHER_PARENT?)`)
    this.answer = answer
    this.topic = eventsTopic(init.swarmId)
    this.syncProtocol = `/hgmig/${init.swarmId}/sync/1.0.0`
    this.pushProtocol = `/hgmig/${init.swarmId}/events/push/1.0.0`
    this.push = this.init.push
      ? new EventPush({
        node: init.node,
        protocol: this.pushProtocol,
        admitted: (peer) => this.admitted(peer),
        receive: (peer, bytes) => this.receiveEvent(peer, bytes).verdict,
        maxMessageBytes: MAX_MESSAGE_BYTES
      })
      : null
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    const { node } = this.init
    const pubsub = node.services.pubsub
    pubsub.topicValidators.set(this.topic, (peer, message) => this.validate(peer, message.data))
    pubsub.subscribe(this.topic)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    await node.handle(this.syncProtocol, (stream, connection) => {
      this.serveSync(stream, connection.remotePeer).catch((err: Error) => { stream.abort(err) })
    }, { maxInboundStreams: 8 })
    await this.push?.start()
    this.schedule(0)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.clearTimer()
    for (const timer of this.parkedSyncs.values()) clearTimeout(timer)
    this.parkedSyncs.clear()
    const pubsub = this.init.node.services.pubsub
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.topicValidators.delete(this.topic)
    pubsub.unsubscribe(this.topic)
    await this.init.node.unhandle(this.syncProtocol)
    await this.push?.stop()
    this.stopTrace?.()
  }

  /** Queues a transaction and makes sure an event carrying it is created soon. */
  submit (transaction: Uint8Array): void {
    this.init.hashgraph.submit(transaction)
    this.schedule(0)
  }

  /** Asks every connected member for the events we lack (after a start or a partition). */
  async syncWithAll (): Promise<void> {
    const peers = this.init.node.getPeers().filter((p) => this.admitted(p))
    await Promise.all(peers.map(async (peer) => { await this.syncFrom(peer) }))
  }

  private validate (peer: PeerId, data: Uint8Array): TopicValidatorResult {
    const { verdict, creator } = this.receiveEvent(peer, data)
    if (verdict === 'reject') return TopicValidatorResult.Reject
    if (verdict === 'ignore') return TopicValidatorResult.Ignore
    return creator === null ? TopicValidatorResult.Accept : this.relay(peer, creator)
  }

  /**
   * One event from `peer`, by gossip or push: validated and inserted (or parked), then answered.
   * `creator`: set when it was inserted (null when parked, to be forwarded as it is).
   */
  private receiveEvent (peer: PeerId, data: Uint8Array): { verdict: PushVerdict, creator: number | null } {
    const { hashgraph } = this.init
    const receivedAt = this.onHop === null ? 0 : now()
    try {
      const result = hashgraph.receive(data)
      if (this.onHop !== null) {
        this.onHop('received', result.event.id, receivedAt, null)
        this.onHop('inserted', result.event.id, now(), null)
      }
      if (result.status === 'parked') {
        this.syncIfStillParked(peer)
        return { verdict: 'accept', creator: null }
      }
      this.noteReceived(result.event)
      for (const released of result.released) this.noteReceived(released)
      return { verdict: 'accept', creator: result.event.creator }
    } catch (err) {
      if (err instanceof EventRejectedError) {
        if (!senderAtFault(err)) {
          // We may be the one behind (a member added in an order we have not reached): catch up.
          if (err.reason === 'unknown-creator') void this.syncFrom(peer)
          return { verdict: 'ignore', creator: null }
        }
        return { verdict: 'reject', creator: null }
      }
      this.init.onError?.(err as Error)
      return { verdict: 'ignore', creator: null }
    }
  }

  /**
   * Accept (gossipsub forwards it to its mesh) or Ignore (kept, not forwarded, nobody penalised).
   * An event that came straight from its creator was flood-published by the creator to every
   * member it is connected to: forwarding it again only makes each of them decrypt, decode and
   * drop a duplicate (with n members, n - 2 extra copies per receiver). Relayed events are
   * forwarded as gossipsub would. A member the creator cannot reach gets the event by sync: when
   * the first event that references it arrives (parked, then its parents fetched), or from the
   * periodic anti-entropy sync. (Its neighbours got it straight from the creator, so none relays it.)
   */
  private relay (peer: PeerId, creator: number): TopicValidatorResult {
    if (this.init.relayCreatorsEvents) return TopicValidatorResult.Accept
    const key = this.init.hashgraph.publicKeyOf(creator)
    return key !== undefined && peer.publicKey?.equals(key) === true ? TopicValidatorResult.Ignore : TopicValidatorResult.Accept
  }

  private admitted (peer: PeerId): boolean {
    for (const p of this.init.peers()) if (p.equals(peer)) return true
    return false
  }

  private noteReceived (event: { id: string, creator: number }): void {
    const { hashgraph } = this.init
    if (event.creator === hashgraph.selfId) return
    // The newest-received choice needs no generation (a lookup per event).
    const generation = this.answer === 'newest' ? 0 : hashgraph.status(event.id)?.generation
    if (generation !== undefined) this.otherParents.noteReceived(event.id, event.creator, generation)
    // Answered at once (minEventIntervalMs after our previous event at the soonest): every gossip
    // hop of the chain consensus waits for passes through here.
    this.schedule(0)
  }

  /** Creates an own event now or after `delayMs`, if anything awaits ordering. */
  private schedule (delayMs: number): void {
    if (!this.running) return
    const at = performance.now()
    const wait = Math.max(delayMs, this.lastCreated + this.init.minEventIntervalMs - at, 0)
    // A pending heartbeat must not hold back an answer to an event just received: the earlier wins.
    if (this.cancelTick !== null) {
      if (at + wait >= this.timerDue) return
      this.clearTimer()
    }
    this.timerDue = at + wait
    const fire = (): void => {
      this.cancelTick = null
      this.tick()
    }
    // No wait: the next turn of the event loop (a timer would take at least 1 ms), after the
    // events that arrived in this turn, which one own event then answers.
    if (wait <= 0) {
      const immediate = setImmediate(fire)
      this.cancelTick = () => { clearImmediate(immediate) }
    } else {
      const timeout = setTimeout(fire, wait)
      this.cancelTick = () => { clearTimeout(timeout) }
    }
  }

  private clearTimer (): void {
    this.cancelTick?.()
    this.cancelTick = null
  }

  private tick (): void {
    const { hashgraph } = this.init
    if (!this.running) return
    if (hashgraph.selfId === null) {
      // A site that is not a member (yet) creates nothing, but it asks for what it lacks: gossip
      // brings a joining site only the newest events, whose ancestry it must fetch to catch up.
      this.antiEntropy(false)
      this.schedule(this.init.antiEntropyMs)
      return
    }
    if (!hasWork(hashgraph)) return
    if (this.ownEventInFlight) {
      // Another event now would be published together with the one on its way to the disk (the
      // same sync or the next): one created when that sync returns, with the newest other-parent,
      // reaches the others as soon and carries more; it also paces the event rate by the disk.
      this.createWhenDurable = true
      return
    }
    try {
      const otherParents = this.nextOtherParents()
      const creatingAt = this.onHop === null ? 0 : now()
      // The interval counts from the start of this event, not from the end of its disk flush: a
      // flush that took longer than minEventIntervalMs has paced the rate already, and the events
      // that arrived meanwhile are answered at once (counted from the end, a third of all answers
      // waited 1-2 ms for a timer after each flush: bench/RESULTS.md, issue 4, session 7).
      this.lastCreated = performance.now()
      let committedAt = 0
      const { events, durable } = this.onHop === null
        ? hashgraph.createPendingEvents(otherParents)
        : hashgraph.createPendingEvents(otherParents, () => { committedAt = now() })
      this.ownEventInFlight = true
      if (this.onHop !== null) {
        const createdAt = now()
        for (const [i, event] of events.entries()) {
          this.onHop('creating', event.id, creatingAt, otherParents[i] ?? null)
          this.onHop('committed', event.id, committedAt, null)
          this.onHop('created', event.id, createdAt, null)
        }
      }
      // Sent only once on disk (the sync server holds them back until then, too).
      durable.then(() => {
        this.ownEventInFlight = false
        if (this.onHop !== null) for (const event of events) this.onHop('durable', event.id, now(), null)
        if (!this.running) return
        this.send(events)
        if (this.onHop !== null) for (const event of events) this.onHop('published', event.id, now(), null)
        if (this.createWhenDurable) {
          this.createWhenDurable = false
          this.schedule(0)
        }
      }, (err: Error) => {
        // The engine has halted (a failed sync): nothing more is created. (After stop, the log
        // closing under a pending sync is expected: SQLite syncs on close.)
        this.ownEventInFlight = false
        if (this.running) this.init.onError?.(err)
      })
    } catch (err) {
      // Added, but its first round is still ahead: wait for it quietly.
      if (!(err instanceof EventRejectedError && err.reason === 'not-a-member')) this.init.onError?.(err as Error)
    }
    if (hasWork(hashgraph)) {
      this.schedule(this.init.heartbeatMs)
      this.antiEntropy()
    }
  }

  /**
   * The other-parents of the next answer, one per own event (null: none received yet). See
   * HashgraphGossipInit.otherParent.
   */
  private nextOtherParents (): Array<string | null> {
    const usable = (id: string): boolean => this.init.hashgraph.has(id)
    if (this.answer === 'newest') return [this.otherParents.newestReceived]
    if (this.answer === 'rotate') return [this.otherParents.take(usable)]
    return this.otherParents.takeEach(this.init.maxAnswerEvents, usable)
  }

  /**
   * Own events, durable, to every member: pushed to those with a stream open; on the gossipsub
   * topic as well when some subscribed member has none (it connected a moment ago, or runs an
   * agent without push). A member that gets an event both ways drops the second copy before its
   * signature check.
   */
  private send (events: SignedEventBytes[]): void {
    const pubsub = this.init.node.services.pubsub
    if (this.push !== null) {
      this.push.send(events.map((e) => e.bytes))
      if (pubsub.getSubscribers(this.topic).every((peer) => this.push!.reaches(peer))) return
    }
    for (const event of events) pubsub.publish(this.topic, event.bytes).catch((err: Error) => { this.init.onError?.(err) })
  }

  /**
   * An event arrived before one of its parents: almost always the parent is on its way (another
   * creator's event, sent at the same moment), and a sync now would fetch it a second time, with
   * a new stream and a second signature check. Sync only if something is still parked after
   * parkedSyncDelayMs.
   */
  private syncIfStillParked (peer: PeerId): void {
    const key = peer.toString()
    if (this.parkedSyncs.has(key)) return
    const timer = setTimeout(() => {
      this.parkedSyncs.delete(key)
      if (this.running && this.init.hashgraph.parkedCount > 0) void this.syncFrom(peer)
    }, this.init.parkedSyncDelayMs)
    timer.unref()
    this.parkedSyncs.set(key, timer)
  }

  /** Syncs with the next admitted peer in turn, at most once per antiEntropyMs. */
  private antiEntropy (reportErrors = true): void {
    const now = Date.now()
    if (now - this.lastAntiEntropy < this.init.antiEntropyMs) return
    this.lastAntiEntropy = now
    const peers = this.init.node.getPeers().filter((p) => this.admitted(p))
    if (peers.length === 0) return
    void this.syncFrom(peers[this.antiEntropyTurn++ % peers.length]!, reportErrors)
  }

  /**
   * Fetches, batch by batch, the events `peer` holds and we lack. Stops when a batch is not full,
   * or when a full batch taught us nothing: events we cannot insert yet (their round's member set
   * is not final here, or their parents are still missing) wait in the engine, and asking again
   * at once would only fetch the same batch again.
   */
  private async syncFrom (peer: PeerId, reportErrors = true): Promise<void> {
    const key = peer.toString()
    if (this.syncing.has(key) || !this.admitted(peer)) return
    this.syncing.add(key)
    try {
      for (;;) {
        const known = this.init.hashgraph.knownCounts()
        const stream = await this.init.node.dialProtocol(peer, this.syncProtocol, { signal: AbortSignal.timeout(10_000) })
        const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
        await lp.write(dagCbor.encode({ known }))
        let received = 0
        for (;;) {
          const chunk = (await lp.read({ signal: AbortSignal.timeout(30_000) })).subarray()
          if (chunk.byteLength === 0) break
          received++
          this.acceptSynced(chunk)
        }
        await stream.close()
        if (received < this.init.syncBatch || !learnedAnything(known, this.init.hashgraph.knownCounts())) break
      }
    } catch (err) {
      if (reportErrors) this.init.onError?.(err as Error)
    } finally {
      this.syncing.delete(key)
      this.schedule(0)
    }
  }

  private acceptSynced (bytes: Uint8Array): void {
    const receivedAt = this.onHop === null ? 0 : now()
    // A sync answer often holds events that gossip delivered meanwhile: the engine checks a
    // signature before it finds a duplicate, so drop those first (decoding is ~10 × cheaper).
    if (this.alreadyHave(bytes)) return
    try {
      const result = this.init.hashgraph.receive(bytes)
      this.onHop?.('received', result.event.id, receivedAt, null)
      if (result.status === 'inserted') {
        this.noteReceived(result.event)
        for (const released of result.released) this.noteReceived(released)
      }
    } catch (err) {
      if (!(err instanceof EventRejectedError) || err.reason !== 'duplicate') throw err
    }
  }

  private alreadyHave (bytes: Uint8Array): boolean {
    try {
      return this.init.hashgraph.has(decodeEvent(bytes, NO_LIMITS).id)
    } catch {
      return false // the engine reports what is wrong with it
    }
  }

  private async serveSync (stream: Parameters<Parameters<SwarmNode['handle']>[1]>[0], peer: PeerId): Promise<void> {
    if (!this.admitted(peer)) {
      stream.abort(new Error('not a member of this swarm'))
      return
    }
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
    const request = dagCbor.decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()) as { known?: unknown }
    const known = Array.isArray(request.known) && request.known.every((n) => Number.isSafeInteger(n) && n >= 0) ? request.known as number[] : null
    if (known === null) {
      stream.abort(new Error('malformed sync request'))
      return
    }
    for (const bytes of this.init.hashgraph.eventsAfter(known, this.init.syncBatch)) await lp.write(bytes)
    await lp.write(new Uint8Array(0))
    await stream.close()
  }
}

/**
 * Whether a rejected event proves its sender wrong. A duplicate is normal in gossip; an event
 * from a creator we do not know, or from rounds we have already pruned, may only mean that this
 * site is behind or that the sender is: neither is misbehaviour, so neither may lower a score
 * (a joining site that penalised every event of members it has not learned yet would soon ignore
 * the whole swarm).
 */
function senderAtFault (err: EventRejectedError): boolean {
  return err.reason !== 'duplicate' && err.reason !== 'unknown-creator' && err.reason !== 'ancient'
}

interface SignedEventBytes { bytes: Uint8Array }

function now (): number {
  return performance.timeOrigin + performance.now()
}

/**
 * Buffers hop timestamps and appends them to `file` once a second and at stop, with (at stop) one
 * line `loop-delay p50 p90 p99 mean` in ms: how late this process's event loop ran what was due
 * (perf_hooks.monitorEventLoopDelay, 1 ms resolution), over the whole run.
 */
function fileTracer (file: string): { onHop: NonNullable<HashgraphGossipInit['onHop']>, stop: () => void } {
  let lines: string[] = []
  const flush = (): void => {
    if (lines.length === 0) return
    appendFileSync(file, lines.join(''))
    lines = []
  }
  const timer = setInterval(flush, 1000)
  timer.unref()
  const loopDelay = monitorEventLoopDelay({ resolution: 1 })
  loopDelay.enable()
  return {
    onHop: (stage, eventId, atMs, otherParent) => { lines.push(`${stage} ${eventId} ${atMs.toFixed(3)}${otherParent === null ? '' : ` ${otherParent}`}\n`) },
    stop: () => {
      loopDelay.disable()
      const ms = (ns: number): string => (ns / 1e6).toFixed(3)
      lines.push(`loop-delay ${ms(loopDelay.percentile(50))} ${ms(loopDelay.percentile(90))} ${ms(loopDelay.percentile(99))} ${ms(loopDelay.mean)}\n`)
      clearInterval(timer)
      flush()
    }
  }
}

function learnedAnything (before: readonly number[], after: readonly number[]): boolean {
  return after.length !== before.length || after.some((count, creator) => count !== before[creator])
}

/** Something awaits consensus: transactions, or the first round of a membership change. */
function hasWork (hashgraph: Hashgraph): boolean {
  return hashgraph.hasUnorderedTransactions || hashgraph.awaitingMembershipChange
}
