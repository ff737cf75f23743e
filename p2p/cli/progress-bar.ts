import cliProgress from 'cli-progress'
import type { StoreProgressEvent } from '../store/index.js'

/**
 * A progress bar on stderr for long operations (done/total, rate, ETA), drawn only when stderr is
 * a terminal: scripts and --json output get no escape codes.
 */
export class ProgressBar {
  private bar: cliProgress.SingleBar | undefined
  private readonly format: (n: number) => string

  /** `unit` 'rows': counts (an export's rows), not bytes. */
  constructor (private readonly label: string, private readonly enabled = process.stderr.isTTY === true, unit: 'bytes' | 'rows' = 'bytes') {
    this.format = unit === 'bytes' ? formatBytes : (n) => Math.round(n).toLocaleString('en-US')
  }

  /** Pass as a store operation's `onProgress`. */
  readonly update = (event: StoreProgressEvent): void => {
    const { bytesDone, bytesTotal, bytesPerSecond, etaSeconds } = event.detail
    this.show(bytesDone, bytesTotal, bytesPerSecond, etaSeconds)
  }

  show (done: number, total: number, perSecond: number, etaSeconds: number | undefined): void {
    if (!this.enabled) return
    const fields = { done: this.format(done), size: this.format(total), rate: `${this.format(perSecond)}/s`, eta: etaSeconds === undefined ? '?' : formatSeconds(etaSeconds) }
    if (this.bar === undefined) {
      this.bar = new cliProgress.SingleBar({
        format: `${this.label} [{bar}] {percentage}% | {done}/{size} | {rate} | ETA {eta}`,
        hideCursor: true,
        clearOnComplete: true,
        stream: process.stderr
      }, cliProgress.Presets.shades_classic)
      this.bar.start(total, done, fields)
    } else {
      this.bar.setTotal(total)
      this.bar.update(done, fields)
    }
  }

  stop (): void {
    this.bar?.stop()
    this.bar = undefined
  }
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes (bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit++ }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit] as string}`
}

function formatSeconds (seconds: number): string {
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}
