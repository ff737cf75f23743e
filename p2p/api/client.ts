/**
 * Typed client of the local API, for the CLI and the tests. `ApiClient.forDataDir(dir)` finds the
 * running agent through the data directory's api.json.
 */
import WebSocket from 'ws'
import { API_HOST, EXPORT_ROWS_HEADER } from './server.js'
import { readApiFile } from './api-file.js'
import { AgentNotRunningError, ApiRequestError } from './errors.js'
import type { StoreCall, StoreCallLine } from './store-rpc.js'
import type { AbandonTransferResponse, AgentEvent, AgentStatus, ApproveRequest, ChunkMapView, HashgraphView, ImagesResponse, ImportImageRequest, InviteRequest, InviteResponse, JoinRequestView, LanPeerView, LatencySample, PingRequest, PingResponse, RemoveRequest, SubmittedResponse, TransfersResponse } from './types.js'

export interface ApiClientInit {
  /** e.g. http://127.0.0.1:41234 */
  origin: string
  token: string
}

export class ApiClient {
  readonly origin: string
  private readonly token: string

  constructor (init: ApiClientInit) {
    this.origin = init.origin
    this.token = init.token
  }

  static async forDataDir (dataDir: string): Promise<ApiClient> {
    const file = await readApiFile(dataDir)
    return new ApiClient({ origin: `http://${API_HOST}:${file.port}`, token: file.token })
  }

  async status (options: { signal?: AbortSignal } = {}): Promise<AgentStatus> {
    return await this.request<AgentStatus>('GET', '/v1/status', undefined, options.signal)
  }

  /** Own probes' latency at this site (`samples`) and other sites' probes' latency here (`remote`). */
  async latencySeries (options: { signal?: AbortSignal } = {}): Promise<{ samples: LatencySample[], remote: LatencySample[] }> {
    return await this.request<{ samples: LatencySample[], remote: LatencySample[] }>('GET', '/v1/latency', undefined, options.signal)
  }

  async ping (request: PingRequest = {}, options: { signal?: AbortSignal } = {}): Promise<PingResponse> {
    return await this.request<PingResponse>('POST', '/v1/transactions/ping', request, options.signal)
  }

  /** Starts an import at the agent; follow it on `events()` (progress, then an `image` event with the same task). */
  async importImage (request: ImportImageRequest, options: { signal?: AbortSignal } = {}): Promise<{ task: string }> {
    return await this.request<{ task: string }>('POST', '/v1/images', request, options.signal)
  }

  async vms (options: { signal?: AbortSignal } = {}): Promise<unknown[]> {
    return (await this.request<{ vms: unknown[] }>('GET', '/v1/vms', undefined, options.signal)).vms
  }

  async createVm (request: { name: string, os: string, we: string, memoryBytes: number, workload?: string, initialUserDataBytes?: number }, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    return await this.request('POST', '/v1/vms', request, options.signal)
  }

  async migrations (options: { signal?: AbortSignal } = {}): Promise<{ migrations: unknown[], history: unknown[] }> {
    return await this.request('GET', '/v1/migrations', undefined, options.signal)
  }

  async migrate (request: { vm: string, to: string, strategy?: string, maxDowntimeMs?: number, bandwidth?: number, maxPasses?: number, repository?: string }, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    return await this.request('POST', '/v1/migrations', request, options.signal)
  }

  async cancelMigration (id: string, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    return await this.request('POST', `/v1/migrations/${encodeURIComponent(id)}/cancel`, {}, options.signal)
  }

  /** Changes a running migration's bandwidth cap (bytes/s, 0 = none) and downtime limit, at its source. */
  async updateMigration (id: string, parameters: { bandwidth?: number, maxDowntimeMs?: number }, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    return await this.request('PATCH', `/v1/migrations/${encodeURIComponent(id)}`, parameters, options.signal)
  }

  async vmStats (name: string, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    return await this.request('GET', `/v1/vms/${encodeURIComponent(name)}/stats`, undefined, options.signal)
  }

  async destroyVm (name: string, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    return await this.request('DELETE', `/v1/vms/${encodeURIComponent(name)}`, undefined, options.signal)
  }

  async chunkMap (rootCid: string, buckets = 200, options: { signal?: AbortSignal } = {}): Promise<ChunkMapView> {
    return await this.request<ChunkMapView>('GET', `/v1/images/${encodeURIComponent(rootCid)}/chunks?buckets=${buckets}`, undefined, options.signal)
  }

  async lanPeers (options: { signal?: AbortSignal } = {}): Promise<LanPeerView[]> {
    return (await this.request<{ lanPeers: LanPeerView[] }>('GET', '/v1/swarm/requests', undefined, options.signal)).lanPeers
  }

