/**
 * The agent's local API: HTTP + WebSocket on 127.0.0.1 only. Every request needs the per-start
 * bearer token (which only local users who can read the data directory's api.json know), and a
 * request a browser sends on behalf of another web origin is refused, so a web page cannot drive
 * the agent even if it guessed the port. Handler failures answer 4xx/5xx; they never reach the
 * agent's process.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import { ApiListenError, ApiRequestError } from './errors.js'
import { parseApproveRequest, parseImportImageRequest, parseInviteRequest, parsePingRequest, parseRemoveRequest, parseTransferReference } from './requests.js'
import { parseStoreCall, type StoreCallLine } from './store-rpc.js'
import { createStaticSite, type StaticSite } from './static.js'
import type { AgentBackend, AgentEvent, TextExport } from './types.js'

export const API_HOST = '127.0.0.1'
/**
 * Browsers cannot set headers on a WebSocket; they may send the token as this subprotocol prefix
 * instead (`new WebSocket(url, ['hgmig.bearer.' + token])`), which the server echoes back.
 */
export const WS_TOKEN_PROTOCOL_PREFIX = 'hgmig.bearer.'
/** Response header of an export: the rows it holds (TextExport.rows), for a client's progress. */
export const EXPORT_ROWS_HEADER = 'x-hgmig-rows'

export interface ApiServerInit {
  backend: AgentBackend
  /** TCP port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number
  /** Defaults to 32 random bytes in hex, new at every start. */
  token?: string
  maxBodyBytes?: number
  /** A client that lags this many bytes behind the event stream is disconnected. */
  maxStreamBacklogBytes?: number
  /** Unexpected handler failures (answered with 500), for the agent's log. */
  onError?: (err: Error) => void
  /** Built renderer to serve (without a token) for GET requests outside /v1/ and /metrics; none if unset. */
  staticDir?: string
}

export interface ApiServer {
  readonly token: string
  /** Valid after start. */
  readonly port: number
  readonly origin: string
  start: () => Promise<void>
  stop: () => Promise<void>
}

/** `params` holds the path's `:name` segments, decoded. */
type Handler = (request: IncomingMessage, response: ServerResponse, params: Record<string, string>) => Promise<{ status?: number, body: unknown } | { status?: number, text: string, contentType: string } | TextExport | { streamed: true }>

export function createApiServer (init: ApiServerInit): ApiServer {
  return new LocalApiServer(init)
}

class LocalApiServer implements ApiServer {
  readonly token: string
  private readonly tokenBytes: Buffer
  private readonly server: Server
  private readonly sockets: WebSocketServer
  /** Path pattern (segments starting with ':' match any one segment) → method → handler. */
  private readonly routes: Map<string, Map<string, Handler>>
  private readonly maxBodyBytes: number
  private readonly maxStreamBacklogBytes: number
  private listeningPort = 0
  private readonly ui: StaticSite | undefined

