/**
 * Checkpoints: a restarted agent or a joining site starts from the hashgraph's frontier and the
 * replicated state at a decided round, instead of replaying (or syncing) the whole history.
 *
 * - Every CHECKPOINT_INTERVAL_ROUNDS decided rounds (rounds R with R % interval = 0, the same
 *   rounds at every site) each member computes the round's *agreement*: its consensus snapshot
 *   (event and transaction positions, running hash of the order) plus the state hash and the
 *   SHA-256 of the state snapshot's bytes. All of it is a function of the order, so every honest
 *   member computes the same agreement, and its digest is what a joining site compares.
 * - At the next quiet point (the engine between insertions, still at round R) the agent writes a
 *   checkpoint: that agreement, the engine's frontier (Hashgraph.exportFrontier) and the state
 *   snapshot, in a versioned dag-cbor envelope with the SHA-256 of its body; the file adds the event
 *   log's position at that moment. Written atomically (temporary file, fsync, rename, fsync of the
 *   directory); the newest CHECKPOINTS_KEPT are kept (plus the one a joined site's log starts at).
 * - The frontier itself is *not* the same at every member (it holds what each has received of the
 *   rounds not yet decided), so members agree on the agreement digest, not on the checkpoint's
 *   bytes; the frontier is checked for consistency with the agreement and every event in it for its
 *   hash and signature.
 */
import { createHash } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import type { PeerId } from '@libp2p/interface'
import { readFrontier, syncDirectory, type ConsensusSnapshot, type FrontierSummary } from '../hashgraph/index.js'
import { sendRequest, type SwarmNode } from '../swarm/index.js'
import { CheckpointNotConfirmedError, InvalidCheckpointError, InvalidStateSnapshotError } from './errors.js'
import { SwarmState } from './state.js'

/**
 * Decided rounds between two checkpoints. 100: a restart then replays at most ~100 rounds of
 * events (at n members and one or two events per member per round, a few hundred to a few thousand
 * events, well under a second) whatever the log's length, while writing a checkpoint — the
 * frontier is ~27 rounds of events, a few hundred kB to a few MB — costs about what ordering a
 * handful of rounds does, i.e. ~1–3 % of the ordering work spread over 100 rounds. The environment
 * variable HGMIG_CHECKPOINT_ROUNDS overrides it (tests use a small interval).
 */
export const DEFAULT_CHECKPOINT_INTERVAL_ROUNDS = 100
export const CHECKPOINTS_KEPT = 2
export const CHECKPOINT_FORMAT = 'hgmig/checkpoint'
export const CHECKPOINT_VERSION = 1
/** A frontier (MAX_FRONTIER_BYTES) plus a state snapshot: checkpoints above this are refused. */
export const MAX_CHECKPOINT_BYTES = 320 * 1024 * 1024
/** Bytes per answer of the checkpoint protocol (the request/response helper bounds each message). */
export const CHECKPOINT_CHUNK_BYTES = 256 * 1024

export function checkpointInterval (): number {
  const text = process.env.HGMIG_CHECKPOINT_ROUNDS
  if (text === undefined || text === '') return DEFAULT_CHECKPOINT_INTERVAL_ROUNDS
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidCheckpointError(`HGMIG_CHECKPOINT_ROUNDS must be a positive integer, got ${JSON.stringify(text)}`)
  return value
}

/** What every honest member computes identically for a checkpoint round. */
export interface CheckpointAgreement {
  round: number
  eventPosition: number
  transactionPosition: number
  /** Hex running hash of the order through `round`. */
  runningHash: string
  /** The replicated state's hash (SwarmState.stateHash) after the round. */
  stateHash: string
  /** Hex SHA-256 of SwarmState.snapshot() after the round. */
  stateSnapshotHash: string
}

export function agreementOf (snapshot: ConsensusSnapshot, state: SwarmState, stateBytes: Uint8Array): CheckpointAgreement {
  return {
    round: snapshot.round,
    eventPosition: snapshot.eventPosition,
    transactionPosition: snapshot.transactionPosition,
    runningHash: snapshot.runningHash,
    stateHash: state.stateHash,
    stateSnapshotHash: sha256Hex(stateBytes)
  }
}

