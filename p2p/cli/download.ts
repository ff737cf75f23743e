/**
 * Where the CLI's exports go: `-` is stdout; a file is written beside its target as OUT.partial and
 * renamed once whole, so an export that breaks off (the agent stopped, the disk filled) leaves no
 * short file that looks complete.
 */
import { createWriteStream } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'

/** Writes an export's body to `out`; resolves with the bytes written to a file (null for stdout). */
export async function saveDownload (out: string, body: ReadableStream<Uint8Array>, what: string): Promise<number | null> {
  const source = Readable.fromWeb(body as NodeReadableStream<Uint8Array>)
  if (out === '-') {
    await pipeline(source, process.stdout, { end: false })
    return null
  }
  const partial = `${out}.partial`
  try {
    await pipeline(source, createWriteStream(partial))
    await rename(partial, out)
  } catch (err) {
    await rm(partial, { force: true })
    throw new Error(`${what} to ${out} failed, nothing written: ${(err as Error).message}`, { cause: err })
  }
  return (await stat(out)).size
}
