/** Swarm: member sites (connection, RTT, holdings), join requests and LAN peers, invite/approve/remove. */
import { useEffect, useState, type ReactNode } from 'react'
import { isNotOffered } from '../api'
import { Chart, EmptyState, ErrorState, formatBytes, formatMs, Loaded, short } from '../components'
import { memberSince, memberThroughput, memberUntil, roleOf, type ImagesView, type InviteView, type SwarmRequests } from '../contract'
import { useAgent, useEndpoint } from '../store'

export function SwarmView (): ReactNode {
  const { status, api, subscribe } = useAgent()
  const images = useEndpoint<ImagesView>('/v1/images', 5000)
  const requests = useEndpoint<SwarmRequests>('/v1/swarm/requests', 5000)
  const [invite, setInvite] = useState<InviteView | null>(null)
  const [ttlHours, setTtlHours] = useState('24')
  const { reload: reloadRequests } = requests
  useEffect(() => subscribe((event) => {
    if (event.type === 'join-request' || event.type === 'membership') reloadRequests()
  }), [subscribe, reloadRequests])
  const [actionError, setActionError] = useState<string | null>(null)
  if (status === null || api === null) return null

  const act = async (what: () => Promise<void>): Promise<void> => {
    setActionError(null)
    try { await what() } catch (err) { setActionError(isNotOffered(err) ? 'this agent does not offer that yet (404)' : (err as Error).message) }
  }
  const holdings = (site: string): string => {
    const held = images.data?.sites.find((s) => s.site === site)
    if (held === undefined || images.data === null) return images.notOffered ? 'n/a' : '—'
    const bytes = held.images.reduce((sum, cid) => sum + (images.data!.images.find((i) => i.rootCid === cid)?.size ?? 0), 0)
    return `${held.images.length} image${held.images.length === 1 ? '' : 's'} · ${formatBytes(bytes)}`
  }

  return (
    <section aria-labelledby='swarm-title'>
      <h2 id='swarm-title'>Swarm <span className='muted'>{status.swarm.name} · {short(status.swarm.id, 16)}</span></h2>
      <RoleBanner role={roleOf(status)} />
      {status.members.filter((m) => memberUntil(m) === null).length === 1 && roleOf(status) === 'member' && (
        <EmptyState title='No other sites yet'>
          This site is the swarm's only member. Invite another site below, or have it join with the code.
        </EmptyState>
      )}
      <table className='grid' aria-label='Member sites' data-testid='members'>
        <thead>
          <tr><th scope='col'>#</th><th scope='col'>Site</th><th scope='col'>Peer id</th><th scope='col'>Member</th><th scope='col'>Connection</th><th scope='col'>Round trip</th><th scope='col'>Throughput</th><th scope='col'>Holdings</th><th scope='col'><span className='sr-only'>Actions</span></th></tr>
        </thead>
        <tbody>
          {status.members.map((m) => {
            const throughput = memberThroughput(m)
            const since = memberSince(m)
            const until = memberUntil(m)
            return (
              <tr key={m.peerId} data-site={m.name} data-gone={until !== null ? 'true' : undefined} className={until !== null ? 'gone' : undefined}>
                <td>{m.index}</td>
                <th scope='row'>{m.name}{m.self && <span className='tag'>this site</span>}</th>
                <td><code title={m.peerId}>{short(m.peerId, 20)}</code></td>
                <td>{until !== null ? `left at round ${until}` : since === null || since <= 1 ? 'founding' : `from round ${since}`}</td>
                <td><span className={`badge ${m.connected ? 'ok' : 'bad'}`}>{m.connected ? 'connected' : 'disconnected'}</span></td>
                <td>{m.self ? '—' : formatMs(m.rttMs)}</td>
                <td data-testid='throughput'>{throughput === undefined
                  ? <span className='muted' title='This agent does not report per-member throughput yet'>—</span>
                  : throughput === null ? '—' : <span title='sent to it / received from it, last seconds'>↑ {formatBytes(throughput.sentBytesPerSecond)}/s · ↓ {formatBytes(throughput.receivedBytesPerSecond)}/s</span>}
                </td>
                <td>{holdings(m.name)}</td>
                <td>{!m.self && until === null && (
                  <button type='button' className='link' aria-label={`Remove ${m.name} from the swarm`} onClick={() => {
                    if (window.confirm(`Remove ${m.name} from the swarm? This is decided by consensus.`)) void act(async () => { await api.post('/v1/swarm/remove', { site: m.name }) })
                  }}
                  >Remove
                  </button>)}
                </td>
              </tr>
            )
          })}
        </tbody>
      </table>

      <TrafficChart />

      <div className='columns'>
        <div className='panel'>
          <h3>Invite a site</h3>
          <p className='muted'>The code lets a site ask to join; a member approves the request, and consensus admits it. It carries the swarm key: give it to that site's operator only.</p>
          <div className='row'>
            <label>Valid for (hours) <input inputMode='numeric' size={4} value={ttlHours} onChange={(e) => { setTtlHours(e.target.value.replace(/[^\d.]/g, '')) }} /></label>
            <button type='button' onClick={() => { setInvite(null); void act(async () => { setInvite(await api.post<InviteView>('/v1/swarm/invite', ttlHours === '' ? {} : { ttlHours: Number(ttlHours) })) }) }}>Create invite code</button>
          </div>
          {invite !== null && (
            <div data-testid='invite'>
              <label>Invite code <textarea readOnly rows={3} value={invite.code} aria-label='Invite code' onFocus={(e) => { e.currentTarget.select() }} /></label>
              {invite.expiresAt !== undefined && <p className='muted'>Valid until {new Date(invite.expiresAt).toLocaleString()}.</p>}
            </div>
          )}
          <h3>Join or create</h3>
          {window.hgmig?.joinSwarm !== undefined ? <JoinForm /> : (
            <p className='muted'>
              To join another swarm with its code: stop this agent, run <code>npx hgmig swarm join CODE --name SITE</code>, start the agent again, and have a member approve the request.
              A new swarm is founded with <code>npx hgmig swarm create --name SITE</code>.
            </p>
          )}
          <button type='button' className='link' onClick={() => {
            if (window.confirm(`Leave ${status.swarm.name}? This site removes itself from the swarm by consensus.`)) void act(async () => { await api.post('/v1/swarm/leave', {}) })
          }}
          >Leave this swarm…
          </button>
        </div>
        <div className='panel'>
          <h3>Join requests and LAN peers</h3>
          <Loaded result={requests} what='join requests' endpoint='GET /v1/swarm/requests'>
            {(data) => <Requests data={data} onApprove={(peer) => { void act(async () => { await api.post('/v1/swarm/approve', { peer }); requests.reload() }) }} />}
          </Loaded>
        </div>
      </div>
      {actionError !== null && <ErrorState title='That did not work'>{actionError}</ErrorState>}
    </section>
  )
}

