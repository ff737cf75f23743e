/**
 * The image commands through a running agent (as kubo's CLI talks to its daemon): one endpoint,
 * `POST /v1/store`, body `{ method, args }`, answered as NDJSON — progress lines while the call
 * runs, then one result or error line. The agent owns the store's lock while it runs, so the CLI
 * cannot open the store itself; this keeps every image command working, with the same output.
 * Closing the request cancels the call (Ctrl-C in the CLI aborts an import at the agent).
 */
import { ApiRequestError } from './errors.js'

/** Store calls the API forwards (and the swarm's `fetch` and `replicate`); anything else is refused before it reaches the agent. */
export const STORE_METHODS = ['add', 'list', 'show', 'export', 'verify', 'similarity', 'similarityMatrix', 'presence', 'remove', 'gc', 'stats', 'fetch', 'replicate'] as const
export type StoreMethod = typeof STORE_METHODS[number]

export interface StoreCall {
  method: StoreMethod
  /** Positional arguments, JSON values; the agent checks each method's own. */
  args: unknown[]
}

/** One NDJSON line of the answer. */
export type StoreCallLine =
  | { type: 'progress', event: { type: string, detail: unknown } }
  | { type: 'result', value: unknown }
  | { type: 'error', name: string, message: string }

export function parseStoreCall (body: unknown): StoreCall {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiRequestError(400, 'request body must be a JSON object { method, args }')
  const { method, args, ...rest } = body as Record<string, unknown>
  const extra = Object.keys(rest)[0]
  if (extra !== undefined) throw new ApiRequestError(400, `unknown field "${extra}" (allowed: method, args)`)
  if (typeof method !== 'string' || !(STORE_METHODS as readonly string[]).includes(method)) {
    throw new ApiRequestError(400, `field "method" must be one of ${STORE_METHODS.join(', ')}, got ${JSON.stringify(method)}`)
  }
  if (args !== undefined && (!Array.isArray(args) || args.length > 3)) throw new ApiRequestError(400, 'field "args" must be an array of at most 3 values')
  return { method: method as StoreMethod, args: (args as unknown[] | undefined) ?? [] }
}