/** The hex digest members compare: SHA-256 of the agreement's canonical dag-cbor. */
export function agreementDigest (agreement: CheckpointAgreement): string {
  return sha256Hex(dagCbor.encode(agreement))
}

export interface Checkpoint {
  agreement: CheckpointAgreement
  /** Hashgraph.exportFrontier()'s bytes. */
  frontier: Uint8Array
  /** SwarmState.snapshot()'s bytes. */
  state: Uint8Array
}

/** The portable checkpoint (what a member serves): envelope { format, version, body, sha256(body) }. */
export function encodeCheckpoint (checkpoint: Checkpoint): Uint8Array {
  const body = dagCbor.encode({ agreement: checkpoint.agreement, frontier: checkpoint.frontier, state: checkpoint.state })
  return dagCbor.encode({ format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, body, sha256: sha256(body) })
}

export interface DecodedCheckpoint extends Checkpoint {
  frontierSummary: FrontierSummary
  /** The restored state (checked against the agreement). */
  restoredState: SwarmState
}

/**
 * Decodes a checkpoint and checks it whole: envelope, hash, the agreement's fields, the frontier
 * (InvalidFrontierError's checks, surfaced as InvalidCheckpointError) against the agreement, and the
 * state snapshot against its hash, the state hash and the transaction position.
 */
export function decodeCheckpoint (bytes: Uint8Array): DecodedCheckpoint {
  const fail = (detail: string, cause?: unknown): never => { throw new InvalidCheckpointError(detail, cause === undefined ? undefined : { cause }) }
  if (bytes.byteLength > MAX_CHECKPOINT_BYTES) fail(`${bytes.byteLength} bytes, more than the limit of ${MAX_CHECKPOINT_BYTES}`)
  const envelope = decodeMap(bytes, 'the envelope', fail)
  if (envelope.format !== CHECKPOINT_FORMAT) fail(`format ${JSON.stringify(envelope.format)}, expected ${CHECKPOINT_FORMAT}`)
  if (envelope.version !== CHECKPOINT_VERSION) fail(`version ${JSON.stringify(envelope.version)}, this build reads version ${CHECKPOINT_VERSION}`)
  if (!(envelope.body instanceof Uint8Array) || !(envelope.sha256 instanceof Uint8Array)) fail('body and sha256 must be bytes')
  const body = envelope.body as Uint8Array
  if (!Buffer.from(sha256(body)).equals(envelope.sha256 as Uint8Array)) fail(`damaged: its body hashes to ${sha256Hex(body).slice(0, 16)}…, the envelope says ${Buffer.from(envelope.sha256 as Uint8Array).toString('hex').slice(0, 16)}…`)
  const decoded = decodeMap(body, 'the body', fail)
  const agreement = checkAgreement(decoded.agreement, fail)
  if (!(decoded.frontier instanceof Uint8Array) || !(decoded.state instanceof Uint8Array)) fail('frontier and state must be bytes')
  const frontier = decoded.frontier as Uint8Array
  const state = decoded.state as Uint8Array
  let frontierSummary: FrontierSummary
  try {
    frontierSummary = readFrontier(frontier)
  } catch (err) {
    return fail((err as Error).message, err)
  }
  for (const key of ['round', 'eventPosition', 'transactionPosition', 'runningHash'] as const) {
    if (frontierSummary[key] !== agreement[key]) fail(`the frontier's ${key} (${frontierSummary[key]}) is not the agreement's (${agreement[key]})`)
  }
  if (sha256Hex(state) !== agreement.stateSnapshotHash) fail(`the state snapshot hashes to ${sha256Hex(state).slice(0, 16)}…, the agreement says ${agreement.stateSnapshotHash.slice(0, 16)}…`)
  let restoredState: SwarmState
  try {
    restoredState = SwarmState.fromSnapshot(state)
  } catch (err) {
    if (!(err instanceof InvalidStateSnapshotError)) throw err
    return fail(err.message, err)
  }
  if (restoredState.stateHash !== agreement.stateHash) fail(`the state snapshot's state hash ${restoredState.stateHash.slice(0, 16)}… is not the agreement's ${agreement.stateHash.slice(0, 16)}…`)
  if (restoredState.nextPosition !== agreement.transactionPosition) fail(`the state applied ${restoredState.nextPosition} transactions, the order through round ${agreement.round} holds ${agreement.transactionPosition}`)
  return { agreement, frontier, state, frontierSummary, restoredState }
}

