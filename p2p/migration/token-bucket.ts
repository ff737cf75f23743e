/**
 * Bandwidth shaping: a token bucket for one flow, and a fair shaper that divides one link's rate
 * among the migrations using it (deficit round-robin over the flows that are waiting).
 */
import { MigrationCancelledError } from './errors.js'

/** Largest grant in one piece: a big write waits for its bytes in slices, so others interleave. */
const SLICE_BYTES = 64 * 1024

function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason ?? new MigrationCancelledError('cancelled')); return }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason ?? new MigrationCancelledError('cancelled')) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** A token bucket; rate 0 = unlimited. The rate can change at any time (QEMU's max-bandwidth can). */
export class TokenBucket {
  private tokens = 0
  private last = performance.now()

  constructor (private rate: number, private readonly burstSeconds = 0.05) {}

  setRate (rate: number): void {
    this.refill()
    this.rate = rate
    this.tokens = Math.min(this.tokens, this.capacity())
  }

  get bytesPerSecond (): number { return this.rate }

  private capacity (): number {
    return Math.max(this.rate * this.burstSeconds, SLICE_BYTES)
  }

  private refill (): void {
    const now = performance.now()
    if (this.rate > 0) this.tokens = Math.min(this.capacity(), this.tokens + (now - this.last) / 1000 * this.rate)
    this.last = now
  }

  /** Waits until `bytes` may be sent. */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    let left = bytes
    while (left > 0) {
      if (this.rate <= 0) return
      this.refill()
      const piece = Math.min(left, SLICE_BYTES)
      if (this.tokens >= piece) {
        this.tokens -= piece
        left -= piece
        continue
      }
      // At most 100 ms at a time: a rate raised meanwhile (QEMU's max-bandwidth can be) applies at once.
      await sleep(Math.min(100, Math.max(1, (piece - this.tokens) / this.rate * 1000)), signal)
    }
  }
}

interface Waiter {
  bytes: number
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * One link's bandwidth shared fairly: bytes go, a slice at a time, to the waiting flow (migration)
 * that has been served least (least attained service, in bytes), so N busy migrations each get
 * 1/N of the rate whatever the size of their writes. A flow that was idle re-enters level with the
 * least-served busy one rather than with a credit for the time it was idle. Rate 0 = unlimited.
 */
export class FairShaper {
  private readonly bucket: TokenBucket
  private readonly queues = new Map<string, Waiter[]>()
  private readonly granted = new Map<string, number>()
  /** Bytes served per flow, on the shaper's virtual clock (what picks the next flow). */
  private readonly served = new Map<string, number>()
  private pumping = false

  constructor (rate: number) {
    this.bucket = new TokenBucket(rate)
  }

  setRate (rate: number): void { this.bucket.setRate(rate) }

  /** Bytes granted per flow so far (fairness is checked on these). */
  grants (): Map<string, number> { return new Map(this.granted) }

  async take (flow: string, bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.bucket.bytesPerSecond <= 0) {
      this.granted.set(flow, (this.granted.get(flow) ?? 0) + bytes)
      return
    }
    for (let left = bytes; left > 0; left -= SLICE_BYTES) {
      // A listener added to a signal that already fired never runs: the rest of a cancelled write must not take the link.
      signal?.throwIfAborted()
      const slice = Math.min(left, SLICE_BYTES)
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          const q = this.queues.get(flow)
          const i = q?.indexOf(waiter) ?? -1
          if (i >= 0) {
            q?.splice(i, 1)
            reject(signal?.reason ?? new MigrationCancelledError('cancelled'))
          }
        }
        // The listener goes with the grant: a long migration takes many slices on one signal.
        const waiter: Waiter = {
          bytes: slice,
          resolve: () => { signal?.removeEventListener('abort', onAbort); resolve() },
          reject
        }
        let queue = this.queues.get(flow)
        if (queue === undefined) {
          queue = []
          this.queues.set(flow, queue)
          const busy = [...this.queues.keys()].filter((f) => f !== flow).map((f) => this.served.get(f) ?? 0)
          if (busy.length > 0) this.served.set(flow, Math.max(this.served.get(flow) ?? 0, Math.min(...busy)))
        }
        queue.push(waiter)
        signal?.addEventListener('abort', onAbort, { once: true })
        void this.pump()
      })
    }
  }

  private async pump (): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      for (;;) {
        // Let the flows just served queue their next slice before choosing; a flow with nothing
        // queued even then is idle, and leaves (it re-enters levelled).
        await new Promise((resolve) => setImmediate(resolve))
        for (const [f, q] of this.queues) if (q.length === 0) this.queues.delete(f)
        let flow: string | undefined
        for (const f of this.queues.keys()) if (flow === undefined || (this.served.get(f) ?? 0) < (this.served.get(flow) ?? 0)) flow = f
        if (flow === undefined) return
        const queue = this.queues.get(flow) as Waiter[]
        const waiter = queue.shift() as Waiter
        await this.bucket.take(waiter.bytes)
        this.served.set(flow, (this.served.get(flow) ?? 0) + waiter.bytes)
        this.granted.set(flow, (this.granted.get(flow) ?? 0) + waiter.bytes)
        waiter.resolve()
      }
    } finally {
      this.pumping = false
    }
  }
}

export { sleep }

export interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (reason: unknown) => void
}

