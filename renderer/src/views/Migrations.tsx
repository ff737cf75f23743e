/**
 * Migrations: a wizard (VM, target with the agent's predictions, the plan with its bitmaps and
 * (m, n)), each running migration live (phase timeline, base/UD/memory bars with rate and ETA,
 * per-source throughput, dirty pages per pre-copy pass, expected and actual downtime, cancel), and
 * the history: this site's migrations and the swarm's, recorded by consensus.
 */
import { useEffect, useMemo, useRef, useState, type ReactNode } from 'react'
import { isNotOffered } from '../api'
import { Bar, Chart, EmptyState, ErrorState, formatBytes, formatMs, Loaded, NotOffered, short } from '../components'
import {
  memberUntil, MIGRATION_PHASES, WORKLOADS,
  type ImagesView, type MigrationInfo, type MigrationPlan, type MigrationRecord, type MigrationStart, type RankedTarget, type VmInfo, type VmStats
} from '../contract'
import { bitmapBuckets, historyOf, modelOf, type HistoryRow, type MigrationModel, type Sample, type TransferBarModel } from '../migration-model'
import { useLogTail } from '../log-tail'
import { useAgent, useEndpoint } from '../store'

interface MigrationsResponse { migrations: MigrationInfo[], history?: MigrationRecord[] }

const PHASE_LABEL: Record<string, string> = {
  request: 'request', plan: 'plan', agree: 'agree', transfer: 'base layers + UD', precopy: 'memory pre-copy', switchover: 'switch-over', committed: 'commit', resumed: 'resumed at target', released: 'released', record: 'recorded'
}

export function MigrationsView (): ReactNode {
  const { subscribe } = useAgent()
  const migrations = useEndpoint<MigrationsResponse>('/v1/migrations', 1000)
  const [selected, setSelected] = useState<string | null>(null)
  const { reload } = migrations
  useEffect(() => subscribe((event) => { if (event.type === 'migration') reload() }), [subscribe, reload])

  if (migrations.notOffered) {
    return <section><h2>Migrations</h2><NotOffered what='migrations' endpoint='GET /v1/migrations' /></section>
  }
  const rows = migrations.data?.migrations ?? []
  const running = rows.filter((m) => m.state === 'running')
  const history = historyOf(rows, migrations.data?.history ?? [])
  const chosen = selected === null ? undefined : rows.find((m) => m.id === selected && m.state !== 'running')
  const chosenRecord = selected === null || chosen !== undefined ? undefined : history.find((h) => h.id === selected)
  return (
    <section aria-labelledby='migrations-title'>
      <h2 id='migrations-title'>Migrations</h2>
      {migrations.error !== null && <ErrorState title='Could not load the migrations'>{migrations.error}</ErrorState>}
      <Wizard onStarted={() => { setSelected(null); reload() }} />
      <h3>Running</h3>
      {migrations.data === null
        ? <EmptyState title='Loading…' />
        : running.length === 0
          ? <EmptyState title='No migration is running'>Start one with the wizard above; it shows here while it runs.</EmptyState>
          : running.map((m) => <MigrationCard key={`${m.id}/${m.role}`} info={m} onChange={reload} />)}
      <h3>History</h3>
      {history.length === 0
        ? <EmptyState title='No finished migration yet' />
        : <HistoryTable rows={history} selected={selected} onSelect={(id) => { setSelected(id === selected ? null : id) }} />}
      {chosen !== undefined && <MigrationCard key={`${chosen.id}/${chosen.role}`} info={chosen} onChange={reload} />}
      {chosenRecord !== undefined && (
        <EmptyState title={`Migration ${short(chosenRecord.id)} of ${chosenRecord.vmName}: ${chosenRecord.source} → ${chosenRecord.target}`}>
          This site did not take part: the swarm's record (above) is all it has. Its log is at {chosenRecord.source} and {chosenRecord.target}.
        </EmptyState>
      )}
    </section>
  )
}

