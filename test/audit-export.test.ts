/**
 * The consensus audit's export (p2p/agent/audit.ts through the API server), and the migration log's
 * (p2p/migration/log.ts): a long history goes out
 * a page at a time — the same rows in every format as a whole read, windows and limits across page
 * boundaries, recording can go on while an export is half-way, and a transfer that breaks reaches
 * the client as an error, never as a short file that looks whole.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConsensusAuditLog, type AuditRow } from '../p2p/agent/audit.js'
import { ApiClient, createApiServer, parseIntegerQuery, parseTimeQuery, type AgentBackend, type ApiServer, type TextExport } from '../p2p/api/index.js'
import type { ConsensusEvent, SignedEvent } from '../p2p/hashgraph/index.js'
import { saveDownload, type ExportProgress } from '../p2p/cli/download.js'
import { MigrationDb, type LogEntry } from '../p2p/migration/log.js'

const ROWS = 2_345
const START_NS = 1_790_000_000_000_000_000n
const STEP_NS = 1_000_000n // one event per millisecond of consensus time

/** The ordered events a round received hands the audit, as the engine describes them. */
function orderedEvents (from: number, count: number): Array<ConsensusEvent<SignedEvent>> {
  return Array.from({ length: count }, (_, i) => {
    const position = from + i
    return {
      id: `event-${position}`,
      creator: position % 4,
      seq: Math.floor(position / 4),
      generation: position,
      timestamp: START_NS + BigInt(position) * STEP_NS - 500_000n,
      signature: new Uint8Array(64),
      payload: { transactions: position % 7 === 0 ? [new Uint8Array(1)] : [] } as unknown as SignedEvent,
      round: Math.floor(position / 10) + 1,
      witness: position % 10 === 0,
      famous: position % 10 === 0 ? position % 20 === 0 : null,
      roundReceived: Math.floor(position / 10) + 2,
      consensusTimestamp: START_NS + BigInt(position) * STEP_NS,
      position,
      stale: false
    }
  })
}

const siteName = (creator: number): string => `site-${creator}`
const timeOf = (position: number): Date => new Date(Number((START_NS + BigInt(position) * STEP_NS) / 1_000_000n))

function textOf (download: TextExport): string {
  return [...download.chunks].join('')
}

describe('the consensus audit export', () => {
  let audit: ConsensusAuditLog

  before(() => {
    audit = new ConsensusAuditLog(join(mkdtempSync(join(tmpdir(), 'hgmig-audit-')), 'audit.sqlite'), 'genesis-1')
    // One round received per ten events, as the engine hands them over.
    for (let from = 0; from < ROWS; from += 10) audit.record(orderedEvents(from, Math.min(10, ROWS - from)), from / 10 + 2)
  })

  after(() => { audit.close() })

  test('pages hold every row once, in position order, whatever the page size', () => {
    const whole = audit.rows({}, siteName)
    assert.equal(whole.length, ROWS)
    assert.deepEqual(whole.map((r) => r.position), Array.from({ length: ROWS }, (_, i) => i))
    for (const pageSize of [1, 7, 1000, 5000]) {
      const pages = [...audit.pages({}, siteName, pageSize)]
      assert.deepEqual(pages.flat(), whole, `page size ${pageSize}`)
      assert.equal(pages.length, Math.ceil(ROWS / pageSize), `page size ${pageSize}: page count`)
    }
  })

  test('a window and a limit cut across page boundaries exactly', () => {
    const since = timeOf(999)
    const until = timeOf(2_100)
    const window = audit.rows({ since, until }, siteName)
    assert.deepEqual(window.map((r) => r.position), Array.from({ length: 2_100 - 999 }, (_, i) => 999 + i))
    assert.deepEqual([...audit.pages({ since, until, limit: 1_500 }, siteName, 1000)].flat().map((r) => r.position), window.slice(0, 1_500).map((r) => r.position))
    assert.deepEqual(audit.rows({ since: timeOf(ROWS + 10) }, siteName), [])
    assert.deepEqual(audit.rows({ limit: 0 }, siteName), [])
  })

  test('every format carries the same rows as a whole read', () => {
    const whole = audit.rows({}, siteName)
    const json = JSON.parse(textOf(audit.export('json', {}, siteName))) as { events: AuditRow[] }
    assert.deepEqual(json.events, whole)
    const ndjson = textOf(audit.export('ndjson', {}, siteName))
    assert.ok(ndjson.endsWith('\n'))
    assert.deepEqual(ndjson.trimEnd().split('\n').map((line) => JSON.parse(line) as AuditRow), whole)
    const csv = textOf(audit.export('csv', {}, siteName)).trimEnd().split('\n')
    assert.equal(csv[0], 'position,id,creator,site,seq,round,witness,famous,roundReceived,consensusTime,consensusTimestampNs,createdTime,createdTimestampNs,transactions')
    assert.equal(csv.length, ROWS + 1)
    assert.equal(csv[11], '10,event-10,2,site-2,2,2,true,false,3,' + whole[10]!.consensusTime + ',' + whole[10]!.consensusTimestampNs + ',' + whole[10]!.createdTime + ',' + whole[10]!.createdTimestampNs + ',0')
    // An empty window is still a well-formed document.
    assert.deepEqual(JSON.parse(textOf(audit.export('json', { since: timeOf(ROWS + 10) }))), { events: [] })
    assert.equal(textOf(audit.export('ndjson', { since: timeOf(ROWS + 10) })), '')
    assert.throws(() => audit.export('xml'), /unknown audit format "xml": one of ndjson, csv, json/)
  })

  test('the engine keeps recording while an export is half-way, and the export goes on', () => {
    const pieces = audit.export('ndjson', {}, siteName).chunks[Symbol.iterator]()
    const first = pieces.next()
    assert.equal(first.done, false)
    audit.record(orderedEvents(ROWS, 50), 0) // would throw "connection is busy" under an open cursor
    let text = first.value as string
    for (let next = pieces.next(); next.done !== true; next = pieces.next()) text += next.value
    assert.equal(text.trimEnd().split('\n').length, ROWS + 50, 'rows recorded during the export are in it (positions only grow)')
    assert.equal(audit.size, ROWS + 50)
  })
})

