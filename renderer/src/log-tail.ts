/**
 * The agent's migration log, kept current by asking only for what is new: one full read, then
 * GET /v1/logs?after=SEQ on every poll (a read costs what was logged since, not the whole log).
 */
import { useEffect, useState } from 'react'
import { isNotOffered } from './api'
import type { MigrationLogEntry, MigrationLogExport } from './contract'
import { useAgent } from './store'

/** Entries kept in the page: the newest ones (exports ask the agent, which has them all). */
export const LOG_TAIL_KEPT = 20_000

export interface LogTail { entries: MigrationLogEntry[] | null, error: string | null, notOffered: boolean }

/** `migration` null: every migration's entries. `intervalMs` 0: read once. */
export function useLogTail (migration: string | null, intervalMs: number): LogTail {
  const { api } = useAgent()
  const [tail, setTail] = useState<LogTail>({ entries: null, error: null, notOffered: false })
  useEffect(() => {
    if (api === null) return
    setTail({ entries: null, error: null, notOffered: false })
    const abort = new AbortController()
    const base = `/v1/logs?format=json${migration === null ? '' : `&migration=${encodeURIComponent(migration)}`}`
    let lastSeq: number | null = null
    let busy = false
    const load = async (): Promise<void> => {
      if (busy) return
      busy = true
      try {
        const page = await api.get<MigrationLogExport>(lastSeq === null ? base : `${base}&after=${lastSeq}`, abort.signal)
        // An agent that ignores `after` answers everything again: keep only what is past the last seen.
        const fresh = lastSeq === null ? page.entries : page.entries.filter((e) => e.seq > lastSeq!)
        // Until something is logged every read is a full one (of nothing): no sequence to ask after yet.
        const first = lastSeq === null
        if (fresh.length > 0) lastSeq = fresh[fresh.length - 1]!.seq
        setTail((previous) => {
          if (!first && fresh.length === 0 && previous.error === null) return previous
          const entries = first ? fresh : [...(previous.entries ?? []), ...fresh]
          return { entries: entries.length > LOG_TAIL_KEPT ? entries.slice(-LOG_TAIL_KEPT) : entries, error: null, notOffered: false }
        })
      } catch (err) {
        if ((err as Error).name === 'AbortError') return
        setTail((previous) => isNotOffered(err) ? { entries: null, error: null, notOffered: true } : { ...previous, error: (err as Error).message })
      } finally {
        busy = false
      }
    }
    void load()
    const timer = intervalMs > 0 ? setInterval(() => { void load() }, intervalMs) : undefined
    return () => { abort.abort(); clearInterval(timer) }
  }, [api, migration, intervalMs])
  return tail
}