  constructor (private readonly init: ApiServerInit) {
    this.token = init.token ?? randomBytes(32).toString('hex')
    this.tokenBytes = Buffer.from(this.token)
    this.maxBodyBytes = init.maxBodyBytes ?? 64 * 1024
    this.maxStreamBacklogBytes = init.maxStreamBacklogBytes ?? 8 * 1024 * 1024
    this.ui = init.staticDir === undefined ? undefined : createStaticSite(init.staticDir)
    const { backend } = init
    const routes: Array<[path: string, method: string, handler: Handler]> = [
      ['/v1/status', 'GET', async () => ({ body: backend.status() })],
      ['/v1/latency', 'GET', async () => ({ body: backend.latencySeries() })],
      ['/v1/transactions/ping', 'POST', async (request) => ({ status: 202, body: backend.submitPing(parsePingRequest(await this.readJson(request))) })],
      ['/v1/hashgraph', 'GET', async (request) => ({ body: backend.hashgraph(parseLimit(request.url, 300, 5000)) })],
      ['/v1/images', 'GET', async () => ({ body: await backend.images() })],
      ['/v1/images/similarity', 'GET', async () => ({ body: await backend.similarity() })],
      ['/v1/images', 'POST', async (request) => ({ status: 202, body: backend.importImage(parseImportImageRequest(await this.readJson(request))) })],
      ['/v1/vms', 'GET', async () => ({ body: { vms: await backend.vms() } })],
      ['/v1/vms', 'POST', async (request) => ({ status: 201, body: await backend.createVm(await this.readJson(request)) })],
      ['/v1/vms/:name/stats', 'GET', async (_request, _response, { name }) => ({ body: await backend.vmStats(name!) })],
      ['/v1/vms/:name', 'DELETE', async (_request, _response, { name }) => ({ body: await backend.destroyVm(name!) })],
      ['/v1/images/:root/chunks', 'GET', async (request, _response, { root }) => ({ body: await backend.chunkMap(root!, parseBuckets(request.url)) })],
      ['/v1/transfers', 'GET', async () => ({ body: await backend.transfers() })],
      ['/v1/transfers/:root', 'DELETE', async (request, _response, { root }) => {
        await this.readJson(request)
        return { body: await backend.abandonTransfer(parseTransferReference(root)) }
      }],
      ['/v1/migrations', 'GET', async () => ({ body: backend.migrations() })],
      ['/v1/migrations', 'POST', async (request) => ({ status: 202, body: await backend.migrate(await this.readJson(request)) })],
      ['/v1/migrations/cancel', 'POST', async (request) => ({ body: await backend.cancelMigration(idField(await this.readJson(request))) })],
      ['/v1/migrations/:id/cancel', 'POST', async (_request, _response, { id }) => ({ body: await backend.cancelMigration(id!) })],
      ['/v1/migrations/:id', 'PATCH', async (request, _response, { id }) => ({ body: await backend.updateMigration(id!, await this.readJson(request)) })],
      ['/v1/migrations/plan', 'GET', async (request) => {
        const query = new URL(request.url ?? '/', this.origin).searchParams
        const vm = query.get('vm')
        if (vm === null || vm === '') throw new ApiRequestError(400, 'query "vm" is required (a VM\'s name or id)')
        const rawBandwidth = query.get('bandwidth')
        const bandwidth = rawBandwidth === null ? undefined : Number(rawBandwidth)
        if (bandwidth !== undefined && !(Number.isSafeInteger(bandwidth) && bandwidth > 0)) throw new ApiRequestError(400, `query "bandwidth" must be a positive integer (bytes per second), got ${JSON.stringify(rawBandwidth)}`)
        return { body: await backend.migrationPlan(vm, query.get('to'), bandwidth) }
      }],
      ['/v1/logs', 'GET', async (request) => {
        const query = new URL(request.url ?? '/', this.origin).searchParams
        return backend.exportLog({ format: query.get('format') ?? 'json', migration: query.get('migration'), since: query.get('since'), after: query.get('after') })
      }],
      ['/v1/consensus/audit', 'GET', async (request) => {
        const query = new URL(request.url ?? '/', this.origin).searchParams
        return backend.consensusAudit({ format: query.get('format') ?? 'json', since: query.get('since'), until: query.get('until'), limit: query.get('limit') })
      }],
      ['/v1/store', 'POST', async (request, response) => { await this.storeCall(parseStoreCall(await this.readJson(request)), response); return { streamed: true } }],
      ['/v1/swarm/invite', 'POST', async (request) => ({ body: await backend.invite(parseInviteRequest(await this.readJson(request))) })],
      ['/v1/swarm/requests', 'GET', async () => ({ body: { requests: backend.joinRequests(), lanPeers: backend.lanPeers() } })],
      ['/v1/swarm/approve', 'POST', async (request) => ({ status: 202, body: backend.approve(parseApproveRequest(await this.readJson(request))) })],
      ['/v1/swarm/remove', 'POST', async (request) => ({ status: 202, body: backend.removeMember(parseRemoveRequest(await this.readJson(request))) })],
      ['/v1/swarm/leave', 'POST', async (request) => { await this.readJson(request); return { status: 202, body: backend.leave() } }],
      ['/v1/events', 'GET', async () => { throw new ApiRequestError(426, '/v1/events is a WebSocket stream: send an Upgrade: websocket request') }],
      ['/metrics', 'GET', async () => { const m = await backend.metrics(); return { text: m.text, contentType: m.contentType } }]
    ]
    this.routes = new Map()
    for (const [path, method, handler] of routes) {
      const methods = this.routes.get(path) ?? new Map<string, Handler>()
      methods.set(method, handler)
      this.routes.set(path, methods)
    }
    this.server = createServer((request, response) => { void this.serve(request, response) })
    // Idle keep-alive sockets stay open a minute (Node's default is 5 s). A client whose event loop
    // was busy longer than that (a CLI step, a synchronous child process in a script) would
    // otherwise send its next request on a socket this server had just closed, and fail with
    // "fetch failed" for nothing. Loopback sockets cost nothing to keep.
    this.server.keepAliveTimeout = 60_000
    this.server.headersTimeout = 61_000
    this.sockets = new WebSocketServer({
      noServer: true,
      maxPayload: 4096,
      // Echo the token subprotocol a browser offered, as the WebSocket handshake requires.
      handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith(WS_TOKEN_PROTOCOL_PREFIX)) ?? false
    })
    this.server.on('upgrade', (request, socket, head) => { this.upgrade(request, socket, head) })
  }

  get port (): number { return this.listeningPort }
  get origin (): string { return `http://${API_HOST}:${this.listeningPort}` }

  async start (): Promise<void> {
    const port = this.init.port ?? 0
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ApiListenError(err.code === 'EADDRINUSE'
          ? `API port ${port} on ${API_HOST} is already in use (pick another with --api-port, or 0 for any free port)`
          : `cannot listen on ${API_HOST}:${port} for the API: ${err.message}`))
      }
      this.server.once('error', onError)
      this.server.listen(port, API_HOST, () => {
        this.server.off('error', onError)
        resolve()
      })
    })
    const address = this.server.address()
    if (address === null || typeof address === 'string') throw new ApiListenError('API server has no TCP address')
    this.listeningPort = address.port
  }

  async stop (): Promise<void> {
    for (const client of this.sockets.clients) client.close(1001, 'agent stopping')
    // A client that does not answer the close (a stopped CLI, a backed-up reader) would hold the
    // agent's stop for ws's 30 s close timeout: after a second it is cut off.
    const grace = setTimeout(() => { for (const client of this.sockets.clients) client.terminate() }, 1000)
    await new Promise<void>((resolve) => { this.sockets.close(() => { resolve() }) })
    clearTimeout(grace)
    if (!this.server.listening) return
    const closed = new Promise<void>((resolve) => { this.server.close(() => { resolve() }) })
    this.server.closeAllConnections()
    await closed
    for (const client of this.sockets.clients) client.terminate()
  }

  // ------------------------------------------------------------------ HTTP

  private async serve (request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      // The UI's files are public code (the token reaches the page out of band): served without one.
      if (this.ui?.handles(request) === true) return await this.ui.serve(request, response, this.origin)
      this.checkAccess(request, false)
      const path = new URL(request.url ?? '/', this.origin).pathname
      const route = this.route(path)
      if (route === undefined) throw new ApiRequestError(404, `no such endpoint: ${path}`)
      const handler = route.methods.get(request.method ?? '')
      if (handler === undefined) {
        response.setHeader('Allow', [...route.methods.keys()].join(', '))
        throw new ApiRequestError(405, `${path} does not support ${request.method ?? 'that method'} (use ${[...route.methods.keys()].join(' or ')})`)
      }
      const result = await handler(request, response, route.params)
      if ('streamed' in result) return
      if ('chunks' in result) await sendChunks(response, result)
      else if ('text' in result) send(response, result.status ?? 200, result.text, result.contentType)
      else send(response, result.status ?? 200, JSON.stringify(result.body), 'application/json')
    } catch (err) {
      if (err instanceof ApiRequestError) {
        if (err.status === 401) response.setHeader('WWW-Authenticate', 'Bearer realm="hgmig"')
        // Node discards an unread request body after the response; one announced as too large is not worth reading.
        if (err.status === 413) response.setHeader('Connection', 'close')
        send(response, err.status, JSON.stringify({ error: err.message }), 'application/json')
      } else if (domainStatus(err) !== undefined) {
        // A named error of the store, the engine or the driver: the request was wrong for the state of things.
        send(response, domainStatus(err)!, JSON.stringify({ error: (err as Error).message, code: (err as { code: string }).code }), 'application/json')
      } else {
        this.init.onError?.(err as Error)
        send(response, 500, JSON.stringify({ error: `internal error: ${(err as Error).message}` }), 'application/json')
      }
    }
  }

  /** The route a path names: an exact path first, else the first pattern it fits. */
  private route (path: string): { methods: Map<string, Handler>, params: Record<string, string> } | undefined {
    const exact = this.routes.get(path)
    if (exact !== undefined) return { methods: exact, params: {} }
    const segments = path.split('/')
    for (const [pattern, methods] of this.routes) {
      if (!pattern.includes(':')) continue
      const parts = pattern.split('/')
      if (parts.length !== segments.length) continue
      const params: Record<string, string> = {}
      const fits = parts.every((part, i) => {
        const segment = segments[i]!
        if (!part.startsWith(':')) return part === segment
        if (segment === '') return false
        try {
          params[part.slice(1)] = decodeURIComponent(segment)
        } catch {
          throw new ApiRequestError(400, `path segment ${JSON.stringify(segment)} is not valid percent-encoding`)
        }
        return true
      })
      if (fits) return { methods, params }
    }
    return undefined
  }

  /** Origin, Host and token checks shared by HTTP requests and WebSocket upgrades. */
  private checkAccess (request: IncomingMessage, webSocket: boolean): void {
    const origin = request.headers.origin
    if (origin !== undefined && origin !== this.origin) {
      throw new ApiRequestError(403, `origin ${origin} is not allowed (only ${this.origin})`)
    }
    // A page on a DNS-rebound name reaches 127.0.0.1 with a foreign Host: refuse it before the token check.
    const host = request.headers.host
    if (host !== `${API_HOST}:${this.listeningPort}` && host !== `localhost:${this.listeningPort}`) {
      throw new ApiRequestError(403, `host ${host ?? '(none)'} is not allowed (only ${API_HOST}:${this.listeningPort})`)
    }
    const presented = bearerToken(request.headers.authorization) ?? (webSocket ? protocolToken(request.headers['sec-websocket-protocol']) : undefined)
    if (presented === undefined) throw new ApiRequestError(401, 'missing "Authorization: Bearer <token>" (the token is in api.json in the agent\'s data directory)')
    const bytes = Buffer.from(presented)
    if (bytes.length !== this.tokenBytes.length || !timingSafeEqual(bytes, this.tokenBytes)) throw new ApiRequestError(401, 'wrong API token')
  }

  private async readJson (request: IncomingMessage): Promise<unknown> {
    const length = Number(request.headers['content-length'] ?? 0)
    if (length > this.maxBodyBytes) throw new ApiRequestError(413, `request body of ${length} bytes is larger than ${this.maxBodyBytes}`)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of request) {
      size += (chunk as Buffer).length
      if (size > this.maxBodyBytes) throw new ApiRequestError(413, `request body is larger than ${this.maxBodyBytes} bytes`)
      chunks.push(chunk as Buffer)
    }
    const text = Buffer.concat(chunks).toString('utf8')
    // An empty body means "all defaults", so `curl -X POST` works.
    if (text.trim() === '') return {}
    const type = request.headers['content-type'] ?? ''
    if (!/^application\/json\s*(;|$)/i.test(type)) throw new ApiRequestError(415, `request body must be sent as Content-Type: application/json (got ${type === '' ? 'none' : type})`)
    try {
      return JSON.parse(text)
    } catch (err) {
      throw new ApiRequestError(400, `request body is not valid JSON: ${(err as Error).message}`)
    }
  }

  /** Streams a store call's progress and outcome as NDJSON; the client closing the request cancels the call. */
  private async storeCall (call: ReturnType<typeof parseStoreCall>, response: ServerResponse): Promise<void> {
    const controller = new AbortController()
    response.on('close', () => { if (!response.writableFinished) controller.abort() })
    response.writeHead(200, { 'Content-Type': 'application/x-ndjson; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' })
    const line = (value: StoreCallLine): void => { if (!response.destroyed) response.write(JSON.stringify(value) + '\n') }
    try {
      const value = await this.init.backend.storeCall(call, { signal: controller.signal, onProgress: (event) => { line({ type: 'progress', event }) } })
      line({ type: 'result', value: value ?? null })
    } catch (err) {
      const error = err as Error
      if (!(error instanceof ApiRequestError) && !('code' in error)) this.init.onError?.(error)
      line({ type: 'error', name: error.name, message: error.message })
    }
    response.end()
  }

  // ------------------------------------------------------------- WebSocket

  private upgrade (request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => { socket.destroy() })
    try {
      this.checkAccess(request, true)
      const path = new URL(request.url ?? '/', this.origin).pathname
      if (path !== '/v1/events') throw new ApiRequestError(404, `no WebSocket stream at ${path} (use /v1/events)`)
    } catch (err) {
      const status = err instanceof ApiRequestError ? err.status : 500
      const body = JSON.stringify({ error: (err as Error).message })
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
      return
    }
    this.sockets.handleUpgrade(request, socket, head, (client) => { this.stream(client) })
  }

  private stream (client: WebSocket): void {
    const sendEvent = (event: AgentEvent): void => {
      if (client.readyState !== client.OPEN) return
      if (client.bufferedAmount > this.maxStreamBacklogBytes) {
        // A reader this far behind would hold ever more memory: drop it; it can reconnect and get a fresh hello.
        client.terminate()
        return
      }
      client.send(JSON.stringify(event))
    }
    try {
      sendEvent({ type: 'hello', status: this.init.backend.status() })
    } catch (err) {
      this.init.onError?.(err as Error)
      client.close(1011, 'status unavailable')
      return
    }
    const unsubscribe = this.init.backend.subscribe(sendEvent)
    client.on('close', unsubscribe)
    client.on('error', () => { client.terminate() })
    // The stream is one-way; anything a client sends is ignored.
  }
}