/** Desktop app only: the main process restarts the agent on the joined swarm. */
function JoinForm (): ReactNode {
  const [code, setCode] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  return (
    <form onSubmit={(e) => {
      e.preventDefault()
      if (!window.confirm('Join the swarm of this code? This site leaves its current swarm (its data is kept aside) and asks the new one to admit it.')) return
      setBusy(true)
      setError(null)
      window.hgmig!.joinSwarm!(code).catch((err: Error) => { setError(err.message); setBusy(false) })
    }}
    >
      <label>Invite code from a member <textarea rows={3} value={code} onChange={(e) => { setCode(e.target.value) }} required /></label>
      <button type='submit' disabled={busy}>{busy ? 'Joining…' : 'Join that swarm'}</button>
      {error !== null && <ErrorState title='Could not join'>{error}</ErrorState>}
    </form>
  )
}

function RoleBanner ({ role }: { role: string }): ReactNode {
  switch (role) {
    case 'joining': return <EmptyState title='Not in a swarm yet: waiting for approval'>This site asked to join with an invite code; a member has to approve it (Swarm view, or <code>npx hgmig swarm approve</code>). Until then it only listens.</EmptyState>
    case 'approved': return <EmptyState title='Approved'>The swarm admitted this site; it takes part from the round the consensus fixed.</EmptyState>
    case 'leaving': return <ErrorState title='Leaving the swarm'>This site's removal is ordered; it keeps taking part until that round is decided.</ErrorState>
    case 'removed': return <ErrorState title='Removed from the swarm'>This site is no longer a member. Join again with a new invite code.</ErrorState>
    default: return null
  }
}

