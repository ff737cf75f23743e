/**
 * The swarm's private-network connection protector: the same protocol and key file as
 * @libp2p/pnet (and go-libp2p's pnet), so sites of either kind talk to each other, but with
 * libp2p's XSalsa20 replaced by libsodium's (sodium-native).
 *
 * Why not @libp2p/pnet itself: its `xsalsa20` WebAssembly cipher moved about 300 MB/s on this
 * project's machines and was half the CPU of a chunk transfer (bench/RESULTS.md, issue 5); its
 * WebAssembly memory can be exhausted by one large write, and every cipher keeps 64 bytes of that
 * memory for good, so a process can open only about 5,000 pnet connections in its life.
 * libsodium's cipher state is an ordinary buffer per direction, freed with the connection.
 *
 * The protocol: each side sends 24 random bytes (its nonce) in the clear, then everything it sends
 * is XORed with XSalsa20(key = the swarm's 32-byte pre-shared key, nonce = its own nonce), and
 * everything it receives with XSalsa20(key, the other side's nonce). There is no MAC: a peer with
 * another key gets through the nonce exchange and then fails the noise handshake that follows,
 * because every byte it reads is garbage.
 */
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import { SwarmConfigError } from './errors.js'

const NONCE_BYTES = 24
const KEY_BYTES = 32
/** Pending outbound bytes that are written at once rather than at the end of the current task. */
const FLUSH_AT_BYTES = 1024 * 1024
/** pnet's own default for the nonce exchange when the upgrader gives no signal. */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 1000

/** The part of sodium-native used here (the package ships no types). */
interface Sodium {
  crypto_stream_xor_STATEBYTES: number
  crypto_stream_xor_init: (state: Uint8Array, nonce: Uint8Array, key: Uint8Array) => void
  crypto_stream_xor_update: (state: Uint8Array, output: Uint8Array, input: Uint8Array) => void
}

const sodium = createRequire(import.meta.url)('sodium-native') as Sodium

/** XSalsa20 keystream as a stream: successive calls continue where the previous one stopped. */
export class XSalsa20Stream {
  private readonly state: Uint8Array

  constructor (key: Uint8Array, nonce: Uint8Array) {
    if (key.byteLength !== KEY_BYTES) throw new SwarmConfigError(`XSalsa20 key must be ${KEY_BYTES} bytes, got ${key.byteLength}`)
    if (nonce.byteLength !== NONCE_BYTES) throw new SwarmConfigError(`XSalsa20 nonce must be ${NONCE_BYTES} bytes, got ${nonce.byteLength}`)
    this.state = new Uint8Array(sodium.crypto_stream_xor_STATEBYTES)
    sodium.crypto_stream_xor_init(this.state, nonce, key)
  }

  /** XORs `input` with the next input.byteLength keystream bytes into `output` (may be `input`). */
  xor (input: Uint8Array, output: Uint8Array = new Uint8Array(input.byteLength)): Uint8Array {
    if (input.byteLength > 0) sodium.crypto_stream_xor_update(this.state, output, input)
    return output
  }
}

/**
 * The 32-byte key of a swarm key file ("/key/swarm/psk/1.0.0/", "/base16/", 64 hex digits, one per
 * line; the form createSwarmKey writes and @libp2p/pnet and go-libp2p read).
 */
export function decodeSwarmKey (swarmKey: Uint8Array): Uint8Array {
  const lines = new TextDecoder().decode(swarmKey).trim().split(/\r\n|\r|\n/).map((line) => line.trim())
  if (lines.length !== 3 || lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' || !/^[0-9a-f]{64}$/i.test(lines[2]!)) {
    throw new SwarmConfigError('swarm key must be "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits on three lines')
  }
  return Uint8Array.from(Buffer.from(lines[2]!, 'hex'))
}

