/** Images: each site's library as OS → WE → UD trees, import with progress, similarity heat map, chunk map. */
import { useEffect, useMemo, useState, type FormEvent, type ReactNode } from 'react'
import { isNotOffered } from '../api'
import { Bar, Chart, EmptyState, ErrorState, formatBytes, Loaded, NotOffered, short } from '../components'
import type { AbandonTransferResponse, ChunkMapView, ImageLayer, ImagesView as ImagesList, ImageView, ImportRequest, SimilarityView, TransfersResponse, TransferView } from '../contract'
import { useAgent, useEndpoint } from '../store'

const PARENT_LAYER: Record<ImageLayer, ImageLayer | null> = { os: null, we: 'os', ud: 'we' }

export function ImagesView (): ReactNode {
  const { subscribe, status } = useAgent()
  const images = useEndpoint<ImagesList>('/v1/images', 5000)
  const similarity = useEndpoint<SimilarityView>('/v1/images/similarity', 10_000)
  const [selected, setSelected] = useState<ImageView | null>(null)
  const { reload: reloadImages } = images
  const { reload: reloadSimilarity } = similarity
  useEffect(() => subscribe((event) => {
    if (event.type === 'image') { reloadImages(); reloadSimilarity() }
  }), [subscribe, reloadImages, reloadSimilarity])

  if (images.notOffered) return <section><h2>Images</h2><NotOffered what='an image library' endpoint='GET /v1/images' /></section>
  return (
    <section aria-labelledby='images-title'>
      <h2 id='images-title'>Images</h2>
      {images.error !== null && <ErrorState title='Could not load the images'>{images.error}</ErrorState>}
      <ImportForm images={images.data} onDone={() => { images.reload(); similarity.reload() }} />
      {images.data === null
        ? <EmptyState title='Loading…' />
        : images.data.images.length === 0
          ? <EmptyState title='No images yet'>Import an OS image first; WE images build on an OS image, UD images on a WE image.</EmptyState>
          : (
            <div className='columns'>
              {images.data.sites.map((site) => {
                const held = site.images.flatMap((cid) => images.data!.images.filter((i) => i.rootCid === cid))
                return (
                  <div className='panel' key={site.peerId} data-testid={`images-${site.site}`}>
                    <h3>{site.site} <span className='muted'>{held.length} image{held.length === 1 ? '' : 's'} · {formatBytes(held.reduce((n, i) => n + i.size, 0))}</span></h3>
                    {site.site === status?.site && held.length > 0 && <DedupSavings logicalBytes={held.reduce((n, i) => n + i.size, 0)} generation={images.data!.images.length} />}
                    {held.length === 0 ? <p className='muted'>Holds no image.</p> : <ImageTree images={held} onSelect={setSelected} selected={selected?.rootCid ?? null} />}
                  </div>
                )
              })}
            </div>
            )}
      <TransfersPanel />
      <div className='panel'>
        <h3>Similarity across images and sites</h3>
        <Loaded result={similarity} what='image similarity' endpoint='GET /v1/images/similarity'>
          {(data) => data.images.length === 0 ? <EmptyState title='Nothing to compare yet' /> : <SimilarityHeatMap data={data} />}
        </Loaded>
      </div>
      {selected !== null && <ChunkMap image={selected} />}
    </section>
  )
}

interface StoreStats { storedBytes: number, storedLeafBytes: number, chunks: number, zeroChunks: number }

/** This site's deduplication: the images' bytes against what the store keeps on disk (the store's own stats). */
function DedupSavings ({ logicalBytes, generation }: { logicalBytes: number, generation: number }): ReactNode {
  const { api } = useAgent()
  const [stats, setStats] = useState<StoreStats | null>(null)
  useEffect(() => {
    if (api === null) return
    const abort = new AbortController()
    api.storeCall<StoreStats>('stats', [], abort.signal).then(setStats, () => { setStats(null) })
    return () => { abort.abort() }
  }, [api, generation])
  if (stats === null) return null
  const saved = Math.max(0, logicalBytes - stats.storedLeafBytes)
  return (
    <p className='muted' data-testid='dedup'>
      Stored on disk: {formatBytes(stats.storedLeafBytes)} of data for {formatBytes(logicalBytes)} of images · dedup and zero chunks save {formatBytes(saved)}
      {logicalBytes > 0 ? ` (${((100 * saved) / logicalBytes).toFixed(0)} %)` : ''} · {stats.chunks} distinct chunks stored
    </p>
  )
}