function decodeMap (bytes: Uint8Array, what: string, fail: (detail: string, cause?: unknown) => never): Record<string, unknown> {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    return fail(`${what} is not dag-cbor (${(err as Error).message})`, err)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) fail(`${what} must be a map`)
  return value as Record<string, unknown>
}

function checkAgreement (value: unknown, fail: (detail: string) => never): CheckpointAgreement {
  if (value === null || typeof value !== 'object') return fail('agreement must be a map')
  const a = value as Record<string, unknown>
  const int = (key: string): number => Number.isSafeInteger(a[key]) && (a[key] as number) >= 0 ? a[key] as number : fail(`agreement.${key} must be an integer >= 0, got ${JSON.stringify(a[key])}`)
  const hex = (key: string): string => typeof a[key] === 'string' && /^[0-9a-f]{64}$/.test(a[key]) ? a[key] : fail(`agreement.${key} must be 64 hex digits, got ${JSON.stringify(a[key])}`)
  return { round: int('round'), eventPosition: int('eventPosition'), transactionPosition: int('transactionPosition'), runningHash: hex('runningHash'), stateHash: hex('stateHash'), stateSnapshotHash: hex('stateSnapshotHash') }
}

// ------------------------------------------------------------------ files

export interface StoredCheckpoint {
  round: number
  file: string
  /** The portable checkpoint's bytes (what the checkpoint protocol serves). */
  bytes: Uint8Array
  /** Events the log held when it was written; 0: the log starts after it (the site joined from it). */
  logPosition: number
}

const FILE_FORMAT = 'hgmig/checkpoint-file'
const FILE_PATTERN = /^checkpoint-(\d{12})\.cbor$/

/**
 * The checkpoints of one data directory (`<data>/checkpoints/checkpoint-<round>.cbor`). A file is
 * dag-cbor { format, checkpoint: bytes, logPosition, sha256 of both }: damage anywhere is found
 * before anything is used.
 */
export class CheckpointStore {
  constructor (readonly directory: string) {}

  /** Rounds of the files present, newest first (whether valid or not). */
  rounds (): number[] {
    let names: string[]
    try {
      names = readdirSync(this.directory)
    } catch {
      return []
    }
    return names.map((n) => FILE_PATTERN.exec(n)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => b - a)
  }

  fileOf (round: number): string {
    return join(this.directory, `checkpoint-${String(round).padStart(12, '0')}.cbor`)
  }

  /** Reads and checks one file (the outer hash; decodeCheckpoint checks the checkpoint inside). */
  read (round: number): StoredCheckpoint {
    const file = this.fileOf(round)
    let raw: Uint8Array
    try {
      raw = readFileSync(file)
    } catch (err) {
      throw new InvalidCheckpointError(`cannot read ${file}: ${(err as Error).message}`)
    }
    let value: Record<string, unknown>
    try {
      value = dagCbor.decode(raw)
    } catch (err) {
      throw new InvalidCheckpointError(`${file} is not dag-cbor (${(err as Error).message})`)
    }
    if (value === null || typeof value !== 'object' || value.format !== FILE_FORMAT) throw new InvalidCheckpointError(`${file} is not a checkpoint file`)
    const { checkpoint, logPosition } = value
    if (!(checkpoint instanceof Uint8Array) || !Number.isSafeInteger(logPosition) || (logPosition as number) < 0 || !(value.sha256 instanceof Uint8Array)) throw new InvalidCheckpointError(`${file}: fields missing or of the wrong type`)
    if (!Buffer.from(fileHash(checkpoint, logPosition as number)).equals(value.sha256)) throw new InvalidCheckpointError(`${file} is damaged (its hash does not match)`)
    return { round, file, bytes: checkpoint, logPosition: logPosition as number }
  }

