/**
 * The migration database (`<data>/migrations.sqlite`): each migration's current phase, persisted
 * before the engine acts on it (so a crash never leaves a migration ambiguous), and the migration
 * log — every phase, pre-copy pass, disk round, transfer batch and error — with export to ndjson,
 * csv or json.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import type { Strategy } from './plan.js'
import { InvalidMigrationInputError, MigrationNotFoundError } from './errors.js'

export type MigrationRole = 'source' | 'target'

/** In order; a migration moves forward only. */
export const PHASES = ['request', 'plan', 'agree', 'transfer', 'precopy', 'switchover', 'committed', 'resumed', 'released', 'record'] as const
export type MigrationPhase = typeof PHASES[number]

export type MigrationState = 'running' | 'completed' | 'failed' | 'cancelled' | 'refused' | 'in-doubt'

export interface MigrationRecordRow {
  id: string
  role: MigrationRole
  vm: string
  vmName: string
  source: string
  target: string
  strategy: Strategy
  phase: MigrationPhase
  state: MigrationState
  planHash: string | null
  error: string | null
  /** Request options: maxDowntimeMs, bandwidth, maxPasses, repository. */
  options: Record<string, unknown>
  /** Result figures once known: bytes on the wire per channel, downtime, total time, passes, … */
  result: Record<string, unknown>
  created: number
  updated: number
}

export type LogKind = 'phase' | 'pass' | 'disk-round' | 'batch' | 'error' | 'info'

export interface LogEntry {
  seq: number
  migration: string
  /** ms since the epoch. */
  time: number
  kind: LogKind
  phase: MigrationPhase | null
  data: Record<string, unknown>
}

export interface LogQuery {
  migration?: string
  /** Only entries whose sequence number is above this one: a reader polling the log asks for what is new. */
  after?: number
  /** ms since the epoch, inclusive. */
  since?: number
  kinds?: LogKind[]
  limit?: number
}

export type ExportFormat = 'ndjson' | 'csv' | 'json'
export const EXPORT_FORMATS: readonly ExportFormat[] = ['ndjson', 'csv', 'json']

interface Row {
  id: string
  role: MigrationRole
  vm: string
  vm_name: string
  source: string
  target: string
  strategy: Strategy
  phase: MigrationPhase
  state: MigrationState
  plan_hash: string | null
  error: string | null
  options: string
  result: string
  created: number
  updated: number
}

function fromRow (row: Row): MigrationRecordRow {
  return {
    id: row.id,
    role: row.role,
    vm: row.vm,
    vmName: row.vm_name,
    source: row.source,
    target: row.target,
    strategy: row.strategy,
    phase: row.phase,
    state: row.state,
    planHash: row.plan_hash,
    error: row.error,
    options: JSON.parse(row.options) as Record<string, unknown>,
    result: JSON.parse(row.result) as Record<string, unknown>,
    created: row.created,
    updated: row.updated
  }
}

export class MigrationDb {
  private readonly db: Database.Database

  constructor (path: string) {
    mkdirSync(dirname(path), { recursive: true })
    this.db = new Database(path)
    this.db.pragma('journal_mode = WAL')
    // A phase is acted on only once it is on disk.
    this.db.pragma('synchronous = FULL')
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS migrations (
        id TEXT NOT NULL, role TEXT NOT NULL, vm TEXT NOT NULL, vm_name TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
        strategy TEXT NOT NULL, phase TEXT NOT NULL, state TEXT NOT NULL, plan_hash TEXT, error TEXT,
        options TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', created INTEGER NOT NULL, updated INTEGER NOT NULL,
        PRIMARY KEY (id, role));
      CREATE TABLE IF NOT EXISTS migration_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, migration TEXT NOT NULL, time INTEGER NOT NULL, kind TEXT NOT NULL, phase TEXT, data TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS migration_log_by_migration ON migration_log (migration, seq);
      CREATE INDEX IF NOT EXISTS migration_log_by_time ON migration_log (time);`)
  }

  close (): void { this.db.close() }

  insert (row: Omit<MigrationRecordRow, 'created' | 'updated' | 'result' | 'error' | 'planHash'>): MigrationRecordRow {
    const now = Date.now()
    this.db.prepare(`INSERT INTO migrations (id, role, vm, vm_name, source, target, strategy, phase, state, options, created, updated)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(row.id, row.role, row.vm, row.vmName, row.source, row.target, row.strategy, row.phase, row.state, JSON.stringify(row.options), now, now)
    return this.get(row.id, row.role)
  }

