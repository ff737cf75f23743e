/**
 * Public entry of the Migration Agent: the daemon (createAgent), the data directory and genesis,
 * and the replicated state machine.
 */
export { createAgent, DEFAULT_LISTEN, type Agent, type AgentInit } from './agent.js'
export { createSwarm, dataDirLayout, loadGenesis, type CreatedSwarm, type DataDirLayout } from './data-dir.js'
export { createGenesis, parseGenesis, GENESIS_VERSION, type Genesis, type GenesisMember } from './genesis.js'
export { SwarmState, encodeTransaction, decodeTransaction, MAX_TRANSACTION_BYTES, type SwarmTransaction, type AppliedTransaction, type RejectionReason, type StateMember } from './state.js'
export { ConsensusLatency, quantile } from './latency.js'
export { siteNameProblem, MAX_SITE_NAME_LENGTH } from './site-name.js'
export { LOCK_FILE_NAME } from './lock.js'
export { AgentConfigError, AgentAlreadyRunningError, SwarmExistsError, ListenAddressError, OrderGapError } from './errors.js'
