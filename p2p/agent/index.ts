/**
 * Public entry of the Migration Agent: the daemon (createAgent), the data directory and genesis,
 * and the replicated state machine.
 */
export { createAgent, DEFAULT_LISTEN, type Agent, type AgentInit } from './agent.js'
export { createSwarm, joinSwarm, dataDirLayout, loadGenesis, loadJoinIntent, type CreatedSwarm, type JoinedSwarm, type JoinIntent, type DataDirLayout } from './data-dir.js'
export { createInvite, parseInvite, ticketProblem, INVITE_PREFIX, DEFAULT_INVITE_TTL_MS, type Invite, type InviteTicket } from './invite.js'
export { createGenesis, parseGenesis, GENESIS_VERSION, type Genesis, type GenesisMember } from './genesis.js'
export { SwarmState, STATE_SNAPSHOT_VERSION, encodeTransaction, decodeTransaction, MAX_TRANSACTION_BYTES, type SwarmTransaction, type AppliedTransaction, type RejectionReason, type StateMember, type AnnouncedImage, type ImageRecord, type MembershipChange } from './state.js'
export { ConsensusLatency, quantile } from './latency.js'
export { siteNameProblem, MAX_SITE_NAME_LENGTH } from './site-name.js'
export { LOCK_FILE_NAME } from './lock.js'
export { AgentConfigError, AgentAlreadyRunningError, SwarmExistsError, ListenAddressError, OrderGapError, InvalidStateSnapshotError, TransferImageNotFoundError, TransferNotFoundError, TransferAbandonedError, InvalidCheckpointError, CheckpointNotConfirmedError } from './errors.js'
