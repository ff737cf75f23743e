/**
 * Validation of request bodies. Each parser takes the decoded JSON and returns the typed request,
 * or throws ApiRequestError(400) naming the field that is wrong, so a client learns what to fix.
 */
import { ApiRequestError } from './errors.js'
import type { ApproveRequest, ImportImageRequest, InviteRequest, PingRequest, RemoveRequest } from './types.js'

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

export const MAX_INVITE_TTL_HOURS = 720

export function parseInviteRequest (body: unknown): InviteRequest {
  const ttl = objectWithOnly(body, ['ttlHours'])['ttlHours']
  if (ttl === undefined) return {}
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_INVITE_TTL_HOURS) {
    throw new ApiRequestError(400, `field "ttlHours" must be a number of hours above 0 and at most ${MAX_INVITE_TTL_HOURS}, got ${JSON.stringify(ttl)}`)
  }
  return { ttlHours: ttl }
}

export function parseApproveRequest (body: unknown): ApproveRequest {
  return { peer: requiredString(objectWithOnly(body, ['peer']), 'peer', 'the requesting site\'s peer id or name') }
}

export function parseRemoveRequest (body: unknown): RemoveRequest {
  return { site: requiredString(objectWithOnly(body, ['site']), 'site', 'a member\'s name or peer id') }
}

export function parseImportImageRequest (body: unknown): ImportImageRequest {
  const fields = objectWithOnly(body, ['path', 'layer', 'base', 'name', 'private'])
  const path = requiredString(fields, 'path', 'the image file\'s absolute path on the agent\'s host')
  if (!path.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(path)) throw new ApiRequestError(400, `field "path" must be an absolute path, got ${JSON.stringify(path)}`)
  const layer = fields['layer']
  if (layer !== 'os' && layer !== 'we' && layer !== 'ud') throw new ApiRequestError(400, `field "layer" must be "os", "we" or "ud", got ${JSON.stringify(layer)}`)
  const request: ImportImageRequest = { path, layer }
  if (fields['base'] !== undefined) request.base = requiredString(fields, 'base', 'a local image\'s name, id or root CID')
  if (fields['name'] !== undefined) request.name = requiredString(fields, 'name', 'a name for the image')
  if (fields['private'] !== undefined) {
    if (typeof fields['private'] !== 'boolean') throw new ApiRequestError(400, 'field "private" must be true or false')
    request.private = fields['private']
  }
  return request
}

/** A query parameter holding an ISO time (absent: undefined). */
export function parseTimeQuery (name: string, value: string | null): Date | undefined {
  if (value === null) return undefined
  const at = new Date(value)
  if (Number.isNaN(at.getTime())) throw new ApiRequestError(400, `query "${name}" must be an ISO time, got ${JSON.stringify(value)}`)
  return at
}

/** A whole-number query parameter of at least `min` (undefined when absent). */
export function parseIntegerQuery (name: string, value: string | null, min: number): number | undefined {
  if (value === null) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new ApiRequestError(400, `query "${name}" must be an integer of at least ${min}, got ${JSON.stringify(value)}`)
  return n
}

/** The `:root` of /v1/transfers/:root: a root CID or an image name (1 to 256 characters, no control characters). */
export function parseTransferReference (value: string | undefined): string {
  // eslint-disable-next-line no-control-regex
  if (value === undefined || value.length === 0 || value.length > 256 || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new ApiRequestError(400, `path segment :root must be an image's root CID or name (1 to 256 characters, no control characters), got ${JSON.stringify(value)}`)
  }
  return value
}

function requiredString (fields: Record<string, unknown>, field: string, what: string): string {
  const value = fields[field]
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) throw new ApiRequestError(400, `field "${field}" must be ${what} (a string of 1 to 256 characters), got ${JSON.stringify(value)}`)
  return value
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
