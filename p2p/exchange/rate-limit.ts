/**
 * Token buckets with priorities: the exchange's global ingress/egress limits and each transfer's
 * own. A waiter of a higher priority (migration) is always served before one of a lower priority
 * (background replication); within a priority, first come first served.
 */
import { InvalidRequestError, TransferAbortedError } from './errors.js'
import type { Purpose } from './protocol.js'

export interface RateLimit {
  /** Sustained rate, bytes per second. */
  bytesPerSecond: number
  /** Bytes that may go at once after an idle spell; default a quarter second's worth (at least 256 KiB). */
  burstBytes?: number
}

/** Lower is served first. */
export const PRIORITY: Record<Purpose, number> = { migration: 0, replication: 1 }

interface Waiter {
  bytes: number
  priority: number
  resolve: () => void
  reject: (err: Error) => void
  signal: AbortSignal | undefined
  onAbort: () => void
}

export class TokenBucket {
  readonly bytesPerSecond: number
  readonly burstBytes: number
  private tokens: number
  private last = performance.now()
  private readonly waiters: Waiter[] = []
  private timer: NodeJS.Timeout | null = null

  constructor (limit: RateLimit, what: string) {
    if (!(limit.bytesPerSecond > 0)) throw new InvalidRequestError(`${what}.bytesPerSecond must be a positive number of bytes per second, not ${String(limit.bytesPerSecond)}`)
    this.bytesPerSecond = limit.bytesPerSecond
    this.burstBytes = limit.burstBytes ?? Math.max(256 * 1024, limit.bytesPerSecond / 4)
    if (!(this.burstBytes > 0)) throw new InvalidRequestError(`${what}.burstBytes must be positive`)
    this.tokens = this.burstBytes
  }

  /**
   * Takes `bytes` now if the bucket holds them and no waiter of the same or higher priority is
   * ahead. A block larger than the burst goes once the bucket is full (it then goes into debt),
   * so such blocks are never stuck.
   */
  tryTake (bytes: number, priority: number): boolean {
    this.refill()
    if (this.tokens < Math.min(bytes, this.burstBytes)) return false
    if (this.waiters.some((w) => w.priority <= priority)) return false
    this.tokens -= bytes
    return true
  }

  async take (bytes: number, priority: number, signal?: AbortSignal): Promise<void> {
    if (this.tryTake(bytes, priority)) return
    if (signal?.aborted === true) throw new TransferAbortedError('cancelled while waiting for the rate limit')
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        priority,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const index = this.waiters.indexOf(waiter)
          if (index >= 0) this.waiters.splice(index, 1)
          reject(new TransferAbortedError('cancelled while waiting for the rate limit'))
        }
      }
      signal?.addEventListener('abort', waiter.onAbort, { once: true })
      // Sorted insert: after every waiter of the same or higher priority.
      let index = this.waiters.findIndex((w) => w.priority > priority)
      if (index < 0) index = this.waiters.length
      this.waiters.splice(index, 0, waiter)
      this.schedule()
    })
  }

  /** Wakes nobody and forgets the waiters (on stop). */
  clear (err: Error): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal?.removeEventListener('abort', waiter.onAbort)
      waiter.reject(err)
    }
  }

  private refill (): void {
    const now = performance.now()
    this.tokens = Math.min(this.burstBytes, this.tokens + (now - this.last) * this.bytesPerSecond / 1000)
    this.last = now
  }

  private schedule (): void {
    if (this.timer !== null) return
    this.refill()
    while (this.waiters.length > 0 && this.tokens >= Math.min((this.waiters[0] as Waiter).bytes, this.burstBytes)) {
      const waiter = this.waiters.shift() as Waiter
      waiter.signal?.removeEventListener('abort', waiter.onAbort)
      this.tokens -= waiter.bytes
      waiter.resolve()
    }
    if (this.waiters.length === 0) return
    const needed = Math.min((this.waiters[0] as Waiter).bytes, this.burstBytes) - this.tokens
    const waitMs = Math.max(1, Math.ceil(needed * 1000 / this.bytesPerSecond))
    this.timer = setTimeout(() => {
      this.timer = null
      this.schedule()
    }, waitMs)
  }
}

/** Takes from every bucket in turn (global, then the transfer's own); undefined buckets are unlimited. */
export async function takeAll (buckets: Array<TokenBucket | undefined>, bytes: number, priority: number, signal?: AbortSignal): Promise<void> {
  for (const bucket of buckets) {
    if (bucket !== undefined) await bucket.take(bytes, priority, signal)
  }
}
