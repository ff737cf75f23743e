/**
 * p2p/migration: the H-GMIG migration engine, the hypervisor driver interface and its synthetic
 * driver, the migration plan, and the migration log. Public entry; see README.md here.
 */
export * from './driver.js'
export * from './errors.js'
export { createSyntheticDriver, SyntheticDriver, type SyntheticDriverInit, type CreateVmOptions, type ImageResolver } from './synthetic-driver.js'
export { WORKLOADS, WORKLOAD_NAMES, workloadProfile, type WorkloadProfile } from './workloads.js'
export {
  computePlan, canonicalJson, planDifferences, rankTargets, summarizePlan, zeroChunkCids, STRATEGIES,
  type ImageManifestData, type LayerPlan, type MigrationPlan, type MissingChunk, type PlanInput, type PlanSummary, type ReplicaView, type Strategy
} from './plan.js'
export {
  createMigrationEngine, MigrationEngine, type MigrationEngineInit, type MigrationEvent, type MigrationInfo, type MigrationNode,
  type MigrationRequest, type MigrationSummary
} from './engine.js'
export { directChunkFetch, type ChunkSource, type FetchContext, type FetchMissingChunks, type FetchProgress, type ImageFetchFigures, type MigrationImageStore, type SourceFigures } from './base.js'
export { baseShares, exchangeChunkFetch, type ExchangeFetchInit } from './exchange-fetch.js'
export { PHASES, EXPORT_FORMATS, csvField, renderExportPages, type ExportFormat, type LogEntry, type LogKind, type LogQuery, type MigrationPhase, type MigrationRecordRow, type MigrationRole, type MigrationState } from './log.js'
export { DeliveryWindow, FairShaper, MIN_DELIVERY_WINDOW, TokenBucket } from './token-bucket.js'
