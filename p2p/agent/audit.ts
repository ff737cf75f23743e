/**
 * The consensus audit (issue 6: "a consensus audit export: events with round, fame, order for a
 * time window"). Every event the engine orders is recorded here with what consensus decided about
 * it — its round, whether it is a witness and famous, its round received, consensus timestamp and
 * position — so an operator or an auditor can compare sites' records, or check them against
 * `hgmig consensus replay`, long after the engine has pruned the events from memory.
 *
 * The table is derived from the event log, like the replicated state: at every start the engine
 * replays the log and orders everything again, and rows already recorded are kept (a position is
 * written once). A table from another swarm's history (another genesis) is discarded.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import type { ConsensusEvent, SignedEvent } from '../hashgraph/index.js'
import { ApiRequestError, type TextExport } from '../api/index.js'
import { EXPORT_FORMATS, renderExportPages, type ExportFormat } from '../migration/index.js'

/** One ordered event, as exported. Timestamps are ISO strings plus exact nanoseconds (decimal strings). */
export interface AuditRow {
  position: number
  id: string
  creator: number
  /** The creator's site name now (names can change; the creator index cannot). */
  site: string
  seq: number
  round: number
  witness: boolean
  /** null unless a witness. */
  famous: boolean | null
  roundReceived: number
  consensusTime: string
  consensusTimestampNs: string
  createdTime: string
  createdTimestampNs: string
  transactions: number
}

export interface AuditQuery {
  /** Only events whose consensus timestamp is at or after this time. */
  since?: Date
  /** Only events whose consensus timestamp is before this time. */
  until?: Date
  /** At most this many rows (the earliest in the window). */
  limit?: number
}

/** Rows per page of an export: about 300 KiB of text. */
const AUDIT_PAGE_ROWS = 1000

const COLUMNS: ReadonlyArray<keyof AuditRow> = ['position', 'id', 'creator', 'site', 'seq', 'round', 'witness', 'famous', 'roundReceived', 'consensusTime', 'consensusTimestampNs', 'createdTime', 'createdTimestampNs', 'transactions']

interface StoredRow {
  position: bigint
  id: string
  creator: bigint
  seq: bigint
  round: bigint
  witness: bigint
  famous: bigint | null
  round_received: bigint
  consensus_ns: bigint
  created_ns: bigint
  transactions: bigint
}

export class ConsensusAuditLog {
  private readonly db: Database.Database
  private readonly insert: Database.Statement
  private readonly recordAll: (rows: unknown[][]) => void
  private recordedUpTo: number