  /**
   * Writes a checkpoint atomically (temporary file, fsync, rename, fsync of the directory) and
   * drops the older ones beyond CHECKPOINTS_KEPT — never the one a joined site's log starts at
   * (logPosition 0): without it, that log cannot be replayed.
   */
  save (round: number, bytes: Uint8Array, logPosition: number): string {
    mkdirSync(this.directory, { recursive: true })
    const file = this.fileOf(round)
    const temporary = `${file}.tmp-${process.pid}`
    const content = dagCbor.encode({ format: FILE_FORMAT, checkpoint: bytes, logPosition, sha256: fileHash(bytes, logPosition) })
    const fd = openSync(temporary, 'w', 0o600)
    try {
      for (let at = 0; at < content.byteLength;) at += writeSync(fd, content, at)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(temporary, file)
    syncDirectory(this.directory)
    this.prune()
    return file
  }

  private prune (): void {
    const rounds = this.rounds()
    for (const round of rounds.slice(CHECKPOINTS_KEPT)) {
      let base = false
      try { base = this.read(round).logPosition === 0 } catch { /* damaged: not worth keeping */ }
      if (!base) rmSync(this.fileOf(round), { force: true })
    }
  }
}

function fileHash (checkpoint: Uint8Array, logPosition: number): Uint8Array {
  return createHash('sha256').update(checkpoint).update(`|logPosition=${logPosition}`).digest()
}

function sha256 (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}

function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

// ------------------------------------------------------------------ protocol

export function checkpointProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/checkpoint/1.0.0`
}

/** Largest answer of the checkpoint protocol: a chunk plus its framing. */
export const CHECKPOINT_MAX_MESSAGE_BYTES = CHECKPOINT_CHUNK_BYTES + 4096

export type CheckpointRequest =
  | { type: 'latest' }
  | { type: 'chunk', round: number, offset: number }
  | { type: 'agreement', round: number }

export interface LatestCheckpoint { round: number, size: number, sha256: string, agreementDigest: string }

/** The serving side: what a member answers (the agent registers it with handleRequests). */
export function answerCheckpointRequest (request: unknown, source: {
  latest: () => StoredCheckpoint | null
  agreement: (round: number) => CheckpointAgreement | undefined
  /** May `peer` have the checkpoint's data (the state)? Agreements (hashes) go to anyone on the swarm's network. */
  mayFetch: boolean
}): unknown {
  const r = request as Partial<Record<string, unknown>> | null
  if (r === null || typeof r !== 'object') throw new Error('malformed checkpoint request')
  if (r.type === 'agreement') {
    if (!Number.isSafeInteger(r.round)) throw new Error('malformed checkpoint request: round')
    const agreement = source.agreement(r.round as number)
    return { digest: agreement === undefined ? null : agreementDigest(agreement) }
  }
  if (!source.mayFetch) throw new Error('only members and sites asking to join may fetch checkpoints')
  const latest = source.latest()
  if (r.type === 'latest') {
    if (latest === null) return null
    const decoded = dagCbor.decode(latest.bytes) as { body: Uint8Array }
    const agreement = (dagCbor.decode(decoded.body) as { agreement: CheckpointAgreement }).agreement
    return { round: latest.round, size: latest.bytes.byteLength, sha256: sha256Hex(latest.bytes), agreementDigest: agreementDigest(agreement) } satisfies LatestCheckpoint
  }
  if (r.type === 'chunk') {
    if (!Number.isSafeInteger(r.round) || !Number.isSafeInteger(r.offset) || (r.offset as number) < 0) throw new Error('malformed checkpoint request: round, offset')
    if (latest === null || latest.round !== r.round) throw new Error(`no checkpoint of round ${String(r.round)} here (any more)`)
    return { bytes: latest.bytes.subarray(r.offset as number, (r.offset as number) + CHECKPOINT_CHUNK_BYTES) }
  }
  throw new Error(`unknown checkpoint request type ${JSON.stringify(r.type)}`)
}

export interface FetchedCheckpoint {
  checkpoint: DecodedCheckpoint
  bytes: Uint8Array
  /** Who served it, and who confirmed its agreement digest. */
  from: string
  confirmedBy: string[]
  /** Members the confirmation counted on (from the checkpoint's state) and f = floor((n - 1) / 3). */
  members: number
  f: number
}

/** Bytes a joining site fetched, for the benchmark. */
export interface FetchStats { bytes: number, requests: number }

/**
 * Fetches `peer`'s newest checkpoint, checks it whole (decodeCheckpoint), and asks the members it
 * lists (those connected) for their agreement digest of its round until f + 1 of them (the server
 * counts as one) report the checkpoint's digest, f = floor((n - 1) / 3) of the n members in the
 * checkpoint's state. Throws CheckpointNotConfirmedError if f + 1 members report another digest
 * for the round or `signal` ends first; InvalidCheckpointError for a checkpoint that does not hold
 * together. Returns null if the peer has no checkpoint.
 */
export async function fetchCheckpoint (node: SwarmNode, peer: PeerId, swarmId: string, options: {
  signal: AbortSignal
  /** Connected peers to ask for their digest (called again while waiting for confirmations). */
  candidates: () => PeerId[]
  stats?: FetchStats
  say?: (line: string) => void
}): Promise<FetchedCheckpoint | null> {
  const protocol = checkpointProtocol(swarmId)
  const stats = options.stats ?? { bytes: 0, requests: 0 }
  const ask = async (target: PeerId, request: CheckpointRequest): Promise<unknown> => {
    stats.requests++
    return await sendRequest(node, target, protocol, request, { signal: options.signal, maxResponseBytes: CHECKPOINT_MAX_MESSAGE_BYTES })
  }
  const latest = await ask(peer, { type: 'latest' }) as LatestCheckpoint | null
  if (latest === null) return null
  if (!Number.isSafeInteger(latest.round) || !Number.isSafeInteger(latest.size) || latest.size <= 0 || latest.size > MAX_CHECKPOINT_BYTES || typeof latest.sha256 !== 'string') {
    throw new InvalidCheckpointError(`${peer.toString()} describes its checkpoint as ${JSON.stringify(latest)}`)
  }
  const bytes = new Uint8Array(latest.size)
  for (let offset = 0; offset < latest.size;) {
    const chunk = await ask(peer, { type: 'chunk', round: latest.round, offset }) as { bytes?: unknown }
    if (!(chunk?.bytes instanceof Uint8Array) || chunk.bytes.byteLength === 0 || offset + chunk.bytes.byteLength > latest.size) throw new InvalidCheckpointError(`${peer.toString()} sent a bad chunk at offset ${offset}`)
    bytes.set(chunk.bytes, offset)
    offset += chunk.bytes.byteLength
    stats.bytes += chunk.bytes.byteLength
  }
  if (sha256Hex(bytes) !== latest.sha256) throw new InvalidCheckpointError(`the checkpoint of round ${latest.round} from ${peer.toString()} does not hash to what it announced`)
  const checkpoint = decodeCheckpoint(bytes)
  if (checkpoint.agreement.round !== latest.round) throw new InvalidCheckpointError(`announced as round ${latest.round}, holds round ${checkpoint.agreement.round}`)
  const digest = agreementDigest(checkpoint.agreement)
  const members = new Set(checkpoint.restoredState.activeMembers().map((m) => m.peerId))
  const n = members.size
  const f = Math.floor((n - 1) / 3)
  const confirmed = new Set<string>()
  const disputed = new Set<string>()
  const asked = new Set<string>()
  for (;;) {
    const round = [...options.candidates(), peer].filter((p) => members.has(p.toString()) && !asked.has(p.toString()))
    await Promise.all(round.map(async (target) => {
      const id = target.toString()
      try {
        const answer = await ask(target, { type: 'agreement', round: latest.round }) as { digest?: unknown }
        asked.add(id)
        if (answer?.digest === digest) confirmed.add(id)
        else if (typeof answer?.digest === 'string') disputed.add(id)
        // null: that member has no agreement for the round (it started later): ask the others.
      } catch {
        // Unreachable for now: asked again in the next pass.
      }
    }))
    if (confirmed.size >= f + 1) break
    if (disputed.size >= f + 1) {
      throw new CheckpointNotConfirmedError(`the checkpoint of round ${latest.round} from ${peer.toString()} has agreement digest ${digest.slice(0, 16)}…, but ${disputed.size} members report another (${[...disputed].join(', ')})`)
    }
    if (options.signal.aborted) {
      throw new CheckpointNotConfirmedError(`the checkpoint of round ${latest.round} from ${peer.toString()} was confirmed by ${confirmed.size} of the ${f + 1} members needed (n = ${n}, f = ${f}); ${disputed.size} reported another digest`)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return { checkpoint, bytes, from: peer.toString(), confirmedBy: [...confirmed], members: n, f }
}
