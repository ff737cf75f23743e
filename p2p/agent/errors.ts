/** The data directory or the command line does not describe a usable agent (no swarm, bad genesis, not a member). */
export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError'
  readonly code = 'ERR_AGENT_CONFIG'
}

/** Another agent process holds the data directory. */
export class AgentAlreadyRunningError extends Error {
  override readonly name = 'AgentAlreadyRunningError'
  readonly code = 'ERR_AGENT_ALREADY_RUNNING'
  constructor (readonly dataDir: string, readonly pid: number | undefined) {
    super(`another agent${pid === undefined ? '' : ` (pid ${pid})`} is already running on data directory ${dataDir}; stop it first, or use another --data`)
  }
}

/** `hgmig swarm create` on a data directory that already has a swarm. */
export class SwarmExistsError extends Error {
  override readonly name = 'SwarmExistsError'
  readonly code = 'ERR_SWARM_EXISTS'
}

/** The libp2p host could not listen (address in use or not available). */
export class ListenAddressError extends Error {
  override readonly name = 'ListenAddressError'
  readonly code = 'ERR_LISTEN_ADDRESS'
}

/** The consensus order handed to the state machine skipped or repeated a position: applying more would diverge. */
export class OrderGapError extends Error {
  override readonly name = 'OrderGapError'
  readonly code = 'ERR_ORDER_GAP'
  constructor (readonly expected: number, readonly received: number) {
    super(`the consensus order jumped from position ${expected} to ${received}: the replicated state stops here rather than diverge from the swarm`)
  }
}

/** Bytes offered as a replicated-state snapshot do not describe a state (the message names the field). */
export class InvalidStateSnapshotError extends Error {
  override readonly name = 'InvalidStateSnapshotError'
  readonly code = 'ERR_INVALID_STATE_SNAPSHOT'
  constructor (detail: string) {
    super(`invalid state snapshot: ${detail}`)
  }
}

/** Bytes offered as a checkpoint (a file of this site, or a member's answer) cannot be used; the message says why. */
export class InvalidCheckpointError extends Error {
  override readonly name = 'InvalidCheckpointError'
  readonly code = 'ERR_INVALID_CHECKPOINT'
  constructor (detail: string, options?: ErrorOptions) {
    super(`invalid checkpoint: ${detail}`, options)
  }
}

/** A checkpoint fetched from a member was not confirmed by enough members (f + 1) for its round. */
export class CheckpointNotConfirmedError extends Error {
  override readonly name = 'CheckpointNotConfirmedError'
  readonly code = 'ERR_CHECKPOINT_NOT_CONFIRMED'
}

/** `abandon` of a reference that names neither a transfer here nor an announced image. */
export class TransferImageNotFoundError extends Error {
  override readonly name = 'TransferImageNotFoundError'
  readonly code = 'ERR_TRANSFER_IMAGE_NOT_FOUND'
}

/** `abandon` of an image that has no transfer to abandon at this site (never fetched here, or done). */
export class TransferNotFoundError extends Error {
  override readonly name = 'TransferNotFoundError'
  readonly code = 'ERR_TRANSFER_NOT_FOUND'
}

/** A fetch whose transfer an operator abandoned while it ran. */
export class TransferAbandonedError extends Error {
  override readonly name = 'TransferAbandonedError'
  readonly code = 'ERR_TRANSFER_ABANDONED'
}
