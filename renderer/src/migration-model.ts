/**
 * What the Migrations view draws, computed from what the agent reports: the engine's row
 * (MigrationInfo: phase, state, live wire counters, result figures) and the migration's log
 * (phases with their times, pre-copy passes, disk rounds, base-layer batches). Pure functions: the
 * view keeps the previous sample to turn counters into rates.
 */
import {
  MIGRATION_PHASES, progressSources, type SourceFigures,
  type DiskRoundStats, type MemoryPassStats, type MigrationInfo, type MigrationLogEntry, type MigrationPhase, type MigrationRecord
} from './contract'

export interface TimelineStep { phase: MigrationPhase, start: number, end: number | null }

export interface TransferBarModel {
  /** Bytes of the first full copy done (capped at total), and the copy's size. */
  done: number
  total: number
  /** Bytes this channel carried so far (later rounds and passes resend dirty data, so it can pass total). */
  carried: number
  bytesPerSecond: number | null
  etaMs: number | null
}

export interface SourceModel { site: string, bytes: number, bytesPerSecond: number | null, dropReason?: string }

export interface MigrationModel {
  id: string
  vmName: string
  role: 'source' | 'target'
  source: string
  target: string
  /** The other end, from this site's point of view. */
  peer: string
  strategy: string
  state: string
  phase: MigrationPhase
  error: string | null
  running: boolean
  created: number
  updated: number
  timeline: TimelineStep[]
  bars: { base: TransferBarModel | null, ud: TransferBarModel | null, memory: TransferBarModel | null }
  /** Per source site of the base layers; null: not known at this end. */
  sources: SourceModel[] | null
  passes: MemoryPassStats[]
  diskRounds: DiskRoundStats[]
  /** The limits it runs with now (changed mid-flight, or as requested): bytes/s (0: no cap) and ms. */
  bandwidth: number | null
  maxDowntimeMs: number | null
  expectedDowntimeMs: number | null
  actualDowntimeMs: number | null
  totalMs: number | null
  plan: PlanFigures | null
}

/** What the engine stores of the plan in the row's result (engine.ts planFigures). */
export interface PlanFigures {
  hash?: string
  similarity?: { m: number, n: number }
  missingChunks?: number
  bytesToSend?: { base: number, ud: number, memory: number, total: number }
  bytesSaved?: number
  estimatedSeconds?: number
  sources?: string[]
}

/** Counters of one poll, to compute rates at the next. */
export interface Sample { at: number, base: number, ud: number, memory: number, sources: Record<string, number> }

const RUNNING = new Set(['running'])

