/**
 * Consensus latency of this site's own transactions: time from submission to the transaction's
 * position in the consensus order, measured here, on the monotonic clock (wall-clock steps do
 * not distort it) — and, in a second instance, the latency of other sites' probes as seen here.
 */
import type { LatencySample, LatencySummary } from '../api/index.js'

export interface ConsensusLatencyInit {
  /** Quantiles are computed over this many most recent samples. */
  windowSize?: number
  /** Samples kept for the UI's time series. */
  seriesSize?: number
  /** Submissions awaiting their order at most; beyond that the oldest are forgotten (not measured). */
  maxPending?: number
  onSample?: (sample: LatencySample) => void
}

export class ConsensusLatency {
  private readonly pending = new Map<string, number>()
  private readonly recent: number[] = []
  private recentNext = 0
  private readonly samples: LatencySample[] = []
  private samplesNext = 0
  private observed = 0
  private readonly windowSize: number
  private readonly seriesSize: number
  private readonly maxPending: number

  constructor (private readonly init: ConsensusLatencyInit = {}) {
    this.windowSize = init.windowSize ?? 10_000
    this.seriesSize = init.seriesSize ?? 1000
    this.maxPending = init.maxPending ?? 100_000
  }

  /** `key` identifies the transaction (a hash of its bytes). */
  submitted (key: string, now = performance.now()): void {
    if (this.pending.has(key)) return
    this.pending.set(key, now)
    if (this.pending.size > this.maxPending) this.pending.delete(this.pending.keys().next().value as string)
  }

  isPending (key: string): boolean { return this.pending.has(key) }
  get pendingCount (): number { return this.pending.size }

  /** Records the latency if `key` was submitted here; returns the sample. */
  ordered (key: string, position: number, kind: string, now = performance.now(), at = Date.now()): LatencySample | undefined {
    const submittedAt = this.pending.get(key)
    if (submittedAt === undefined) return undefined
    this.pending.delete(key)
    return this.record({ at, latencyMs: now - submittedAt, position, kind })
  }

  /**
   * Records a sample measured otherwise: another site's probe, from the submitter's clock
   * (`submittedAt` in the transaction) to its position here — which needs clocks in step across
   * sites (NTP keeps them within milliseconds; on one host they are one clock).
   */
  record (sample: LatencySample): LatencySample {
    this.observed++
    this.recentNext = pushRing(this.recent, this.recentNext, this.windowSize, sample.latencyMs)
    this.samplesNext = pushRing(this.samples, this.samplesNext, this.seriesSize, sample)
    this.init.onSample?.(sample)
    return sample
  }

  summary (): LatencySummary {
    const sorted = [...this.recent].sort((a, b) => a - b)
    return { count: this.observed, p50Ms: quantile(sorted, 0.5), p95Ms: quantile(sorted, 0.95), p99Ms: quantile(sorted, 0.99) }
  }

  /** The kept samples, oldest first. */
  series (): LatencySample[] {
    return [...this.samples.slice(this.samplesNext), ...this.samples.slice(0, this.samplesNext)]
  }
}

function pushRing<T> (ring: T[], next: number, capacity: number, value: T): number {
  if (ring.length < capacity) ring.push(value)
  else ring[next] = value
  return (next + 1) % capacity
}

/** Nearest-rank quantile of ascending values. */
export function quantile (sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}
