/** Public entry of the swarm layer: the libp2p host and the hashgraph carried over it. */
export { createSwarmNode, createSwarmKey, parseSwarmKey, type ConnectionBytes, type SwarmNode, type SwarmNodeInit, type SwarmServices } from './node.js'
export { HashgraphGossip, eventsTopic, type HashgraphGossipInit, type HopStage } from './hashgraph-gossip.js'
export { OtherParentChooser } from './other-parent.js'
export { EventPush, PushStreamFaultError, type EventPushInit, type PushVerdict } from './event-push.js'
export { loadOrCreateIdentity } from './identity.js'
export { SwarmConfigError } from './errors.js'
export { privateNetwork, decodeSwarmKey, XSalsa20Stream, type PrivateNetworkInit } from './private-network.js'
export { sendRequest, handleRequests, RemoteRequestError, type RequestOptions, type HandleRequestsOptions } from './request-response.js'
