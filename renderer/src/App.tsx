/** The shell: header with the site and its connection, a keyboard-navigable view list, the view. */
import { useEffect, useRef, useState, type KeyboardEvent, type ReactNode } from 'react'
import { forgetToken } from './api'
import { memberUntil, roleOf } from './contract'
import { EmptyState, ErrorState, ViewBoundary } from './components'
import { useAgent } from './store'
import { SwarmView } from './views/Swarm'
import { ConsensusView } from './views/Consensus'
import { ImagesView } from './views/Images'
import { MigrationsView } from './views/Migrations'
import { LogsView } from './views/Logs'

const VIEWS = [
  { id: 'swarm', title: 'Swarm', render: () => <SwarmView /> },
  { id: 'consensus', title: 'Consensus', render: () => <ConsensusView /> },
  { id: 'images', title: 'Images', render: () => <ImagesView /> },
  { id: 'migrations', title: 'Migrations', render: () => <MigrationsView /> },
  { id: 'logs', title: 'Logs', render: () => <LogsView /> }
] as const

type ViewId = typeof VIEWS[number]['id']

function viewFromHash (): ViewId {
  const id = window.location.hash.replace(/^#\/?/, '')
  return VIEWS.find((v) => v.id === id)?.id ?? 'swarm'
}

export function App (): ReactNode {
  const agent = useAgent()
  const [view, setView] = useState<ViewId>(viewFromHash)
  const tabs = useRef<Array<HTMLButtonElement | null>>([])

  useEffect(() => {
    const onHash = (): void => { setView(viewFromHash()) }
    window.addEventListener('hashchange', onHash)
    return () => { window.removeEventListener('hashchange', onHash) }
  }, [])

  const select = (id: ViewId, focus = false): void => {
    setView(id)
    history.replaceState(null, '', `#/${id}`)
    if (focus) tabs.current[VIEWS.findIndex((v) => v.id === id)]?.focus()
  }

  // Arrow keys, Home and End move between views (the WAI-ARIA tabs pattern).
  const onTabKey = (event: KeyboardEvent<HTMLButtonElement>, index: number): void => {
    const last = VIEWS.length - 1
    const next = { ArrowRight: index + 1, ArrowDown: index + 1, ArrowLeft: index - 1, ArrowUp: index - 1, Home: 0, End: last }[event.key]
    if (next === undefined) return
    event.preventDefault()
    select(VIEWS[(next + VIEWS.length) % VIEWS.length]!.id, true)
  }

  const current = VIEWS.find((v) => v.id === view)!
  return (
    <div className='app'>
      <header className='top'>
        <h1>hgmig</h1>
        <SiteSummary />
        <nav aria-label='Views'>
          <div role='tablist' aria-label='Views' className='tabs'>
            {VIEWS.map((v, index) => (
              <button
                key={v.id}
                ref={(element) => { tabs.current[index] = element }}
                role='tab'
                id={`tab-${v.id}`}
                aria-controls={`panel-${v.id}`}
                aria-selected={v.id === view}
                tabIndex={v.id === view ? 0 : -1}
                onClick={() => { select(v.id) }}
                onKeyDown={(event) => { onTabKey(event, index) }}
              >{v.title}
              </button>
            ))}
          </div>
        </nav>
      </header>
      <main id={`panel-${current.id}`} role='tabpanel' aria-labelledby={`tab-${current.id}`} tabIndex={-1} data-view={current.id}>
        <Gate><ViewBoundary view={current.title}>{current.render()}</ViewBoundary></Gate>
      </main>
      {agent.problem === null && !agent.streamOpen && agent.status !== null && (
        <div className='toast' role='status'>Live updates paused: reconnecting to the event stream…</div>
      )}
    </div>
  )
}

/** The states in which no view can show anything: no token, agent unreachable, token refused. */
function Gate ({ children }: { children: ReactNode }): ReactNode {
  const { token, problem, status } = useAgent()
  if (token === 'pending') return <EmptyState title='Connecting…' />
  if (token === 'missing') {
    return (
      <ErrorState title='No API token'>
        Open the address <code>npm start</code> printed (it ends in <code>#token=…</code>), or run{' '}
        <code>npx hgmig status</code> to find the running agent.
      </ErrorState>
    )
  }
  if (problem?.kind === 'unauthorized') {
    return (
      <ErrorState title='The agent refused this page'>
        <p>{problem.message}</p>
        <p>The agent makes a new token at each start: open the address it printed this time.</p>
        <button type='button' onClick={() => { forgetToken(); window.location.reload() }}>Forget the old token</button>
      </ErrorState>
    )
  }
  if (status === null && problem !== null) {
    return (
      <ErrorState title={problem.kind === 'unreachable' ? 'The agent is not reachable' : 'The agent answered with an error'}>
        <p>{problem.message}</p>
        <p>Start it with <code>npm start</code> (or <code>npx hgmig agent</code>); this page retries every second.</p>
      </ErrorState>
    )
  }
  if (status === null) return <EmptyState title='Waiting for the agent…' />
  return (
    <>
      {problem !== null && <ErrorState title='Lost the agent'>{problem.message} — showing the last known state; retrying.</ErrorState>}
      {status.halted !== null && <ErrorState title='The state machine halted'>{status.halted}</ErrorState>}
      {children}
    </>
  )
}

function SiteSummary (): ReactNode {
  const { status, problem, streamOpen } = useAgent()
  if (status === null) return <div className='summary' />
  const current = status.members.filter((m) => memberUntil(m) === null)
  const connected = current.filter((m) => m.connected).length
  const health = problem !== null ? 'down' : streamOpen ? 'live' : 'stale'
  return (
    <div className='summary' aria-live='polite'>
      <span className={`dot ${health}`} aria-hidden='true' />
      <span data-testid='site-name'>{status.site}</span>
      <span className='muted'>{status.swarm.name}</span>
      <span className='muted'>{connected}/{current.length} connected · round {status.lastDecidedRound}{roleOf(status) !== 'member' ? ` · ${roleOf(status)}` : ''}</span>
      <span className='sr-only'>{health === 'live' ? 'live' : health === 'stale' ? 'reconnecting' : 'agent unreachable'}</span>
    </div>
  )
}
