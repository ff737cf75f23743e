/**
 * Public entry of the local API: the server the agent runs, the client the CLI uses, and the
 * request/response types they share. Knows nothing of libp2p or the hashgraph: the agent hands it
 * an AgentBackend.
 */
export { createApiServer, API_HOST, EXPORT_ROWS_HEADER, WS_TOKEN_PROTOCOL_PREFIX, type ApiServer, type ApiServerInit } from './server.js'
export { ApiClient, type ApiClientInit, type AuditQueryOptions, type ExportDownload, type ExportFormatName, type LogQueryOptions } from './client.js'
export { API_FILE_NAME, apiFilePath, readApiFile, writeApiFile, removeApiFile, processExists } from './api-file.js'
export { parsePingRequest, parseTimeQuery, parseIntegerQuery, MAX_PINGS_PER_REQUEST } from './requests.js'
export { ApiRequestError, ApiListenError, AgentNotRunningError } from './errors.js'
export type * from './types.js'
export { STORE_METHODS, parseStoreCall, type StoreCall, type StoreCallLine, type StoreMethod } from './store-rpc.js'
export { ApiImageStoreClient } from './store-client.js'