function HistoryTable ({ rows, selected, onSelect }: { rows: HistoryRow[], selected: string | null, onSelect: (id: string) => void }): ReactNode {
  return (
    <table className='grid' aria-label='Finished migrations' data-testid='migration-history'>
      <thead>
        <tr>
          <th scope='col'>VM</th><th scope='col'>From → to</th><th scope='col'>Strategy</th><th scope='col'>Outcome</th><th scope='col'>On the wire</th>
          <th scope='col'>Saved</th><th scope='col'>Total time</th><th scope='col'>Downtime</th><th scope='col'>Ended</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((h) => (
          <tr key={h.id} data-migration={h.id} data-state={h.state} aria-selected={h.id === selected}>
            <th scope='row'>
              <button type='button' className='link' aria-expanded={h.id === selected} aria-label={`Details of the migration of ${h.vmName} (${short(h.id, 8)})`} onClick={() => { onSelect(h.id) }}>{h.vmName}</button>
            </th>
            <td>{h.source} → {h.target}</td>
            <td>{h.strategy}</td>
            <td>
              {h.state === 'completed'
                ? <span className='badge ok'>completed{h.recorded ? ' · recorded' : ''}</span>
                : <span className={`badge ${h.state === 'cancelled' ? 'warn' : 'bad'}`}>{h.state}</span>}
              {h.error !== null && <div className='why'>{h.error}</div>}
            </td>
            <td>{formatBytes(h.bytesOnWire)}</td>
            <td>{formatBytes(h.bytesSaved)}</td>
            <td>{formatMs(h.totalMs)}</td>
            <td>{formatMs(h.downtimeMs)}</td>
            <td>{h.at === null ? <span className='muted'>by consensus</span> : new Date(h.at).toLocaleString()}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}

function MigrationCard ({ info, onChange }: { info: MigrationInfo, onChange: () => void }): ReactNode {
  const { api } = useAgent()
  const log = useLogTail(info.id, info.state === 'running' ? 1000 : 0)
  const [error, setError] = useState<string | null>(null)
  const [cancelling, setCancelling] = useState(false)
  // Rates come from successive rows: the baseline moves only when the row (the counters) does.
  const track = useRef<{ info: MigrationInfo, at: number, baseline: Sample | undefined, sample: Sample } | null>(null)
  const sameRow = track.current?.info === info
  const baseline = sameRow ? track.current!.baseline : track.current?.sample
  const at = sameRow ? track.current!.at : Date.now()
  const entries = log.entries
  const { model, sample } = useMemo(() => modelOf(info, entries ?? [], baseline, at), [info, entries, baseline, at])
  useEffect(() => { track.current = { info, at, baseline, sample } })

  const cancellable = model.running && MIGRATION_PHASES.indexOf(model.phase) < MIGRATION_PHASES.indexOf('committed')
  const cancel = (): void => {
    if (api === null || !window.confirm(`Cancel the migration of ${model.vmName}? The VM keeps running at ${model.source}.`)) return
    setCancelling(true)
    setError(null)
    api.post(`/v1/migrations/${encodeURIComponent(model.id)}/cancel`, {}).then(onChange, (err: Error) => { setError(err.message) }).finally(() => { setCancelling(false) })
  }
  return (
    <article className='panel migration' aria-label={`Migration of ${model.vmName}`} data-testid={`migration-${model.id}`} data-state={model.state} data-phase={model.phase}>
      <div className='panel-head'>
        <h4>
          {model.vmName}: {model.source} → {model.target}{' '}
          <span className={`badge ${model.running ? '' : model.state === 'completed' ? 'ok' : 'bad'}`}>{model.running ? PHASE_LABEL[model.phase] ?? model.phase : model.state}</span>{' '}
          <span className='muted'>{model.strategy} · {model.role === 'source' ? 'sending' : 'receiving'} · <code title={model.id}>{short(model.id, 8)}</code></span>
        </h4>
        {cancellable && <button type='button' onClick={cancel} disabled={cancelling} aria-label={`Cancel the migration of ${model.vmName}`}>{cancelling ? 'Cancelling…' : 'Cancel'}</button>}
      </div>
      {model.error !== null && (
        <ErrorState title={model.state === 'cancelled' ? 'Cancelled' : model.state === 'in-doubt' ? 'Outcome in doubt' : 'Migration failed'}>{model.error}</ErrorState>
      )}
      {model.running && model.role === 'source' && cancellable && <Limits model={model} onChange={onChange} />}
      <PhaseTimeline model={model} />
      <TransferBars model={model} />
      <div className='columns'>
        <SourcesChart model={model} />
        <PassesChart model={model} />
      </div>
      <p className='muted' data-testid='downtime'>
        Downtime: limit {formatMs(model.maxDowntimeMs)} · expected {formatMs(model.expectedDowntimeMs)} · actual {formatMs(model.actualDowntimeMs)}
        {model.totalMs !== null ? ` · total time ${formatMs(model.totalMs)}` : ''}
        {model.plan?.similarity !== undefined ? ` · (m, n) = (${model.plan.similarity.m.toFixed(2)}, ${model.plan.similarity.n.toFixed(2)})` : ''}
        {model.plan?.bytesSaved !== undefined ? ` · ${formatBytes(model.plan.bytesSaved)} of base layers not sent` : ''}
      </p>
      {log.notOffered && <p className='muted'>This agent does not offer migration logs (GET /v1/logs answers 404): no timeline or passes.</p>}
      {log.error !== null && <ErrorState title='Could not load the migration log'>{log.error}</ErrorState>}
      {error !== null && <ErrorState title='Cancel failed'>{error}</ErrorState>}
    </article>
  )
}

/** The running migration's bandwidth cap and downtime limit, changed mid-flight (PATCH /v1/migrations/:id). */
function Limits ({ model, onChange }: { model: MigrationModel, onChange: () => void }): ReactNode {
  const { api } = useAgent()
  const [bandwidth, setBandwidth] = useState('')
  const [downtime, setDowntime] = useState('')
  const [message, setMessage] = useState<{ error: boolean, text: string } | null>(null)
  const apply = (): void => {
    if (api === null) return
    const body: { bandwidth?: number, maxDowntimeMs?: number } = {}
    if (bandwidth !== '') body.bandwidth = Math.round(Number(bandwidth) * 1_000_000)
    if (downtime !== '') body.maxDowntimeMs = Number(downtime)
    setMessage(null)
    api.patch(`/v1/migrations/${encodeURIComponent(model.id)}`, body).then(() => {
      setMessage({ error: false, text: 'Applied.' }); setBandwidth(''); setDowntime(''); onChange()
    }, (err: Error) => { setMessage({ error: true, text: isNotOffered(err) ? 'this agent does not change running migrations (PATCH answers 404)' : err.message }) })
  }
  return (
    <form className='row limits' aria-label={`Limits of the migration of ${model.vmName}`} onSubmit={(e) => { e.preventDefault(); apply() }}>
      <span className='muted'>Now: {model.bandwidth === null || model.bandwidth === 0 ? 'no bandwidth cap' : `${formatBytes(model.bandwidth)}/s`} · at most {formatMs(model.maxDowntimeMs)} down</span>
      <label>Bandwidth (MB/s, 0: none) <input inputMode='decimal' size={6} value={bandwidth} onChange={(e) => { setBandwidth(e.target.value.replace(/[^\d.]/g, '')) }} /></label>
      <label>Max downtime (ms) <input inputMode='numeric' size={6} value={downtime} onChange={(e) => { setDowntime(e.target.value.replace(/\D/g, '')) }} /></label>
      <button type='submit' disabled={bandwidth === '' && downtime === ''}>Change limits</button>
      {message !== null && <span role={message.error ? 'alert' : 'status'} className={message.error ? 'why' : 'muted'}>{message.text}</span>}
    </form>
  )
}

function PhaseTimeline ({ model }: { model: MigrationModel }): ReactNode {
  const reachedIndex = MIGRATION_PHASES.indexOf(model.phase)
  const now = Date.now()
  const durations = model.timeline.map((step) => Math.max(0, (step.end ?? now) - step.start))
  return (
    <div className='timeline'>
      <ol className='phases' aria-label='Phases'>
        {MIGRATION_PHASES.map((phase, i) => {
          const step = model.timeline.find((s) => s.phase === phase)
          const completed = !model.running && model.state === 'completed'
          // A phase the migration passed without a log entry here (the target has no pre-copy, the source no release record) is "skipped".
          const state = i > reachedIndex ? (completed ? 'skipped' : 'todo') : i === reachedIndex ? (completed ? 'done' : model.running ? 'current' : 'stopped') : step === undefined && completed ? 'skipped' : 'done'
          return (
            <li key={phase} className={`phase ${state}`} aria-current={state === 'current' ? 'step' : undefined} data-phase={phase}>
              <span>{PHASE_LABEL[phase]}</span>
              {step !== undefined && <span className='muted'>{formatMs((step.end ?? now) - step.start)}</span>}
            </li>
          )
        })}
      </ol>
      {model.timeline.length > 0 && (
        <Chart
          label={`Phase timeline: ${model.timeline.map((s, i) => `${s.phase} ${formatMs(durations[i])}`).join(', ')}`}
          points={model.timeline.length}
          height={86}
          testId='phase-timeline'
          option={{
            grid: { left: 8, right: 16, top: 4, bottom: 44 },
            legend: { bottom: 0, type: 'scroll' },
            tooltip: { valueFormatter: (v: number) => formatMs(v) },
            xAxis: { type: 'value', axisLabel: { formatter: (v: number) => formatMs(v) } },
            yAxis: { type: 'category', data: ['time'], show: false },
            series: model.timeline.map((s, i) => ({ type: 'bar', stack: 'phases', name: PHASE_LABEL[s.phase] ?? s.phase, barWidth: 18, data: [durations[i]] }))
          }}
        />
      )}
    </div>
  )
}

function TransferBars ({ model }: { model: MigrationModel }): ReactNode {
  const detail = (bar: TransferBarModel, extra = ''): string => [
    `${formatBytes(bar.done)} of ${formatBytes(bar.total)}`,
    bar.carried > bar.total ? `${formatBytes(bar.carried)} sent in all` : null,
    bar.bytesPerSecond !== null ? `${formatBytes(bar.bytesPerSecond)}/s` : null,
    bar.etaMs !== null ? `ETA ${formatMs(bar.etaMs)}` : null,
    extra === '' ? null : extra
  ].filter((x) => x !== null).join(' · ')
  const lastPass = model.passes[model.passes.length - 1]
  const rounds = model.diskRounds.length
  const { base, ud, memory } = model.bars
  return (
    <div className='bars' data-testid='transfer-bars'>
      {base !== null && (base.total === 0
        ? <p className='muted'>Base layers: nothing to send, the target holds every chunk.</p>
        : <Bar label='Base layers' done={base.done} total={base.total} detail={detail(base)} />)}
      {ud !== null && (ud.total === 0
        ? <p className='muted'>User data (UD): empty, nothing to send.</p>
        : <Bar label='User data (UD)' done={ud.done} total={ud.total} detail={detail(ud, rounds > 1 ? `${rounds} rounds` : '')} />)}
      {memory !== null && <Bar label='Memory' done={memory.done} total={memory.total} detail={detail(memory, lastPass === undefined ? '' : `pass ${lastPass.pass}, ${lastPass.remainingPages} dirty pages left`)} />}
      {base === null && ud === null && memory === null && <p className='muted'>Sizes arrive with the plan.</p>}
    </div>
  )
}

function SourcesChart ({ model }: { model: MigrationModel }): ReactNode {
  if (model.sources === null) {
    return (
      <figure className='chart-figure'>
        <figcaption>Throughput per source site</figcaption>
        <p className='muted'>{model.running
          ? `The base layers are fetched by the target; its per-source figures are at ${model.target} (this agent does not relay them yet).`
          : `The base layers were fetched by the target: its per-source figures are in ${model.target}'s view of this migration.`}
        </p>
      </figure>
    )
  }
  if (model.sources.length === 0) {
    const none = model.bars.base?.total === 0 ? 'No base-layer chunk to fetch: the target holds them all.' : model.running ? 'No base-layer chunk received yet.' : 'No per-source figures were recorded.'
    return <figure className='chart-figure'><figcaption>Throughput per source site</figcaption><p className='muted'>{none}</p></figure>
  }
  const live = model.sources.some((s) => s.bytesPerSecond !== null)
  return (
    <figure className='chart-figure'>
      <figcaption>{live ? 'Throughput per source site (last seconds)' : 'Bytes per source site'}</figcaption>
      <Chart
        label={`Per source site: ${model.sources.map((s) => `${s.site} ${formatBytes(s.bytes)}${s.bytesPerSecond !== null ? ` at ${formatBytes(s.bytesPerSecond)}/s` : ''}`).join(', ')}`}
        points={model.sources.length}
        height={60 + 30 * model.sources.length}
        testId='sources-chart'
        option={{
          grid: { left: 90, right: 24, top: 8, bottom: 24 },
          tooltip: {},
          xAxis: { type: 'value', axisLabel: { formatter: (v: number) => live ? `${formatBytes(v)}/s` : formatBytes(v) } },
          yAxis: { type: 'category', data: model.sources.map((s) => s.site) },
          series: [{ type: 'bar', name: live ? 'bytes/s' : 'bytes', data: model.sources.map((s) => live ? s.bytesPerSecond ?? 0 : s.bytes), label: { show: true, position: 'right', formatter: (p: { value: number }) => live ? `${formatBytes(p.value)}/s` : formatBytes(p.value) } }]
        }}
      />
      {model.sources.some((s) => s.dropReason !== undefined) && (
        <ul className='plain why' aria-label='Dropped sources'>
          {model.sources.filter((s) => s.dropReason !== undefined).map((s) => <li key={s.site}>{s.site} dropped: {s.dropReason} (its share went to the others)</li>)}
        </ul>
      )}
    </figure>
  )
}

function PassesChart ({ model }: { model: MigrationModel }): ReactNode {
  if (model.passes.length === 0) {
    return (
      <figure className='chart-figure'>
        <figcaption>Dirty pages per pre-copy pass</figcaption>
        <p className='muted'>{model.role === 'target' ? `Pre-copy passes are counted at the source (${model.source}).` : 'No pre-copy pass yet.'}</p>
      </figure>
    )
  }
  return (
    <figure className='chart-figure'>
      <figcaption>Dirty pages per pre-copy pass</figcaption>
      <Chart
        label='Dirty pages per pre-copy pass'
        points={model.passes.length}
        height={180}
        testId='passes-chart'
        option={{
          grid: { left: 60, right: 60, top: 24, bottom: 24 },
          legend: { top: 0 },
          tooltip: { trigger: 'axis' },
          xAxis: { type: 'category', data: model.passes.map((p) => `pass ${p.pass}`) },
          yAxis: [{ type: 'value', name: 'pages' }, { type: 'value', name: 'ms', splitLine: { show: false } }],
          series: [
            { type: 'bar', name: 'pages dirtied', data: model.passes.map((p) => p.pagesDirtied) },
            { type: 'bar', name: 'left to send', data: model.passes.map((p) => p.remainingPages) },
            { type: 'line', name: 'expected downtime', yAxisIndex: 1, data: model.passes.map((p) => Math.round(p.expectedDowntimeMs)) }
          ]
        }}
      />
    </figure>
  )
}

// ---------------------------------------------------------------- the wizard

function Wizard ({ onStarted }: { onStarted: () => void }): ReactNode {
  const { api, status } = useAgent()
  const vms = useEndpoint<{ vms: VmInfo[] }>('/v1/vms', 3000)
  const [step, setStep] = useState(1)
  const [vm, setVm] = useState('')
  const [to, setTo] = useState('')
  const [strategy, setStrategy] = useState<'h-gmig' | 'nss' | 'ss'>('h-gmig')
  const [repository, setRepository] = useState('')
  const [maxDowntimeMs, setMaxDowntimeMs] = useState('')
  const [bandwidth, setBandwidth] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const heading = useRef<HTMLHeadingElement>(null)
  if (vms.notOffered) return <div className='panel'><NotOffered what='VMs to migrate' endpoint='GET /v1/vms' /></div>
  const list = vms.data?.vms ?? []
  const chosen = list.find((v) => v.id === vm)
  const others = (status?.members ?? []).filter((m) => !m.self && memberUntil(m) === null).map((m) => m.name)
  const go = (next: number): void => { setStep(next); setError(null); heading.current?.focus() }

  const start = async (): Promise<void> => {
    if (api === null) return
    setError(null)
    setBusy(true)
    const request: MigrationStart = { vm, to }
    if (strategy !== 'h-gmig') request.strategy = strategy
    if (strategy === 'ss') request.repository = repository
    if (maxDowntimeMs !== '') request.maxDowntimeMs = Number(maxDowntimeMs)
    if (bandwidth !== '') request.bandwidth = Math.round(Number(bandwidth) * 1_000_000)
    try {
      await api.post<MigrationInfo>('/v1/migrations', request)
      setStep(1); setVm(''); setTo('')
      onStarted()
    } catch (err) {
      setError(isNotOffered(err) ? 'this agent does not start migrations (POST /v1/migrations answers 404)' : (err as Error).message)
    } finally {
      setBusy(false)
    }
  }

  return (
    <div className='panel wizard' data-testid='wizard'>
      <h3 id='wizard-title' ref={heading} tabIndex={-1}>New migration <span className='muted'>step {step} of 3</span></h3>
      <ol className='steps' aria-label='Steps'>
        {['VM', 'Target', 'Plan'].map((label, i) => <li key={label} aria-current={step === i + 1 ? 'step' : undefined}>{label}</li>)}
      </ol>
      {step === 1 && (
        <>
          {vms.error !== null && <ErrorState title='Could not list the VMs'>{vms.error}</ErrorState>}
          {list.length === 0
            ? <EmptyState title='No VM at this site'>Create a synthetic VM below (or with <code>npx hgmig vm create</code>), on an OS and a WE image this site holds.</EmptyState>
            : (
              <fieldset>
                <legend>Which VM?</legend>
                {list.map((v) => <VmChoice key={v.id} vm={v} checked={vm === v.id} onChoose={() => { setVm(v.id) }} />)}
              </fieldset>
              )}
          <div className='row'><button type='button' className='primary' disabled={vm === ''} onClick={() => { go(2) }}>Next</button></div>
          <CreateVm onCreated={(id) => { vms.reload(); setVm(id) }} />
        </>
      )}
      {step === 2 && (
        <fieldset>
          <legend>Target site for {chosen?.name ?? vm}</legend>
          <Suggestions vm={vm} chosen={to} onChoose={setTo} />
          <div className='form-grid'>
            <label>Site
              <select value={to} onChange={(e) => { setTo(e.target.value) }} required>
                <option value=''>choose…</option>
                {others.map((s) => <option key={s} value={s}>{s}</option>)}
              </select>
            </label>
            <label>Strategy
              <select value={strategy} onChange={(e) => { setStrategy(e.target.value as typeof strategy) }}>
                <option value='h-gmig'>H-GMIG (plan from the agreed state, all holders send)</option>
                <option value='nss'>NSS (hash now, the source sends)</option>
                <option value='ss'>SS (hash now, a repository sends)</option>
              </select>
            </label>
            {strategy === 'ss' && (
              <label>Repository site
                <select value={repository} onChange={(e) => { setRepository(e.target.value) }} required>
                  <option value=''>choose…</option>
                  {others.filter((s) => s !== to).map((s) => <option key={s} value={s}>{s}</option>)}
                </select>
              </label>
            )}
            <label>Maximum downtime (ms, default 300) <input inputMode='numeric' value={maxDowntimeMs} onChange={(e) => { setMaxDowntimeMs(e.target.value.replace(/\D/g, '')) }} /></label>
            <label>Bandwidth limit (MB/s, optional) <input inputMode='decimal' value={bandwidth} onChange={(e) => { setBandwidth(e.target.value.replace(/[^\d.]/g, '')) }} /></label>
          </div>
          <div className='row'>
            <button type='button' onClick={() => { go(1) }}>Back</button>
            <button type='button' className='primary' disabled={to === '' || (strategy === 'ss' && repository === '')} onClick={() => { go(3) }}>Next</button>
          </div>
        </fieldset>
      )}
      {step === 3 && (
        <div>
          <p>
            Migrate <strong>{chosen?.name ?? vm}</strong> from {status?.site ?? '?'} to <strong>{to}</strong> with {strategy.toUpperCase()}
            {maxDowntimeMs !== '' ? `, at most ${maxDowntimeMs} ms down` : ''}{bandwidth !== '' ? `, at most ${bandwidth} MB/s` : ''}.
          </p>
          <PlanView vm={vm} to={to} />
          <div className='row'>
            <button type='button' onClick={() => { go(2) }}>Back</button>
            <button type='button' className='primary' disabled={busy} onClick={() => { void start() }}>{busy ? 'Starting…' : 'Start migration'}</button>
          </div>
        </div>
      )}
      {error !== null && <ErrorState title='Migration not started'>{error}</ErrorState>}
    </div>
  )
}

/** A VM to choose, with its live statistics (GET /v1/vms/:name/stats): what the dirty rate means for pre-copy. */
function VmChoice ({ vm, checked, onChoose }: { vm: VmInfo, checked: boolean, onChoose: () => void }): ReactNode {
  const stats = useEndpoint<VmStats>(`/v1/vms/${encodeURIComponent(vm.name)}/stats`, 3000)
  const s = stats.data
  return (
    <label className='check' data-vm={vm.name}>
      <input type='radio' name='vm' value={vm.id} checked={checked} disabled={vm.migrating || vm.state !== 'running'} onChange={onChoose} />
      {vm.name}{' '}
      <span className='muted'>
        {vm.state}{vm.migrating ? ' · migrating' : ''} · {vm.driver}
        {s !== null && ` · ${formatBytes(s.memoryBytes)} memory (${formatBytes(s.memoryUsedBytes)} in use) · ${Math.round(s.dirtyPagesPerSecond)} dirty pages/s · ${Math.round(s.cpuPercent)} % CPU`}
      </span>
    </label>
  )
}

function Suggestions ({ vm, chosen, onChoose }: { vm: string, chosen: string, onChoose: (site: string) => void }): ReactNode {
  const ranked = useEndpoint<RankedTarget[]>(`/v1/migrations/plan?vm=${encodeURIComponent(vm)}`)
  return (
    <Loaded result={ranked} what='predictions' endpoint='GET /v1/migrations/plan'>
      {(data) => data.length === 0 ? <EmptyState title='No other site to migrate to'>Invite a site in the Swarm view first.</EmptyState> : (
        <table className='grid' aria-label='Suggested sites' data-testid='suggested-sites'>
          <caption className='muted'>Suggested sites, fastest first (the agent's prediction from the agreed holdings)</caption>
          <thead><tr><th scope='col'>Site</th><th scope='col'>Predicted bytes to send</th><th scope='col'>Predicted time</th><th scope='col'>(m, n) at that site</th><th scope='col'><span className='sr-only'>Choose</span></th></tr></thead>
          <tbody>
            {data.map((s, i) => (
              <tr key={s.target} data-site={s.target} aria-selected={chosen === s.target}>
                <th scope='row'>{s.target}{i === 0 && <span className='tag'>suggested</span>}</th>
                <td>{formatBytes(s.bytesToSend)}</td>
                <td>{formatMs(s.estimatedSeconds * 1000)}</td>
                <td>({s.similarity.m.toFixed(2)}, {s.similarity.n.toFixed(2)})</td>
                <td><button type='button' onClick={() => { onChoose(s.target) }} aria-pressed={chosen === s.target} aria-label={`Choose ${s.target}`}>{chosen === s.target ? 'Chosen' : 'Choose'}</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Loaded>
  )
}

const BITMAP_BUCKETS = 64

function PlanView ({ vm, to }: { vm: string, to: string }): ReactNode {
  const plan = useEndpoint<MigrationPlan>(`/v1/migrations/plan?vm=${encodeURIComponent(vm)}&to=${encodeURIComponent(to)}`)
  return (
    <Loaded result={plan} what='migration plans' endpoint='GET /v1/migrations/plan'>
      {(p) => {
        const bySource = new Map<string, number>()
        for (const chunk of p.missing) for (const site of chunk.sources) bySource.set(site, (bySource.get(site) ?? 0) + 1)
        const rows = p.layers.map((l) => ({ layer: l, buckets: bitmapBuckets(l.bitmap, l.chunks - l.zeroChunks, BITMAP_BUCKETS) }))
        return (
          <div className='plan' data-testid='plan'>
            <p data-testid='plan-summary'>
              (m, n) = ({p.similarity.m.toFixed(2)}, {p.similarity.n.toFixed(2)}) ·{' '}
              {rows.map(({ layer: l }) => `${l.layer.toUpperCase()} ${l.presentChunks} of ${l.chunks - l.zeroChunks} chunks already at ${to}${l.zeroChunks > 0 ? ` (+${l.zeroChunks} zero)` : ''}`).join(' · ')}
            </p>
            <Chart
              label={`Plan bitmaps: ${rows.map(({ layer: l }) => `${l.layer.toUpperCase()} ${(100 * l.similarity).toFixed(0)} % at the target`).join(', ')}`}
              points={rows.reduce((n, r) => n + r.buckets.length, 0)}
              height={130}
              testId='plan-bitmap'
              option={{
                grid: { left: 40, right: 16, top: 8, bottom: 52 },
                tooltip: { formatter: (x: { value: [number, number, number] }) => `${(100 * x.value[2]).toFixed(0)} % of these chunks at ${to}` },
                xAxis: { type: 'category', data: Array.from({ length: BITMAP_BUCKETS }, (_, i) => i), show: false },
                yAxis: { type: 'category', data: rows.map((r) => r.layer.layer.toUpperCase()) },
                visualMap: { min: 0, max: 1, orient: 'horizontal', left: 'center', bottom: 0, itemHeight: 120, text: ['at the target', 'to send'], inRange: { color: ['#dc2626', '#facc15', '#16a34a'] } },
                series: [{ type: 'heatmap', data: rows.flatMap((r, y) => r.buckets.map((v, x) => [x, y, v])) }]
              }}
            />
            <dl className='figures'>
              <div><dt>Base layers to send</dt><dd>{formatBytes(p.bytesToSend.base)} ({p.missing.length} chunks)</dd></div>
              <div><dt>User data</dt><dd>{formatBytes(p.bytesToSend.ud)}</dd></div>
              <div><dt>Memory</dt><dd>{formatBytes(p.bytesToSend.memory)}</dd></div>
              <div><dt>Total</dt><dd>{formatBytes(p.bytesToSend.total)}</dd></div>
              <div><dt>Not sent (held or zero)</dt><dd>{formatBytes(p.bytesSaved)}</dd></div>
              <div><dt>Predicted time (1 Gbit/s links)</dt><dd>{formatMs(p.estimatedSeconds * 1000)}</dd></div>
              <div><dt>Chunk sources</dt><dd>{bySource.size === 0 ? 'none needed' : [...bySource].map(([site, n]) => `${site} (${n})`).join(', ')}</dd></div>
              <div><dt>Plan hash</dt><dd><code title={p.hash}>{short(p.hash, 16)}</code></dd></div>
            </dl>
          </div>
        )
      }}
    </Loaded>
  )
}

/** A synthetic VM on this site's images (POST /v1/vms), so a site can try a migration from the UI alone. */
function CreateVm ({ onCreated }: { onCreated: (id: string) => void }): ReactNode {
  const { api, status } = useAgent()
  const images = useEndpoint<ImagesView>('/v1/images', 5000)
  const [open, setOpen] = useState(false)
  const [name, setName] = useState('')
  const [os, setOs] = useState('')
  const [we, setWe] = useState('')
  const [memoryMiB, setMemoryMiB] = useState('64')
  const [workload, setWorkload] = useState<string>('dynamic')
  const [error, setError] = useState<string | null>(null)
  const own = new Set(images.data?.sites.find((s) => s.site === status?.site)?.images ?? [])
  const local = (images.data?.images ?? []).filter((i) => own.has(i.rootCid))
  const weImages = local.filter((i) => i.layer === 'we' && (os === '' || i.base === os))
  return (
    <details className='create-vm' open={open} onToggle={(e) => { setOpen(e.currentTarget.open) }}>
      <summary>Create a synthetic VM…</summary>
      <form className='form' onSubmit={(e) => {
        e.preventDefault()
        if (api === null) return
        setError(null)
        api.post<{ id: string }>('/v1/vms', { name, os, we, memoryBytes: Math.round(Number(memoryMiB) * 2 ** 20), workload })
          .then((vm) => { onCreated(vm.id); setName(''); setOpen(false) }, (err: Error) => { setError(isNotOffered(err) ? 'this agent does not create VMs (POST /v1/vms answers 404)' : err.message) })
      }}
      >
        <label>VM name <input required value={name} onChange={(e) => { setName(e.target.value) }} /></label>
        <label>OS image
          <select required value={os} onChange={(e) => { setOs(e.target.value); setWe('') }}>
            <option value=''>choose…</option>
            {local.filter((i) => i.layer === 'os').map((i) => <option key={i.rootCid} value={i.rootCid}>{i.name}</option>)}
          </select>
        </label>
        <label>WE image
          <select required value={we} onChange={(e) => { setWe(e.target.value) }}>
            <option value=''>choose…</option>
            {weImages.map((i) => <option key={i.rootCid} value={i.rootCid}>{i.name}</option>)}
          </select>
        </label>
        <label>Memory (MiB) <input required inputMode='numeric' value={memoryMiB} onChange={(e) => { setMemoryMiB(e.target.value.replace(/\D/g, '')) }} /></label>
        <label>Workload
          <select value={workload} onChange={(e) => { setWorkload(e.target.value) }}>
            {WORKLOADS.map((w) => <option key={w} value={w}>{w}</option>)}
          </select>
        </label>
        <button type='submit'>Create VM</button>
        {local.length === 0 && <small className='muted'>This site holds no image yet: import an OS and a WE image in the Images view.</small>}
        {error !== null && <ErrorState title='VM not created'>{error}</ErrorState>}
      </form>
    </details>
  )
}