/**
 * The HTTP status for the agent's own named errors (they carry a string `code`, js-libp2p style):
 * not found → 404, bad input → 400, anything else (a conflict with the current state) → 409.
 */
function domainStatus (err: unknown): number | undefined {
  const { name, code } = (err ?? {}) as { name?: unknown, code?: unknown }
  // Node's own errors also carry ERR_ codes, but under built-in names: those are bugs (500).
  if (typeof code !== 'string' || !code.startsWith('ERR_') || typeof name !== 'string' || /^(Type|Range|Syntax|Reference)?Error$/.test(name)) return undefined
  if (/NotFound/.test(name)) return 404
  if (/Invalid|Ambiguous|LayerRule|Option/.test(name)) return 400
  return 409
}

function idField (body: unknown): string {
  const id = (body as { id?: unknown } | null)?.id
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) throw new ApiRequestError(400, 'field "id" must be a migration id')
  return id
}

/** `?limit=N` of a request URL: 1..max, default `fallback`; anything else is a 400 naming it. */
function parseLimit (url: string | undefined, fallback: number, max: number): number {
  return integerQuery(url, 'limit', fallback, max)
}

function parseBuckets (url: string | undefined): number {
  return integerQuery(url, 'buckets', 200, 1000)
}

function integerQuery (url: string | undefined, name: string, fallback: number, max: number): number {
  const raw = new URL(url ?? '/', 'http://x').searchParams.get(name)
  if (raw === null) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1 || value > max) throw new ApiRequestError(400, `query "${name}" must be an integer from 1 to ${max}, got ${JSON.stringify(raw)}`)
  return value
}

