/** Logs: the agent's migration log (GET /v1/logs) merged with this session's event stream; filter and export. */
import { useMemo, useState, type ReactNode } from 'react'
import { EmptyState, ErrorState, formatBytes, formatMs, short } from '../components'
import type { LogEntry, MigrationLogEntry } from '../contract'
import { formatLog, saveText, type ExportFormat } from '../export'
import { useLogTail } from '../log-tail'
import { useAgent } from '../store'

const SHOWN = 500

export function LogsView (): ReactNode {
  const { log: streamLog, api, status } = useAgent()
  const [migration, setMigration] = useState('')
  const query = migration === '' ? '' : `&migration=${encodeURIComponent(migration)}`
  const server = useLogTail(migration === '' ? null : migration, 3000)
  const [text, setText] = useState('')
  const [level, setLevel] = useState('all')
  const [saved, setSaved] = useState<string | null>(null)
  const [exportError, setExportError] = useState<string | null>(null)
  const fromAgent = !server.notOffered && server.entries !== null
  const entries = useMemo<LogEntry[]>(() => {
    if (!fromAgent) return streamLog
    const agentEntries = (server.entries ?? []).map(toLogEntry)
    // One timeline: the migrations' phases and passes beside the transactions and peers seen meanwhile.
    return [...agentEntries, ...streamLog].sort((a, b) => a.at < b.at ? -1 : a.at > b.at ? 1 : 0)
  }, [fromAgent, server.entries, streamLog])
  const migrations = useMemo(() => [...new Set(entries.flatMap((e) => e.migration === undefined ? [] : [e.migration]))].sort(), [entries])
  const filtered = useMemo(() => {
    const needle = text.trim().toLowerCase()
    return entries.filter((e) =>
      (level === 'all' || e.level === level) &&
      (migration === '' || e.migration === migration) &&
      (needle === '' || JSON.stringify(e).toLowerCase().includes(needle)))
  }, [entries, text, level, migration])
  if (api === null || status === null) return null

  const exportAs = async (format: ExportFormat): Promise<void> => {
    setExportError(null)
    try {
      const name = `hgmig-${status.site}-log${migration === '' ? '' : `-${migration}`}.${format === 'ndjson' ? 'ndjson' : format}`
      // The agent formats its own log (all fields, not only what is loaded); the stream log is formatted here.
      const content = fromAgent && text === '' && level === 'all'
        ? await api.text(`/v1/logs?format=${format}${query}`)
        : formatLog(filtered, format)
      setSaved(await saveText(name, content, format))
    } catch (err) {
      setExportError((err as Error).message)
    }
  }

  return (
    <section aria-labelledby='logs-title'>
      <h2 id='logs-title'>Logs</h2>
      <p className='muted' data-testid='log-source'>
        {fromAgent ? 'The agent\'s migration log, with this session\'s event stream.' : server.notOffered ? 'This agent does not offer a migration log yet (GET /v1/logs answers 404): showing what its event stream reported since this page opened.' : 'Showing the event stream since this page opened.'}
      </p>
      {server.error !== null && <ErrorState title="Could not load the agent's log">{server.error}</ErrorState>}
      <div className='toolbar' role='search' aria-label='Filter the log'>
        <label>Search <input type='search' value={text} onChange={(e) => { setText(e.target.value) }} placeholder='text in any field' /></label>
        <label>Level{' '}
          <select value={level} onChange={(e) => { setLevel(e.target.value) }}>
            {['all', 'debug', 'info', 'warn', 'error'].map((l) => <option key={l} value={l}>{l}</option>)}
          </select>
        </label>
        <label>Migration{' '}
          <select value={migration} onChange={(e) => { setMigration(e.target.value) }}>
            <option value=''>all</option>
            {migrations.map((m) => <option key={m} value={m}>{m}</option>)}
          </select>
        </label>
        <span className='spacer' />
        <span className='muted'>Export {filtered.length} entries as</span>
        {(['ndjson', 'csv', 'json'] as const).map((f) => (
          <button key={f} type='button' onClick={() => { void exportAs(f) }} aria-label={`Export as ${f.toUpperCase()}`}>{f.toUpperCase()}</button>
        ))}
      </div>
      {saved !== null && <p role='status' className='muted'>Saved {saved}.</p>}
      {exportError !== null && <ErrorState title='Export failed'>{exportError}</ErrorState>}
      {filtered.length === 0
        ? <EmptyState title={entries.length === 0 ? 'Nothing logged yet' : 'No entry matches the filter'} />
        : (
          <div className='scroll'>
            <table className='grid log' aria-label='Log entries' data-testid='log-table'>
              <thead><tr><th scope='col'>Time</th><th scope='col'>Level</th><th scope='col'>Site</th><th scope='col'>Migration</th><th scope='col'>Message</th></tr></thead>
              <tbody>
                {filtered.slice(-SHOWN).reverse().map((e, i) => (
                  <tr key={`${e.at}-${i}`} className={`level-${e.level}`}>
                    <td><time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time></td>
                    <td>{e.level}</td>
                    <td>{e.site ?? ''}</td>
                    <td>{e.migration ?? ''}{e.phase !== undefined ? ` · ${e.phase}` : ''}</td>
                    <td>{e.message}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          )}
    </section>
  )
}

/** An entry of the migration engine's log (p2p/migration LogEntry), as GET /v1/logs?format=json lists them. */
type EngineLogEntry = MigrationLogEntry

function toLogEntry (e: EngineLogEntry): LogEntry {
  return {
    at: new Date(e.time).toISOString(),
    // Batches and disk rounds come by the hundred: debug, so the default view shows the story.
    level: e.kind === 'error' ? 'error' : e.kind === 'batch' || e.kind === 'disk-round' ? 'debug' : 'info',
    message: describeEngineEntry(e),
    migration: e.migration,
    kind: e.kind,
    ...(e.phase === null ? {} : { phase: e.phase }),
    data: e.data
  }
}

/** One line a person reads for an engine log entry (the raw fields stay in `data`, and in every export). */
export function describeEngineEntry (e: EngineLogEntry): string {
  const d = e.data
  const n = (key: string): number => typeof d[key] === 'number' ? d[key] : NaN
  switch (e.kind) {
    case 'phase': return `phase ${e.phase ?? '?'}${Object.keys(d).length > 0 ? `: ${describeData(d)}` : ''}`
    case 'pass': return `pre-copy pass ${n('pass')}: ${n('pagesSent')} pages sent, ${n('pagesDirtied')} dirtied, ${n('remainingPages')} left, expected downtime ${formatMs(n('expectedDowntimeMs'))}`
    case 'disk-round': return `UD round ${n('round')}: ${n('blocksSent')} blocks (${formatBytes(n('bytesSent'))}) sent, ${n('blocksDirtied')} written meanwhile`
    case 'batch': return `base layers: ${formatBytes(n('bytes'))} of ${formatBytes(n('totalBytes'))}${typeof d['site'] === 'string' ? ` (last batch from ${d['site']})` : ''}`
    case 'error': return typeof d['error'] === 'string' ? d['error'] : describeData(d)
    default: return `${e.kind}${e.phase === null ? '' : ` ${e.phase}`}: ${describeData(d)}`
  }
}

/**
 * An entry's fields as a person reads them: times in ms or s, byte counts with units, fractions
 * rounded, digests shortened (the exports keep every field whole).
 */
export function describeData (data: Record<string, unknown>): string {
  return Object.entries(data).map(([key, value]) => `${key} ${describeValue(key, value)}`).join(', ')
}

function describeValue (key: string, value: unknown): string {
  if (typeof value === 'number') {
    if (/Ms$/.test(key)) return formatMs(value)
    if (/bytes|^base(Total|Done)$/i.test(key)) return formatBytes(value)
    return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1)
  }
  if (typeof value === 'string') return /^[0-9a-f]{24,}$/i.test(value) ? short(value) : value
  if (value === null || typeof value !== 'object') return String(value)
  const text = JSON.stringify(value)
  return text.length > 120 ? `${text.slice(0, 119)}…` : text
}
