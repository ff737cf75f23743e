/** Shared pieces of the views: states (empty, error, not offered), charts, formatting. */
import { Component, useEffect, useRef, useState, type ErrorInfo, type ReactNode } from 'react'
import { init, use, type ECharts, type EChartsCoreOption } from 'echarts/core'
import { BarChart, HeatmapChart, LineChart } from 'echarts/charts'
import { DataZoomComponent, GridComponent, LegendComponent, TooltipComponent, VisualMapComponent } from 'echarts/components'
import { SVGRenderer } from 'echarts/renderers'

use([LineChart, BarChart, HeatmapChart, GridComponent, TooltipComponent, LegendComponent, VisualMapComponent, DataZoomComponent, SVGRenderer])

export function EmptyState ({ title, children }: { title: string, children?: ReactNode }): ReactNode {
  return (
    <div className='state empty' role='status'>
      <strong>{title}</strong>
      {children !== undefined && <div>{children}</div>}
    </div>
  )
}

export function ErrorState ({ title, children }: { title: string, children?: ReactNode }): ReactNode {
  return (
    <div className='state error' role='alert'>
      <strong>{title}</strong>
      {children !== undefined && <div>{children}</div>}
    </div>
  )
}

/** A planned endpoint this agent answers 404 to. */
export function NotOffered ({ what, endpoint }: { what: string, endpoint: string }): ReactNode {
  return (
    <EmptyState title={`This agent does not offer ${what} yet`}>
      It does not answer <code>{endpoint}</code> (404): update the agent to a version that has it.
    </EmptyState>
  )
}

/** An endpoint's answer, or the state it is in: not offered (404), failed, loading. */
export function Loaded<T> ({ result, what, endpoint, children }: { result: { data: T | null, error: string | null, notOffered: boolean }, what: string, endpoint: string, children: (data: T) => ReactNode }): ReactNode {
  if (result.notOffered) return <NotOffered what={what} endpoint={endpoint} />
  if (result.error !== null) return <ErrorState title={`Could not load ${what}`}>{result.error}</ErrorState>
  if (result.data === null) return <EmptyState title='Loading…' />
  return children(result.data)
}

export function usePrefersDark (): boolean {
  const query = '(prefers-color-scheme: dark)'
  const [dark, setDark] = useState(() => window.matchMedia(query).matches)
  useEffect(() => {
    const media = window.matchMedia(query)
    const onChange = (): void => { setDark(media.matches) }
    media.addEventListener('change', onChange)
    return () => { media.removeEventListener('change', onChange) }
  }, [])
  return dark
}

/**
 * An ECharts chart (SVG renderer: crisp at any zoom, and no inline scripts or styles the page's CSP
 * would refuse). `points` is published as data-points so a test can see the chart fill.
 */
export function Chart ({ option, label, points, height = 240, testId }: { option: EChartsCoreOption, label: string, points: number, height?: number, testId?: string }): ReactNode {
  const element = useRef<HTMLDivElement>(null)
  const chart = useRef<ECharts | null>(null)
  const dark = usePrefersDark()
  useEffect(() => {
    if (element.current === null) return
    const instance = init(element.current, dark ? 'dark' : undefined, { renderer: 'svg' })
    chart.current = instance
    const resize = new ResizeObserver(() => { instance.resize() })
    resize.observe(element.current)
    return () => { resize.disconnect(); instance.dispose(); chart.current = null }
  }, [dark])
  useEffect(() => {
    chart.current?.setOption({ backgroundColor: 'transparent', animation: false, ...option })
  }, [option, dark])
  return <div ref={element} className='chart' role='img' aria-label={label} data-points={points} data-testid={testId} style={{ height }} />
}

export function formatBytes (bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]!}`
}

export function formatMs (ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—'
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`
}

export function short (id: string, length = 12): string {
  return id.length > length ? `${id.slice(0, length)}…` : id
}

/** A labelled progress bar (native <progress>, so assistive technology reads it). */
export function Bar ({ label, done, total, detail }: { label: string, done: number, total: number | null, detail?: string }): ReactNode {
  const percent = total === null || total === 0 ? null : Math.min(100, (100 * done) / total)
  return (
    <div className='bar'>
      <div className='bar-label'><span>{label}</span><span>{percent === null ? `${done}` : `${percent.toFixed(0)} %`}{detail !== undefined ? ` · ${detail}` : ''}</span></div>
      <progress aria-label={label} max={total ?? undefined} value={total === null ? undefined : done} />
    </div>
  )
}

/**
 * Keeps one view's failure to itself: the view shows what broke and can be retried, the tabs and
 * the other views go on (without it React would unmount the whole page).
 */
export class ViewBoundary extends Component<{ view: string, children: ReactNode }, { error: Error | null }> {
  override state: { error: Error | null } = { error: null }

  static getDerivedStateFromError (error: Error): { error: Error } {
    return { error }
  }

  override componentDidCatch (error: Error, info: ErrorInfo): void {
    console.error(`the ${this.props.view} view failed: ${error.message}`, info.componentStack)
  }

  override componentDidUpdate (previous: { view: string }): void {
    if (previous.view !== this.props.view && this.state.error !== null) this.setState({ error: null })
  }

  override render (): ReactNode {
    if (this.state.error === null) return this.props.children
    return (
      <ErrorState title={`The ${this.props.view} view failed`}>
        <p><code>{this.state.error.message}</code></p>
        <p>The agent answered something this page did not expect. Other views still work.</p>
        <button type='button' onClick={() => { this.setState({ error: null }) }}>Try again</button>
      </ErrorState>
    )
  }
}
