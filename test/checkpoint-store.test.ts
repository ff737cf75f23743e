/**
 * The agent's checkpoints (p2p/agent/checkpoint.ts) without the network: encoding and the checks of
 * decodeCheckpoint, the agreement digest, and the files (atomic write, the newest two kept plus a
 * joined site's base, damage found). The engine part comes from simulated gossip with a real state
 * machine applying the order.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { agreementDigest, agreementOf, CheckpointStore, decodeCheckpoint, encodeCheckpoint, type Checkpoint } from '../p2p/agent/checkpoint.js'
import { InvalidCheckpointError } from '../p2p/agent/errors.js'
import { SwarmState } from '../p2p/agent/state.js'
import { Hashgraph } from '../p2p/hashgraph/index.js'
import { GossipSim, testSeed } from './support/gossip-sim.js'

/** A checkpoint of an observer that applied the simulated order to a SwarmState. */
async function makeCheckpoint (seed: number): Promise<{ checkpoint: Checkpoint, state: SwarmState }> {
  const sim = await GossipSim.create({ n: 4, seed })
  const state = new SwarmState(sim.members.map((m) => ({ peerId: `peer-${m.id}`, name: `site-${m.id}` })))
  const observer = new Hashgraph({ members: sim.publicKeys, onTransactions: (txs) => { for (const t of txs) state.apply(t) } })
  sim.run(300)
  for (const m of sim.members) for (const event of m.hg.recentEvents()) if (!observer.has(event.id)) observer.receive(event.payload.bytes)
  // Whatever arrived out of order waits for its parents; the members' logs are not needed here.
  const stateBytes = state.snapshot()
  const checkpoint = { agreement: agreementOf(observer.snapshot(), state, stateBytes), frontier: observer.exportFrontier(), state: stateBytes }
  sim.close()
  return { checkpoint, state }
}

test('a checkpoint round-trips; damage and an inconsistent agreement are refused by name', async () => {
  const seed = testSeed(7410)
  const { checkpoint, state } = await makeCheckpoint(seed)
  assert.ok(checkpoint.agreement.transactionPosition > 0, `seed=${seed}: nothing ordered`)
  const bytes = encodeCheckpoint(checkpoint)
  const decoded = decodeCheckpoint(bytes)
  assert.deepEqual(decoded.agreement, checkpoint.agreement)
  assert.equal(decoded.restoredState.stateHash, state.stateHash)
  assert.equal(decoded.frontierSummary.round, checkpoint.agreement.round)
  assert.equal(agreementDigest(decoded.agreement), agreementDigest(checkpoint.agreement))
  assert.notEqual(agreementDigest({ ...checkpoint.agreement, stateHash: '0'.repeat(64) }), agreementDigest(checkpoint.agreement))

  const refused = (input: Uint8Array, pattern: RegExp): void => {
    assert.throws(() => decodeCheckpoint(input), (err: unknown) => err instanceof InvalidCheckpointError && pattern.test(err.message))
  }
  const flipped = Uint8Array.from(bytes)
  flipped[Math.floor(bytes.length / 3)]! ^= 0x01
  refused(flipped, /damaged|not dag-cbor/)
  refused(bytes.subarray(0, 50), /not dag-cbor/)
  // Consistent lies (hashes recomputed): each part must agree with the agreement.
  refused(encodeCheckpoint({ ...checkpoint, agreement: { ...checkpoint.agreement, runningHash: 'ab'.repeat(32) } }), /the frontier's runningHash .* is not the agreement's/)
  refused(encodeCheckpoint({ ...checkpoint, agreement: { ...checkpoint.agreement, stateSnapshotHash: 'cd'.repeat(32) } }), /the state snapshot hashes to/)
  const other = new SwarmState([{ peerId: 'x', name: 'elsewhere' }]).snapshot()
  const otherHash = createHash('sha256').update(other).digest('hex')
  refused(encodeCheckpoint({ ...checkpoint, state: other, agreement: { ...checkpoint.agreement, stateSnapshotHash: otherHash } }), /state hash .* is not the agreement's/)
  refused(encodeCheckpoint({ ...checkpoint, frontier: checkpoint.frontier.subarray(0, 100) }), /invalid hashgraph frontier/)
  refused(dagCbor.encode({ ...(dagCbor.decode(bytes) as object), version: 9 }), /version 9/)
})

test('checkpoint files: written atomically, the newest two kept (and a joined site\'s base), damage found', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hgmig-checkpoints-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const { checkpoint } = await makeCheckpoint(testSeed(7420))
  const bytes = encodeCheckpoint(checkpoint)
  const store = new CheckpointStore(path.join(dir, 'checkpoints'))
  assert.deepEqual(store.rounds(), [])
  store.save(100, bytes, 0) // a joined site's base: its log starts after it
  store.save(200, bytes, 1234)
  store.save(300, bytes, 2345)
  store.save(400, bytes, 3456)
  assert.deepEqual(store.rounds(), [400, 300, 100], 'the newest two and the base')
  assert.deepEqual(readdirSync(store.directory).filter((n) => n.includes('.tmp')), [], 'no temporary file left')
  const read = store.read(300)
  assert.equal(read.logPosition, 2345)
  assert.ok(Buffer.from(read.bytes).equals(bytes))
  const file = store.fileOf(400)
  const damaged = readFileSync(file)
  damaged[damaged.length - 40]! ^= 0x10
  writeFileSync(file, damaged)
  assert.throws(() => store.read(400), (err: unknown) => err instanceof InvalidCheckpointError && /damaged|not dag-cbor/.test(err.message))
  writeFileSync(file, 'not a checkpoint')
  assert.throws(() => store.read(400), InvalidCheckpointError)
})
