/**
 * Which chunks this site hands to which peer through the block exchange (issue 5's serving
 * policy): chunks of a public image this site holds go to members, and only chunks of the image
 * the request names; nothing goes to anyone else. Private images' chunks go only to a migration's
 * target, which the migration engine decides (SiteMigrations.mayServe).
 */
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { TransferContext } from '../exchange/index.js'
import type { ImageStore } from '../store/index.js'
import { cidKey } from './images.js'
import type { SwarmState } from './state.js'

export interface PublicImagePolicyInit {
  store: Pick<ImageStore, 'manifest'>
  state: () => SwarmState
  selfPeerId: string
  isMember: (peerId: string) => boolean
}

/** How many images' chunk sets are kept: the few being served at once. */
const CHUNK_SETS_KEPT = 4

export class PublicImagePolicy {
  private readonly chunkSets = new Map<string, Promise<Set<string>>>()

  constructor (private readonly init: PublicImagePolicyInit) {}

  async mayServe (peer: PeerId, cid: CID, context: TransferContext): Promise<boolean> {
    if (!this.init.isMember(peer.toString())) return false
    if (context.image === undefined) return false
    const state = this.init.state()
    const record = state.image(context.image)
    const self = state.memberByPeerId(this.init.selfPeerId)
    // Announced public by this site: its manifest is public, so are its chunks.
    if (record === undefined || !record.public || self === undefined || !record.holders.includes(self.index)) return false
    // The block must be one of that image's: naming a public image must not unlock a private
    // image's chunks to whoever learnt their CIDs.
    return (await this.chunksOf(record.rootCid)).has(cidKey(cid))
  }

  /** A local image's chunk CIDs as a set; a root CID fixes its chunk list, so entries never go stale. */
  private async chunksOf (rootCid: string): Promise<Set<string>> {
    let chunks = this.chunkSets.get(rootCid)
    if (chunks === undefined) {
      chunks = (async () => {
        const set = new Set<string>()
        for await (const cid of this.init.store.manifest(rootCid)) set.add(cidKey(cid))
        return set
      })()
      // A failed read (the image went away) is not kept: the next request asks the store again.
      chunks.catch(() => { this.chunkSets.delete(rootCid) })
      this.chunkSets.set(rootCid, chunks)
      if (this.chunkSets.size > CHUNK_SETS_KEPT) this.chunkSets.delete(this.chunkSets.keys().next().value as string)
    }
    return await chunks
  }
}