function Requests ({ data, onApprove }: { data: SwarmRequests, onApprove: (peer: string) => void }): ReactNode {
  const pending = data.requests ?? []
  const lan = data.lanPeers ?? []
  return (
    <>
      {pending.length === 0 ? <p className='muted'>No site is waiting for approval.</p> : (
        <ul className='plain' aria-label='Join requests'>
          {pending.map((r) => (
            <li key={r.peerId}>
              <strong>{r.name}</strong> <code title={r.peerId}>{short(r.peerId, 16)}</code> <span className='muted'>asked {new Date(r.at).toLocaleTimeString()}{r.inviter !== undefined ? ` with an invite of ${short(r.inviter, 12)}` : ''}</span>{' '}
              <button type='button' onClick={() => { onApprove(r.peerId) }} aria-label={`Approve ${r.name}`}>Approve</button>
            </li>
          ))}
        </ul>
      )}
      <h4>Peers found on the LAN</h4>
      {data.lanPeers === undefined ? <p className='muted'>This agent does not report LAN peers yet (GET /v1/swarm/requests has no <code>lanPeers</code>).</p> : lan.length === 0 ? <p className='muted'>None (mDNS runs when the agent listens beyond loopback).</p> : (
        <ul className='plain' aria-label='LAN peers' data-testid='lan-peers'>
          {lan.map((p) => (
            <li key={p.peerId} data-peer={p.peerId}>
              <code title={p.peerId}>{short(p.peerId, 20)}</code>
              {p.member === true ? <span className='tag'>member</span> : <span className='tag'>not in this swarm</span>}{' '}
              <span className='muted'>{p.addrs.join(', ')}{p.lastSeen !== undefined ? ` · seen ${new Date(p.lastSeen).toLocaleTimeString()}` : ''}</span>
            </li>
          ))}
        </ul>
      )}
      {lan.some((p) => p.member !== true) && <p className='muted'>A site found on the LAN joins with an invite code from a member: create one above and give it to that site's operator.</p>}
    </>
  )
}

const TRAFFIC_POINTS = 120

/** Each member's traffic with this site over the last minutes, from the status polls (where the agent reports it). */
function TrafficChart (): ReactNode {
  const { status } = useAgent()
  const [series, setSeries] = useState<Record<string, Array<[number, number]>>>({})
  useEffect(() => {
    if (status === null) return
    const at = Date.now()
    setSeries((previous) => {
      const next: Record<string, Array<[number, number]>> = {}
      for (const member of status.members) {
        const throughput = memberThroughput(member)
        if (member.self || throughput === undefined || throughput === null) continue
        next[member.name] = [...(previous[member.name] ?? []).slice(-(TRAFFIC_POINTS - 1)), [at, throughput.sentBytesPerSecond + throughput.receivedBytesPerSecond]]
      }
      return next
    })
  }, [status])
  const names = Object.keys(series)
  if (names.length === 0) return null
  return (
    <figure className='panel chart-figure'>
      <figcaption>Traffic with each member (sent + received, bytes/s)</figcaption>
      <Chart
        label={`Traffic with ${names.join(', ')}`}
        points={names.reduce((n, name) => n + (series[name]?.length ?? 0), 0)}
        height={180}
        testId='traffic-chart'
        option={{
          grid: { left: 72, right: 16, top: 28, bottom: 28 },
          legend: { top: 0 },
          tooltip: { trigger: 'axis', valueFormatter: (v: number) => `${formatBytes(v)}/s` },
          xAxis: { type: 'time' },
          yAxis: { type: 'value', axisLabel: { formatter: (v: number) => `${formatBytes(v)}/s` } },
          series: names.map((name) => ({ type: 'line', name, showSymbol: false, data: series[name] }))
        }}
      />
    </figure>
  )
}