describe('the consensus audit over the API', () => {
  let audit: ConsensusAuditLog
  let server: ApiServer
  let client: ApiClient
  let breakAfterFirstPage = false

  before(async () => {
    audit = new ConsensusAuditLog(join(mkdtempSync(join(tmpdir(), 'hgmig-audit-api-')), 'audit.sqlite'), 'genesis-2')
    for (let from = 0; from < 20_000; from += 1000) audit.record(orderedEvents(from, 1000), 0)
    // Only the audit endpoint is under test: anything else the server asked for would fail loudly.
    const backend = new Proxy({}, {
      get: (_target, name) => name === 'consensusAudit'
        ? (query: { format: string, since: string | null }): TextExport => {
            const since = parseTimeQuery('since', query.since)
            const download = audit.export(query.format, since === undefined ? {} : { since }, siteName)
            if (!breakAfterFirstPage) return download
            return { contentType: download.contentType, chunks: (function * () { let n = 0; for (const piece of download.chunks) { if (n++ === 2) throw new Error('disk I/O error'); yield piece } })() }
          }
        : () => { throw new Error(`the audit test's server must not call ${String(name)}`) }
    }) as AgentBackend
    server = createApiServer({ backend, token: 'a'.repeat(64) })
    await server.start()
    client = new ApiClient({ origin: server.origin, token: 'a'.repeat(64) })
  })

  after(async () => {
    await server.stop()
    audit.close()
  })

  test('an export of 20,000 events arrives whole, as the agent pages it', async () => {
    const text = await client.consensusAudit('ndjson')
    const rows = text.trimEnd().split('\n').map((line) => JSON.parse(line) as AuditRow)
    assert.equal(rows.length, 20_000)
    assert.deepEqual(rows, audit.rows({}, siteName))
    const json = JSON.parse(await client.consensusAudit('json', { since: timeOf(19_990).toISOString() })) as { events: AuditRow[] }
    assert.deepEqual(json.events.map((r) => r.position), Array.from({ length: 10 }, (_, i) => 19_990 + i))
  })

  test('bad input is a 400 that names it, before anything is sent', async () => {
    await assert.rejects(client.consensusAudit('ndjson', { since: 'yesterday' }), /query "since" must be an ISO time, got "yesterday"/)
    await assert.rejects(client.consensusAudit('xml' as 'json'), /unknown audit format "xml"/)
  })

  test('a transfer that breaks half-way is an error at the client, and the server serves on', async () => {
    breakAfterFirstPage = true
    try {
      await assert.rejects(client.consensusAudit('ndjson'))
    } finally {
      breakAfterFirstPage = false
    }
    assert.equal((await client.consensusAudit('ndjson', { since: timeOf(19_999).toISOString() })).trimEnd().split('\n').length, 1)
  })

  test('the CLI writes an export whole with progress in rows against the agent\'s count, and nothing when it breaks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hgmig-audit-save-'))
    const reports: ExportProgress[] = []
    const size = await saveDownload(join(dir, 'audit.ndjson'), await client.consensusAuditStream('ndjson'), 'consensus export', (p) => { reports.push(p) })
    assert.equal(size, statSync(join(dir, 'audit.ndjson')).size)
    assert.equal(readFileSync(join(dir, 'audit.ndjson'), 'utf8').trimEnd().split('\n').length, 20_000)
    const last = reports[reports.length - 1]!
    assert.deepEqual({ rows: last.rows, total: last.total, finished: last.finished }, { rows: 20_000, total: 20_000, finished: true })
    assert.ok(reports.every((p, i) => i === 0 || p.rows >= reports[i - 1]!.rows), 'rows only grow')
    assert.equal(reports.filter((p) => p.finished).length, 1)

    breakAfterFirstPage = true
    const broken: ExportProgress[] = []
    try {
      await assert.rejects(saveDownload(join(dir, 'broken.csv'), await client.consensusAuditStream('csv'), 'consensus export', (p) => { broken.push(p) }), /consensus export to .*broken\.csv failed, nothing written/)
    } finally {
      breakAfterFirstPage = false
    }
    assert.deepEqual(readdirSync(dir), ['audit.ndjson'], 'no partial file is left')
    assert.equal(broken[broken.length - 1]?.finished, true, 'the progress report ends')
  })

  test('a client that goes away mid-export does not stop the server', async () => {
    const controller = new AbortController()
    const download = await client.consensusAuditStream('csv', {}, { signal: controller.signal })
    assert.equal(download.rows, 20_000, 'the agent says how many rows the export holds')
    const reader = download.body.getReader()
    assert.equal((await reader.read()).done, false)
    controller.abort()
    await assert.rejects(reader.read())
    assert.equal((await client.consensusAudit('csv', { since: timeOf(19_998).toISOString() })).trimEnd().split('\n').length, 3)
  })
})