function send (response: ServerResponse, status: number, body: string, contentType: string): void {
  response.writeHead(status, {
    'Content-Type': contentType.includes('charset') ? contentType : `${contentType}; charset=utf-8`,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff'
  })
  response.end(body)
}

/**
 * Writes a TextExport as it is produced, at the pace the client reads (chunked encoding). The first
 * piece is taken before the headers go out, so a failure there is still an ordinary error answer; a
 * failure later destroys the response, so the client sees a broken transfer, never a short file
 * that looks whole.
 */
async function sendChunks (response: ServerResponse, download: TextExport): Promise<void> {
  const pieces = download.chunks[Symbol.iterator]()
  let next = pieces.next()
  response.writeHead(200, { 'Content-Type': download.contentType, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...(download.rows === undefined ? {} : { [EXPORT_ROWS_HEADER]: String(download.rows) }) })
  try {
    while (next.done !== true) {
      if (response.destroyed) return
      if (!response.write(next.value)) await new Promise<void>((resolve) => {
        const done = (): void => { response.off('drain', done); response.off('close', done); resolve() }
        response.on('drain', done).on('close', done)
      })
      next = pieces.next()
    }
    response.end()
  } catch (err) {
    response.destroy(err as Error)
  } finally {
    pieces.return?.()
  }
}

function bearerToken (header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
  return match?.[1]
}

function protocolToken (header: string | undefined): string | undefined {
  return header?.split(',').map((p) => p.trim()).find((p) => p.startsWith(WS_TOKEN_PROTOCOL_PREFIX))?.slice(WS_TOKEN_PROTOCOL_PREFIX.length)
}
