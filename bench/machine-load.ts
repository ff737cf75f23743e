/**
 * How busy the machine is, from /proc (Linux): benchmarks report the load of *other* processes
 * beside each figure, because these machines are shared and absolute times drift with it.
 */
import { readFileSync } from 'node:fs'

/** CPU-seconds the whole machine has been busy since boot (all but idle and iowait); null without /proc/stat. */
export function machineBusySeconds (): number | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    return (fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!) / 100
  } catch {
    return null
  }
}

/** CPU-seconds (user + system) a process has used; 0 if it is gone or /proc is missing. */
export function processCpuSeconds (pid: number): number {
  try {
    // Fields after the command name (which may hold spaces, inside parentheses): utime is the 12th, stime the 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/**
 * Starts a meter; `stop(pids)` returns the average cores used by processes other than this one
 * and `pids` (the benchmark's own workers) since the start. NaN without /proc.
 */
export function startLoadMeter (pids: () => number[] = () => []): { stop: (extraCpuSeconds?: number) => number } {
  const cpuOf = (): number => pids().reduce((sum, pid) => sum + processCpuSeconds(pid), 0)
  const busy0 = machineBusySeconds()
  const workers0 = cpuOf()
  const own0 = process.cpuUsage()
  const t0 = performance.now()
  return {
    stop: (extraCpuSeconds = 0) => {
      const busy1 = machineBusySeconds()
      const own = process.cpuUsage(own0)
      const wall = (performance.now() - t0) / 1000
      if (busy0 === null || busy1 === null || wall <= 0) return NaN
      return Math.max(0, (busy1 - busy0 - (cpuOf() - workers0) - (own.user + own.system) / 1e6 - extraCpuSeconds) / wall)
    }
  }
}
