/**
 * Named errors of the migration engine and its drivers, each with a stable `code` so the agent's
 * API and the CLI can tell them apart without parsing messages.
 */

export class MigrationError extends Error {
  override readonly name: string = 'MigrationError'
  readonly code: string = 'ERR_MIGRATION'
}

function coded (name: string, code: string): typeof MigrationError {
  return class extends MigrationError {
    override readonly name: string = name
    override readonly code: string = code
  }
}

/** A VM reference (name or id) matched nothing at this site. */
export class VmNotFoundError extends MigrationError {
  override readonly name = 'VmNotFoundError'
  override readonly code = 'ERR_VM_NOT_FOUND'
  constructor (readonly reference: string, readonly candidates: string[]) {
    super(`no VM matches "${reference}" at this site${candidates.length > 0 ? `; VMs here: ${candidates.join(', ')}` : '; this site runs no VM'}`)
  }
}

/** A VM name is taken at this site. */
export class VmExistsError extends coded('VmExistsError', 'ERR_VM_EXISTS') {}

/** The VM cannot do what was asked in its current state (e.g. migrate a VM that is already migrating). */
export class VmStateError extends coded('VmStateError', 'ERR_VM_STATE') {}

/** Bad input: an option, a request field or a plan input; the message names what was wrong. */
export class InvalidMigrationInputError extends coded('InvalidMigrationInputError', 'ERR_MIGRATION_INPUT') {}

/** The target recomputed the plan from its own replica and got another hash: the migration is refused. */
export class PlanMismatchError extends MigrationError {
  override readonly name = 'PlanMismatchError'
  override readonly code = 'ERR_PLAN_MISMATCH'
  constructor (readonly expected: string, readonly actual: string, readonly differences: string[]) {
    super(`plan hash mismatch: the source planned ${expected.slice(0, 16)}…, the target computed ${actual.slice(0, 16)}…${differences.length > 0 ? ` (${differences.join('; ')})` : ''}`)
  }
}

/** The other site refused the migration; `reason` is its word for why. */
export class MigrationRefusedError extends MigrationError {
  override readonly name = 'MigrationRefusedError'
  override readonly code = 'ERR_MIGRATION_REFUSED'
  constructor (readonly reason: string) {
    super(`the target refused the migration: ${reason}`)
  }
}

/** Cancelled by a user (or by stop()); before switch-over the VM keeps running at the source. */
export class MigrationCancelledError extends coded('MigrationCancelledError', 'ERR_MIGRATION_CANCELLED') {}

/** The peer at the other end went away (connection reset, process killed, timeout). */
export class PeerLostError extends coded('PeerLostError', 'ERR_MIGRATION_PEER_LOST') {}

/**
 * After the source's commit, the target reports that it dropped its copy before committing (a
 * cancel, a stop or a crash there): the VM is nowhere else, so the source resumes it.
 */
export class TargetDroppedError extends coded('TargetDroppedError', 'ERR_MIGRATION_TARGET_DROPPED') {}

/** The target found memory or disk not byte-identical to what the source sent. */
export class VerificationError extends coded('VerificationError', 'ERR_MIGRATION_VERIFY') {}

/** A message on the migration protocol that does not parse or does not fit the protocol's state. */
export class ProtocolError extends coded('ProtocolError', 'ERR_MIGRATION_PROTOCOL') {}

/** The engine or a driver was used before start() or after stop(). */
export class NotStartedError extends coded('NotStartedError', 'ERR_MIGRATION_NOT_STARTED') {}

/** No migration with this id here. */
export class MigrationNotFoundError extends coded('MigrationNotFoundError', 'ERR_MIGRATION_NOT_FOUND') {}

export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