/** A promise with its resolvers (Promise.withResolvers is ES2024; the project's lib is ES2023). */
export function deferred<T = void> (): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (reason: unknown) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

/** The least a migration may have in flight on its disk and memory streams (bytes). */
export const MIN_DELIVERY_WINDOW = 1024 * 1024
/** The target reports what its driver has read once this much more came in (bytes). */
export const DELIVERY_REPORT_STEP = 128 * 1024
/** In flight beyond the link's delivery rate × this queues (seconds): the window's size. */
const DELIVERY_QUEUE_SECONDS = 0.08
/** Delivery-rate samples span at least this long (ms), and the window follows the fastest of the last few. */
const DELIVERY_SAMPLE_MS = 200
const DELIVERY_SAMPLES = 10

/**
 * Bytes a migration's source has written on its disk and memory streams but the target's driver
 * has not yet read (the target reports them read: `delivered`), kept under a window of about
 * `DELIVERY_QUEUE_SECONDS` at the delivery rate. Without it a write returned as soon as yamux
 * (4-16 MiB windows per stream) and the kernel took it: at 12.5 MB/s up to a third of a second
 * of pages sat queued when the VM paused, and the driver's pass rate (its downtime estimate)
 * counted writes, not deliveries — the switch-over then took 400-650 ms against a 300 ms limit.
 * The same queue is what the control messages of the switch-over waited behind. QEMU's own
 * estimate through these streams is kept honest the same way.
 */
export class DeliveryWindow {
  private written = 0
  private delivered = 0
  private readonly waiters = new Set<{ resolve: () => void, reject: (err: unknown) => void }>()
  private sampleStart = { at: performance.now(), delivered: 0 }
  private readonly rates: number[] = []
  /** Where each admitted write ends and when it was admitted: a report that covers it gives a round trip. */
  private readonly marks: Array<{ end: number, at: number }> = []
  private minRoundTripMs = Number.POSITIVE_INFINITY
  /** Set once the migration ended: every later write fails with it too. */
  private failure: { error: unknown } | undefined

  /**
   * The bytes allowed in flight now: the queue the link may hold, plus a round trip's worth (on a
   * WAN the reports come a round trip after the bytes; a window of the queue alone would cap the
   * rate at window ÷ round trip, 10 MB/s at 100 ms, on any link).
   */
  get window (): number {
    const roundTrip = Number.isFinite(this.minRoundTripMs) ? this.minRoundTripMs / 1000 : 0
    return Math.max(MIN_DELIVERY_WINDOW, Math.max(0, ...this.rates) * (DELIVERY_QUEUE_SECONDS + roundTrip))
  }

  get inFlight (): number { return this.written - this.delivered }

  /** The most that was in flight at once (the log reports it at the switch-over). */
  maxInFlight = 0

  /** Resolves when `bytes` more may be written (a write may overshoot the window by its own size). */
  async admit (bytes: number, signal?: AbortSignal): Promise<void> {
    // After an idle spell (nothing in flight) the next sample starts now: the pause says nothing about the link.
    this.throwIfFailed()
    if (this.inFlight <= 0) this.sampleStart = { at: performance.now(), delivered: this.delivered }
    while (this.inFlight >= this.window) {
      signal?.throwIfAborted()
      this.throwIfFailed()
      await new Promise<void>((resolve, reject) => {
        const waiter = {
          resolve: () => { signal?.removeEventListener('abort', onAbort); resolve() },
          reject: (err: unknown) => { signal?.removeEventListener('abort', onAbort); reject(err) }
        }
        const onAbort = (): void => { this.waiters.delete(waiter); reject(signal?.reason) }
        signal?.addEventListener('abort', onAbort, { once: true })
        this.waiters.add(waiter)
      })
    }
    this.written += bytes
    this.marks.push({ end: this.written, at: performance.now() })
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
  }

  /** The target's driver has read `total` bytes of the two streams so far. */
  report (total: number): void {
    if (!(total > this.delivered)) return
    this.delivered = total
    const now = performance.now()
    // The reports come every DELIVERY_REPORT_STEP bytes: the least time from a write to a report covering it bounds the round trip from above.
    while (this.marks.length > 0 && (this.marks[0] as { end: number }).end <= total) {
      this.minRoundTripMs = Math.min(this.minRoundTripMs, now - (this.marks.shift() as { at: number }).at)
    }
    if (now - this.sampleStart.at >= DELIVERY_SAMPLE_MS) {
      // The window follows the fastest recent sample: a pre-copy held to a trickle, or one that
      // sends little, delivers slowly without the link being slow.
      this.rates.push((total - this.sampleStart.delivered) / (now - this.sampleStart.at) * 1000)
      if (this.rates.length > DELIVERY_SAMPLES) this.rates.shift()
      this.sampleStart = { at: now, delivered: total }
    }
    if (this.inFlight < this.window) for (const waiter of [...this.waiters]) { this.waiters.delete(waiter); waiter.resolve() }
  }

  private throwIfFailed (): void {
    if (this.failure !== undefined) throw this.failure.error
  }

  /** Wakes every waiting writer with `err` (the migration ended); later writes fail with it too. */
  fail (err: unknown): void {
    this.failure ??= { error: err }
    for (const waiter of [...this.waiters]) { this.waiters.delete(waiter); waiter.reject(err) }
  }
}
