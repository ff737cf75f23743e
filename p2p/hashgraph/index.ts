/**
 * Public entry of the hashgraph engine. Everything outside p2p/hashgraph imports from here.
 */
export { Hashgraph, monotonicWallClock, readFrontier, FRONTIER_FORMAT, FRONTIER_VERSION, MAX_FRONTIER_BYTES, type FrontierSummary, type HashgraphInit, type OrderedTransaction, type ReceiveResult } from './hashgraph.js'
export { Consensus, isSupermajority, middleBit, DEFAULT_COIN_ROUND_FREQUENCY, DEFAULT_STALE_AFTER_ROUNDS, type ConsensusEvent, type ConsensusEventInput, type ConsensusOptions, type ConsensusFrontier, type FrontierEvent, type EventStatus, type ForkEvidence } from './consensus.js'
export { MEMBERSHIP_DELAY_ROUNDS, MembershipSchedule, type Membership, type MembershipChange } from './membership.js'
export { decodeEvent, encodeBody, signEvent, ed25519Signer, Verifier, toHex, fromHex, DEFAULT_LIMITS, type EventBody, type EventLimits, type SignedEvent, type Signer } from './event.js'
export { EventLog, syncDirectory, type ConsensusSnapshot } from './event-log.js'
export { parseReplayInput, replay, type ReplayInput, type ReplayOutput, type ReplayEventResult } from './replay.js'
export { EventRejectedError, MissingParentsError, MembershipPendingError, HashgraphHaltedError, ConsensusInvariantError, ReplayInputError, EventLogError, InvalidFrontierError, type RejectReason } from './errors.js'
