/**
 * Named errors of the chunk exchange, each with a stable `code` (the agent's API and the CLI tell
 * them apart without parsing messages).
 */

export class ExchangeError extends Error {
  override readonly name: string = 'ExchangeError'
  readonly code: string = 'ERR_EXCHANGE'
}

/** Base of the errors that carry nothing but their message: a name and a stable code. */
function coded (name: string, code: string): typeof ExchangeError {
  return class extends ExchangeError {
    override readonly name: string = name
    override readonly code: string = code
  }
}

/** A fetch request (or an init option) is malformed; the message names the field. */
export class InvalidRequestError extends coded('InvalidRequestError', 'ERR_EXCHANGE_INVALID_REQUEST') {}

/** The exchange was used before `start()` or after `stop()`. */
export class ExchangeStoppedError extends coded('ExchangeStoppedError', 'ERR_EXCHANGE_STOPPED') {}

/** Why one source stopped being used for a transfer. */
export interface SourceFailure {
  peer: string
  reason: string
}

/** Chunks are still missing and no usable source holds them (all failed, refused or lied). */
export class NoSourcesLeftError extends ExchangeError {
  override readonly name = 'NoSourcesLeftError'
  override readonly code = 'ERR_EXCHANGE_NO_SOURCES'
  constructor (readonly rootCid: string, readonly chunksMissing: number, readonly failures: SourceFailure[]) {
    super(`${chunksMissing} chunk(s) of ${rootCid} are still missing and no source can send them` +
      (failures.length > 0 ? `: ${failures.map((f) => `${f.peer}: ${f.reason}`).join('; ')}` : ': no source holds them'))
  }
}

/** Every chunk arrived and was verified, but they do not build the requested root: the manifest was wrong. */
export class ManifestMismatchError extends coded('ManifestMismatchError', 'ERR_EXCHANGE_MANIFEST_MISMATCH') {}

/** The same root is already being fetched in this process. */
export class TransferRunningError extends coded('TransferRunningError', 'ERR_EXCHANGE_TRANSFER_RUNNING') {}

/** The transfer was cancelled through its AbortSignal; its state is kept for a later resume. */
export class TransferAbortedError extends coded('AbortError', 'ABORT_ERR') {}

/** The remote end broke the block protocol (oversized or malformed message). */
export class ProtocolError extends coded('ProtocolError', 'ERR_EXCHANGE_PROTOCOL') {}