  get (id: string, role: MigrationRole): MigrationRecordRow {
    const row = this.db.prepare('SELECT * FROM migrations WHERE id = ? AND role = ?').get(id, role) as Row | undefined
    if (row === undefined) throw new MigrationNotFoundError(`no migration ${id} (${role}) at this site`)
    return fromRow(row)
  }

  find (id: string): MigrationRecordRow[] {
    return (this.db.prepare('SELECT * FROM migrations WHERE id = ? OR id LIKE ? ORDER BY role').all(id, `${id}%`) as Row[]).map(fromRow)
  }

  list (filter: { state?: MigrationState } = {}): MigrationRecordRow[] {
    const rows = filter.state === undefined
      ? this.db.prepare('SELECT * FROM migrations ORDER BY created DESC').all() as Row[]
      : this.db.prepare('SELECT * FROM migrations WHERE state = ? ORDER BY created DESC').all(filter.state) as Row[]
    return rows.map(fromRow)
  }

  update (id: string, role: MigrationRole, changes: { phase?: MigrationPhase, state?: MigrationState, planHash?: string, error?: string | null, result?: Record<string, unknown> }): MigrationRecordRow {
    const current = this.get(id, role)
    const result = changes.result === undefined ? current.result : { ...current.result, ...changes.result }
    this.db.prepare('UPDATE migrations SET phase = ?, state = ?, plan_hash = ?, error = ?, result = ?, updated = ? WHERE id = ? AND role = ?').run(
      changes.phase ?? current.phase, changes.state ?? current.state, changes.planHash ?? current.planHash,
      changes.error === undefined ? current.error : changes.error, JSON.stringify(result), Date.now(), id, role)
    return this.get(id, role)
  }

  /** `write`'s changes in one transaction: one flush to disk where a paused VM waits for them. */
  atomically<T> (write: () => T): T {
    return this.db.transaction(write)()
  }

  /** A new phase and its log entry, in one transaction (one write to disk, not two: phases are written inside the switch-over's pause). */
  enterPhase (id: string, role: MigrationRole, phase: MigrationPhase, data: Record<string, unknown>): LogEntry {
    return this.db.transaction(() => {
      this.update(id, role, { phase })
      return this.log(id, 'phase', phase, data)
    })()
  }

  log (migration: string, kind: LogKind, phase: MigrationPhase | null, data: Record<string, unknown>): LogEntry {
    const time = Date.now()
    const seq = Number(this.db.prepare('INSERT INTO migration_log (migration, time, kind, phase, data) VALUES (?, ?, ?, ?, ?)')
      .run(migration, time, kind, phase, JSON.stringify(data)).lastInsertRowid)
    return { seq, migration, time, kind, phase, data }
  }

  entries (query: LogQuery = {}): LogEntry[] {
    return [...this.pages(query, Number.MAX_SAFE_INTEGER)].flat()
  }

