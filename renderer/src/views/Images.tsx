/** Images: each site's library as OS → WE → UD trees, import with progress, similarity heat map, chunk map. */
import { useEffect, useMemo, useState, type FormEvent, type ReactNode } from 'react'
import { isNotOffered } from '../api'
import { Bar, Chart, EmptyState, ErrorState, formatBytes, Loaded, NotOffered, short } from '../components'
import type { ImageLayer, ImagesView as ImagesList, ImageView, ImportRequest, SimilarityView } from '../contract'
import { useAgent, useEndpoint } from '../store'

const PARENT_LAYER: Record<ImageLayer, ImageLayer | null> = { os: null, we: 'os', ud: 'we' }

export function ImagesView (): ReactNode {
  const { subscribe } = useAgent()
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
                    {held.length === 0 ? <p className='muted'>Holds no image.</p> : <ImageTree images={held} onSelect={setSelected} selected={selected?.rootCid ?? null} />}
                  </div>
                )
              })}
            </div>
            )}
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
          const saved = image.uniqueChunks === undefined || image.chunkCount === 0 ? null : 1 - image.uniqueChunks / image.chunkCount
          return (
            <li key={image.rootCid} role='treeitem' aria-level={depth} aria-selected={image.rootCid === selected} aria-expanded={children.has(image.rootCid) ? true : undefined}>
              <button type='button' className='tree-item' onClick={() => { onSelect(image) }}>
                <span className={`tag layer-${image.layer}`}>{image.layer.toUpperCase()}</span>
                <strong>{image.name}</strong>
                <span>{formatBytes(image.size)}</span>
                <span className='muted'>
                  {image.chunkCount} chunks{image.chunkSize !== undefined ? ` of ${formatBytes(image.chunkSize)}` : ''}
                  {image.zeroChunks !== undefined ? ` (${image.zeroChunks} zero)` : ''}
                  {saved === null ? '' : ` · ${(saved * 100).toFixed(0)} % shared`}
                  {image.holders !== undefined ? ` · at ${image.holders.length} site${image.holders.length === 1 ? '' : 's'}` : ''}
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

/** Proposed shape: one character per chunk bucket per site: h held, m missing, f in flight, z all-zero. */
interface ChunkMapView { buckets: number, sites: Array<{ site: string, states: string }> }
const STATE_VALUE: Record<string, number> = { m: 0, f: 1, h: 2, z: 3 }
const STATE_NAME = ['missing', 'in flight', 'held', 'zero']

function ChunkMap ({ image }: { image: ImageView }): ReactNode {
  const map = useEndpoint<ChunkMapView>(`/v1/images/${encodeURIComponent(image.rootCid)}/chunks`, 2000)
  return (
    <div className='panel'>
      <h3>Chunk map of {image.name}</h3>
      <Loaded result={map} what='chunk maps' endpoint='GET /v1/images/:cid/chunks'>
        {(data) => (
          <Chart
            label={`Chunk map of ${image.name} at ${data.sites.length} sites`}
            points={data.sites.length * data.buckets}
            height={80 + 36 * data.sites.length}
            option={{
              grid: { left: 120, right: 16, top: 8, bottom: 56 },
              tooltip: { formatter: (p: { value: [number, number, number] }) => STATE_NAME[p.value[2]] ?? '' },
              xAxis: { type: 'category', data: Array.from({ length: data.buckets }, (_, i) => i), show: false },
              yAxis: { type: 'category', data: data.sites.map((s) => s.site) },
              visualMap: { type: 'piecewise', pieces: STATE_NAME.map((label, value) => ({ value, label })), orient: 'horizontal', left: 'center', bottom: 0 },
              series: [{ type: 'heatmap', data: data.sites.flatMap((s, row) => [...s.states].map((c, i) => [i, row, STATE_VALUE[c] ?? 0])) }]
            }}
          />
        )}
      </Loaded>
    </div>
  )
}
