/**
 * p2p/exchange: multi-source, verified, resumable transfer of image chunks between sites over the
 * swarm (the data plane). Public entry; see README.md here.
 */
export { createBlockExchange, BlockExchange } from './block-exchange.js'
export { protocolId, MAX_BLOCK_BYTES, type Purpose, type TransferContext } from './protocol.js'
export { TokenBucket, PRIORITY, type RateLimit } from './rate-limit.js'
export * from './errors.js'
export type {
  BlockExchangeInit, CancelResult, ExchangeEvents, FinishedTransferSummary, SourceTotal, ExchangeRateLimits, ExchangeStore, FetchRequest, FetchResult, FetchSource, PenaltyDetail,
  ServedStats, ServeRefusedDetail, ServingPolicy, SourceProgress, TransferProgress, TransferSummary
} from './types.js'
