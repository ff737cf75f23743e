/**
 * Transfer state in SQLite, so that a transfer survives a crash or a restart: what is being
 * fetched (the image's identity and its manifest) and which chunk positions are done. A position
 * is marked done only once its leaf was verified and is durable in the image store (adopted, see
 * Transfer); a resume also asks the store, which may hold leaves stored after the last marks.
 */
import Database from 'better-sqlite3'
import type { Layer } from '../store/index.js'
import type { Purpose } from './protocol.js'

export interface TransferRecord {
  /** The image's root CID (one transfer per root). */
  id: string
  name: string
  layer: Layer
  base: string | null
  private: boolean
  size: number
  chunkSize: number
  purpose: Purpose
  migration: string | null
  /** '' (a transfer from before leaves were adopted wrote a partial file here: deleted on resume). */
  partialPath: string
  created: number
  /** How the last run ended, if it ended without the image: 'interrupted' (stopped, cancelled, the process died) or 'failed' (an error), with its message. */
  lastOutcome?: 'interrupted' | 'failed' | null
  lastError?: string | null
}

/** A transfer that ended: its image registered ('done'), or dropped with an error that leaves nothing to resume ('failed'). */
export interface FinishedTransfer {
  id: string
  name: string
  layer: Layer
  purpose: Purpose
  outcome: 'done' | 'failed'
  chunksTotal: number
  size: number
  /** Per source (null: this site: zeros, chunks it had, chunks found in its store), positions and image bytes. */
  sources: SourceTotal[]
  created: number
  finished: number
  error: string | null
}

/** What one source delivered to a transfer, counted in manifest positions and image bytes. */
export interface SourceTotal {
  peer: string | null
  chunks: number
  bytes: number
}

/** Finished transfers kept for the operator's list, newest first. */
const HISTORY_KEPT = 200

