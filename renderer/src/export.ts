/** Log export: NDJSON, CSV or JSON, saved with the native dialog in Electron or as a download in a browser. */
import type { LogEntry } from './contract'

export type ExportFormat = 'ndjson' | 'csv' | 'json'

export const MIME: Record<ExportFormat, string> = {
  ndjson: 'application/x-ndjson',
  csv: 'text/csv',
  json: 'application/json'
}

export function formatLog (entries: LogEntry[], format: ExportFormat): string {
  if (format === 'json') return JSON.stringify(entries, null, 2) + '\n'
  if (format === 'ndjson') return entries.map((e) => JSON.stringify(e)).join('\n') + (entries.length > 0 ? '\n' : '')
  // CSV (RFC 4180): the common columns first, then any other field the entries carry.
  const columns = ['at', 'level', 'site', 'migration', 'phase', 'message']
  for (const entry of entries) for (const key of Object.keys(entry)) if (!columns.includes(key)) columns.push(key)
  const cell = (value: unknown): string => {
    const text = value === undefined || value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value)
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
  }
  return [columns.join(','), ...entries.map((e) => columns.map((c) => cell(e[c])).join(','))].join('\r\n') + '\r\n'
}

/** Saves `content`; returns where (a path in Electron, the file name in a browser) or null if cancelled. */
export async function saveText (suggestedName: string, content: string, format: ExportFormat): Promise<string | null> {
  if (window.hgmig !== undefined) return await window.hgmig.saveFile({ suggestedName, content })
  const url = URL.createObjectURL(new Blob([content], { type: MIME[format] }))
  const link = document.createElement('a')
  link.href = url
  link.download = suggestedName
  document.body.append(link)
  link.click()
  link.remove()
  setTimeout(() => { URL.revokeObjectURL(url) }, 60_000)
  return suggestedName
}
