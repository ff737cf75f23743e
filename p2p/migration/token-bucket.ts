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
      await sleep(Math.max(1, (piece - this.tokens) / this.rate * 1000), signal)
    }
  }
}

interface Waiter {
  bytes: number
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * One link's bandwidth shared fairly: each flow (a migration) with bytes waiting gets its turn in
 * round-robin, one slice at a time, so N busy migrations each get 1/N of the rate whatever the
 * size of their writes. Rate 0 = unlimited (grants at once).
 */
export class FairShaper {
  private readonly bucket: TokenBucket
  private readonly queues = new Map<string, Waiter[]>()
  private readonly granted = new Map<string, number>()
  private order: string[] = []
  private next = 0
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
      const slice = Math.min(left, SLICE_BYTES)
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { bytes: slice, resolve, reject }
        let queue = this.queues.get(flow)
        if (queue === undefined) {
          queue = []
          this.queues.set(flow, queue)
          this.order.push(flow)
        }
        queue.push(waiter)
        signal?.addEventListener('abort', () => {
          const q = this.queues.get(flow)
          const i = q?.indexOf(waiter) ?? -1
          if (i >= 0) { q?.splice(i, 1); reject(signal.reason ?? new MigrationCancelledError('cancelled')) }
        }, { once: true })
        void this.pump()
      })
    }
  }

  private async pump (): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      for (;;) {
        for (const flow of this.order) if ((this.queues.get(flow)?.length ?? 0) === 0) this.queues.delete(flow)
        this.order = this.order.filter((flow) => this.queues.has(flow))
        if (this.order.length === 0) return
        const flow = this.order[this.next % this.order.length] as string
        this.next = (this.next + 1) % Math.max(1, this.order.length)
        const waiter = this.queues.get(flow)?.shift()
        if (waiter === undefined) continue
        await this.bucket.take(waiter.bytes)
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