  async migrationPlan (vm: string, to?: string, options: { signal?: AbortSignal, bandwidth?: number } = {}): Promise<unknown> {
    const query = new URLSearchParams({ vm, ...(to === undefined ? {} : { to }), ...(options.bandwidth === undefined ? {} : { bandwidth: String(options.bandwidth) }) })
    return await this.request('GET', `/v1/migrations/plan?${query.toString()}`, undefined, options.signal)
  }

  /** The consensus audit (ordered events with round, fame and position) for a window of consensus time. */
  async consensusAudit (format: ExportFormatName, query: AuditQueryOptions = {}, options: { signal?: AbortSignal } = {}): Promise<string> {
    return await new Response((await this.consensusAuditStream(format, query, options)).body).text()
  }

  /** The same, as the agent writes it: for exports too long to hold in memory. The body errors if the transfer breaks. */
  async consensusAuditStream (format: ExportFormatName, query: AuditQueryOptions = {}, options: { signal?: AbortSignal } = {}): Promise<ExportDownload> {
    return downloadOf(await this.fetch('GET', `/v1/consensus/audit?${queryString(format, query)}`, undefined, options.signal))
  }

  async exportLog (format: ExportFormatName, query: LogQueryOptions = {}, options: { signal?: AbortSignal } = {}): Promise<string> {
    return await new Response((await this.exportLogStream(format, query, options)).body).text()
  }

  /** The migration log as the agent sends it, for writing to a file. */
  async exportLogStream (format: ExportFormatName, query: LogQueryOptions = {}, options: { signal?: AbortSignal } = {}): Promise<ExportDownload> {
    return downloadOf(await this.fetch('GET', `/v1/logs?${queryString(format, query)}`, undefined, options.signal))
  }

  async hashgraph (limit = 300, options: { signal?: AbortSignal } = {}): Promise<HashgraphView> {
    return await this.request<HashgraphView>('GET', `/v1/hashgraph?limit=${limit}`, undefined, options.signal)
  }

  async images (options: { signal?: AbortSignal } = {}): Promise<ImagesResponse> {
    return await this.request<ImagesResponse>('GET', '/v1/images', undefined, options.signal)
  }

  /** Transfers at this site: running, interrupted, failed, done. */
  async transfers (options: { signal?: AbortSignal } = {}): Promise<TransfersResponse> {
    return await this.request<TransfersResponse>('GET', '/v1/transfers', undefined, options.signal)
  }

  /** Stops a transfer if it runs, forgets it and releases its leaves; `reference` is the image's root CID or name. */
  async abandonTransfer (reference: string, options: { signal?: AbortSignal } = {}): Promise<AbandonTransferResponse> {
    return await this.request<AbandonTransferResponse>('DELETE', `/v1/transfers/${encodeURIComponent(reference)}`, undefined, options.signal)
  }

  async invite (request: InviteRequest = {}, options: { signal?: AbortSignal } = {}): Promise<InviteResponse> {
    return await this.request<InviteResponse>('POST', '/v1/swarm/invite', request, options.signal)
  }

  async joinRequests (options: { signal?: AbortSignal } = {}): Promise<JoinRequestView[]> {
    return (await this.request<{ requests: JoinRequestView[] }>('GET', '/v1/swarm/requests', undefined, options.signal)).requests
  }

  async approve (request: ApproveRequest, options: { signal?: AbortSignal } = {}): Promise<SubmittedResponse> {
    return await this.request<SubmittedResponse>('POST', '/v1/swarm/approve', request, options.signal)
  }

  async removeMember (request: RemoveRequest, options: { signal?: AbortSignal } = {}): Promise<SubmittedResponse> {
    return await this.request<SubmittedResponse>('POST', '/v1/swarm/remove', request, options.signal)
  }

  async leave (options: { signal?: AbortSignal } = {}): Promise<SubmittedResponse> {
    return await this.request<SubmittedResponse>('POST', '/v1/swarm/leave', {}, options.signal)
  }