function ImageTree ({ images, onSelect, selected }: { images: ImageView[], onSelect: (image: ImageView) => void, selected: string | null }): ReactNode {
  const children = useMemo(() => {
    const map = new Map<string | null, ImageView[]>()
    const ids = new Set(images.map((i) => i.rootCid))
    for (const image of images) {
      // A layer whose base is not at this site is shown at the top.
      const parent = image.base !== null && ids.has(image.base) ? image.base : null
      map.set(parent, [...(map.get(parent) ?? []), image])
    }
    return map
  }, [images])
  const render = (parent: string | null, depth: number): ReactNode => {
    const list = children.get(parent) ?? []
    if (list.length === 0) return null
    return (
      <ul role={depth === 1 ? 'tree' : 'group'} aria-label={depth === 1 ? 'Images by layer' : undefined} className='tree'>
        {list.map((image) => {
          return (
            <li key={image.rootCid} role='treeitem' aria-level={depth} aria-selected={image.rootCid === selected} aria-expanded={children.has(image.rootCid) ? true : undefined}>
              <button type='button' className='tree-item' onClick={() => { onSelect(image) }}>
                <span className={`tag layer-${image.layer}`}>{image.layer.toUpperCase()}</span>
                <strong>{image.name}</strong>
                <span>{formatBytes(image.size)}</span>
                <span className='muted'>
                  {image.chunkCount} chunks of {formatBytes(image.chunkSize)}
                  {` · at ${image.holders.length} site${image.holders.length === 1 ? '' : 's'}`}
                  {image.public ? '' : ' · private'}
                </span>
                <code className='muted' title={image.rootCid}>{short(image.rootCid, 14)}</code>
                {!image.public && <span className='tag'>private</span>}
              </button>
              {render(image.rootCid, depth + 1)}
            </li>
          )
        })}
      </ul>
    )
  }
  return render(null, 1)
}

function ImportForm ({ images, onDone }: { images: ImagesList | null, onDone: () => void }): ReactNode {
  const { api, status, progress, subscribe } = useAgent()
  const [path, setPath] = useState('')
  const [layer, setLayer] = useState<ImageLayer>('os')
  const [base, setBase] = useState('')
  const [name, setName] = useState('')
  const [privateImage, setPrivateImage] = useState(false)
  const [task, setTask] = useState<string | null>(null)
  const [finished, setFinished] = useState<string | null>(null)
  const [error, setError] = useState<string | null>(null)
  useEffect(() => subscribe((event) => {
    const image = event['image'] as ImageView | undefined
    if (event.type === 'image' && task !== null && event['site'] === status?.site && image !== undefined) {
      setFinished(`Imported ${image.name}`)
      setTask(null)
      onDone()
    }
  }), [subscribe, task, status, onDone])

  const ownCids = new Set(images?.sites.find((s) => s.site === status?.site)?.images ?? [])
  const own = images?.images.filter((i) => ownCids.has(i.rootCid)) ?? []
  const parent = PARENT_LAYER[layer]
  const bases = parent === null ? [] : own.filter((i) => i.layer === parent)
  const submit = async (event: FormEvent): Promise<void> => {
    event.preventDefault()
    if (api === null) return
    setError(null)
    setFinished(null)
    const request: ImportRequest = { path: path.trim(), layer }
    if (parent !== null) request.base = base
    if (name.trim() !== '') request.name = name.trim()
    if (privateImage) request.private = true
    try {
      setTask((await api.post<{ task: string }>('/v1/images', request)).task)
    } catch (err) {
      setError(isNotOffered(err) ? 'this agent does not import images through its API yet (POST /v1/images answers 404)' : (err as Error).message)
    }
  }
  const current = task === null ? undefined : progress[task]
  // Done when the agent says so on the stream: the image event, or the task's progress complete.
  useEffect(() => {
    if (task !== null && current !== undefined && current.total !== null && current.done >= current.total) {
      setFinished(`Imported ${path.split(/[\\/]/).pop() ?? path}`)
      setTask(null)
      onDone()
    }
  }, [task, current, path, onDone])
  return (
    <form className='panel form' onSubmit={(e) => { void submit(e) }} aria-labelledby='import-title'>
      <h3 id='import-title'>Import an image</h3>
      <label>Disk image file on this site
        <span className='row'>
          <input required value={path} onChange={(e) => { setPath(e.target.value) }} placeholder='/var/lib/images/debian.img' aria-describedby='path-help' />
          {window.hgmig !== undefined && (
            <button type='button' onClick={() => { void window.hgmig!.openImageFile().then((p) => { if (p !== null) setPath(p) }) }}>Choose…</button>
          )}
        </span>
      </label>
      <small id='path-help' className='muted'>The agent reads the file from its own disk; nothing is uploaded.</small>
      <label>Layer
        <select value={layer} onChange={(e) => { setLayer(e.target.value as ImageLayer); setBase('') }}>
          <option value='os'>OS</option><option value='we'>WE (on an OS image)</option><option value='ud'>UD (on a WE image)</option>
        </select>
      </label>
      {parent !== null && (
        <label>Base ({parent.toUpperCase()} image)
          <select required value={base} onChange={(e) => { setBase(e.target.value) }}>
            <option value=''>choose…</option>
            {bases.map((b) => <option key={b.rootCid} value={b.rootCid}>{b.name}</option>)}
          </select>
        </label>
      )}
      <label>Name (optional) <input value={name} onChange={(e) => { setName(e.target.value) }} /></label>
      <label className='check'><input type='checkbox' checked={privateImage} onChange={(e) => { setPrivateImage(e.target.checked) }} /> Private (not offered to other sites)</label>
      <button type='submit' disabled={task !== null}>Import</button>
      {task !== null && (
        <div data-testid='import-progress'>
          <Bar label='Import' done={current?.done ?? 0} total={current?.total ?? null} detail={current?.message} />
        </div>
      )}
      {finished !== null && <p role='status'>{finished}.</p>}
      {error !== null && <ErrorState title='Import not started'>{error}</ErrorState>}
    </form>
  )
}

