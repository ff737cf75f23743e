/**
 * Workload profiles of the synthetic driver: how fast a VM dirties memory pages and disk blocks,
 * over how much of its memory and disk, and the load figures it reports.
 *
 * The first four are the H-GMIG paper's (section 4.1): IDLE, STATIC (a web server serving
 * downloads), DYNAMIC (TPC-W), COMPILATION (a kernel build: the highest disk dirty rate). The last
 * three are the NRAC paper's memory-, CPU- and network-intensive applications. Rates are per second
 * at any memory size (a real application's dirty rate does not grow with the VM's RAM); the working
 * set is a share of the VM's memory and disk, so writes revisit the same pages, as real ones do.
 */
import type { WorkloadName } from './driver.js'
import { InvalidMigrationInputError } from './errors.js'

export interface WorkloadProfile {
  name: WorkloadName
  description: string
  /** Share of memory holding data at boot (the rest is zero pages). */
  memoryUse: number
  /** 4 KiB pages written per second. */
  dirtyPagesPerSecond: number
  /** Share of memory the page writes fall into. */
  memoryWorkingSet: number
  /** 4 KiB disk writes per second, into the UD layer. */
  diskWritesPerSecond: number
  /** Share of the disk the writes fall into. */
  diskWorkingSet: number
  cpuPercent: number
  networkBytesPerSecond: number
}

const MB = 1024 * 1024

export const WORKLOADS: Record<WorkloadName, WorkloadProfile> = {
  idle: { name: 'idle', description: 'an idle guest (the baseline)', memoryUse: 0.25, dirtyPagesPerSecond: 25, memoryWorkingSet: 0.01, diskWritesPerSecond: 0.2, diskWorkingSet: 0.01, cpuPercent: 1, networkBytesPerSecond: 1024 },
  static: { name: 'static', description: 'a static web server serving downloads', memoryUse: 0.4, dirtyPagesPerSecond: 1500, memoryWorkingSet: 0.05, diskWritesPerSecond: 2, diskWorkingSet: 0.01, cpuPercent: 15, networkBytesPerSecond: 60 * MB },
  dynamic: { name: 'dynamic', description: 'TPC-W: a dynamic web shop with its database', memoryUse: 0.6, dirtyPagesPerSecond: 5000, memoryWorkingSet: 0.15, diskWritesPerSecond: 40, diskWorkingSet: 0.05, cpuPercent: 60, networkBytesPerSecond: 8 * MB },
  compilation: { name: 'compilation', description: 'a Linux kernel build: CPU-bound, the highest disk dirty rate', memoryUse: 0.7, dirtyPagesPerSecond: 6000, memoryWorkingSet: 0.3, diskWritesPerSecond: 600, diskWorkingSet: 0.5, cpuPercent: 95, networkBytesPerSecond: 0 },
  'memory-intensive': { name: 'memory-intensive', description: 'NRAC memory-intensive: large in-memory data set rewritten constantly', memoryUse: 0.85, dirtyPagesPerSecond: 20000, memoryWorkingSet: 0.5, diskWritesPerSecond: 5, diskWorkingSet: 0.01, cpuPercent: 50, networkBytesPerSecond: 1 * MB },
  'cpu-intensive': { name: 'cpu-intensive', description: 'NRAC CPU-intensive: computation over a small working set', memoryUse: 0.3, dirtyPagesPerSecond: 300, memoryWorkingSet: 0.02, diskWritesPerSecond: 1, diskWorkingSet: 0.01, cpuPercent: 100, networkBytesPerSecond: 10 * 1024 },
  'network-intensive': { name: 'network-intensive', description: 'NRAC network-intensive: socket buffers churn with the traffic', memoryUse: 0.5, dirtyPagesPerSecond: 8000, memoryWorkingSet: 0.1, diskWritesPerSecond: 2, diskWorkingSet: 0.01, cpuPercent: 35, networkBytesPerSecond: 110 * MB }
}

export const WORKLOAD_NAMES = Object.keys(WORKLOADS) as WorkloadName[]

export function workloadProfile (name: string): WorkloadProfile {
  const profile = (WORKLOADS as Record<string, WorkloadProfile | undefined>)[name]
  if (profile === undefined) throw new InvalidMigrationInputError(`unknown workload "${name}"; one of ${WORKLOAD_NAMES.join(', ')}`)
  return profile
}
