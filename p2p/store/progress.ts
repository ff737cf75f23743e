/**
 * Progress of a long store operation (import, export, verify, gc), in the shape of js-libp2p's
 * progress events (`{ type, detail }`), delivered through an `onProgress` option.
 */
export type StoreOperation = 'import' | 'export' | 'verify' | 'gc'

export interface ProgressDetail {
  operation: StoreOperation
  bytesDone: number
  bytesTotal: number
  /** Mean rate since the operation started, bytes per second. */
  bytesPerSecond: number
  /** Seconds left at the mean rate; undefined until something was done. */
  etaSeconds: number | undefined
}

export interface StoreProgressEvent {
  type: `store:${StoreOperation}:progress`
  detail: ProgressDetail
}

export interface ProgressOptions {
  onProgress?: (event: StoreProgressEvent) => void
}

/** Listeners get at most one event per interval (plus the first and the last), whatever the chunk size. */
const EMIT_INTERVAL_MS = 100

export class ProgressTracker {
  private readonly started = performance.now()
  private lastEmit = Number.NEGATIVE_INFINITY
  private done = 0

  constructor (
    private readonly operation: StoreOperation,
    private readonly total: number,
    private readonly onProgress: ProgressOptions['onProgress']
  ) {}

  get bytesDone (): number { return this.done }

  advance (bytes: number): void {
    this.done += bytes
    if (this.onProgress === undefined) return
    const now = performance.now()
    if (now - this.lastEmit < EMIT_INTERVAL_MS && this.done < this.total) return
    this.lastEmit = now
    this.emit(now)
  }

  private emit (now: number): void {
    const seconds = (now - this.started) / 1000
    const bytesPerSecond = seconds > 0 ? this.done / seconds : 0
    const etaSeconds = bytesPerSecond > 0 ? (this.total - this.done) / bytesPerSecond : undefined
    this.onProgress?.({
      type: `store:${this.operation}:progress`,
      detail: { operation: this.operation, bytesDone: this.done, bytesTotal: this.total, bytesPerSecond, etaSeconds }
    })
  }
}
