/**
 * The agent's serving policy for the block exchange, on a real image store and a real replicated
 * state: which chunks this site hands to which peer. (The network around it is exercised by
 * agent-fetch; here every case is checked one by one.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { CID } from 'multiformats/cid'
import { SwarmState } from '../p2p/agent/index.js'
import { PublicImagePolicy } from '../p2p/agent/serving-policy.js'
import { createImageStore, type ImageInfo, type ImageStore } from '../p2p/store/index.js'

async function importRandom (store: ImageStore, name: string, seed: number, options: { private?: boolean } = {}): Promise<ImageInfo> {
  const bytes = new Uint8Array(256 * 1024)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761 + seed * 40503) >>> 13 & 0xff
  return await store.add({ content: [bytes], size: bytes.length, description: name }, { layer: 'os', name, ...options })
}

async function leaves (store: ImageStore, image: ImageInfo): Promise<CID[]> {
  const cids: CID[] = []
  for await (const cid of store.manifest(image.rootCid)) cids.push(cid)
  return cids
}

test('chunks go to members only, only for a public image this site holds, and only chunks of the image the request names', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-policy-'))
  const store = createImageStore({ directory: join(dir, 'store'), chunkSize: 64 * 1024 })
  await store.open()
  try {
    const publicImage = await importRandom(store, 'public-os', 1)
    const privateImage = await importRandom(store, 'secret-os', 2, { private: true })
    const [self, member, outsider] = await Promise.all([0, 1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    const state = new SwarmState([{ peerId: self!.toString(), name: 'site-a' }, { peerId: member!.toString(), name: 'site-b' }])
    for (const [position, image] of [publicImage, privateImage].entries()) {
      const announced = { rootCid: image.rootCid, name: image.name, layer: image.layer, base: null, size: image.size, chunkSize: image.chunkSize, chunkCount: image.chunkCount, public: image.public }
      assert.equal(state.apply({ transaction: dagCbor.encode({ type: 'image-announce', image: announced }), creator: 0, position, roundReceived: 1 }).outcome, 'applied')
    }
    const policy = new PublicImagePolicy({
      store,
      state: () => state,
      selfPeerId: self!.toString(),
      isMember: (peerId) => state.memberByPeerId(peerId) !== undefined
    })
    const publicChunk = (await leaves(store, publicImage))[0]!
    const privateChunk = (await leaves(store, privateImage))[0]!
    const asking = { purpose: 'replication' as const, image: publicImage.rootCid }

    assert.equal(await policy.mayServe(member!, publicChunk, asking), true, 'a public chunk to a member')
    assert.equal(await policy.mayServe(outsider!, publicChunk, asking), false, 'nothing to a non-member')
    assert.equal(await policy.mayServe(member!, privateChunk, asking), false, 'naming a public image does not unlock a private image\'s chunk')
    assert.equal(await policy.mayServe(member!, privateChunk, { purpose: 'replication', image: privateImage.rootCid }), false, 'a private image is not served for replication')
    assert.equal(await policy.mayServe(member!, publicChunk, { purpose: 'replication' }), false, 'a request must name its image')
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
