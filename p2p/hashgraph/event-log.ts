/**
 * Durable, append-only log of hashgraph events in SQLite (WAL). Insertion order is kept, so a
 * restart replays the events in an order the engine accepts and reaches the identical state.
 *
 * Durability: SQLite commits with `synchronous = NORMAL` (a commit is a write() into the -wal file,
 * which survives the process being killed but not a power loss), and this class makes commits
 * durable itself by fdatasync-ing the -wal file: at once and on the calling thread for appendOwn
 * ('now') and for whenDurable() by default, or (syncMode 'pool') through libuv's thread pool, where
 * every commit made while an fdatasync is in flight shares the next one (group commit). A checkpoint (SQLite's, every ~1000
 * pages) syncs the -wal before copying it into the database, so no commit is ever only in a
 * file that was not synced. The -wal file keeps its inode while the database is open (one
 * connection: the data directory is locked), so one descriptor opened once stays valid.
 *
 * The -wal file is filled with zeros to WAL_PREALLOCATED_BYTES when the log opens: SQLite reuses it
 * from the start after each checkpoint, so its commits overwrite blocks the file already has, and
 * an fdatasync then writes those blocks and flushes the disk without an ext4 journal commit (which
 * a growing file needs for its size, and which waits for every other file's pending writes on a
 * busy disk). Measured here under load: fdatasync p50 0.08 ms instead of 0.19 ms, p90 3.7 instead
 * of 7.5 ms. SQLite ignores what follows the last valid frame (zeros fail the frame checksums).
 */