interface TransferRow {
  id: string
  name: string
  layer: Layer
  base: string | null
  private: number
  size: number
  chunk_size: number
  purpose: Purpose
  migration: string | null
  partial_path: string
  created: number
  last_outcome: 'interrupted' | 'failed' | null
  last_error: string | null
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS exchange_transfers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    layer TEXT NOT NULL,
    base TEXT,
    private INTEGER NOT NULL,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    migration TEXT,
    partial_path TEXT NOT NULL,
    created INTEGER NOT NULL
  );
  -- Which site delivered a chunk: small ids instead of a 52-character peer id per row.
  CREATE TABLE IF NOT EXISTS exchange_sources (id INTEGER PRIMARY KEY, peer TEXT NOT NULL UNIQUE);
  -- done: 0 missing, 1 in the image store (or all zeros). source: exchange_sources.id, or NULL when
  -- the chunk came from this site (all zeros, already in the local store, or found there on resume).
  CREATE TABLE IF NOT EXISTS exchange_chunks (
    transfer TEXT NOT NULL REFERENCES exchange_transfers(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    cid BLOB NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    source INTEGER,
    PRIMARY KEY (transfer, position)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS exchange_chunks_done_by_cid ON exchange_chunks(cid) WHERE done = 1;
  CREATE TABLE IF NOT EXISTS exchange_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    layer TEXT NOT NULL,
    purpose TEXT NOT NULL,
    outcome TEXT NOT NULL,
    chunks_total INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sources TEXT NOT NULL,
    created INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    error TEXT
  );
`

/** Columns added after the first release of the schema: added to an older database on open. */
const ADDED_COLUMNS: Array<[table: string, column: string, definition: string]> = [
  ['exchange_transfers', 'last_outcome', 'TEXT'],
  ['exchange_transfers', 'last_error', 'TEXT']
]

export class TransferState {
  readonly db: Database.Database
  private readonly ownsDb: boolean
  private readonly sourceIds = new Map<string, number>()

  constructor (database: string | Database.Database) {
    this.ownsDb = typeof database === 'string'
    this.db = typeof database === 'string' ? new Database(database) : database
    if (this.ownsDb) {
      this.db.pragma('journal_mode = WAL')
      // NORMAL: a commit survives a killed process (the test's kill -9); after a power cut the last
      // batches may be lost, which only means fetching those chunks again (or finding them in the
      // partial file on resume).
      this.db.pragma('synchronous = NORMAL')
    }
    this.db.pragma('foreign_keys = ON')
    this.db.exec(SCHEMA)
    for (const [table, column, definition] of ADDED_COLUMNS) {
      const columns = this.db.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all() as string[]
      if (!columns.includes(column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`)
    }
  }

  close (): void {
    if (this.ownsDb) this.db.close()
  }

  list (): TransferRecord[] {
    return (this.db.prepare('SELECT * FROM exchange_transfers ORDER BY created').all() as TransferRow[]).map(toRecord)
  }

  load (id: string): TransferRecord | undefined {
    const row = this.db.prepare('SELECT * FROM exchange_transfers WHERE id = ?').get(id) as TransferRow | undefined
    return row === undefined ? undefined : toRecord(row)
  }

  create (record: TransferRecord, cids: Uint8Array[]): void {
    this.db.transaction(() => {
      this.db.prepare(`INSERT INTO exchange_transfers (id, name, layer, base, private, size, chunk_size, purpose, migration, partial_path, created)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(record.id, record.name, record.layer, record.base, record.private ? 1 : 0, record.size,
        record.chunkSize, record.purpose, record.migration, record.partialPath, record.created)
      const insert = this.db.prepare('INSERT INTO exchange_chunks (transfer, position, cid) VALUES (?, ?, ?)')
      cids.forEach((cid, position) => insert.run(record.id, position, cid))
    }).immediate()
  }

  /** Positions in order with their CID and whether they are written. */
  chunks (id: string): Array<{ position: number, cid: Uint8Array, done: boolean, source: string | null }> {
    const rows = this.db.prepare(`SELECT c.position, c.cid, c.done, s.peer FROM exchange_chunks c LEFT JOIN exchange_sources s ON s.id = c.source
      WHERE c.transfer = ? ORDER BY c.position`).raw().all(id) as Array<[number, Uint8Array, number, string | null]>
    return rows.map(([position, cid, done, source]) => ({ position, cid, done: done === 1, source }))
  }

  /** How many positions a transfer has and how many are written (one aggregate, not every row: status polls it). */
  counts (id: string): { total: number, done: number } {
    const [total, done] = this.db.prepare('SELECT count(*), coalesce(sum(done), 0) FROM exchange_chunks WHERE transfer = ?').raw().get(id) as [number, number]
    return { total, done }
  }

  /** Marks positions written, in one transaction. `source` null: produced locally (zeros, local store). */
  markDone (id: string, written: Array<{ positions: number[], source: string | null }>): void {
    if (written.length === 0) return
    const update = this.db.prepare('UPDATE exchange_chunks SET done = 1, source = ? WHERE transfer = ? AND position = ?')
    this.db.transaction(() => {
      for (const { positions, source } of written) {
        const sourceId = source === null ? null : this.sourceId(source)
        for (const position of positions) update.run(sourceId, id, position)
      }
    })()
  }

  /** Marks positions missing again (the store no longer has their leaf). */
  markMissing (id: string, positions: number[]): void {
    const update = this.db.prepare('UPDATE exchange_chunks SET done = 0, source = NULL WHERE transfer = ? AND position = ?')
    this.db.transaction(() => { for (const position of positions) update.run(id, position) })()
  }

  delete (id: string): void {
    this.db.prepare('DELETE FROM exchange_transfers WHERE id = ?').run(id)
  }

  /** How a run that did not produce the image ended (shown in the transfer list until the next run). */
  noteOutcome (id: string, outcome: 'interrupted' | 'failed' | null, error: string | null): void {
    this.db.prepare('UPDATE exchange_transfers SET last_outcome = ?, last_error = ? WHERE id = ?').run(outcome, error, id)
  }

  /** Image bytes of `done` positions done (every position is a full chunk but the last, which is looked up by its key). */
  bytesDone (record: TransferRecord, counts: { total: number, done: number }): number {
    if (counts.total === 0) return 0
    const lastDone = this.db.prepare('SELECT done FROM exchange_chunks WHERE transfer = ? AND position = ?').pluck().get(record.id, counts.total - 1) === 1
    const lastLength = record.size - (counts.total - 1) * record.chunkSize
    return counts.done * record.chunkSize - (lastDone ? record.chunkSize - lastLength : 0)
  }

  /** Per source, the positions it delivered and their image bytes (null: produced at this site). */
  sourceTotals (record: TransferRecord, total: number): SourceTotal[] {
    const lastLength = record.size - (total - 1) * record.chunkSize
    const rows = this.db.prepare(`SELECT s.peer, count(*), coalesce(sum(c.position = ?), 0) FROM exchange_chunks c LEFT JOIN exchange_sources s ON s.id = c.source
      WHERE c.transfer = ? AND c.done = 1 GROUP BY c.source ORDER BY count(*) DESC`).raw().all(total - 1, record.id) as Array<[string | null, number, number]>
    return rows.map(([peer, chunks, last]) => ({ peer, chunks, bytes: (chunks - last) * record.chunkSize + last * lastLength }))
  }

  /**
   * Ends a transfer in one transaction: its rows go and its history entry is written, so a crash
   * leaves either the transfer (to resume or finish again) or its end.
   */
  finish (record: TransferRecord, outcome: 'done' | 'failed', error: string | null): FinishedTransfer {
    return this.db.transaction(() => {
      const { total } = this.counts(record.id)
      const finished: FinishedTransfer = {
        id: record.id,
        name: record.name,
        layer: record.layer,
        purpose: record.purpose,
        outcome,
        chunksTotal: total,
        size: record.size,
        sources: total === 0 ? [] : this.sourceTotals(record, total),
        created: record.created,
        finished: Date.now(),
        error
      }
      this.db.prepare('DELETE FROM exchange_transfers WHERE id = ?').run(record.id)
      this.db.prepare(`INSERT INTO exchange_history (id, name, layer, purpose, outcome, chunks_total, size, sources, created, finished, error)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(finished.id, finished.name, finished.layer, finished.purpose, outcome, total, record.size,
        JSON.stringify(finished.sources), finished.created, finished.finished, error)
      this.db.prepare('DELETE FROM exchange_history WHERE seq <= (SELECT max(seq) FROM exchange_history) - ?').run(HISTORY_KEPT)
      return finished
    }).immediate()
  }

  /** Finished transfers, newest first. */
  history (limit = HISTORY_KEPT): FinishedTransfer[] {
    const rows = this.db.prepare('SELECT * FROM exchange_history ORDER BY seq DESC LIMIT ?').all(limit) as Array<{
      id: string, name: string, layer: Layer, purpose: Purpose, outcome: 'done' | 'failed', chunks_total: number, size: number, sources: string, created: number, finished: number, error: string | null
    }>
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      layer: row.layer,
      purpose: row.purpose,
      outcome: row.outcome,
      chunksTotal: row.chunks_total,
      size: row.size,
      sources: JSON.parse(row.sources) as SourceTotal[],
      created: row.created,
      finished: row.finished,
      error: row.error
    }))
  }

  private sourceId (peer: string): number {
    let id = this.sourceIds.get(peer)
    if (id === undefined) {
      this.db.prepare('INSERT OR IGNORE INTO exchange_sources (peer) VALUES (?)').run(peer)
      id = this.db.prepare('SELECT id FROM exchange_sources WHERE peer = ?').pluck().get(peer) as number
      this.sourceIds.set(peer, id)
    }
    return id
  }
}

function toRecord (row: TransferRow): TransferRecord {
  return {
    id: row.id,
    name: row.name,
    layer: row.layer,
    base: row.base,
    private: row.private === 1,
    size: row.size,
    chunkSize: row.chunk_size,
    purpose: row.purpose,
    migration: row.migration,
    partialPath: row.partial_path,
    created: row.created,
    lastOutcome: row.last_outcome ?? null,
    lastError: row.last_error ?? null
  }
}
