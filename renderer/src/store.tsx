/**
 * The agent as the views see it: the token, the latest status (polled), the live event stream, the
 * latency series, an events/s history, and a browsable log of what the stream reported. One
 * provider at the root; views read it with useAgent().
 */
import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from 'react'
import { AgentUnreachableError, Api, ApiError, bootstrapToken, isNotOffered } from './api'
import type { AgentStatus, LatencySample, LogEntry } from './contract'

/** Any message of the event stream, including kinds newer than this UI's contract. */
export type StreamEvent = { type: string, [field: string]: unknown }

export interface TaskProgress { task: string, done: number, total: number | null, message?: string }

export interface AgentState {
  api: Api | null
  /** 'missing': no token was handed to the page. */
  token: 'pending' | 'missing' | 'present'
  status: AgentStatus | null
  /** Why the last status request failed (null while the agent answers). */
  problem: { kind: 'unreachable' | 'unauthorized' | 'error', message: string } | null
  streamOpen: boolean
  /** This site's own probes' latency. */
  latency: LatencySample[]
  /** Other sites' probes as ordered here (agents that report them). */
  remoteLatency: LatencySample[]
  /** [time ms, events/s] from the status polls. */
  eventRate: Array<[number, number]>
  log: LogEntry[]
  progress: Record<string, TaskProgress>
  /** Registers a listener for every stream message; returns the function that removes it. */
  subscribe: (listener: (event: StreamEvent) => void) => () => void
}

const MAX_SAMPLES = 2000
const MAX_LOG = 5000
const STATUS_POLL_MS = 1000

const AgentContext = createContext<AgentState | null>(null)

export function useAgent (): AgentState {
  const state = useContext(AgentContext)
  if (state === null) throw new Error('useAgent() outside <AgentProvider>')
  return state
}

export function AgentProvider ({ children }: { children: ReactNode }): ReactNode {
  const [api, setApi] = useState<Api | null>(null)
  const [token, setToken] = useState<AgentState['token']>('pending')
  const [status, setStatus] = useState<AgentStatus | null>(null)
  const [problem, setProblem] = useState<AgentState['problem']>(null)
  const [streamOpen, setStreamOpen] = useState(false)
  const [latency, setLatency] = useState<LatencySample[]>([])
  const [remoteLatency, setRemoteLatency] = useState<LatencySample[]>([])
  const [eventRate, setEventRate] = useState<Array<[number, number]>>([])
  const [log, setLog] = useState<LogEntry[]>([])
  const [progress, setProgress] = useState<Record<string, TaskProgress>>({})
  const listeners = useRef(new Set<(event: StreamEvent) => void>())

  useEffect(() => {
    bootstrapToken().then((value) => {
      if (value === null) { setToken('missing'); return }
      setToken('present')
      setApi(new Api(value))
    }, (err: Error) => { setToken('missing'); setProblem({ kind: 'error', message: err.message }) })
  }, [])

  // Status, polled: it carries round, latency quantiles and events/s, which the stream does not.
  useEffect(() => {
    if (api === null) return
    let busy = false
    const poll = async (): Promise<void> => {
      if (busy) return
      busy = true
      try {
        const next = await api.get<AgentStatus>('/v1/status')
        setStatus(next)
        setProblem(null)
        setEventRate((rate) => [...rate.slice(-599), [Date.now(), next.eventsPerSecond]])
      } catch (err) {
        setProblem(describeProblem(err))
      } finally {
        busy = false
      }
    }
    void poll()
    const timer = setInterval(() => { void poll() }, STATUS_POLL_MS)
    return () => { clearInterval(timer) }
  }, [api])

  // The latency series so far, then the stream's samples appended.
  useEffect(() => {
    if (api === null) return
    api.get<{ samples: LatencySample[], remote?: LatencySample[] }>('/v1/latency').then(({ samples, remote }) => {
      setLatency((live) => mergeSamples(samples, live))
      setRemoteLatency((live) => mergeSamples(remote ?? [], live))
    }, () => { /* the status poll reports an unreachable agent */ })
  }, [api])

  useEffect(() => {
    if (api === null) return
    return api.events((event) => {
      const message = event as unknown as StreamEvent
      if (event.type === 'hello') setStatus(event.status)
      if (event.type === 'latency') {
        const append = (samples: LatencySample[]): LatencySample[] => [...samples.slice(-(MAX_SAMPLES - 1)), event.sample]
        if ((event as { remote?: boolean }).remote === true) setRemoteLatency(append)
        else setLatency(append)
      }
      if (event.type === 'progress') setProgress((tasks) => ({ ...tasks, [event.task]: { task: event.task, done: event.done, total: event.total, message: event.message } }))
      const entry = logEntryOf(message)
      if (entry !== null) setLog((entries) => [...entries.slice(-(MAX_LOG - 1)), entry])
      for (const listener of listeners.current) listener(message)
    }, setStreamOpen)
  }, [api])

  const subscribe = useCallback((listener: (event: StreamEvent) => void) => {
    listeners.current.add(listener)
    return () => { listeners.current.delete(listener) }
  }, [])

  return (
    <AgentContext.Provider value={{ api, token, status, problem, streamOpen, latency, remoteLatency, eventRate, log, progress, subscribe }}>
      {children}
    </AgentContext.Provider>
  )
}

