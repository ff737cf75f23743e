/** A request the API refuses; `status` is the HTTP status it answers with. */
export class ApiRequestError extends Error {
  override readonly name = 'ApiRequestError'
  readonly code = 'ERR_API_REQUEST'
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

/** The API cannot listen: port taken, or not allowed. */
export class ApiListenError extends Error {
  override readonly name = 'ApiListenError'
  readonly code = 'ERR_API_LISTEN'
}

/** No agent answers for a data directory (no api.json, a stale one, or nothing listening). */
export class AgentNotRunningError extends Error {
  override readonly name = 'AgentNotRunningError'
  readonly code = 'ERR_AGENT_NOT_RUNNING'
}
