/**
 * Invitations. An invite code carries what a new site needs to reach the swarm — the genesis
 * (with the pnet swarm key: the code is a secret), bootstrap addresses — and a ticket signed by the
 * inviting member, so any member can check that a join request was invited, by whom, and that the
 * ticket has not expired. A ticket admits a request; a member still approves it (member-add).
 */
import { randomBytes } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { AgentConfigError } from './errors.js'
import { parseGenesis, type Genesis } from './genesis.js'

export const INVITE_PREFIX = 'hgmig-invite-1.'
export const DEFAULT_INVITE_TTL_MS = 24 * 3600 * 1000

export interface InviteTicket {
  swarmId: string
  /** Peer id of the member who issued it. */
  inviter: string
  /** Milliseconds since the epoch. */
  expiresAt: number
  nonce: Uint8Array
  signature: Uint8Array
}

export interface Invite {
  genesis: Genesis
  bootstrap: string[]
  ticket: InviteTicket
}

export async function createInvite (options: { genesis: Genesis, key: PrivateKey, bootstrap: string[], ttlMs?: number, now?: number }): Promise<string> {
  const unsigned = {
    swarmId: options.genesis.swarmId,
    inviter: peerIdFromPrivateKey(options.key).toString(),
    expiresAt: (options.now ?? Date.now()) + (options.ttlMs ?? DEFAULT_INVITE_TTL_MS),
    nonce: randomBytes(16)
  }
  const signature = await options.key.sign(ticketBytes(unsigned))
  const invite = { genesis: JSON.stringify(options.genesis), bootstrap: options.bootstrap, ticket: { ...unsigned, signature } }
  return INVITE_PREFIX + Buffer.from(dagCbor.encode(invite)).toString('base64url')
}

/** Decodes a code and checks its shape (not the ticket's signature: that needs the member list). */
export function parseInvite (code: string): Invite {
  const trimmed = code.trim()
  if (!trimmed.startsWith(INVITE_PREFIX)) throw new AgentConfigError(`not an hgmig invite code (it should start with "${INVITE_PREFIX}")`)
  let value: unknown
  try {
    value = dagCbor.decode(Buffer.from(trimmed.slice(INVITE_PREFIX.length), 'base64url'))
  } catch (err) {
    throw new AgentConfigError(`the invite code is damaged (copied incompletely?): ${(err as Error).message}`)
  }
  const v = value as { genesis?: unknown, bootstrap?: unknown, ticket?: unknown }
  if (typeof v?.genesis !== 'string') throw new AgentConfigError('the invite code holds no genesis')
  const genesis = parseGenesis(v.genesis, 'the invite\'s genesis')
  if (!Array.isArray(v.bootstrap) || !v.bootstrap.every((a) => typeof a === 'string')) throw new AgentConfigError('the invite code\'s bootstrap addresses are not a list of strings')
  for (const address of v.bootstrap as string[]) {
    try { multiaddr(address) } catch { throw new AgentConfigError(`the invite code's bootstrap address ${address} is not a multiaddr`) }
  }
  const ticket = parseTicket(v.ticket)
  if (ticket.swarmId !== genesis.swarmId) throw new AgentConfigError('the invite\'s ticket is for another swarm than its genesis')
  return { genesis, bootstrap: v.bootstrap as string[], ticket }
}

export function parseTicket (value: unknown): InviteTicket {
  const t = value as Partial<InviteTicket> | null
  if (t === null || typeof t !== 'object') throw new AgentConfigError('invite ticket missing')
  if (typeof t.swarmId !== 'string' || typeof t.inviter !== 'string' || typeof t.expiresAt !== 'number' ||
    !(t.nonce instanceof Uint8Array) || !(t.signature instanceof Uint8Array) || t.signature.byteLength > 128) {
    throw new AgentConfigError('invite ticket malformed')
  }
  return { swarmId: t.swarmId, inviter: t.inviter, expiresAt: t.expiresAt, nonce: t.nonce, signature: t.signature }
}

/**
 * Why a ticket does not admit a join request now, or undefined if it does. `inviterKey` is the
 * public key of the member named as inviter (undefined: not a current member).
 */
export async function ticketProblem (ticket: InviteTicket, swarmId: string, inviterKey: PublicKey | undefined, now = Date.now()): Promise<string | undefined> {
  if (ticket.swarmId !== swarmId) return 'the invite is for another swarm'
  if (ticket.expiresAt < now) return `the invite expired at ${new Date(ticket.expiresAt).toISOString()} (ask a member for a new one)`
  if (inviterKey === undefined) return `the invite was issued by ${ticket.inviter}, who is not a member`
  const { signature, ...unsigned } = ticket
  const valid = await inviterKey.verify(ticketBytes(unsigned), signature)
  return valid ? undefined : 'the invite\'s signature does not match its inviter'
}

function ticketBytes (ticket: Omit<InviteTicket, 'signature'>): Uint8Array {
  return dagCbor.encode({ domain: 'hgmig-invite-ticket', ...ticket })
}
