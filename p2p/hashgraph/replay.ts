/**
 * Replays an unsigned hashgraph given as JSON through the live consensus code (signature checks
 * off), for audits and cross-checks against other implementations. Format in ./README.md.
 */
import { createHash } from 'node:crypto'
import { Consensus, type ConsensusEvent } from './consensus.js'
import { EventRejectedError, MissingParentsError, ReplayInputError } from './errors.js'

export interface ReplayInputEvent {
  id: string
  creator: number
  selfParent: string | null
  otherParent: string | null
  timestamp: bigint
  coinBit?: 0 | 1
  signature: Uint8Array
}

export interface ReplayInput {
  members: number
  coinRoundFrequency?: number
  events: ReplayInputEvent[]
}

export interface ReplayEventResult {
  id: string
  round: number
  witness: boolean
  famous: boolean | null
  roundReceived: number | null
  consensusTimestamp: string | null
}

export interface ReplayOutput {
  events: ReplayEventResult[]
  order: string[]
}

/** Parses and validates the replay JSON; every error names the offending event. */
export function parseReplayInput (text: string): ReplayInput {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ReplayInputError(`input is not JSON: ${(err as Error).message}`)
  }
  if (!isRecord(raw)) throw new ReplayInputError('input must be a JSON object with "members" and "events"')
  const members = raw.members
  if (typeof members !== 'number' || !Number.isInteger(members) || members < 1) {
    throw new ReplayInputError(`"members" must be a positive integer, got ${JSON.stringify(members)}`)
  }
  let coinRoundFrequency: number | undefined
  if (raw.coinRoundFrequency !== undefined) {
    const c = raw.coinRoundFrequency
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 2) {
      throw new ReplayInputError(`"coinRoundFrequency" must be an integer >= 2, got ${JSON.stringify(c)}`)
    }
    coinRoundFrequency = c
  }
  if (!Array.isArray(raw.events)) throw new ReplayInputError('"events" must be an array')
  const seen = new Set<string>()
  const events = raw.events.map((item: unknown, index: number): ReplayInputEvent => {
    const where = isRecord(item) && typeof item.id === 'string' ? `event "${item.id}"` : `event #${index}`
    const fail = (message: string): never => { throw new ReplayInputError(`${where}: ${message}`) }
    if (!isRecord(item)) return fail('must be an object')
    if (typeof item.id !== 'string' || item.id.length === 0) return fail('"id" must be a non-empty string')
    if (seen.has(item.id)) fail('duplicate id')
    seen.add(item.id)
    const creator = item.creator
    if (typeof creator !== 'number' || !Number.isInteger(creator) || creator < 0 || creator >= members) {
      fail(`creator ${JSON.stringify(creator)} is out of range (members are 0..${members - 1})`)
    }
    const parent = (key: 'selfParent' | 'otherParent'): string | null => {
      const value = item[key]
      if (value === null || value === undefined) return null
      if (typeof value !== 'string') return fail(`"${key}" must be an event id or null`)
      return value
    }
    const event: ReplayInputEvent = {
      id: item.id,
      creator: creator as number,
      selfParent: parent('selfParent'),
      otherParent: parent('otherParent'),
      timestamp: parseTimestamp(item.timestamp, fail),
      signature: item.signature === undefined || item.signature === null
        ? createHash('sha256').update(item.id, 'utf8').digest()
        : parseHex(item.signature, fail)
    }
    if (item.coinBit !== undefined && item.coinBit !== null) {
      if (item.coinBit !== 0 && item.coinBit !== 1) fail(`"coinBit" must be 0 or 1, got ${JSON.stringify(item.coinBit)}`)
      event.coinBit = item.coinBit as 0 | 1
    }
    return event
  })
  return coinRoundFrequency === undefined ? { members, events } : { members, coinRoundFrequency, events }
}

/** Runs consensus over the events in the given (topological) order. */
export function replay (input: ReplayInput): ReplayOutput {
  const order: string[] = []
  const consensus = new Consensus<undefined>({
    members: input.members,
    // A replay's member set never changes, and it cannot wait for anything: nothing to hold for.
    holdForMembership: false,
    coinRoundFrequency: input.coinRoundFrequency,
    onOrdered: (events) => { for (const e of events) order.push(e.id) }
  })
  const ids = new Set(input.events.map((e) => e.id))
  const inserted: Array<ConsensusEvent<undefined>> = []
  for (const e of input.events) {
    try {
      inserted.push(consensus.insert({ ...e, payload: undefined }))
    } catch (err) {
      if (err instanceof MissingParentsError) {
        const later = err.missing.filter((id) => ids.has(id))
        throw new ReplayInputError(later.length > 0
          ? `event "${e.id}": parent ${later.map((id) => `"${id}"`).join(', ')} does not come before it (events must be in topological order; is there a cycle?)`
          : `event "${e.id}": unknown parent ${err.missing.map((id) => `"${id}"`).join(', ')}`)
      }
      if (err instanceof EventRejectedError) throw new ReplayInputError(`event "${e.id}": ${err.reason}: ${err.message.replace(/^event .* rejected \([^)]*\): /, '')}`)
      throw err
    }
  }
  return {
    events: inserted.map((e) => ({
      id: e.id,
      round: e.round,
      witness: e.witness,
      famous: e.witness ? e.famous : null,
      roundReceived: e.roundReceived,
      consensusTimestamp: e.consensusTimestamp === null ? null : e.consensusTimestamp.toString()
    })),
    order
  }
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function parseTimestamp (value: unknown, fail: (message: string) => never): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) fail(`"timestamp" ${value} is not an integer a JSON number can carry exactly; give it as a decimal string`)
    return BigInt(value)
  }
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value)
  return fail(`"timestamp" must be an integer (nanoseconds), got ${JSON.stringify(value)}`)
}

function parseHex (value: unknown, fail: (message: string) => never): Uint8Array {
  if (typeof value !== 'string' || value.length === 0 || value.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(value)) {
    return fail('"signature" must be a non-empty even-length hex string')
  }
  return Uint8Array.from(Buffer.from(value, 'hex'))
}