function SimilarityHeatMap ({ data }: { data: SimilarityView }): ReactNode {
  const cells = data.matrix.flatMap((row, i) => row.map((value, j) => [j, i, Math.round(value * 1000) / 1000]))
  return (
    <Chart
      label={`Shared-chunk fraction between ${data.images.length} images`}
      points={cells.length}
      testId='similarity-chart'
      height={Math.max(240, 60 + 28 * data.labels.length)}
      option={{
        grid: { left: 140, right: 24, top: 16, bottom: 100 },
        tooltip: { formatter: (p: { value: [number, number, number] }) => `${data.labels[p.value[1]] ?? ''} ↔ ${data.labels[p.value[0]] ?? ''}: ${(p.value[2] * 100).toFixed(1)} % shared` },
        xAxis: { type: 'category', data: data.labels, axisLabel: { rotate: 40 } },
        yAxis: { type: 'category', data: data.labels },
        visualMap: { min: 0, max: 1, calculable: true, orient: 'horizontal', left: 'center', bottom: 0 },
        series: [{ type: 'heatmap', data: cells, label: { show: data.labels.length <= 12, formatter: (p: { value: [number, number, number] }) => p.value[2].toFixed(2) } }]
      }}
    />
  )
}

/** The chunk map's bucket states (ChunkMapView.states), as the heat map's values. */
const CHUNK_STATES = [
  { code: 'm', label: 'missing', color: '#dc2626' },
  { code: 'f', label: 'in flight', color: '#f59e0b' },
  { code: 'p', label: 'partly held', color: '#84cc16' },
  { code: 'h', label: 'held', color: '#15803d' },
  { code: 'z', label: 'all-zero (never stored)', color: '#9ca3af' }
] as const
const CHUNK_BUCKETS = 200

