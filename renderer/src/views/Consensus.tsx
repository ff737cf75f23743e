/** Consensus: the live hashgraph, latency p50/p95/p99 and events/s as charts, state hashes per site. */
import { useMemo, useRef, useState, type KeyboardEvent, type ReactNode } from 'react'
import { Chart, EmptyState, ErrorState, formatMs, Loaded, short } from '../components'
import type { HashgraphView, LatencySample } from '../contract'
import type { Api } from '../api'
import { saveText, type ExportFormat } from '../export'
import { layoutHashgraph, quantile, roundColour } from '../hashgraph-layout'
import { useAgent, useEndpoint } from '../store'

const WINDOW = 50

export function ConsensusView (): ReactNode {
  const { status, latency, remoteLatency, eventRate, api } = useAgent()
  const [limit, setLimit] = useState(150)
  const graph = useEndpoint<HashgraphView>(`/v1/hashgraph?limit=${limit}`, 1500)
  const [pingError, setPingError] = useState<string | null>(null)
  if (status === null || api === null) return null

  return (
    <section aria-labelledby='consensus-title'>
      <h2 id='consensus-title'>Consensus</h2>
      <div className='stats' aria-label='Consensus figures'>
        <Stat label='Last decided round' value={String(status.lastDecidedRound)} />
        <Stat label='Ordered transactions' value={String(status.transactions.ordered)} />
        <Stat label='Pending' value={String(status.transactions.pending)} />
        <Stat label='Latency p50' value={formatMs(status.latency.p50Ms)} />
        <Stat label='p95' value={formatMs(status.latency.p95Ms)} />
        <Stat label='p99' value={formatMs(status.latency.p99Ms)} />
        <Stat label='Events/s' value={status.eventsPerSecond.toFixed(1)} testId='events-per-second' />
        <Stat label='Checkpoint' value={status.checkpoint === null ? 'none yet' : `round ${status.checkpoint.round}`} title={status.checkpoint === null ? 'A checkpoint is written every 100 decided rounds; a restart then replays only the events after it' : `Written or fetched ${new Date(status.checkpoint.at).toLocaleString()}: a restart replays only the events after it`} testId='checkpoint' />
        <button type='button' onClick={() => {
          setPingError(null)
          api.post('/v1/transactions/ping', { count: 10 }).catch((err: Error) => { setPingError(err.message) })
        }}
        >Submit 10 latency probes
        </button>
      </div>
      {pingError !== null && <ErrorState title='Probes not submitted'>{pingError}</ErrorState>}
      <div className='columns'>
        <div className='panel'>
          <h3>Consensus latency</h3>
          <LatencyChart samples={latency} remote={remoteLatency} />
        </div>
        <div className='panel'>
          <h3>Hashgraph events per second</h3>
          <Chart
            label={`Events per second over time, now ${status.eventsPerSecond.toFixed(1)}`}
            points={eventRate.length}
            testId='events-chart'
            option={{
              grid: { left: 48, right: 16, top: 16, bottom: 32 },
              tooltip: { trigger: 'axis' },
              // The last two minutes, so a fresh page does not stretch one point over days.
              xAxis: { type: 'time', min: (eventRate.at(-1)?.[0] ?? Date.now()) - 120_000, max: eventRate.at(-1)?.[0] ?? Date.now() },
              yAxis: { type: 'value', name: 'events/s', minInterval: 1 },
              series: [{ type: 'line', name: 'events/s', showSymbol: false, areaStyle: { opacity: 0.15 }, data: eventRate }]
            }}
          />
        </div>
      </div>

      <div className='panel'>
        <h3>State hash at each site</h3>
        <table className='grid' aria-label='State hash per site' data-testid='state-hashes'>
          <thead><tr><th scope='col'>Site</th><th scope='col'>State hash</th><th scope='col'>Agrees with this site</th></tr></thead>
          <tbody>
            {status.members.map((m) => {
              const hash = m.self ? status.stateHash : (m as { stateHash?: string | null }).stateHash ?? null
              return (
                <tr key={m.peerId}>
                  <th scope='row'>{m.name}{m.self && <span className='tag'>this site</span>}</th>
                  <td><code title={hash ?? undefined}>{hash === null ? 'not reported' : short(hash, 24)}</code></td>
                  <td>{hash === null ? '—' : hash === status.stateHash ? <span className='badge ok'>same</span> : <span className='badge warn'>differs</span>}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      </div>

      <div className='panel'>
        <div className='panel-head'>
          <h3>Hashgraph</h3>
          <label>Events shown{' '}
            <select value={limit} onChange={(e) => { setLimit(Number(e.target.value)) }}>
              {[50, 150, 300].map((n) => <option key={n} value={n}>{n}</option>)}
            </select>
          </label>
        </div>
        <Loaded result={graph} what='the hashgraph' endpoint='GET /v1/hashgraph'>{(data) => <HashgraphDrawing graph={data} />}</Loaded>
      </div>

      <AuditExport site={status.site} api={api} />
    </section>
  )
}

/**
 * The consensus audit (GET /v1/consensus/audit): every ordered event with its round, fame, round
 * received, consensus time and position, for a window of consensus time — for comparing sites'
 * records or checking them with `hgmig consensus replay`.
 */
function AuditExport ({ site, api }: { site: string, api: Api }): ReactNode {
  const [since, setSince] = useState('')
  const [until, setUntil] = useState('')
  const [saved, setSaved] = useState<string | null>(null)
  const [error, setError] = useState<string | null>(null)
  const exportAs = async (format: ExportFormat): Promise<void> => {
    setError(null)
    setSaved(null)
    try {
      const query = new URLSearchParams({ format })
      // datetime-local inputs are in local time, without a zone: the agent wants ISO times.
      if (since !== '') query.set('since', new Date(since).toISOString())
      if (until !== '') query.set('until', new Date(until).toISOString())
      const content = await api.text(`/v1/consensus/audit?${query.toString()}`)
      setSaved(await saveText(`hgmig-${site}-consensus-audit.${format}`, content, format))
    } catch (err) {
      setError((err as Error).message)
    }
  }
  return (
    <div className='panel' data-testid='audit-export'>
      <h3>Consensus audit</h3>
      <p className='muted'>Every ordered event with its creator, round, witness and fame, round received, consensus time and position. Sites that agree export identical records.</p>
      <div className='toolbar'>
        <label>Ordered from <input type='datetime-local' step='1' value={since} onChange={(e) => { setSince(e.target.value) }} aria-label='Audit window start' /></label>
        <label>until <input type='datetime-local' step='1' value={until} onChange={(e) => { setUntil(e.target.value) }} aria-label='Audit window end' /></label>
        <span className='spacer' />
        <span className='muted'>Export as</span>
        {(['ndjson', 'csv', 'json'] as const).map((f) => (
          <button key={f} type='button' onClick={() => { void exportAs(f) }} aria-label={`Export the consensus audit as ${f.toUpperCase()}`}>{f.toUpperCase()}</button>
        ))}
      </div>
      {saved !== null && <p role='status' className='muted'>Saved {saved}.</p>}
      {error !== null && <ErrorState title='Audit export failed'>{error}</ErrorState>}
    </div>
  )
}

function Stat ({ label, value, testId, title }: { label: string, value: string, testId?: string, title?: string }): ReactNode {
  return <div className='stat' title={title}><span className='muted'>{label}</span><strong data-testid={testId}>{value}</strong></div>
}

function LatencyChart ({ samples, remote }: { samples: LatencySample[], remote: LatencySample[] }): ReactNode {
  // Each point: the quantiles over the trailing WINDOW samples, so the lines move as the swarm does.
  const others = useMemo(() => remote.map((s, i) => {
    const window = remote.slice(Math.max(0, i - WINDOW + 1), i + 1).map((r) => r.latencyMs).sort((a, b) => a - b)
    return [s.at, quantile(window, 0.5)] as [number, number]
  }), [remote])
  const series = useMemo(() => {
    const p50: Array<[number, number]> = []
    const p95: Array<[number, number]> = []
    const p99: Array<[number, number]> = []
    for (let i = 0; i < samples.length; i++) {
      const window = samples.slice(Math.max(0, i - WINDOW + 1), i + 1).map((s) => s.latencyMs).sort((a, b) => a - b)
      const at = samples[i]!.at
      p50.push([at, quantile(window, 0.5)])
      p95.push([at, quantile(window, 0.95)])
      p99.push([at, quantile(window, 0.99)])
    }
    return { p50, p95, p99 }
  }, [samples])
  if (samples.length === 0) {
    return <EmptyState title='No latency samples yet'>Submit latency probes: each is a transaction whose time to consensus order is measured here.</EmptyState>
  }
  const line = (name: string, data: Array<[number, number]>): object => ({ type: 'line', name, showSymbol: false, data })
  return (
    <Chart
      label={`Consensus latency over time: ${samples.length} samples`}
      points={samples.length}
      testId='latency-chart'
      option={{
        grid: { left: 56, right: 16, top: 32, bottom: 32 },
        legend: { top: 0 },
        tooltip: { trigger: 'axis', valueFormatter: (v: number) => `${Math.round(v)} ms` },
        xAxis: { type: 'time', min: 'dataMin', max: 'dataMax' },
        yAxis: { type: 'value', name: 'ms' },
        series: [
          line('p50', series.p50), line('p95', series.p95), line('p99', series.p99),
          ...(others.length === 0 ? [] : [{ ...line('other sites\' probes p50', others), lineStyle: { type: 'dashed' } }])
        ]
      }}
    />
  )
}

const COLUMN = 120
const ROW = 26
const MARGIN = 24

function HashgraphDrawing ({ graph }: { graph: HashgraphView }): ReactNode {
  const layout = useMemo(() => layoutHashgraph(graph.events), [graph])
  const [selected, setSelected] = useState<string | null>(null)
  const drawing = useRef<SVGSVGElement>(null)
  // Keyboard: arrows walk the graph (up: the creator's next event, down: its self-parent, left and
  // right: the nearest event of the neighbouring member), Escape clears.
  const onKey = (event: KeyboardEvent<SVGSVGElement>): void => {
    const current = layout.events.find((p) => p.event.id === selected)
    const newest = layout.events.reduce<typeof current>((best, p) => best === undefined || p.row > best.row ? p : best, undefined)
    let next: typeof current
    if (event.key === 'Escape') { setSelected(null); return }
    if (current === undefined) next = newest
    else if (event.key === 'ArrowUp') next = layout.events.find((p) => p.event.selfParent === current.event.id) ?? current
    else if (event.key === 'ArrowDown') next = layout.events.find((p) => p.event.id === current.event.selfParent) ?? current
    else if (event.key === 'ArrowLeft' || event.key === 'ArrowRight') {
      const column = current.column + (event.key === 'ArrowLeft' ? -1 : 1)
      next = layout.events.filter((p) => p.column === column).reduce<typeof current | undefined>((best, p) => best === undefined || Math.abs(p.row - current.row) < Math.abs(best.row - current.row) ? p : best, undefined) ?? current
    } else return
    event.preventDefault()
    if (next === undefined) return
    setSelected(next.event.id)
    drawing.current?.querySelector(`[data-id="${next.event.id}"]`)?.scrollIntoView({ block: 'nearest', inline: 'nearest' })
  }
  if (graph.events.length === 0) return <EmptyState title='No events yet' />
  const width = MARGIN * 2 + COLUMN * Math.max(1, graph.members.length)
  const height = MARGIN * 2 + ROW * layout.rows
  // Newest at the top: the drawing is read from where the swarm is now.
  const x = (column: number): number => MARGIN + COLUMN * column + COLUMN / 2
  const y = (row: number): number => height - MARGIN - ROW * row
  const chosen = layout.events.find((p) => p.event.id === selected)?.event
  return (
    <>
      <Legend />
      <div className='hashgraph-head' style={{ width }}>
        {graph.members.map((name, column) => <span key={column} style={{ left: x(column) }}>{name}</span>)}
      </div>
      <div className='hashgraph-scroll'>
        <svg
          ref={drawing} width={width} height={height} role='img' tabIndex={0} onKeyDown={onKey}
          aria-label={`Hashgraph: ${graph.events.length} events by ${graph.members.length} members, newest at the top. Arrow keys select events.`}
          data-testid='hashgraph' data-events={graph.events.length}
        >
          {graph.members.map((_, column) => <line key={column} className='lane' x1={x(column)} x2={x(column)} y1={MARGIN / 2} y2={height - MARGIN / 2} />)}
          {layout.edges.map((edge) => (
            <line key={`${edge.from.event.id}-${edge.kind}`} className={`edge ${edge.kind}`} x1={x(edge.from.column)} y1={y(edge.from.row)} x2={x(edge.to.column)} y2={y(edge.to.row)} />
          ))}
          {layout.events.map(({ event, column, row }) => (
            <g
              key={event.id}
              data-id={event.id}
              className={`event${event.witness ? ' witness' : ''}${event.famous === true ? ' famous' : ''}${event.id === selected ? ' selected' : ''}`}
              transform={`translate(${x(column)} ${y(row)})`}
              onClick={() => { setSelected(event.id) }}
            >
              <title>{`${graph.members[event.creator] ?? event.creator} #${event.seq} · round ${event.round ?? '?'}${event.witness ? ' · witness' : ''}${event.famous === true ? ' (famous)' : event.famous === false ? ' (not famous)' : ''} · ${event.order === null ? 'not ordered yet' : `consensus position ${event.order}`} · ${event.transactions} tx`}</title>
              {event.famous === true && <circle r={11} className='famous-ring' />}
              <circle r={event.witness ? 8 : 5} fill={roundColour(event.round)} />
              {event.order !== null && <text x={12} y={4} className='order'>{event.order}</text>}
            </g>
          ))}
        </svg>
      </div>
      {chosen !== undefined && (
        <p className='muted' aria-live='polite'>
          Event <code>{short(chosen.id, 16)}</code> by {graph.members[chosen.creator] ?? chosen.creator} (#{chosen.seq}), round {chosen.round ?? 'undecided'},{' '}
          {chosen.witness ? `witness${chosen.famous === true ? ', famous' : chosen.famous === false ? ', not famous' : ', fame undecided'}` : 'not a witness'},{' '}
          {chosen.order === null ? 'not in the order yet' : `consensus position ${chosen.order}`}, {chosen.transactions} transaction(s), {new Date(chosen.timestamp).toLocaleTimeString()}.
        </p>
      )}
    </>
  )
}

function Legend (): ReactNode {
  return (
    <ul className='legend' aria-label='Legend'>
      <li><svg width='18' height='18' aria-hidden='true'><circle cx='9' cy='9' r='5' fill={roundColour(1)} /></svg> event (colour: round)</li>
      <li><svg width='18' height='18' aria-hidden='true'><circle cx='9' cy='9' r='8' fill={roundColour(2)} className='witness-mark' /></svg> witness</li>
      <li><svg width='24' height='24' aria-hidden='true'><circle cx='12' cy='12' r='11' className='famous-ring' /><circle cx='12' cy='12' r='8' fill={roundColour(3)} /></svg> famous witness</li>
      <li><span className='order-sample'>42</span> consensus position</li>
      <li><svg width='24' height='10' aria-hidden='true'><line x1='0' y1='5' x2='24' y2='5' className='edge other' /></svg> other-parent edge</li>
    </ul>
  )
}
