/**
 * Where the CLI's exports go: `-` is stdout; a file is written beside its target as OUT.partial and
 * renamed once whole, so an export that breaks off (the agent stopped, the disk filled) leaves no
 * short file that looks complete. Progress counts rows as lines (one row per line in every format).
 */
import { createWriteStream } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import type { ExportDownload } from '../api/index.js'
import { ProgressBar } from './progress-bar.js'

export interface ExportProgress {
  rows: number
  /** What the agent counted as the export started (null: it did not say); rows logged meanwhile may follow. */
  total: number | null
  rowsPerSecond: number
  etaSeconds: number | undefined
  /** The last report: the body ended. */
  finished: boolean
}

const PROGRESS_EVERY_MS = 100
const NEWLINE = 0x0a

/** Writes an export's body to `out`; resolves with the bytes written to a file (null for stdout). */
export async function saveDownload (out: string, download: ExportDownload, what: string, onProgress: (progress: ExportProgress) => void = barOf(what)): Promise<number | null> {
  const source = Readable.fromWeb(download.body as NodeReadableStream<Uint8Array>)
  const counter = new RowCounter(download.rows, onProgress)
  try {
    if (out === '-') {
      await pipeline(source, counter.stream, process.stdout, { end: false })
      return null
    }
    const partial = `${out}.partial`
    try {
      await pipeline(source, counter.stream, createWriteStream(partial))
      await rename(partial, out)
    } catch (err) {
      await rm(partial, { force: true })
      throw new Error(`${what} to ${out} failed, nothing written: ${(err as Error).message}`, { cause: err })
    }
    return (await stat(out)).size
  } finally {
    // Also when the transfer broke: the last report ends the progress bar.
    counter.finish()
  }
}

/** Counts the lines passing through and reports them at most every PROGRESS_EVERY_MS, and once when finished. */
class RowCounter {
  readonly stream: Transform
  private readonly started = performance.now()
  private rows = 0
  private reportedAt = 0
  private finished = false

  constructor (private readonly total: number | null, private readonly onProgress: (progress: ExportProgress) => void) {
    this.stream = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) this.rows++
        if (performance.now() - this.reportedAt >= PROGRESS_EVERY_MS) this.report()
        callback(null, chunk)
      }
    })
  }

  finish (): void {
    if (this.finished) return
    this.finished = true
    this.report()
  }

  private report (): void {
    this.reportedAt = performance.now()
    const seconds = (this.reportedAt - this.started) / 1000
    const rowsPerSecond = seconds > 0 ? this.rows / seconds : 0
    const left = this.total === null ? undefined : Math.max(0, this.total - this.rows)
    this.onProgress({ rows: this.rows, total: this.total, rowsPerSecond, etaSeconds: left === undefined || rowsPerSecond === 0 ? undefined : left / rowsPerSecond, finished: this.finished })
  }
}

/** The default progress: a bar on stderr when it is a terminal. */
function barOf (what: string): (progress: ExportProgress) => void {
  const bar = new ProgressBar(what, undefined, 'rows')
  return ({ rows, total, rowsPerSecond, etaSeconds, finished }) => {
    bar.show(rows, Math.max(total ?? rows, rows), rowsPerSecond, etaSeconds)
    if (finished) bar.stop()
  }
}