function num (value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

function rate (now: number, before: number | undefined, at: number, previousAt: number | undefined): number | null {
  if (before === undefined || previousAt === undefined || at <= previousAt) return null
  return Math.max(0, (now - before) / ((at - previousAt) / 1000))
}

/** The phases reached, each from its log time to the next one's (the last open while running). */
export function timelineOf (entries: MigrationLogEntry[], running: boolean, updated: number): TimelineStep[] {
  const phases = entries.filter((e) => e.kind === 'phase' && e.phase !== null)
  const steps: TimelineStep[] = []
  for (const entry of phases) {
    const previous = steps[steps.length - 1]
    if (previous?.phase === entry.phase) continue
    if (previous !== undefined) previous.end = entry.time
    steps.push({ phase: entry.phase!, start: entry.time, end: null })
  }
  const last = steps[steps.length - 1]
  if (last !== undefined && !running) last.end = Math.max(last.start, updated)
  return steps
}

/** Per-source figures, if `value` is a list of them (anything else: null). */
export function sourceFiguresOf (value: unknown): SourceFigures[] | null {
  if (!Array.isArray(value)) return null
  const ok = value.every((f: unknown) => typeof f === 'object' && f !== null && typeof (f as SourceFigures).site === 'string' && typeof (f as SourceFigures).bytes === 'number')
  return ok ? value as SourceFigures[] : null
}

/** Window over which the target's batch log gives each source's current rate. */
const SOURCE_RATE_WINDOW_MS = 3000

/**
 * Bytes received per source site, from the target's base-layer batch entries, and each site's rate
 * over the last few seconds of the log: cumulative per-source figures where the entries carry them
 * (FetchProgress.sources), else each batch's bytes counted for the site it names.
 */
export function sourcesFromBatches (entries: MigrationLogEntry[]): Array<{ site: string, bytes: number, recent: number, windowMs: number, dropReason?: string }> {
  const batches = entries.filter((e) => e.kind === 'batch' && num(e.data['bytes']) !== null)
  const last = batches[batches.length - 1]
  if (last === undefined) return []
  const cumulative = batches.filter((e) => sourceFiguresOf(e.data['sources']) !== null)
  const newest = cumulative[cumulative.length - 1]
  if (newest !== undefined) {
    const figures = (entry: MigrationLogEntry): SourceFigures[] => sourceFiguresOf(entry.data['sources'])!
    const older = [...cumulative].reverse().find((e) => e.time <= newest.time - SOURCE_RATE_WINDOW_MS) ?? cumulative[0]!
    const windowMs = Math.max(1, newest.time - older.time)
    return figures(newest).map((f) => ({
      site: f.site,
      bytes: f.bytes,
      recent: older === newest ? 0 : f.bytes - (figures(older).find((o) => o.site === f.site)?.bytes ?? 0),
      windowMs,
      ...(f.dropReason === undefined ? {} : { dropReason: f.dropReason })
    }))
  }
  const totals = new Map<string, { bytes: number, recent: number }>()
  let previous = 0
  for (const entry of batches) {
    const bytes = num(entry.data['bytes'])!
    const site = entry.data['site']
    const delta = Math.max(0, bytes - previous)
    previous = bytes
    if (typeof site !== 'string') continue
    const total = totals.get(site) ?? { bytes: 0, recent: 0 }
    total.bytes += delta
    if (entry.time > last.time - SOURCE_RATE_WINDOW_MS) total.recent += delta
    totals.set(site, total)
  }
  const windowMs = Math.max(1, Math.min(SOURCE_RATE_WINDOW_MS, last.time - batches[0]!.time))
  return [...totals].map(([site, t]) => ({ site, bytes: t.bytes, recent: t.recent, windowMs }))
}

export function modelOf (info: MigrationInfo, entries: MigrationLogEntry[], previous: Sample | undefined, now: number): { model: MigrationModel, sample: Sample } {
  const running = RUNNING.has(info.state)
  const result = info.result
  const plan = (result['plan'] ?? null) as PlanFigures | null
  const toSend = plan?.bytesToSend
  const wire = (info.progress?.wire ?? result['wire']) as { sent: Record<string, number>, received: Record<string, number> } | undefined
  const outgoing = info.role === 'source'
  const channel = (name: string): number => wire === undefined ? 0 : (outgoing ? wire.sent[name] : wire.received[name]) ?? 0
  const passes = entries.filter((e) => e.kind === 'pass').map((e) => e.data as unknown as MemoryPassStats)
  const diskRounds = entries.filter((e) => e.kind === 'disk-round').map((e) => e.data as unknown as DiskRoundStats)
  const batches = entries.filter((e) => e.kind === 'batch')
  const lastBatch = batches[batches.length - 1]?.data
  const completed = info.state === 'completed'
  const reached = (phase: MigrationPhase): boolean => MIGRATION_PHASES.indexOf(info.phase) > MIGRATION_PHASES.indexOf(phase)

  // Base layers: live figures while running, the last batch at the target, else the plan.
  // (The source hears the totals from the target once its fetch starts: 0 until then.)
  const live = info.progress !== undefined && info.progress.baseTotal > 0 ? info.progress : undefined
  const baseTotal = live?.baseTotal ?? num(lastBatch?.['totalBytes']) ?? toSend?.base ?? null
  let baseDone = live?.baseBytes ?? num(lastBatch?.['bytes']) ?? 0
  if (completed || reached('transfer')) baseDone = baseTotal ?? baseDone
  const udCarried = channel('disk')
  const memoryCarried = channel('memory')
  const sample: Sample = { at: now, base: baseDone, ud: udCarried, memory: memoryCarried, sources: {} }

  const bar = (done: number, total: number | null, carried: number, key: 'base' | 'ud' | 'memory', finished: boolean): TransferBarModel | null => {
    if (total === null) return null
    const shown = finished ? total : Math.min(done, total)
    const left = total - shown
    const bytesPerSecond = running && left > 0 ? rate(sample[key], previous?.[key], now, previous?.at) : null
    return { done: shown, total, carried, bytesPerSecond, etaMs: bytesPerSecond !== null && bytesPerSecond > 0 && left > 0 ? (1000 * left) / bytesPerSecond : null }
  }
  const udTotal = toSend?.ud ?? null
  const memoryTotal = toSend?.memory ?? null
  const bars = {
    base: bar(baseDone, baseTotal, baseDone, 'base', completed),
    // The first full copy of the UD layer is done once pre-copy starts (the engine waits for disk-ready).
    ud: bar(udCarried, udTotal, udCarried, 'ud', completed || reached('transfer')),
    // All-zero pages cross as markers only, so the first copy is done with its pass, not at its byte count.
    memory: bar(memoryCarried, memoryTotal, memoryCarried, 'memory', completed || reached('precopy') || passes.length > 0)
  }

  let sources: SourceModel[] | null = null
  // Live while it runs (progress), then kept in the result or the log where the agent records them.
  // (The plan's own `sources` is a list of site names: only per-site figures count here.)
  const recorded = sourceFiguresOf(result['sources'])
  const logged = [...entries].reverse().map((e) => e.kind === 'batch' ? null : sourceFiguresOf(e.data['sources'])).find((f) => f !== null) ?? null
  const reported = sourceFiguresOf(progressSources(info)) ?? recorded ?? (info.role === 'source' ? logged : null)
  if (reported !== null) {
    sample.sources = Object.fromEntries(reported.map((s) => [s.site, s.bytes]))
    sources = reported.map((s) => ({ site: s.site, bytes: s.bytes, bytesPerSecond: running ? rate(s.bytes, previous?.sources[s.site] ?? 0, now, previous?.at) : null, ...(s.dropReason === undefined ? {} : { dropReason: s.dropReason }) }))
  } else if (info.role === 'target') {
    const transferring = running && info.phase === 'transfer'
    sources = sourcesFromBatches(entries).map((s) => ({ site: s.site, bytes: s.bytes, bytesPerSecond: transferring ? (1000 * s.recent) / s.windowMs : null, ...(s.dropReason === undefined ? {} : { dropReason: s.dropReason }) }))
  }
  sources?.sort((a, b) => a.site.localeCompare(b.site))

  // Parameters changed mid-flight (PATCH /v1/migrations/:id), as the driver applied them or as asked.
  const changed = (result['parameters'] ?? {}) as Record<string, unknown>
  const converged = [...entries].reverse().find((e) => e.kind === 'info' && e.data['converged'] === true)
  const lastPass = passes[passes.length - 1]
  const resumed = entries.find((e) => e.kind === 'phase' && e.phase === 'resumed')
  const model: MigrationModel = {
    id: info.id,
    vmName: info.vmName,
    role: info.role,
    source: info.source,
    target: info.target,
    peer: outgoing ? info.target : info.source,
    strategy: info.strategy,
    state: info.state,
    phase: info.phase,
    error: info.error,
    running,
    created: info.created,
    updated: info.updated,
    timeline: timelineOf(entries, running, info.updated),
    bars,
    sources,
    passes,
    diskRounds,
    bandwidth: num(changed['maxBandwidth']) ?? num(changed['bandwidth']) ?? num(info.options['bandwidth']),
    maxDowntimeMs: num(changed['downtimeLimitMs']) ?? num(changed['maxDowntimeMs']) ?? num(info.options['maxDowntimeMs']),
    expectedDowntimeMs: num(converged?.data['expectedDowntimeMs']) ?? (lastPass === undefined ? null : lastPass.expectedDowntimeMs),
    actualDowntimeMs: num(result['downtimeMs']) ?? num(resumed?.data['downtimeMs']),
    totalMs: num(result['totalMs']),
    plan
  }
  return { model, sample }
}

/** One row of the history: this site's finished migrations and the swarm's consensus records, one per migration. */
export interface HistoryRow {
  id: string
  vmName: string
  source: string
  target: string
  strategy: string
  state: string
  error: string | null
  bytesOnWire: number | null
  bytesSaved: number | null
  totalMs: number | null
  downtimeMs: number | null
  /** ms since the epoch, when known. */
  at: number | null
  /** Recorded by consensus (every site's history has it). */
  recorded: boolean
  /** This site took part (its log has the details). */
  local: boolean
}

export function historyOf (rows: MigrationInfo[], records: MigrationRecord[]): HistoryRow[] {
  const byId = new Map<string, HistoryRow>()
  for (const row of rows) {
    if (RUNNING.has(row.state)) continue
    // The source's row carries the wire total and the recorded figures; prefer it over the target's.
    if (byId.has(row.id) && row.role === 'target') continue
    const wire = row.result['wire'] as { sent: Record<string, number>, received: Record<string, number> } | undefined
    const plan = (row.result['plan'] ?? null) as PlanFigures | null
    byId.set(row.id, {
      id: row.id,
      vmName: row.vmName,
      source: row.source,
      target: row.target,
      strategy: row.strategy,
      state: row.state,
      error: row.error,
      // The source's own figure counts the base chunks the target fetched; its wire counter does not.
      bytesOnWire: num(row.result['bytesOnWire']) ?? (wire === undefined ? null : Object.values(wire.sent).reduce((a, b) => a + b, 0) + Object.values(wire.received).reduce((a, b) => a + b, 0)),
      bytesSaved: plan?.bytesSaved ?? null,
      totalMs: num(row.result['totalMs']),
      downtimeMs: num(row.result['downtimeMs']),
      at: row.updated,
      recorded: false,
      local: true
    })
  }
  for (const record of records) {
    const known = byId.get(record.migration)
    byId.set(record.migration, {
      id: record.migration,
      vmName: record.vm,
      source: record.from,
      target: record.to,
      strategy: record.strategy,
      state: known?.state ?? 'completed',
      error: known?.error ?? null,
      bytesOnWire: record.bytesOnWire,
      bytesSaved: record.bytesSaved,
      totalMs: record.totalMs,
      downtimeMs: record.downtimeMs,
      at: known?.at ?? null,
      recorded: true,
      local: known !== undefined
    })
  }
  // Newest first; consensus-only records (no local time) after, in reverse consensus order.
  const order = new Map(records.map((r, i) => [r.migration, i]))
  return [...byId.values()].sort((a, b) => (b.at ?? -1) - (a.at ?? -1) || (order.get(b.id) ?? 0) - (order.get(a.id) ?? 0))
}

/**
 * A plan layer's bitmap (base64, most significant bit first) as the fraction present in each of
 * `buckets` runs of positions (a run of one position repeats when there are fewer bits than buckets).
 */
export function bitmapBuckets (bitmap: string, bits: number, buckets: number): number[] {
  if (bits <= 0) return []
  const bytes = Uint8Array.from(atob(bitmap), (c) => c.charCodeAt(0))
  const bit = (i: number): number => ((bytes[i >> 3] ?? 0) >> (7 - (i & 7))) & 1
  return Array.from({ length: buckets }, (_, b) => {
    const from = Math.floor((b * bits) / buckets)
    const to = Math.max(from + 1, Math.floor(((b + 1) * bits) / buckets))
    let present = 0
    for (let i = from; i < to; i++) present += bit(i)
    return present / (to - from)
  })
}