describe('the migration log export', () => {
  let log: MigrationDb

  before(() => {
    log = new MigrationDb(join(mkdtempSync(join(tmpdir(), 'hgmig-migration-log-')), 'migrations.sqlite'))
    for (const id of ['m-1', 'm-2']) log.insert({ id, role: 'source', vm: `vm-${id}`, vmName: `web-${id}`, source: 'site-a', target: 'site-b', strategy: 'h-gmig', phase: 'plan', state: 'running', options: {} })
    for (let i = 0; i < 2_500; i++) log.log(i % 3 === 0 ? 'm-2' : 'm-1', i % 2 === 0 ? 'pass' : 'info', null, { pass: i, note: 'a "quoted", comma' })
  })

  after(() => { log.close() })

  test('pages, whole reads and every format agree; a limit and a migration filter cut exactly', () => {
    const whole = log.entries()
    assert.equal(whole.length, 2_500)
    assert.deepEqual([...log.pages({}, 333)].flat(), whole)
    assert.deepEqual(log.entries({ migration: 'm-2', limit: 1_234 }).map((e) => e.data['pass']), whole.filter((e) => e.migration === 'm-2').slice(0, 1_234).map((e) => e.data['pass']))
    const ndjson = log.export('ndjson').trimEnd().split('\n').map((line) => JSON.parse(line) as LogEntry)
    assert.deepEqual(ndjson, whole)
    const json = JSON.parse(log.export('json', { migration: 'm-1' })) as { entries: LogEntry[], migrations: Array<{ id: string }> }
    assert.deepEqual(json.entries, whole.filter((e) => e.migration === 'm-1'))
    assert.deepEqual(json.migrations.map((m) => m.id), ['m-1'], 'the rows of the migrations the entries belong to')
    assert.deepEqual(JSON.parse(log.export('json', { since: Date.now() + 86_400_000 })), { entries: [], migrations: [] })
    const csv = log.export('csv').trimEnd().split('\n')
    assert.equal(csv[0], 'seq,time,migration,kind,phase,data')
    assert.equal(csv.length, 2_501)
    assert.match(csv[1]!, /^\d+,\d{4}-\d\d-\d\dT[^,]+,m-2,pass,,"\{""pass"":0,""note"":""a \\""quoted\\"", comma""\}"$/)
    assert.throws(() => log.export('xml' as 'csv'), /unknown export format "xml"/)
  })

  test('a reader polling with `after` gets exactly the entries past the last it saw, across pages', () => {
    const whole = log.entries()
    const seen = whole[1_000]!.seq
    assert.deepEqual([...log.pages({ after: seen }, 333)].flat(), whole.filter((e) => e.seq > seen))
    assert.deepEqual(log.entries({ after: seen, migration: 'm-2' }), whole.filter((e) => e.seq > seen && e.migration === 'm-2'))
    assert.deepEqual(log.entries({ after: whole[whole.length - 1]!.seq }), [])
    assert.equal(log.count({ after: seen }), whole.filter((e) => e.seq > seen).length, 'an export\'s progress total')
    assert.equal(log.count({ migration: 'm-2', limit: 10 }), 10)
    assert.equal(log.count({ since: Date.now() + 86_400_000 }), 0)
    assert.equal(parseIntegerQuery('after', '41', 0), 41)
    assert.equal(parseIntegerQuery('after', null, 0), undefined)
    for (const bad of ['', '-1', '1.5', 'x', '1e400']) assert.throws(() => parseIntegerQuery('after', bad, 0), /query "after" must be an integer of at least 0/)
  })

  test('logging goes on while an export is half-way', () => {
    const pieces = log.exportChunks('ndjson')[Symbol.iterator]()
    let text = pieces.next().value as string
    log.log('m-1', 'info', null, { during: true })
    for (let next = pieces.next(); next.done !== true; next = pieces.next()) text += next.value
    assert.equal(text.trimEnd().split('\n').length, 2_501)
  })
})
