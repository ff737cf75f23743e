/**
 * Why an event was refused. Every rejection leaves the hashgraph exactly as it was.
 */
export type RejectReason =
  | 'malformed'
  | 'duplicate'
  | 'unknown-creator'
  | 'not-a-member'
  | 'unknown-parent'
  | 'self-parent-creator-mismatch'
  | 'other-parent-same-creator'
  | 'timestamp-not-after-self-parent'
  | 'bad-signature'
  | 'too-large'
  | 'too-many-transactions'
  | 'ancient'
  | 'membership-pending'

export class EventRejectedError extends Error {
  override readonly name = 'EventRejectedError'
  readonly code = 'ERR_EVENT_REJECTED'
  constructor (readonly reason: RejectReason, readonly eventId: string, detail: string) {
    super(`event ${eventId} rejected (${reason}): ${detail}`)
  }
}

/** The event's parents are not known (yet); the live engine parks such events until they arrive. */
export class MissingParentsError extends EventRejectedError {
  constructor (eventId: string, readonly missing: string[]) {
    super('unknown-parent', eventId, `unknown parent${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`)
  }
}

/**
 * The event's round lies beyond the rounds whose member set is final; the live engine parks it
 * until consensus has ordered far enough (see MEMBERSHIP_DELAY_ROUNDS).
 */
export class MembershipPendingError extends EventRejectedError {
  constructor (eventId: string, readonly round: number, readonly finalThrough: number) {
    super('membership-pending', eventId, `round ${round} is beyond the last round with a final member set (${finalThrough})`)
  }
}

/** A consensus invariant was broken: a bug, or more than a third of the stake is faulty. */
export class ConsensusInvariantError extends Error {
  override readonly name = 'ConsensusInvariantError'
  readonly code = 'ERR_CONSENSUS_INVARIANT'
}

/** Invalid input to the replay command (or to any other whole-graph import). */
export class ReplayInputError extends Error {
  override readonly name = 'ReplayInputError'
  readonly code = 'ERR_REPLAY_INPUT'
}

/** The persisted event log does not match what this engine expects (other swarm, corrupt file). */
export class EventLogError extends Error {
  override readonly name = 'EventLogError'
  readonly code = 'ERR_EVENT_LOG'
}

/**
 * The engine stopped because the ordered output could not be delivered or persisted (a failing
 * disk, an application callback that threw, a replay that diverged). Continuing could skip part of
 * the order, so it refuses all work; restarting replays the log.
 */
export class HashgraphHaltedError extends Error {
  override readonly name = 'HashgraphHaltedError'
  readonly code = 'ERR_HASHGRAPH_HALTED'
  constructor (cause: Error) {
    super(`the hashgraph halted: ${cause.message}; restart the agent to replay its log`, { cause })
  }
}

/**
 * Bytes offered as a hashgraph frontier (a checkpoint's engine part) cannot be used: not the
 * format, damaged (the hash does not match), inconsistent, or not of this swarm. The message
 * names what is wrong; no engine is built from such input.
 */
export class InvalidFrontierError extends Error {
  override readonly name = 'InvalidFrontierError'
  readonly code = 'ERR_INVALID_FRONTIER'
  constructor (detail: string, options?: ErrorOptions) {
    super(`invalid hashgraph frontier: ${detail}`, options)
  }
}
