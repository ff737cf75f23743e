/**
 * Validation of request bodies. Each parser takes the decoded JSON and returns the typed request,
 * or throws ApiRequestError(400) naming the field that is wrong, so a client learns what to fix.
 */
import { ApiRequestError } from './errors.js'
import type { PingRequest } from './types.js'

export const MAX_PINGS_PER_REQUEST = 1000

export function parsePingRequest (body: unknown): PingRequest {
  const fields = objectWithOnly(body, ['count'])
  const count = fields['count']
  if (count === undefined) return {}
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > MAX_PINGS_PER_REQUEST) {
    throw new ApiRequestError(400, `field "count" must be an integer from 1 to ${MAX_PINGS_PER_REQUEST}, got ${JSON.stringify(count)}`)
  }
  return { count }
}

function objectWithOnly (body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiRequestError(400, `request body must be a JSON object, got ${body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body}`)
  }
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) throw new ApiRequestError(400, `unknown field "${key}" (allowed: ${allowed.join(', ') || 'none'})`)
  }
  return body as Record<string, unknown>
}