function ChunkMap ({ image }: { image: ImageView }): ReactNode {
  const map = useEndpoint<ChunkMapView>(`/v1/images/${encodeURIComponent(image.rootCid)}/chunks?buckets=${CHUNK_BUCKETS}`, 2000)
  return (
    <div className='panel' data-testid='chunk-map-panel'>
      <h3 id='chunk-map-title'>Chunk map of {image.name} <span className='muted'>{image.chunkCount} chunks · <code title={image.rootCid}>{short(image.rootCid, 14)}</code></span></h3>
      <Loaded result={map} what='chunk maps' endpoint='GET /v1/images/:rootCid/chunks'>
        {(data) => (
          <>
            <Chart
              label={`Chunk map of ${data.name}: ${data.sites.map((s) => `${s.site} holds ${s.held} of ${data.chunkCount}${s.inFlight > 0 ? `, ${s.inFlight} in flight` : ''}`).join('; ')}`}
              points={data.sites.reduce((n, s) => n + s.states.length, 0)}
              height={90 + 30 * data.sites.length}
              testId='chunk-map'
              option={{
                grid: { left: 110, right: 16, top: 8, bottom: 56 },
                tooltip: { formatter: (p: { value: [number, number, number] }) => `${data.sites[p.value[1]]?.site ?? ''}, chunks ${p.value[0] * data.chunksPerBucket}–${Math.min(data.chunkCount, (p.value[0] + 1) * data.chunksPerBucket) - 1}: ${CHUNK_STATES[p.value[2]]?.label ?? ''}` },
                xAxis: { type: 'category', data: Array.from({ length: data.buckets }, (_, i) => i), show: false },
                yAxis: { type: 'category', data: data.sites.map((s) => s.site) },
                visualMap: { type: 'piecewise', pieces: CHUNK_STATES.map((state, value) => ({ value, label: state.label, color: state.color })), orient: 'horizontal', left: 'center', bottom: 0 },
                series: [{ type: 'heatmap', data: data.sites.flatMap((s, row) => [...s.states].map((c, i) => [i, row, Math.max(0, CHUNK_STATES.findIndex((state) => state.code === c))])) }]
              }}
            />
            <table className='grid' aria-label={`Chunks of ${data.name} per site`} data-testid='chunk-map-table'>
              <thead><tr><th scope='col'>Site</th><th scope='col'>Held</th><th scope='col'>In flight</th><th scope='col'>Missing</th></tr></thead>
              <tbody>
                {data.sites.map((s) => (
                  <tr key={s.site} data-site={s.site}>
                    <th scope='row'>{s.site}</th>
                    <td>{s.held} of {data.chunkCount} ({data.chunkCount === 0 ? 100 : ((100 * s.held) / data.chunkCount).toFixed(0)} %)</td>
                    <td>{s.inFlight}</td>
                    <td>{Math.max(0, data.chunkCount - s.held - s.inFlight)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </Loaded>
    </div>
  )
}

/** Seconds as "1 h 02 min", "3 min 05 s" or "42 s". */
function formatEta (seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '—'
  const s = Math.max(0, Math.round(seconds))
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
  return `${s} s`
}

/**
 * Chunk transfers at this site (fetches and pre-warming, running or not): progress, rate, ETA, what
 * each source gave, and a way to abandon one for good (its leaves are released).
 */
function TransfersPanel (): ReactNode {
  const { api, subscribe } = useAgent()
  const transfers = useEndpoint<TransfersResponse>('/v1/transfers', 2000)
  const [message, setMessage] = useState<string | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState<string | null>(null)
  const { reload } = transfers
  useEffect(() => subscribe((event) => {
    if (event.type === 'transfer-state' || event.type === 'transfer-abandoned') reload()
  }), [subscribe, reload])

  const abandon = async (transfer: TransferView): Promise<void> => {
    if (api === null) return
    if (!window.confirm(`Abandon the transfer of ${transfer.name}? It stops, is forgotten, and the chunks only it kept are released.`)) return
    setBusy(transfer.rootCid)
    setError(null)
    try {
      const done = await api.delete<AbandonTransferResponse>(`/v1/transfers/${encodeURIComponent(transfer.rootCid)}`)
      setMessage(`Abandoned ${done.name}: ${done.chunksDone} of ${done.chunksTotal} chunks had arrived; ${done.freedChunks} chunks (${formatBytes(done.freedBytes)}) released`)
      reload()
    } catch (err) {
      setError((err as Error).message)
    } finally {
      setBusy(null)
    }
  }

  if (transfers.notOffered) return null
  return (
    <div className='panel' data-testid='transfers'>
      <h3>Transfers at this site</h3>
      {message !== null && <p role='status'>{message}</p>}
      {error !== null && <ErrorState title='Could not abandon the transfer'>{error}</ErrorState>}
      <Loaded result={transfers} what='the transfers' endpoint='GET /v1/transfers'>
        {(data) => data.transfers.length === 0
          ? <EmptyState title='No transfers'>Fetching an image (<code>hgmig image fetch</code>), pre-warming a site or a migration starts one.</EmptyState>
          : (
            <ul className='transfers'>
              {data.transfers.map((t) => (
                <li key={t.rootCid} data-testid={`transfer-${t.name}`} data-state={t.state}>
                  <div className='transfer-head'>
                    <strong>{t.name}</strong>
                    <span className={`tag state-${t.state}`}>{t.state}</span>
                    <span className='muted'>{t.layer.toUpperCase()} · {t.purpose}</span>
                    {t.state !== 'done' && (
                      <button type='button' disabled={busy === t.rootCid} onClick={() => { void abandon(t) }}>Abandon</button>
                    )}
                  </div>
                  <Bar
                    label={`${t.name}: ${t.chunksDone} of ${t.chunksTotal} chunks`}
                    done={t.bytesDone}
                    total={t.bytesTotal}
                    detail={`${formatBytes(t.bytesDone)} of ${formatBytes(t.bytesTotal)}${t.bytesPerSecond === null ? '' : ` · ${formatBytes(t.bytesPerSecond)}/s · ${formatEta(t.etaSeconds)} left`}`}
                  />
                  {t.sources.length > 0 && (
                    <p className='muted'>
                      From {t.sources.map((s) => `${s.site ?? 'this site'} ${formatBytes(s.bytes)}${s.state === 'dropped' ? ` (dropped${s.dropReason === undefined ? '' : `: ${s.dropReason}`})` : ''}`).join(' · ')}
                    </p>
                  )}
                  {t.lastError !== null && <p className='muted'>Last error: {t.lastError}</p>}
                </li>
              ))}
            </ul>
            )}
      </Loaded>
    </div>
  )
}
