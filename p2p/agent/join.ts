/**
 * The join protocol (`/hgmig/<swarm id>/join/1.0.0`, one request and one response). A site that
 * ran `hgmig swarm join` asks every member it reaches to admit it, with its invite ticket, until it
 * sees itself added in the replicated state. A member checks the ticket and the name and keeps the
 * request for an operator to approve (`hgmig swarm approve`), which submits the member-add
 * transaction. Admission itself is by consensus: a request only makes the site known.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ApiRequestError, type JoinRequestView } from '../api/index.js'
import { sendRequest, type SwarmNode } from '../swarm/index.js'
import type { JoinIntent } from './data-dir.js'
import { parseTicket, ticketProblem, type InviteTicket } from './invite.js'
import { siteNameProblem } from './site-name.js'
import type { StateMember, SwarmState } from './state.js'

export function joinProtocol (swarmId: string): string {
  return `/hgmig/${swarmId}/join/1.0.0`
}

export type JoinAnswer =
  | { status: 'pending' }
  /** Already added by consensus; `fromRound` is its first round. */
  | { status: 'member', index: number, fromRound: number }

/** Requests older than this are forgotten (a joiner that still wants in asks again every few seconds). */
const REQUEST_TTL_MS = 3600 * 1000
const MAX_REQUESTS = 256

/** The member side: checks requests and keeps them for approval. */
export class JoinDesk {
  private readonly requests = new Map<string, JoinRequestView>()

  constructor (private readonly init: {
    swarmId: string
    state: () => SwarmState
    /** Only a member keeps requests (a joining site knows too little to check a ticket). */
    isMember: () => boolean
    onRequest: (request: JoinRequestView, isNew: boolean) => void
  }) {}

  /** Answers a join request from `peer` (authenticated by the connection), or throws why it is refused. */
  async answer (request: unknown, peer: PeerId): Promise<JoinAnswer> {
    const { name, ticket } = parseJoinRequest(request)
    if (!this.init.isMember()) throw new Error('this site is not a member (yet): ask another')
    const state = this.init.state()
    const peerId = peer.toString()
    const existing = state.memberByPeerId(peerId)
    if (existing !== undefined) {
      if (existing.untilRound !== null) throw new Error(`${peerId} was removed from this swarm; a site rejoins with a new key (an empty data directory)`)
      return { status: 'member', index: existing.index, fromRound: existing.fromRound }
    }
    const inviter = state.memberByPeerId(ticket.inviter)
    const inviterKey = inviter === undefined || inviter.untilRound !== null ? undefined : peerIdFromString(inviter.peerId).publicKey
    const problem = await ticketProblem(ticket, this.init.swarmId, inviterKey)
    if (problem !== undefined) throw new Error(`join refused: ${problem}`)
    const holder = state.memberByName(name)
    if (holder !== undefined) throw new Error(`join refused: the name ${JSON.stringify(name)} is taken by member ${holder.index} (${holder.peerId}); join again with another --name`)
    this.forgetOld()
    const isNew = !this.requests.has(peerId)
    if (isNew && this.requests.size >= MAX_REQUESTS) throw new Error('join refused: too many requests are waiting for approval here')
    const view: JoinRequestView = { peerId, name, inviter: ticket.inviter, at: new Date().toISOString() }
    this.requests.set(peerId, view)
    this.init.onRequest(view, isNew)
    return { status: 'pending' }
  }

  /** Waiting requests, oldest first; sites added meanwhile are dropped. */
  list (): JoinRequestView[] {
    this.forgetOld()
    const state = this.init.state()
    for (const peerId of this.requests.keys()) if (state.memberByPeerId(peerId) !== undefined) this.requests.delete(peerId)
    return [...this.requests.values()]
  }

  has (peer: PeerId): boolean {
    return this.requests.has(peer.toString())
  }

  /** The request a `hgmig swarm approve PEER` names, by peer id or name. */
  find (reference: string): JoinRequestView {
    const requests = this.list()
    const match = requests.find((r) => r.peerId === reference) ?? requests.find((r) => r.name.toLowerCase() === reference.toLowerCase())
    if (match === undefined) {
      throw new ApiRequestError(404, `no join request from ${JSON.stringify(reference)} at this site` +
        (requests.length === 0 ? ' (none is waiting: the site must run "hgmig swarm join" and its agent must reach this one)' : ` (waiting: ${requests.map((r) => `${r.name} ${r.peerId}`).join(', ')})`))
    }
    return match
  }

  private forgetOld (): void {
    const cutoff = Date.now() - REQUEST_TTL_MS
    for (const [peerId, request] of this.requests) if (Date.parse(request.at) < cutoff) this.requests.delete(peerId)
  }
}

function parseJoinRequest (request: unknown): { name: string, ticket: InviteTicket } {
  const r = request as { name?: unknown, ticket?: unknown } | null
  if (r === null || typeof r !== 'object') throw new Error('malformed join request')
  const problem = siteNameProblem(r.name)
  if (problem !== undefined) throw new Error(`join refused: ${problem}`)
  try {
    return { name: r.name as string, ticket: parseTicket(r.ticket) }
  } catch (err) {
    throw new Error(`join refused: ${(err as Error).message}`, { cause: err })
  }
}

/** The joining side: one request to one member. */
export async function askToJoin (node: SwarmNode, peer: PeerId, swarmId: string, intent: JoinIntent, signal?: AbortSignal): Promise<JoinAnswer> {
  return await sendRequest(node, peer, joinProtocol(swarmId), { name: intent.name, ticket: intent.ticket }, { signal }) as JoinAnswer
}

export function isCurrentMember (member: StateMember | undefined): member is StateMember {
  return member !== undefined && member.untilRound === null
}
