/**
 * Durable, append-only log of hashgraph events in SQLite (WAL). Insertion order is kept, so a
 * restart replays the events in an order the engine accepts and reaches the identical state.
 */
import Database from 'better-sqlite3'
import { EventLogError } from './errors.js'

export interface ConsensusSnapshot {
  /** Last round whose events have their round received. */
  round: number
  members: number
  /** Events ordered so far (the next event's position). */
  eventPosition: number
  /** Transactions ordered so far. */
  transactionPosition: number
  /** Hex SHA-256 chain over the ordered events' hashes: H(previous ‖ event hash). */
  runningHash: string
}

/** Each entry upgrades the schema by one version; never edit a released entry, append. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE events (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, creator INTEGER NOT NULL,
     creator_seq INTEGER NOT NULL, bytes BLOB NOT NULL);
   CREATE INDEX events_by_creator ON events (creator, creator_seq);
   CREATE TABLE snapshots (round INTEGER PRIMARY KEY, members INTEGER NOT NULL, event_position INTEGER NOT NULL,
     transaction_position INTEGER NOT NULL, running_hash TEXT NOT NULL);`
]

export class EventLog {
  private readonly db: Database.Database
  private readonly insertEvent: Database.Statement<LogRow>
  private readonly insertSnapshot: Database.Statement<[number, number, number, number, string]>
  private pending: LogRow[] = []
  private readonly writeBatch: (rows: LogRow[]) => void

  /** Opens (creating if needed) the log at `path`; ':memory:' is allowed for tests and benchmarks. */
  constructor (readonly path: string) {
    try {
      this.db = new Database(path)
    } catch (err) {
      throw new EventLogError(`cannot open event log ${path}: ${(err as Error).message}`)
    }
    this.db.pragma('journal_mode = WAL')
    // FULL: a committed event survives power loss, which own events need before they are gossiped.
    this.db.pragma('synchronous = FULL')
    this.migrate()
    this.insertEvent = this.db.prepare('INSERT INTO events (hash, creator, creator_seq, bytes) VALUES (?, ?, ?, ?)')
    this.insertSnapshot = this.db.prepare('INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)')
    this.writeBatch = this.db.transaction((rows: LogRow[]) => {
      for (const row of rows) this.insertEvent.run(...row)
    })
  }

  private migrate (): void {
    const version = this.db.pragma('user_version', { simple: true }) as number
    if (version > MIGRATIONS.length) {
      throw new EventLogError(`event log ${this.path} has schema version ${version}, newer than this build understands (${MIGRATIONS.length})`)
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!)
        this.db.pragma(`user_version = ${v + 1}`)
      })()
    }
  }

  getMeta (key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined
    return row?.value
  }

  setMeta (key: string, value: string): void {
    this.db.prepare('INSERT OR REPLACE INTO meta VALUES (?, ?)').run(key, value)
  }

  /** Queues a received event; it is written with the next flush (at the latest before any own event). */
  appendReceived (hash: Uint8Array, creator: number, creatorSeq: number, bytes: Uint8Array): void {
    this.pending.push([hash, creator, creatorSeq, bytes])
    if (this.pending.length >= 512) this.flush()
  }

  /** Writes everything queued, then this member's own event, and returns once it is on disk. */
  appendOwn (hash: Uint8Array, creator: number, creatorSeq: number, bytes: Uint8Array): void {
    this.pending.push([hash, creator, creatorSeq, bytes])
    this.flush()
  }

  flush (): void {
    if (this.pending.length === 0) return
    // Rows leave the queue only once written: a failed write (disk full) keeps them for the next try.
    this.writeBatch(this.pending)
    this.pending = []
  }

  saveSnapshot (s: ConsensusSnapshot): void {
    this.insertSnapshot.run(s.round, s.members, s.eventPosition, s.transactionPosition, s.runningHash)
  }

  lastSnapshot (): ConsensusSnapshot | undefined {
    return toSnapshot(this.db.prepare('SELECT * FROM snapshots ORDER BY round DESC LIMIT 1').get() as SnapshotRow | undefined)
  }

  snapshotAt (round: number): ConsensusSnapshot | undefined {
    return toSnapshot(this.db.prepare('SELECT * FROM snapshots WHERE round = ?').get(round) as SnapshotRow | undefined)
  }

  count (): number {
    return (this.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n
  }

  /**
   * Every stored event in insertion order, read in pages: no query stays open between pages, so
   * the caller may write to the log (or await) while iterating.
   */
  * events (pageSize = 1000): Iterable<{ hash: Uint8Array, bytes: Uint8Array }> {
    this.flush()
    const page = this.db.prepare('SELECT seq, hash, bytes FROM events WHERE seq > ? ORDER BY seq LIMIT ?')
    let after = 0
    for (;;) {
      const rows = page.all(after, pageSize) as Array<{ seq: number, hash: Buffer, bytes: Buffer }>
      for (const row of rows) yield { hash: new Uint8Array(row.hash), bytes: new Uint8Array(row.bytes) }
      if (rows.length < pageSize) return
      after = rows[rows.length - 1]!.seq
    }
  }

  /**
   * Stored events a peer lacks, in insertion (topological) order: those of creator c with a
   * sequence number at or above known[c] (creators beyond the vector: all). Returns an array, not
   * a cursor, so that a sync server can await between writes without holding a query open.
   */
  eventsAfter (known: readonly number[], limit = 10_000): Uint8Array[] {
    this.flush()
    const clauses = known.map((_, creator) => `(creator = ${creator} AND creator_seq >= ?)`)
    clauses.push(`creator >= ${known.length}`)
    const rows = this.db.prepare(`SELECT bytes FROM events WHERE ${clauses.join(' OR ')} ORDER BY seq LIMIT ?`).pluck().all(...known, limit) as Buffer[]
    return rows.map((bytes) => new Uint8Array(bytes))
  }

  eventBytes (hash: Uint8Array): Uint8Array | undefined {
    const row = this.db.prepare('SELECT bytes FROM events WHERE hash = ?').get(hash) as { bytes: Buffer } | undefined
    return row === undefined ? undefined : new Uint8Array(row.bytes)
  }

  close (): void {
    if (!this.db.open) return
    this.flush()
    this.db.close()
  }
}

type LogRow = [hash: Uint8Array, creator: number, creatorSeq: number, bytes: Uint8Array]

interface SnapshotRow { round: number, members: number, event_position: number, transaction_position: number, running_hash: string }

function toSnapshot (row: SnapshotRow | undefined): ConsensusSnapshot | undefined {
  return row === undefined
    ? undefined
    : { round: row.round, members: row.members, eventPosition: row.event_position, transactionPosition: row.transaction_position, runningHash: row.running_hash }
}
