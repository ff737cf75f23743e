/** Migrations: a wizard to start one, live phase timeline and transfer bars for running ones, cancel, history. */
import { useEffect, useState, type ReactNode } from 'react'
import { isNotOffered } from '../api'
import { Bar, Chart, EmptyState, ErrorState, formatBytes, formatMs, NotOffered } from '../components'
import type { MigrationStart, MigrationView, SuggestedSite, TransferBar, VmView } from '../contract'
import { useAgent, useEndpoint } from '../store'

type MigrationList = MigrationView[] | { migrations: MigrationView[] }

function listOf (data: MigrationList | null): MigrationView[] {
  if (data === null) return []
  return Array.isArray(data) ? data : data.migrations
}

function isRunning (m: MigrationView): boolean {
  return (m.state ?? (['done', 'failed', 'cancelled'].includes(m.phase) ? m.phase : 'running')) === 'running'
}

export function MigrationsView (): ReactNode {
  const { subscribe } = useAgent()
  const migrations = useEndpoint<MigrationList>('/v1/migrations', 1000)
  const { reload } = migrations
  useEffect(() => subscribe((event) => { if (event.type === 'migration') reload() }), [subscribe, reload])

  if (migrations.notOffered) {
    return <section><h2>Migrations</h2><NotOffered what='migrations' endpoint='GET /v1/migrations' /></section>
  }
  const all = listOf(migrations.data)
  const running = all.filter(isRunning)
  const history = all.filter((m) => !isRunning(m))
  return (
    <section aria-labelledby='migrations-title'>
      <h2 id='migrations-title'>Migrations</h2>
      {migrations.error !== null && <ErrorState title='Could not load the migrations'>{migrations.error}</ErrorState>}
      <Wizard onStarted={reload} />
      <h3>Running</h3>
      {running.length === 0 ? <EmptyState title='No migration is running' /> : running.map((m) => <RunningMigration key={m.id} migration={m} onChange={reload} />)}
      <h3>History</h3>
      {history.length === 0 ? <EmptyState title='No finished migration yet' /> : (
        <table className='grid' aria-label='Finished migrations' data-testid='migration-history'>
          <thead><tr><th scope='col'>VM</th><th scope='col'>From</th><th scope='col'>To</th><th scope='col'>Outcome</th><th scope='col'>Downtime</th><th scope='col'>Ended</th></tr></thead>
          <tbody>
            {history.map((m) => (
              <tr key={m.id}>
                <th scope='row'>{m.vm}</th><td>{m.from}</td><td>{m.to}</td>
                <td>{m.state === 'failed' || m.phase === 'failed'
                  ? <span className='badge bad' title={m.error}>failed{m.error !== undefined ? `: ${m.error}` : ''}</span>
                  : <span className='badge ok'>{m.state ?? m.phase}</span>}
                </td>
                <td>{formatMs(m.actualDowntimeMs)}</td>
                <td>{m.endedAt === undefined ? '—' : new Date(m.endedAt).toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  )
}

function Wizard ({ onStarted }: { onStarted: () => void }): ReactNode {
  const { api, status } = useAgent()
  const vms = useEndpoint<VmView[] | { vms: VmView[] }>('/v1/vms', 5000)
  const [step, setStep] = useState(1)
  const [vm, setVm] = useState('')
  const [to, setTo] = useState('')
  const [maxDowntimeMs, setMaxDowntimeMs] = useState('')
  const [bandwidth, setBandwidth] = useState('')
  const [error, setError] = useState<string | null>(null)
  const plan = useEndpoint<{ suggested?: SuggestedSite[], bitmapSummary?: string, m?: number, n?: number }>(vm === '' ? null : `/v1/migrations/plan?vm=${encodeURIComponent(vm)}${to === '' ? '' : `&to=${encodeURIComponent(to)}`}`)
  if (vms.notOffered) return <NotOffered what='VMs to migrate' endpoint='GET /v1/vms' />
  const list = vms.data === null ? [] : Array.isArray(vms.data) ? vms.data : vms.data.vms
  const sites = [...new Set([...(status?.members.map((m) => m.name) ?? []), ...(plan.data?.suggested?.map((s) => s.site) ?? [])])]
  const chosen = list.find((v) => v.id === vm || v.name === vm)

  const start = async (): Promise<void> => {
    if (api === null) return
    setError(null)
    const request: MigrationStart = { vm, to }
    if (maxDowntimeMs !== '') request.maxDowntimeMs = Number(maxDowntimeMs)
    if (bandwidth !== '') request.bandwidth = Number(bandwidth)
    try {
      await api.post('/v1/migrations', request)
      setStep(1); setVm(''); setTo('')
      onStarted()
    } catch (err) {
      setError(isNotOffered(err) ? 'this agent does not start migrations yet (POST /v1/migrations answers 404)' : (err as Error).message)
    }
  }

  return (
    <div className='panel wizard' aria-labelledby='wizard-title'>
      <h3 id='wizard-title'>New migration <span className='muted'>step {step} of 3</span></h3>
      <ol className='steps' aria-label='Steps'>
        {['VM', 'Target', 'Plan'].map((label, i) => <li key={label} aria-current={step === i + 1 ? 'step' : undefined}>{label}</li>)}
      </ol>
      {step === 1 && (
        list.length === 0 ? <EmptyState title='No VM to migrate at this site' /> : (
          <fieldset>
            <legend>Which VM?</legend>
            {list.map((v) => (
              <label key={v.id} className='check'>
                <input type='radio' name='vm' value={v.id} checked={vm === v.id} onChange={() => { setVm(v.id) }} />
                {v.name} <span className='muted'>at {v.site}{v.memoryBytes !== undefined ? ` · ${formatBytes(v.memoryBytes)} RAM` : ''}{v.diskBytes !== undefined ? ` · ${formatBytes(v.diskBytes)} disk` : ''}</span>
              </label>
            ))}
            <button type='button' disabled={vm === ''} onClick={() => { setStep(2) }}>Next</button>
          </fieldset>
        )
      )}
      {step === 2 && (
        <fieldset>
          <legend>Target site for {chosen?.name ?? vm}</legend>
          {plan.data?.suggested !== undefined && plan.data.suggested.length > 0 && (
            <table className='grid' aria-label='Suggested sites'>
              <thead><tr><th scope='col'>Site</th><th scope='col'>Predicted bytes</th><th scope='col'>Predicted time</th><th scope='col'>(m, n)</th><th /></tr></thead>
              <tbody>
                {plan.data.suggested.map((s) => (
                  <tr key={s.site}><th scope='row'>{s.site}</th><td>{formatBytes(s.predictedBytes)}</td><td>{formatMs(s.predictedMs)}</td><td>{s.m ?? '—'}, {s.n ?? '—'}</td>
                    <td><button type='button' onClick={() => { setTo(s.site) }} aria-label={`Choose ${s.site}`}>Choose</button></td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {plan.notOffered && <p className='muted'>This agent offers no predictions (GET /v1/migrations/plan answers 404): choose a site.</p>}
          <label>Site
            <select value={to} onChange={(e) => { setTo(e.target.value) }} required>
              <option value=''>choose…</option>
              {sites.filter((s) => s !== chosen?.site).map((s) => <option key={s} value={s}>{s}</option>)}
            </select>
          </label>
          <label>Maximum downtime (ms, optional) <input inputMode='numeric' value={maxDowntimeMs} onChange={(e) => { setMaxDowntimeMs(e.target.value.replace(/\D/g, '')) }} /></label>
          <label>Bandwidth limit (bytes/s, optional) <input inputMode='numeric' value={bandwidth} onChange={(e) => { setBandwidth(e.target.value.replace(/\D/g, '')) }} /></label>
          <div className='row'><button type='button' onClick={() => { setStep(1) }}>Back</button><button type='button' disabled={to === ''} onClick={() => { setStep(3) }}>Next</button></div>
        </fieldset>
      )}
      {step === 3 && (
        <div>
          <p>Migrate <strong>{chosen?.name ?? vm}</strong> from {chosen?.site ?? '?'} to <strong>{to}</strong>{maxDowntimeMs !== '' ? `, at most ${maxDowntimeMs} ms down` : ''}{bandwidth !== '' ? `, at most ${formatBytes(Number(bandwidth))}/s` : ''}.</p>
          {plan.data !== null && (
            <p className='muted'>Plan: {plan.data.bitmapSummary ?? 'no bitmap summary'}{plan.data.m !== undefined ? ` · (m, n) = (${plan.data.m}, ${plan.data.n ?? '?'})` : ''}</p>
          )}
          <div className='row'><button type='button' onClick={() => { setStep(2) }}>Back</button><button type='button' onClick={() => { void start() }}>Start migration</button></div>
        </div>
      )}
      {error !== null && <ErrorState title='Migration not started'>{error}</ErrorState>}
    </div>
  )
}

function RunningMigration ({ migration: m, onChange }: { migration: MigrationView, onChange: () => void }): ReactNode {
  const { api } = useAgent()
  const [error, setError] = useState<string | null>(null)
  const bar = (label: string, b: TransferBar | undefined): ReactNode => b === undefined ? null : (
    <Bar label={label} done={b.done} total={b.total} detail={`${formatBytes(b.done)} of ${formatBytes(b.total)}${b.bytesPerSecond !== undefined ? ` · ${formatBytes(b.bytesPerSecond)}/s` : ''}${b.etaMs !== undefined ? ` · ETA ${formatMs(b.etaMs)}` : ''}`} />
  )
  const phases = m.phases ?? []
  return (
    <article className='panel' aria-label={`Migration of ${m.vm}`} data-testid={`migration-${m.id}`}>
      <div className='panel-head'>
        <h4>{m.vm}: {m.from} → {m.to} <span className='badge'>{m.phase}</span></h4>
        <button type='button' onClick={() => {
          if (api === null || !window.confirm(`Cancel the migration of ${m.vm}?`)) return
          api.post(`/v1/migrations/${encodeURIComponent(m.id)}/cancel`, {}).then(onChange, (err: Error) => { setError(err.message) })
        }}
        >Cancel
        </button>
      </div>
      {phases.length > 0 && (
        <Chart
          label={`Phase timeline: ${phases.map((p) => p.name).join(', ')}`}
          points={phases.length}
          height={90}
          option={{
            grid: { left: 16, right: 16, top: 8, bottom: 48 },
            legend: { bottom: 0 },
            tooltip: { valueFormatter: (v: number) => formatMs(v) },
            xAxis: { type: 'value', name: 'ms', axisLabel: { formatter: (v: number) => formatMs(v) } },
            yAxis: { type: 'category', data: ['phases'], show: false },
            series: phases.map((p) => ({
              type: 'bar', stack: 'phases', name: p.name,
              data: [(p.endedAt === null || p.endedAt === undefined ? Date.now() : Date.parse(p.endedAt)) - Date.parse(p.startedAt)]
            }))
          }}
        />
      )}
      {bar('Base layers', m.bars?.base)}
      {bar('User data (UD)', m.bars?.ud)}
      {bar('Memory', m.bars?.memory)}
      <div className='columns'>
        {m.sources !== undefined && m.sources.length > 0 && (
          <figure className='chart-figure'><figcaption>Throughput per source site</figcaption>
          <Chart label='Throughput per source site' points={m.sources.length} height={160} option={{
            grid: { left: 100, right: 24, top: 8, bottom: 24 },
            xAxis: { type: 'value', axisLabel: { formatter: (v: number) => `${formatBytes(v)}/s` } },
            yAxis: { type: 'category', data: m.sources.map((s) => s.site) },
            series: [{ type: 'bar', data: m.sources.map((s) => s.bytesPerSecond) }]
          }}
          />
          </figure>
        )}
        {m.dirtyPages !== undefined && m.dirtyPages.length > 0 && (
          <figure className='chart-figure'><figcaption>Dirty pages per pre-copy pass</figcaption>
          <Chart label='Dirty pages per pre-copy pass' points={m.dirtyPages.length} height={160} option={{
            grid: { left: 56, right: 16, top: 8, bottom: 24 },
            xAxis: { type: 'category', data: m.dirtyPages.map((_, i) => `pass ${i + 1}`) },
            yAxis: { type: 'value', name: 'pages' },
            series: [{ type: 'bar', data: m.dirtyPages }]
          }}
          />
          </figure>
        )}
      </div>
      <p className='muted'>Downtime expected {formatMs(m.expectedDowntimeMs)}, actual {formatMs(m.actualDowntimeMs)}{m.plan?.m !== undefined ? ` · (m, n) = (${m.plan.m}, ${m.plan.n ?? '?'})` : ''}</p>
      {m.error !== undefined && <ErrorState title='Migration failed'>{m.error}</ErrorState>}
      {error !== null && <ErrorState title='Cancel failed'>{error}</ErrorState>}
    </article>
  )
}