  /**
   * The log a page at a time, in sequence order. Each page is one query by sequence number
   * (keyset paging), so nothing holds the database between pages: migrations keep logging while
   * a long export goes out, and memory stays at one page.
   */
  * pages (query: LogQuery = {}, pageSize = LOG_PAGE_ROWS): Generator<LogEntry[]> {
    const { where, params } = filterOf(query)
    const statement = this.db.prepare(`SELECT * FROM migration_log WHERE seq > ? AND ${where} ORDER BY seq LIMIT ?`)
    let left = query.limit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Math.floor(query.limit))
    let after = query.after ?? -1
    while (left > 0) {
      const rows = statement.all(after, ...params, Math.min(pageSize, left)) as Array<Omit<LogEntry, 'data'> & { data: string }>
      if (rows.length === 0) return
      after = rows[rows.length - 1]!.seq
      left -= rows.length
      yield rows.map((r) => ({ ...r, data: JSON.parse(r.data) as Record<string, unknown> }))
    }
  }

  /** Entries a query selects now (the limit applied). */
  count (query: LogQuery = {}): number {
    const { where, params } = filterOf(query)
    const rows = Number(this.db.prepare(`SELECT COUNT(*) FROM migration_log WHERE seq > ? AND ${where}`).pluck().get(query.after ?? -1, ...params))
    return query.limit === undefined ? rows : Math.min(rows, Math.max(0, Math.floor(query.limit)))
  }

  /** The log as text in one of the export formats. */
  export (format: ExportFormat, query: LogQuery = {}): string {
    return [...this.exportChunks(format, query)].join('')
  }

  /**
   * The same, produced a page at a time. The format is checked now, before anything is produced.
   * JSON is `{"entries": [...], "migrations": [...]}`, one entry per line, the rows of the
   * migrations the entries belong to last (known only once every entry is out).
   */
  exportChunks (format: ExportFormat, query: LogQuery = {}): Iterable<string> {
    if (!EXPORT_FORMATS.includes(format)) throw new InvalidMigrationInputError(`unknown export format "${String(format)}"; one of ${EXPORT_FORMATS.join(', ')}`)
    return this.render(format, this.pages(query))
  }

  private render (format: ExportFormat, pages: Iterable<LogEntry[]>): Generator<string> {
    const ids = new Set<string>()
    const noted = (function * () { for (const entries of pages) { for (const e of entries) ids.add(e.migration); yield entries } })()
    return renderExportPages(format, noted, {
      columns: LOG_COLUMNS,
      csvRow: (e) => [String(e.seq), new Date(e.time).toISOString(), e.migration, e.kind, e.phase ?? '', JSON.stringify(e.data)],
      jsonKey: 'entries',
      jsonRest: () => `, "migrations": ${JSON.stringify([...ids].flatMap((id) => this.find(id).filter((m) => m.id === id)))}`
    })
  }

}

/** The SQL condition (and its parameters) of a query's filters, `after` aside. */
function filterOf (query: LogQuery): { where: string, params: unknown[] } {
  const where: string[] = ['1']
  const params: unknown[] = []
  if (query.migration !== undefined) { where.push('migration = ?'); params.push(query.migration) }
  if (query.since !== undefined) { where.push('time >= ?'); params.push(query.since) }
  if (query.kinds !== undefined && query.kinds.length > 0) { where.push(`kind IN (${query.kinds.map(() => '?').join(',')})`); params.push(...query.kinds) }
  return { where: where.join(' AND '), params }
}

/** Entries per page of an export. */
const LOG_PAGE_ROWS = 1000
const LOG_COLUMNS = ['seq', 'time', 'migration', 'kind', 'phase', 'data']

/**
 * An export's text a page of rows at a time: NDJSON, CSV (a header row, then `csvRow` of each), or
 * JSON `{"<jsonKey>": [...]<jsonRest>}` with one row per line, so it can be written before the last
 * page is read; `jsonRest` is called once every row is out.
 */
export function * renderExportPages<R> (format: ExportFormat, pages: Iterable<R[]>, shape: { columns: readonly string[], csvRow: (row: R) => unknown[], jsonKey: string, jsonRest?: () => string }): Generator<string> {
  if (format === 'csv') yield shape.columns.join(',') + '\n'
  if (format === 'json') yield `{${JSON.stringify(shape.jsonKey)}: [`
  let first = true
  for (const rows of pages) {
    if (format === 'ndjson') yield rows.map((r) => JSON.stringify(r) + '\n').join('')
    else if (format === 'csv') yield rows.map((r) => shape.csvRow(r).map(csvField).join(',') + '\n').join('')
    else {
      yield (first ? '\n' : ',\n') + rows.map((r) => JSON.stringify(r)).join(',\n')
      first = false
    }
  }
  if (format === 'json') yield `${first ? '' : '\n'}]${shape.jsonRest?.() ?? ''}}\n`
}

/** One CSV field (RFC 4180): quoted when it holds a quote, a comma or a line break; null is empty. */
export function csvField (value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value)
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}