/** A connection whose bytes are XORed with XSalsa20 on their way out and back in. */
class PrivateNetworkConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection
  private readonly inbound: XSalsa20Stream
  private readonly outbound: XSalsa20Stream
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private flushScheduled = false
  /** False from a write the transport refused until its 'drain': then the muxer must wait too. */
  private innerWritable = true

  constructor (inner: MultiaddrConnection, key: Uint8Array, localNonce: Uint8Array, remoteNonce: Uint8Array) {
    super({ log: inner.log.newScope('private-network'), remoteAddr: inner.remoteAddr, direction: inner.direction })
    this.inner = inner
    this.inbound = new XSalsa20Stream(key, remoteNonce)
    this.outbound = new XSalsa20Stream(key, localNonce)
    inner.addEventListener('message', (event) => {
      // Decrypted in place: the transport hands each received buffer to this listener alone,
      // and a copy per read would be one more allocation per 64 KiB.
      const data: Uint8Array | Uint8ArrayList = event.data
      if (data instanceof Uint8Array) {
        this.onData(this.inbound.xor(data, data))
      } else {
        for (const piece of data) this.onData(this.inbound.xor(piece, piece))
      }
    })
    inner.addEventListener('drain', () => {
      this.innerWritable = true
      this.onMuxerDrain()
    })
    inner.addEventListener('close', (event) => {
      if (event.error === undefined) this.onTransportClosed()
      else if (event.local === true) this.abort(event.error)
      else this.onRemoteReset()
    })
  }

  sendData (data: Uint8ArrayList): { sentBytes: number, canSendMore: boolean } {
    // Coalesced until the current task's microtasks run: the muxer and noise send every frame and
    // every 64 KiB noise message on its own (a block is two, a window update or a want one more),
    // and a socket write per piece cost the receiving side of a transfer more than its cipher.
    for (const piece of data) this.pending.push(piece)
    this.pendingBytes += data.byteLength
    if (this.pendingBytes >= FLUSH_AT_BYTES) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(() => { this.flush() })
    }
    return { sentBytes: data.byteLength, canSendMore: this.innerWritable }
  }

  /** Encrypts everything pending into one new buffer (pieces may be shared with their senders) and writes it. */
  private flush (): void {
    this.flushScheduled = false
    if (this.pendingBytes === 0) return
    const sealed = Buffer.allocUnsafe(this.pendingBytes)
    let offset = 0
    for (const piece of this.pending) {
      this.outbound.xor(piece, sealed.subarray(offset, offset + piece.byteLength))
      offset += piece.byteLength
    }
    this.pending = []
    this.pendingBytes = 0
    if (this.inner.status !== 'open') return
    try {
      if (!this.inner.send(sealed)) this.innerWritable = false
    } catch (err) {
      // Run from a microtask: a throw here would end the process, not the one connection.
      this.abort(err as Error)
    }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    this.flush()
    await this.inner.close(options)
  }

  sendReset (err: Error): void {
    this.pending = []
    this.pendingBytes = 0
    this.inner.abort(err)
  }

  sendPause (): void { this.inner.pause() }
  sendResume (): void { this.inner.resume() }
}

export interface PrivateNetworkInit {
  /** The swarm key file's bytes (see decodeSwarmKey). */
  psk: Uint8Array
  /** Nonce exchange deadline when the upgrader passes no signal, ms (pnet's default: 1000). */
  timeoutMs?: number
}

class PrivateNetworkProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'hgmig/private-network'
  private readonly key: Uint8Array
  private readonly timeoutMs: number

  constructor (init: PrivateNetworkInit) {
    this.key = decodeSwarmKey(init.psk)
    this.timeoutMs = init.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
  }

  async protect (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    const localNonce = new Uint8Array(randomBytes(NONCE_BYTES))
    const signal = options?.signal ?? AbortSignal.timeout(this.timeoutMs)
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([
      bytes.read({ bytes: NONCE_BYTES, signal }),
      bytes.write(localNonce, { signal })
    ])
    const remoteNonce = remote.subarray()
    return new PrivateNetworkConnection(bytes.unwrap() as MultiaddrConnection, this.key, localNonce, remoteNonce)
  }
}

/**
 * The connection protector of a private swarm (pass as libp2p's `connectionProtector`):
 * wire-compatible with @libp2p/pnet's `preSharedKey({ psk })`.
 */
export function privateNetwork (init: PrivateNetworkInit): () => ConnectionProtector {
  const protector = new PrivateNetworkProtector(init)
  return () => protector
}