  constructor (readonly path: string, genesisId: string) {
    mkdirSync(dirname(path), { recursive: true })
    this.db = new Database(path)
    // Derived data: rebuilt from the event log if lost, so a crash may cost the newest rows, never consistency.
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = NORMAL')
    this.db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS ordered_events (
        position INTEGER PRIMARY KEY, id TEXT NOT NULL, creator INTEGER NOT NULL, seq INTEGER NOT NULL,
        round INTEGER NOT NULL, witness INTEGER NOT NULL, famous INTEGER, round_received INTEGER NOT NULL,
        consensus_ns INTEGER NOT NULL, created_ns INTEGER NOT NULL, transactions INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS ordered_events_by_time ON ordered_events (consensus_ns);`)
    const recorded = this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get('genesis') as string | undefined
    if (recorded !== genesisId) {
      this.db.transaction(() => {
        this.db.exec('DELETE FROM ordered_events')
        this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run('genesis', genesisId)
      })()
    }
    this.recordedUpTo = Number(this.db.prepare('SELECT COALESCE(MAX(position) + 1, 0) FROM ordered_events').pluck().get())
    this.insert = this.db.prepare('INSERT OR IGNORE INTO ordered_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    this.recordAll = this.db.transaction((rows: unknown[][]) => { for (const row of rows) this.insert.run(...row) })
  }

  /** Positions recorded so far (a replay re-orders them; they are skipped). */
  get size (): number { return this.recordedUpTo }

  /** The events of one round received, in consensus order, as the engine orders them. */
  record (events: ReadonlyArray<ConsensusEvent<SignedEvent>>, roundReceived: number): void {
    const rows: unknown[][] = []
    for (const e of events) {
      if (e.position === null || e.position < this.recordedUpTo) continue
      rows.push([e.position, e.id, e.creator, e.seq, e.round, e.witness ? 1 : 0, e.witness && e.famous !== null ? (e.famous ? 1 : 0) : null,
        roundReceived, e.consensusTimestamp ?? 0n, e.timestamp, e.payload.transactions.length])
    }
    if (rows.length === 0) return
    this.recordAll(rows)
    this.recordedUpTo = Math.max(this.recordedUpTo, (rows[rows.length - 1]![0] as number) + 1)
  }

  /** The rows of a window, whole (for callers that want them in memory; an export pages them). */
  rows (query: AuditQuery = {}, siteName: (creator: number) => string = String): AuditRow[] {
    return [...this.pages(query, siteName, Number.MAX_SAFE_INTEGER)].flat()
  }

  /**
   * The rows of a window a page at a time, in position order. Each page is one query by position
   * (keyset paging), so nothing holds the database between pages: the engine keeps recording while
   * an export of months of events goes out, and memory stays at one page.
   */
  * pages (query: AuditQuery = {}, siteName: (creator: number) => string = String, pageSize = AUDIT_PAGE_ROWS): Generator<AuditRow[]> {
    const { where, window } = windowOf(query)
    const statement = this.db.prepare(`SELECT * FROM ordered_events WHERE position > ? AND ${where} ORDER BY position LIMIT ?`).safeIntegers(true)
    let left = query.limit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Math.floor(query.limit))
    let after = -1n
    while (left > 0) {
      const stored = statement.all(after, ...window, BigInt(Math.min(pageSize, left))) as StoredRow[]
      if (stored.length === 0) return
      after = stored[stored.length - 1]!.position
      left -= stored.length
      yield stored.map((r) => rowOf(r, siteName))
    }
  }

  /** Rows in a window now (the limit applied). */
  count (query: AuditQuery = {}): number {
    const { where, window } = windowOf(query)
    const rows = Number(this.db.prepare(`SELECT COUNT(*) FROM ordered_events WHERE ${where}`).pluck().get(...window))
    return query.limit === undefined ? rows : Math.min(rows, Math.max(0, Math.floor(query.limit)))
  }

  /**
   * The window as text in one of the export formats, produced a page at a time. The format is
   * checked now, so a bad one is a request error before anything is sent.
   */
  export (format: string, query: AuditQuery = {}, siteName?: (creator: number) => string): TextExport {
    if (!EXPORT_FORMATS.includes(format as ExportFormat)) throw new ApiRequestError(400, `unknown audit format ${JSON.stringify(format)}: one of ${EXPORT_FORMATS.join(', ')}`)
    const contentType = format === 'json' ? 'application/json; charset=utf-8' : format === 'ndjson' ? 'application/x-ndjson; charset=utf-8' : 'text/csv; charset=utf-8'
    return { contentType, rows: this.count(query), chunks: renderExportPages(format as ExportFormat, this.pages(query, siteName), { columns: COLUMNS, csvRow: (r) => COLUMNS.map((c) => r[c]), jsonKey: 'events' }) }
  }

  close (): void {
    this.db.close()
  }
}

const INT64_MAX = (1n << 63n) - 1n

/** The SQL condition (and its parameters) of a window of consensus time. */
function windowOf (query: AuditQuery): { where: string, window: bigint[] } {
  const where: string[] = ['1']
  const window: bigint[] = []
  if (query.since !== undefined) { where.push('consensus_ns >= ?'); window.push(nanosecondsOf(query.since)) }
  if (query.until !== undefined) { where.push('consensus_ns < ?'); window.push(nanosecondsOf(query.until)) }
  return { where: where.join(' AND '), window }
}

/** A time as SQLite's 64-bit nanoseconds, clamped (nanoseconds run out in the year 2262). */
function nanosecondsOf (time: Date): bigint {
  const ns = BigInt(time.getTime()) * 1_000_000n
  return ns > INT64_MAX ? INT64_MAX : ns < -INT64_MAX ? -INT64_MAX : ns
}

function rowOf (r: StoredRow, siteName: (creator: number) => string): AuditRow {
  return {
    position: Number(r.position),
    id: r.id,
    creator: Number(r.creator),
    site: siteName(Number(r.creator)),
    seq: Number(r.seq),
    round: Number(r.round),
    witness: r.witness === 1n,
    famous: r.famous === null ? null : r.famous === 1n,
    roundReceived: Number(r.round_received),
    consensusTime: isoOf(r.consensus_ns),
    consensusTimestampNs: r.consensus_ns.toString(),
    createdTime: isoOf(r.created_ns),
    createdTimestampNs: r.created_ns.toString(),
    transactions: Number(r.transactions)
  }
}

function isoOf (nanoseconds: bigint): string {
  return new Date(Number(nanoseconds / 1_000_000n)).toISOString()
}
