/**
 * The migration protocol's streams over libp2p. Every stream of `/hgmig/<swarmId>/migrate/1.0.0`
 * starts with a length-prefixed JSON header naming the migration and the channel:
 *   control — length-prefixed JSON messages (request, agree, progress, switch-over, commit, …)
 *   disk, memory — raw bytes for the hypervisor driver (DuplexByteStream)
 *   chunks — base-layer chunks for the built-in fetch (CID list in, blocks out)
 * Each site counts the bytes it writes and reads per migration and channel: the figures
 * "bytes on the wire" are these counts (libp2p's own framing, noise and yamux excluded).
 */
import type { Stream } from '@libp2p/interface'
import { byteStream, lpStream } from '@libp2p/utils'
import type { DuplexByteStream } from './driver.js'
import { PeerLostError, ProtocolError } from './errors.js'

export type Channel = 'control' | 'disk' | 'memory' | 'chunks'
export const CHANNELS: readonly Channel[] = ['control', 'disk', 'memory', 'chunks']

export interface ChannelHeader {
  migration: string
  channel: Channel
  /** The sending site's name. */
  site: string
}

/** Largest control message: a plan summary, or an NSS hash list of a large image set. */
export const MAX_CONTROL_MESSAGE = 64 * 1024 * 1024
/** What a reader may hold unread before libp2p resets the stream (a fast sender, a slow disk). */
const MAX_READ_BUFFER = 64 * 1024 * 1024

export class WireCounter {
  readonly sent: Record<Channel, number> = { control: 0, disk: 0, memory: 0, chunks: 0 }
  readonly received: Record<Channel, number> = { control: 0, disk: 0, memory: 0, chunks: 0 }

  total (): number {
    return CHANNELS.reduce((sum, c) => sum + this.sent[c] + this.received[c], 0)
  }

  toJSON (): { sent: Record<Channel, number>, received: Record<Channel, number> } {
    return { sent: { ...this.sent }, received: { ...this.received } }
  }
}

/** A shaping hook: resolves when `bytes` may be written. */
export type Shape = (bytes: number, signal?: AbortSignal) => Promise<void>

/**
 * The error a failed read or write means. libp2p's byteStream waits for 'drain' with p-event,
 * which rejects with the stream's close event itself (a StreamCloseEvent, not an Error): its
 * `error` is the real cause (a reset by the other end, our own abort), and a close without one
 * is named as such — never "[object Event]".
 */