import { closeSync, fdatasync, fdatasyncSync, fstatSync, fsyncSync, openSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { EventLogError } from './errors.js'

/** fdatasync(2) through libuv's thread pool; replaceable to test what waits for it. */
export type SyncFile = (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => void

export interface EventLogOptions {
  /** How whenDurable() flushes the -wal file to disk in the thread pool (default: fs.fdatasync). */
  syncFile?: SyncFile
  /**
   * 'inline' (default): whenDurable() syncs at once, on the calling thread, before it returns its
   * promise. 'pool': in libuv's thread pool, commits made meanwhile sharing the next sync (group
   * commit), and the event loop never waits for the disk — but each sync then costs two thread
   * hand-offs, which measured slower where the cores are busy (bench/RESULTS.md, issue 4, session
   * 4: p50 1.36 × inline's on 2 shared cores, for a disk flush of 0.1–1 ms). Default from the
   * environment variable HGMIG_EVENT_LOG_SYNC.
   */
  syncMode?: 'pool' | 'inline'
}

interface DurableWaiter { commit: number, resolve: () => void, reject: (err: Error) => void }

/** More than SQLite's WAL reaches between two automatic checkpoints (1000 pages of 4 KiB + headers). */
const WAL_PREALLOCATED_BYTES = 8 * 1024 * 1024

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
  /** Descriptor of the -wal file (null for ':memory:', which has nothing to sync). */
  private walFd: number | null = null
  private readonly syncFile: SyncFile
  private readonly syncMode: 'pool' | 'inline'
  /** Write transactions committed so far, and how many of them are known to be on disk. */
  private commits = 0
  private durableCommits = 0
  private syncInFlight = false
  private syncFailure: Error | null = null
  private readonly waiters: DurableWaiter[] = []
  /** This member's creator id and the sequence numbers of its newest own event written / on disk. */
  private ownCreator: number | null = null
  private writtenOwnSeq = -1
  private durableOwnSeq = -1

  /** Opens (creating if needed) the log at `path`; ':memory:' is allowed for tests and benchmarks. */
  constructor (readonly path: string, options: EventLogOptions = {}) {
    try {
      this.db = new Database(path)
    } catch (err) {
      throw new EventLogError(`cannot open event log ${path}: ${(err as Error).message}`)
    }
    this.syncFile = options.syncFile ?? fdatasync
    const mode = options.syncMode ?? process.env.HGMIG_EVENT_LOG_SYNC ?? 'inline'
    if (mode !== 'pool' && mode !== 'inline') throw new EventLogError(`event log sync mode must be 'pool' or 'inline', not '${mode}' (HGMIG_EVENT_LOG_SYNC?)`)
    this.syncMode = mode
    this.db.pragma('journal_mode = WAL')
    // NORMAL: commits do not fsync; this class syncs the -wal file itself (see the file comment),
    // so that the fsync an own event needs before it is gossiped can leave the event loop.
    this.db.pragma('synchronous = NORMAL')
    this.migrate()
    this.insertEvent = this.db.prepare('INSERT INTO events (hash, creator, creator_seq, bytes) VALUES (?, ?, ?, ?)')
    this.insertSnapshot = this.db.prepare('INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)')
    this.writeBatch = this.db.transaction((rows: LogRow[]) => {
      for (const row of rows) this.insertEvent.run(...row)
    })
    if (this.db.memory) return
    this.walFd = openSync(`${path}-wal`, 'r+')
    preallocate(this.walFd, WAL_PREALLOCATED_BYTES)
    // What an earlier run committed may still be only in the page cache (it was killed before its
    // sync): make it durable before anything from it is served again. Also the -wal's directory
    // entry, in case this open created the file.
    fdatasyncSync(this.walFd)
    syncDirectory(dirname(path))
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

  /**
   * Writes everything queued, then this member's own event. 'now': returns once it is on disk
   * (an fdatasync on this thread). 'later': returns once committed (it survives the process being
   * killed, not a power loss); it must not be shown to anyone before whenDurable() resolves, and
   * eventsAfter() holds it back until then.
   */
  appendOwn (hash: Uint8Array, creator: number, creatorSeq: number, bytes: Uint8Array, durability: 'now' | 'later' = 'now'): void {
    if (this.ownCreator !== null && this.ownCreator !== creator) throw new EventLogError(`event log ${this.path} holds own events of creator ${this.ownCreator}, not ${creator}`)
    this.pending.push([hash, creator, creatorSeq, bytes])
    this.flush()
    // Own events of earlier runs were synced when the log was opened.
    if (this.ownCreator === null) this.durableOwnSeq = creatorSeq - 1
    this.ownCreator = creator
    this.writtenOwnSeq = creatorSeq
    if (durability === 'now') this.syncNow()
  }

  flush (): void {
    if (this.pending.length === 0) return
    // Rows leave the queue only once written: a failed write (disk full) keeps them for the next try.
    this.writeBatch(this.pending)
    this.pending = []
    this.commits++
  }

  /**
   * Resolves once every commit made so far (queued received events included) is on disk. One
   * fdatasync runs at a time, in libuv's thread pool; calls made while it runs share the next.
   * A failed sync rejects this and every later call: what the kernel failed to write may be
   * gone from its cache too, so nothing after it can be trusted to be durable.
   */
  async whenDurable (): Promise<void> {
    this.flush()
    if (this.syncFailure !== null) throw this.syncFailure
    if (this.walFd === null || this.durableCommits >= this.commits) return
    if (this.syncMode === 'inline') {
      this.syncNow()
      return
    }
    await new Promise<void>((resolve, reject) => {
      this.waiters.push({ commit: this.commits, resolve, reject })
      this.startSync()
    })
  }

  /** Sequence number of this member's newest own event known to be on disk (-1: none written by this instance). */
  get durableOwnSequence (): number { return this.durableOwnSeq }

  private startSync (): void {
    if (this.syncInFlight || this.walFd === null || this.waiters.length === 0) return
    this.syncInFlight = true
    const commit = this.commits
    const ownSeq = this.writtenOwnSeq
    this.syncFile(this.walFd, (err) => {
      this.syncInFlight = false
      if (err !== null) {
        this.syncFailure = new EventLogError(`cannot sync event log ${this.path}: ${err.message}`)
        for (const waiter of this.waiters.splice(0)) waiter.reject(this.syncFailure)
        return
      }
      this.markDurable(commit, ownSeq)
      this.startSync()
    })
  }

  private syncNow (): void {
    if (this.syncFailure !== null) throw this.syncFailure
    if (this.walFd === null) {
      this.markDurable(this.commits, this.writtenOwnSeq)
      return
    }
    try {
      fdatasyncSync(this.walFd)
    } catch (err) {
      this.syncFailure = new EventLogError(`cannot sync event log ${this.path}: ${(err as Error).message}`)
      throw this.syncFailure
    }
    this.markDurable(this.commits, this.writtenOwnSeq)
  }

  private markDurable (commit: number, ownSeq: number): void {
    this.durableCommits = Math.max(this.durableCommits, commit)
    this.durableOwnSeq = Math.max(this.durableOwnSeq, ownSeq)
    while (this.waiters.length > 0 && this.waiters[0]!.commit <= this.durableCommits) this.waiters.shift()!.resolve()
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
   * How many events the log holds once what is queued is written: the position a checkpoint
   * records, after which start() replays (events(…, position) gives the ones after it). Rows are
   * never deleted, so the position is also the last row's sequence number.
   */
  position (): number {
    this.flush()
    return Number(this.db.prepare('SELECT COALESCE(MAX(seq), 0) FROM events').pluck().get())
  }

  /** The hash of the event at a position (1-based, as position()), if the log has one there. */
  eventAt (position: number): Uint8Array | undefined {
    const hash = this.db.prepare('SELECT hash FROM events WHERE seq = ?').pluck().get(position) as Buffer | undefined
    return hash === undefined ? undefined : new Uint8Array(hash)
  }

  /** Writes what is queued and waits for the disk (fdatasync on this thread): before a checkpoint names it. */
  syncAll (): void {
    this.flush()
    if (this.durableCommits < this.commits) this.syncNow()
  }

  /**
   * Every stored event in insertion order (those after position `after`), read in pages: no query stays open between pages, so
   * the caller may write to the log (or await) while iterating.
   */
  * events (pageSize = 1000, after = 0): Iterable<{ position: number, hash: Uint8Array, bytes: Uint8Array }> {
    this.flush()
    const page = this.db.prepare('SELECT seq, hash, bytes FROM events WHERE seq > ? ORDER BY seq LIMIT ?')
    for (;;) {
      const rows = page.all(after, pageSize) as Array<{ seq: number, hash: Buffer, bytes: Buffer }>
      for (const row of rows) yield { position: row.seq, hash: new Uint8Array(row.hash), bytes: new Uint8Array(row.bytes) }
      if (rows.length < pageSize) return
      after = rows[rows.length - 1]!.seq
    }
  }

  /**
   * Stored events a peer lacks, in insertion (topological) order: those of creator c with a
   * sequence number at or above known[c] (creators beyond the vector: all). This member's own
   * events that are not on disk yet are left out (nobody may see an own event a crash could
   * lose; only own later events descend from it, so what is returned stays closed under parents).
   * Returns an array, not a cursor, so that a sync server can await between writes without
   * holding a query open.
   */
  eventsAfter (known: readonly number[], limit = 10_000): Uint8Array[] {
    this.flush()
    const clauses = known.map((_, creator) => `(creator = ${creator} AND creator_seq >= ?)`)
    clauses.push(`creator >= ${known.length}`)
    const notDurable = this.ownCreator === null ? '' : ` AND NOT (creator = ${this.ownCreator} AND creator_seq > ${this.durableOwnSeq})`
    const rows = this.db.prepare(`SELECT bytes FROM events WHERE (${clauses.join(' OR ')})${notDurable} ORDER BY seq LIMIT ?`).pluck().all(...known, limit) as Buffer[]
    return rows.map((bytes) => new Uint8Array(bytes))
  }

  eventBytes (hash: Uint8Array): Uint8Array | undefined {
    const row = this.db.prepare('SELECT bytes FROM events WHERE hash = ?').get(hash) as { bytes: Buffer } | undefined
    return row === undefined ? undefined : new Uint8Array(row.bytes)
  }

  /** Writes what is queued and closes (SQLite checkpoints and syncs on the last close). */
  close (): void {
    if (!this.db.open) return
    this.flush()
    this.db.close()
    if (this.walFd !== null) closeSync(this.walFd)
    this.walFd = null
    const closed = new EventLogError(`event log ${this.path} closed before its last sync`)
    for (const waiter of this.waiters.splice(0)) waiter.reject(closed)
  }
}

/** Extends the file with written zeros (not fallocate: its unwritten extents change on first write). */
function preallocate (fd: number, bytes: number): void {
  const zeros = Buffer.alloc(1024 * 1024)
  for (let at = fstatSync(fd).size; at < bytes; at += zeros.length) writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - at), at)
}

/** Makes a new directory entry (the -wal file's) durable; not possible on every platform (Windows). */
export function syncDirectory (directory: string): void {
  let fd: number | null = null
  try {
    fd = openSync(directory, 'r')
    fsyncSync(fd)
  } catch {
    // Best effort: where a directory cannot be opened, its entries are made durable with the files.
  } finally {
    if (fd !== null) closeSync(fd)
  }
}

type LogRow = [hash: Uint8Array, creator: number, creatorSeq: number, bytes: Uint8Array]

interface SnapshotRow { round: number, members: number, event_position: number, transaction_position: number, running_hash: string }

function toSnapshot (row: SnapshotRow | undefined): ConsensusSnapshot | undefined {
  return row === undefined
    ? undefined
    : { round: row.round, members: row.members, eventPosition: row.event_position, transactionPosition: row.transaction_position, runningHash: row.running_hash }
}