function describeProblem (err: unknown): AgentState['problem'] {
  if (err instanceof AgentUnreachableError) return { kind: 'unreachable', message: err.message }
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return { kind: 'unauthorized', message: err.message }
  return { kind: 'error', message: (err as Error).message }
}

function mergeSamples (fetched: LatencySample[], live: LatencySample[]): LatencySample[] {
  const seen = new Set(fetched.map((s) => s.position))
  return [...fetched, ...live.filter((s) => !seen.has(s.position))].sort((a, b) => a.at - b.at).slice(-MAX_SAMPLES)
}

/** What the Logs view shows of a stream message (null: not worth a line). */
export function logEntryOf (event: StreamEvent): LogEntry | null {
  const at = new Date().toISOString()
  const text = (value: unknown): string => typeof value === 'string' ? value : JSON.stringify(value)
  switch (event.type) {
    case 'hello': return { at, level: 'info', message: 'connected to the agent\'s event stream' }
    case 'transaction': {
      const rejected = event['outcome'] === 'rejected'
      return {
        at,
        level: rejected ? 'warn' : 'info',
        site: text(event['site']),
        message: `transaction ${text(event['kind'])} #${text(event['position'])} from ${text(event['site'])} ${rejected ? `rejected (${text(event['reason'])})` : 'applied'} in round ${text(event['round'])}`
      }
    }
    case 'peer': return { at, level: event['connected'] === true ? 'info' : 'warn', message: `peer ${text(event['peerId']).slice(0, 16)}… ${event['connected'] === true ? 'connected' : 'disconnected'}` }
    case 'progress': return { at, level: 'debug', message: `task ${text(event['task'])}: ${text(event['done'])}/${event['total'] === null ? '?' : text(event['total'])}${event['message'] === undefined ? '' : ` ${text(event['message'])}`}` }
    case 'image': return { at, level: 'info', site: text(event['site']), message: `image ${text((event['image'] as { name?: string } | undefined)?.name)} at ${text(event['site'])}` }
    case 'migration': return { at, level: 'info', migration: text(event['id'] ?? event['migration']), phase: event['phase'] === undefined ? undefined : text(event['phase']), message: `migration ${text(event['id'] ?? event['migration'])}: ${text(event['phase'] ?? event['state'] ?? '')}` }
    case 'join-request': {
      const request = event['request'] as { name?: string, peerId?: string } | undefined
      return { at, level: 'info', message: `join request from ${text(request?.name)} (${text(request?.peerId).slice(0, 16)}…) waiting for approval` }
    }
    case 'membership': return { at, level: 'info', site: text(event['name']), message: `${text(event['name'])} ${event['change'] === 'add' ? 'joins' : 'leaves'} the swarm from round ${text(event['fromRound'])}` }
    case 'rounds': return { at, level: 'debug', message: `round ${text(event['lastDecidedRound'])} decided (${text(event['orderedEvents'])} events ordered)` }
    default: return null
  }
}

/** A GET endpoint polled every `intervalMs` (0: once); 404 means the agent does not offer it yet. */
export function useEndpoint<T> (path: string | null, intervalMs = 0): { data: T | null, error: string | null, notOffered: boolean, reload: () => void } {
  const { api } = useAgent()
  const [data, setData] = useState<T | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [notOffered, setNotOffered] = useState(false)
  const [generation, setGeneration] = useState(0)
  const reload = useCallback(() => { setGeneration((g) => g + 1) }, [])
  useEffect(() => {
    if (api === null || path === null) return
    const abort = new AbortController()
    const load = async (): Promise<void> => {
      try {
        const value = await api.get<T>(path, abort.signal)
        setData(value)
        setError(null)
        setNotOffered(false)
      } catch (err) {
        if ((err as Error).name === 'AbortError') return
        if (isNotOffered(err)) setNotOffered(true)
        else setError((err as Error).message)
      }
    }
    void load()
    const timer = intervalMs > 0 ? setInterval(() => { void load() }, intervalMs) : undefined
    return () => { abort.abort(); clearInterval(timer) }
  }, [api, path, intervalMs, generation])
  return { data, error, notOffered, reload }
}
