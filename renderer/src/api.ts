/**
 * The UI's only way to the agent: fetch and one WebSocket to the origin that served the page (the
 * agent itself). The token comes from Electron's preload, or, in a browser, from the URL fragment
 * `npm start` prints (#token=...), which is moved to sessionStorage and erased from the address bar
 * so it is neither bookmarked nor shown.
 */
import type { AgentEvent } from './contract'

const TOKEN_KEY = 'hgmig.token'
const WS_TOKEN_PROTOCOL_PREFIX = 'hgmig.bearer.'

/** The API answered with an error status; `status` 404 on a planned endpoint means "not offered yet". */
export class ApiError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
    this.name = 'ApiError'
  }
}

/** No answer at all: the agent is not running (or not at this address). */
export class AgentUnreachableError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AgentUnreachableError'
  }
}

/** Takes the token out of the fragment (if there) into sessionStorage; returns the token to use, or null. */
export async function bootstrapToken (): Promise<string | null> {
  if (window.hgmig !== undefined) return await window.hgmig.token()
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ''))
  const fromUrl = fragment.get('token')
  if (fromUrl !== null && fromUrl !== '') {
    sessionStorage.setItem(TOKEN_KEY, fromUrl)
    fragment.delete('token')
    const rest = fragment.toString()
    history.replaceState(null, '', window.location.pathname + window.location.search + (rest === '' ? '' : `#${rest}`))
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

export function forgetToken (): void {
  sessionStorage.removeItem(TOKEN_KEY)
}

export class Api {
  constructor (readonly token: string, readonly origin = window.location.origin) {}

  async get<T> (path: string, signal?: AbortSignal): Promise<T> {
    return await (await this.fetch('GET', path, undefined, signal)).json() as T
  }

  async post<T> (path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const response = await this.fetch('POST', path, body, signal)
    const text = await response.text()
    return (text === '' ? {} : JSON.parse(text)) as T
  }

  async patch<T> (path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const text = await (await this.fetch('PATCH', path, body, signal)).text()
    return (text === '' ? {} : JSON.parse(text)) as T
  }

  /**
   * An image-store call at the agent (POST /v1/store, as the CLI's image commands make it): the
   * answer is NDJSON, progress lines and then one result or error line.
   */
  async storeCall<T> (method: string, args: unknown[] = [], signal?: AbortSignal): Promise<T> {
    const response = await this.fetch('POST', '/v1/store', { method, args }, signal)
    const lines = (await response.text()).split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { type: string, value?: unknown, name?: string, message?: string })
    const last = lines[lines.length - 1]
    if (last?.type === 'result') return last.value as T
    throw new ApiError(500, `store ${method}: ${last?.type === 'error' ? `${last.name ?? 'Error'}: ${last.message ?? ''}` : 'no result'}`)
  }

  async delete<T> (path: string, signal?: AbortSignal): Promise<T> {
    const text = await (await this.fetch('DELETE', path, undefined, signal)).text()
    return (text === '' ? {} : JSON.parse(text)) as T
  }

  async text (path: string, signal?: AbortSignal): Promise<string> {
    return await (await this.fetch('GET', path, undefined, signal)).text()
  }

  private async fetch (method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    let response: Response
    try {
      response = await fetch(this.origin + path, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        signal
      })
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err
      throw new AgentUnreachableError(`no agent answers at ${this.origin}`)
    }
    if (!response.ok) {
      const text = await response.text()
      let message = text
      try { message = (JSON.parse(text) as { error?: string }).error ?? text } catch { /* not JSON: keep the text */ }
      throw new ApiError(response.status, `${method} ${path}: ${message}`)
    }
    return response
  }

  /**
   * The agent's event stream, reconnecting (with a fresh `hello`) after the agent restarts or the
   * connection drops; `onState` tells the UI whether the stream is live. Returns the stop function.
   */
  events (onEvent: (event: AgentEvent) => void, onState: (open: boolean) => void): () => void {
    let socket: WebSocket | null = null
    let stopped = false
    let retryMs = 500
    let timer: ReturnType<typeof setTimeout> | undefined
    const connect = (): void => {
      socket = new WebSocket(this.origin.replace(/^http/, 'ws') + '/v1/events', [WS_TOKEN_PROTOCOL_PREFIX + this.token])
      socket.onopen = () => { retryMs = 500; onState(true) }
      socket.onmessage = (message) => {
        try {
          onEvent(JSON.parse(String(message.data)) as AgentEvent)
        } catch { /* a malformed message is dropped, the stream goes on */ }
      }
      socket.onclose = () => {
        onState(false)
        if (stopped) return
        timer = setTimeout(connect, retryMs)
        retryMs = Math.min(retryMs * 2, 10_000)
      }
    }
    connect()
    return () => {
      stopped = true
      clearTimeout(timer)
      socket?.close()
    }
  }
}

/** 404 (no such endpoint) or 405 (the path exists, this method not yet): the agent does not offer it. */
export function isNotOffered (err: unknown): boolean {
  return err instanceof ApiError && (err.status === 404 || err.status === 405)
}