export function streamFailure (err: unknown, what: string): Error {
  let cause = err
  if (isCloseEvent(cause)) {
    if (cause.error === undefined || cause.error === null) return new PeerLostError(`${what}: the stream was closed ${cause.local === true ? 'at this end' : 'by the other end'} while a write waited for it to drain`)
    cause = cause.error
  }
  if (cause instanceof Error && (cause.name === 'AbortError' || cause.name.startsWith('Migration'))) return cause
  return new PeerLostError(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`)
}

function isCloseEvent (value: unknown): value is Event & { error?: unknown, local?: boolean } {
  return value instanceof Event
}

/**
 * Runs `operation` with a signal of its own that follows `signal`, and drops the link after.
 * libp2p's write adds an abort listener to the signal it is given for every wait on 'drain' and
 * never removes it (p-event): on a migration's long-lived signal that is one leaked listener per
 * backed-up write (MaxListenersExceededWarning, and every closure kept alive).
 */
export async function withOwnSignal<T> (signal: AbortSignal | undefined, operation: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
  if (signal === undefined) return await operation(undefined)
  signal.throwIfAborted()
  const own = new AbortController()
  const follow = (): void => { own.abort(signal.reason) }
  signal.addEventListener('abort', follow, { once: true })
  try {
    return await operation(own.signal)
  } finally {
    signal.removeEventListener('abort', follow)
  }
}

const lost = streamFailure

export async function writeHeader (stream: Stream, header: ChannelHeader): Promise<void> {
  const lp = lpStream(stream)
  await lp.write(new TextEncoder().encode(JSON.stringify(header)))
  lp.unwrap()
}

export async function readHeader (stream: Stream): Promise<ChannelHeader> {
  const lp = lpStream(stream, { maxDataLength: 4096 })
  const bytes = await lp.read({ signal: AbortSignal.timeout(60_000) })
  lp.unwrap()
  let header: ChannelHeader
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray())) as ChannelHeader
  } catch {
    throw new ProtocolError('malformed channel header')
  }
  if (typeof header.migration !== 'string' || !/^[0-9a-z-]{1,64}$/.test(header.migration) || !(CHANNELS as string[]).includes(header.channel) || typeof header.site !== 'string') {
    throw new ProtocolError(`malformed channel header ${JSON.stringify(header).slice(0, 200)}`)
  }
  return header
}

/**
 * A libp2p stream as the driver's DuplexByteStream: counted, shaped on write; `onRead` hears the
 * bytes the driver has taken (the target reports them to the source's delivery window).
 */
export function byteChannel (stream: Stream, channel: Channel, counter: WireCounter, shape?: Shape, onRead?: (bytes: number) => void): DuplexByteStream {
  stream.maxReadBufferLength = MAX_READ_BUFFER
  const bytes = byteStream(stream, { maxBufferSize: MAX_READ_BUFFER })
  let pending: Uint8Array = new Uint8Array(0)
  let ended = false
  const what = `${channel} stream`
  return {
    async read (options = {}) {
      const wanted = options.bytes
      try {
        while (!ended && (wanted === undefined ? pending.byteLength === 0 : pending.byteLength < wanted)) {
          const chunk = await bytes.read({ signal: options.signal })
          if (chunk === null) { ended = true; break }
          const data = chunk.subarray()
          counter.received[channel] += data.byteLength
          pending = pending.byteLength === 0 ? data : Buffer.concat([pending, data])
        }
      } catch (err) {
        throw lost(err, what)
      }
      if (pending.byteLength === 0) return null
      const take = wanted === undefined ? pending.byteLength : Math.min(wanted, pending.byteLength)
      if (wanted !== undefined && take < wanted) throw new PeerLostError(`${what} ended after ${take} of ${wanted} bytes`)
      const out = pending.subarray(0, take)
      pending = pending.subarray(take)
      onRead?.(take)
      return out
    },
    async write (data, options = {}) {
      await shape?.(data.byteLength, options.signal)
      try {
        await withOwnSignal(options.signal, async (signal) => { await bytes.write(data, { signal }) })
      } catch (err) {
        throw lost(err, what)
      }
      counter.sent[channel] += data.byteLength
    },
    async closeWrite () {
      try { await stream.close() } catch (err) { throw lost(err, what) }
    },
    abort (err) { stream.abort(err) }
  }
}

/** Length-prefixed JSON messages, counted. */
export class ControlChannel {
  private readonly lp: ReturnType<typeof lpStream>

  constructor (readonly stream: Stream, private counter: WireCounter, private readonly what = 'control stream', private readonly channel: Channel = 'control') {
    stream.maxReadBufferLength = MAX_READ_BUFFER
    this.lp = lpStream(stream, { maxDataLength: MAX_CONTROL_MESSAGE, maxBufferSize: MAX_READ_BUFFER })
  }

  /**
   * Counts this channel's bytes, those so far included, in `counter` from now on: an inbound
   * control stream is read (its request) before the migration it belongs to, and its counter, exist.
   */
  countInto (counter: WireCounter): void {
    if (counter === this.counter) return
    counter.sent[this.channel] += this.counter.sent[this.channel]
    counter.received[this.channel] += this.counter.received[this.channel]
    this.counter = counter
  }

  async send (message: { type: string } & Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    await this.sendRaw(new TextEncoder().encode(JSON.stringify(message)), signal)
  }

  async sendRaw (bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    try {
      await withOwnSignal(signal, async (own) => { await this.lp.write(bytes, { signal: own }) })
    } catch (err) {
      throw lost(err, this.what)
    }
    this.counter.sent[this.channel] += bytes.byteLength
  }

  /** The next message's bytes, or null when the other end closed the stream cleanly. */
  async receiveRaw (signal?: AbortSignal): Promise<Uint8Array | null> {
    let bytes
    try {
      bytes = (await this.lp.read({ signal })).subarray()
    } catch (err) {
      if ((err as Error).name === 'UnexpectedEOFError' && this.stream.status !== 'reset' && this.stream.status !== 'aborted') return null
      throw lost(err, this.what)
    }
    this.counter.received[this.channel] += bytes.byteLength
    return bytes
  }

  /** The next message, or null when the other end closed the stream cleanly. */
  async receive (signal?: AbortSignal): Promise<({ type: string } & Record<string, unknown>) | null> {
    const bytes = await this.receiveRaw(signal)
    if (bytes === null) return null
    try {
      const message = JSON.parse(new TextDecoder().decode(bytes)) as { type: string }
      if (typeof message.type !== 'string') throw new Error('no type')
      return message as { type: string } & Record<string, unknown>
    } catch {
      throw new ProtocolError(`malformed control message on the ${this.what}`)
    }
  }

  /** Ends our side after what was sent has gone out (a dead peer: reset after 5 s). */
  async close (): Promise<void> {
    try {
      await this.stream.close({ signal: AbortSignal.timeout(5_000) })
    } catch {
      this.stream.abort(new PeerLostError(`${this.what}: closing timed out`))
    }
  }

  abort (err: Error): void { this.stream.abort(err) }
}