  /**
   * Runs an image-store call at the agent; progress arrives through `onProgress`. An error the
   * store raised comes back with its name and message (ImageNotFoundError, LayerRuleError, ...).
   */
  async storeCall (call: StoreCall, options: { signal?: AbortSignal, onProgress?: (event: { type: string, detail: unknown }) => void } = {}): Promise<unknown> {
    const response = await this.fetch('POST', '/v1/store', call, options.signal)
    if (response.body === null) throw new ApiRequestError(502, 'POST /v1/store: empty answer')
    let pending = ''
    const decoder = new TextDecoder()
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true })
      let newline: number
      while ((newline = pending.indexOf('\n')) !== -1) {
        const line = JSON.parse(pending.slice(0, newline)) as StoreCallLine
        pending = pending.slice(newline + 1)
        if (line.type === 'progress') options.onProgress?.(line.event)
        else if (line.type === 'result') return line.value
        else throw Object.assign(new Error(line.message), { name: line.name })
      }
    }
    throw new ApiRequestError(502, 'POST /v1/store: the agent closed the answer without a result (it may have stopped)')
  }

  /** Prometheus text exposition. */
  async metrics (options: { signal?: AbortSignal } = {}): Promise<string> {
    const response = await this.fetch('GET', '/metrics', undefined, options.signal)
    return await response.text()
  }

  /**
   * The event stream: the first event is `hello` with the current status. Ends when the agent
   * stops or `signal` aborts.
   */
  async * events (options: { signal?: AbortSignal } = {}): AsyncGenerator<AgentEvent> {
    const socket = new WebSocket(`${this.origin.replace(/^http/, 'ws')}/v1/events`, { headers: { Authorization: `Bearer ${this.token}` } })
    const queue: AgentEvent[] = []
    let wake: (() => void) | null = null
    let ended = false
    let failure: Error | null = null
    const notify = (): void => { wake?.(); wake = null }
    socket.on('message', (data) => { queue.push(JSON.parse(String(data)) as AgentEvent); notify() })
    socket.on('unexpected-response', (_request, response) => {
      failure = new ApiRequestError(response.statusCode ?? 0, `event stream refused: HTTP ${response.statusCode ?? '?'}`)
      socket.terminate()
    })
    socket.on('error', (err) => { failure ??= this.translate(err); notify() })
    socket.on('close', () => { ended = true; notify() })
    const abort = (): void => { socket.close() }
    options.signal?.addEventListener('abort', abort, { once: true })
    try {
      for (;;) {
        const next = queue.shift()
        if (next !== undefined) { yield next; continue }
        if (failure !== null) throw failure
        if (ended) return
        await new Promise<void>((resolve) => { wake = resolve })
      }
    } finally {
      options.signal?.removeEventListener('abort', abort)
      socket.terminate()
    }
  }

  private async request<T> (method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<T> {
    const response = await this.fetch(method, path, body, signal)
    return await response.json() as T
  }

  private async fetch (method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const send = async (): Promise<Response> => await fetch(`${this.origin}${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal
    })
    let response: Response
    try {
      response = await send()
    } catch (err) {
      // A pooled keep-alive socket the agent closed while this process was busy elsewhere (the
      // client's idle timer could not run): the request never reached the agent, so a GET, which
      // changes nothing, is sent once more on a fresh socket. Anything else could act twice.
      if (method !== 'GET' || !closedIdleSocket(err as Error) || signal?.aborted === true) throw this.translate(err as Error)
      try {
        response = await send()
      } catch (again) {
        throw this.translate(again as Error)
      }
    }
    if (!response.ok) {
      const text = await response.text()
      let message = text
      try { message = (JSON.parse(text) as { error?: string }).error ?? text } catch { /* not JSON: keep the text */ }
      throw new ApiRequestError(response.status, `${method} ${path}: ${message}`)
    }
    return response
  }

  private translate (err: Error): Error {
    const code = (err.cause as NodeJS.ErrnoException | undefined)?.code ?? (err as NodeJS.ErrnoException).code
    if (code === 'ECONNREFUSED') return new AgentNotRunningError(`no agent answers at ${this.origin} (it may have stopped)`)
    if (err.name === 'TimeoutError') return new AgentNotRunningError(`the agent at ${this.origin} did not answer in time (it may be hung: see its log)`)
    // fetch says only "fetch failed": name what failed underneath (a reset, a closed socket).
    const cause = err.cause as (Error & { code?: string }) | undefined
    if (cause instanceof Error) return new Error(`${err.message} (${this.origin}): ${cause.message}${cause.code === undefined ? '' : ` [${cause.code}]`}`, { cause: err })
    return err
  }
}

/** undici's "other side closed" / a reset on a socket taken from the keep-alive pool. */
function closedIdleSocket (err: Error): boolean {
  const code = (err.cause as NodeJS.ErrnoException | undefined)?.code
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET'
}

export type ExportFormatName = 'ndjson' | 'csv' | 'json'

/** An export as it arrives: its body, and the rows the agent counted as it started (null if it did not say). */
export interface ExportDownload { body: ReadableStream<Uint8Array>, rows: number | null }

function downloadOf (response: Response): ExportDownload {
  const rows = Number(response.headers.get(EXPORT_ROWS_HEADER) ?? NaN)
  return { body: response.body ?? new Response('').body!, rows: Number.isSafeInteger(rows) && rows >= 0 ? rows : null }
}

/** GET /v1/consensus/audit's window: consensus time in [since, until), at most `limit` events. */
export interface AuditQueryOptions { since?: string, until?: string, limit?: number }

/** GET /v1/logs's filters: one migration, entries logged at or after an ISO time, entries after a sequence number. */
export interface LogQueryOptions { migration?: string, since?: string, after?: number }

function queryString (format: string, query: object): string {
  const params = new URLSearchParams({ format })
  for (const [key, value] of Object.entries(query) as Array<[string, unknown]>) if (value !== undefined) params.set(key, String(value))
  return params.toString()
}
