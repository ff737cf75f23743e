import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { encodeTransaction, InvalidStateSnapshotError, MAX_TRANSACTION_BYTES, SwarmState, type AppliedTransaction } from '../p2p/agent/index.js'

const members = [{ peerId: 'peer-a', name: 'site-a' }, { peerId: 'peer-b', name: 'site-b' }, { peerId: 'peer-c', name: 'site-c' }]

/** Feeds (creator, bytes) pairs in order, as the consensus order would. */
function run (state: SwarmState, transactions: Array<[creator: number, bytes: Uint8Array]>): AppliedTransaction[] {
  return transactions.map(([creator, transaction], position) => state.apply({ transaction, creator, position, roundReceived: 1 }))
}

const name = (n: string): Uint8Array => dagCbor.encode({ type: 'site-name', name: n })

test('a site name is applied once; a second site claiming it (in any case) is rejected the same way at every site', () => {
  const order: Array<[number, Uint8Array]> = [[0, name('lisbon')], [1, name('LISBON')], [2, name('porto')]]
  const here = new SwarmState(members)
  const there = new SwarmState(members)
  const start = here.stateHash
  const a = run(here, order)
  const b = run(there, order)
  assert.deepEqual(a, b, 'same outcomes and hashes at two sites')
  assert.deepEqual(a.map((t) => [t.outcome, t.reason]), [['applied', undefined], ['rejected', 'name-taken'], ['applied', undefined]])
  assert.deepEqual(here.memberList().map((m) => m.name), ['lisbon', 'site-b', 'porto'])
  assert.equal(here.applied, 2)
  assert.equal(here.rejected, 1)
  assert.equal(here.rejectedBy('name-taken'), 1)
  assert.notEqual(a[0]!.stateHash, start)
  assert.notEqual(a[1]!.stateHash, a[0]!.stateHash, 'a rejection is part of the history too')
  assert.equal(here.memberByName('Lisbon')?.index, 0)
})

test('the order decides who gets a contested name, and the state hash tells the histories apart', () => {
  const first = new SwarmState(members)
  const second = new SwarmState(members)
  run(first, [[0, name('x')], [1, name('x')]])
  run(second, [[1, name('x')], [0, name('x')]])
  assert.equal(first.memberByName('x')?.index, 0)
  assert.equal(second.memberByName('x')?.index, 1)
  assert.notEqual(first.stateHash, second.stateHash)
})

test('a genesis name is taken from the start; renaming frees the old name; re-announcing one\'s own name is a no-op that applies', () => {
  const state = new SwarmState(members)
  const results = run(state, [[1, name('site-a')], [0, name('new-a')], [1, name('site-a')], [1, name('site-a')]])
  assert.deepEqual(results.map((r) => r.outcome), ['rejected', 'applied', 'applied', 'applied'])
  assert.deepEqual(state.memberList().map((m) => m.name), ['new-a', 'site-a', 'site-c'])
})

test('undecodable, unknown, malformed and oversized transactions are rejected with their reason and change nothing else', () => {
  const state = new SwarmState(members)
  const before = state.memberList()
  const cases: Array<[creator: number, bytes: Uint8Array, reason: string]> = [
    [0, new Uint8Array([0xff, 0x00]), 'malformed'],
    [0, dagCbor.encode([1, 2]), 'malformed'],
    [0, dagCbor.encode({ name: 'x' }), 'malformed'],
    [0, dagCbor.encode({ type: 'launch-rockets' }), 'unknown-type'],
    [0, dagCbor.encode({ type: 'site-name', name: 'bad name!' }), 'invalid-field'],
    [0, dagCbor.encode({ type: 'site-name', name: 'ok', extra: 1 }), 'invalid-field'],
    [0, dagCbor.encode({ type: 'ping', nonce: new Uint8Array(2), submittedAt: 1 }), 'invalid-field'],
    [0, dagCbor.encode({ type: 'ping', nonce: new Uint8Array(16), submittedAt: -1 }), 'invalid-field'],
    [0, new Uint8Array(MAX_TRANSACTION_BYTES + 1), 'too-large'],
    [7, name('ghost'), 'unknown-member']
  ]
  const results = run(state, cases.map(([c, b]) => [c, b]))
  assert.deepEqual(results.map((r) => r.reason), cases.map(([, , reason]) => reason))
  assert.ok(results.every((r) => r.outcome === 'rejected'))
  assert.equal(results[3]!.kind, 'launch-rockets')
  assert.deepEqual(state.memberList(), before)
  assert.equal(state.applied, 0)
  assert.equal(state.rejected, cases.length)
  assert.equal(new Set(results.map((r) => r.stateHash)).size, cases.length, 'every transaction moves the hash on')
})

test('pings apply without changing members; encodeTransaction refuses what the state machine would reject', () => {
  const state = new SwarmState(members)
  const [ping] = run(state, [[2, encodeTransaction({ type: 'ping', nonce: new Uint8Array(16).fill(7), submittedAt: 1_700_000_000_000 })]])
  assert.equal(ping!.outcome, 'applied')
  assert.equal(ping!.kind, 'ping')
  assert.throws(() => encodeTransaction({ type: 'site-name', name: '' }), /cannot encode site-name transaction/)
  assert.throws(() => encodeTransaction({ type: 'ping', nonce: new Uint8Array(1), submittedAt: 0 }), /"nonce" must be 8 to 32 bytes/)
})

test('swarms with different genesis members start from different state hashes', () => {
  assert.notEqual(new SwarmState(members).stateHash, new SwarmState(members.slice(0, 2)).stateHash)
  assert.equal(new SwarmState(members).stateHash, new SwarmState(members).stateHash)
})

test('a gap or a repeat in the consensus positions stops the state machine instead of diverging', () => {
  const state = new SwarmState(members)
  run(state, [[0, name('one')]])
  const hash = state.stateHash
  assert.throws(() => state.apply({ transaction: name('two'), creator: 1, position: 2, roundReceived: 2 }), /jumped from position 1 to 2/)
  assert.throws(() => state.apply({ transaction: name('two'), creator: 1, position: 0, roundReceived: 2 }), /jumped from position 1 to 0/)
  assert.equal(state.stateHash, hash, 'nothing applied')
  assert.equal(state.apply({ transaction: name('two'), creator: 1, position: 1, roundReceived: 2 }).outcome, 'applied')
})

async function rootCid (seed: string): Promise<string> {
  return CID.createV1(0x70, await sha256.digest(new TextEncoder().encode(seed))).toString()
}

/** A history that touches every part of the state: names, members in and out, images, migrations, rejections. */
async function varied (): Promise<Array<[creator: number, bytes: Uint8Array]>> {
  const newcomer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const os = await rootCid('os')
  const we = await rootCid('we')
  const image = (root: string, layer: 'os' | 'we', base: string | null): Uint8Array => encodeTransaction({ type: 'image-announce', image: { rootCid: root, name: `${layer}-image`, layer, base, size: 3 * 65536, chunkSize: 65536, chunkCount: 3, public: layer === 'os' } })
  return [
    [0, name('lisbon')],
    [1, name('LISBON')],
    [0, image(os, 'os', null)],
    [1, image(os, 'os', null)],
    [2, image(we, 'we', os)],
    [1, encodeTransaction({ type: 'member-add', peerId: newcomer, name: 'porto' })],
    [2, encodeTransaction({ type: 'member-add', peerId: newcomer, name: 'porto-2' })],
    [0, encodeTransaction({ type: 'migration-record', migration: 'm-1', vm: 'web', from: 'lisbon', to: 'site-b', strategy: 'h-gmig', planHash: 'ab'.repeat(32), bytesOnWire: 10, bytesSaved: 20, totalMs: 30, downtimeMs: 4 })],
    [1, encodeTransaction({ type: 'image-drop', rootCid: os })],
    [2, encodeTransaction({ type: 'image-drop', rootCid: os })],
    [0, encodeTransaction({ type: 'member-remove', peerId: 'peer-c' })],
    [1, name('site-c')],
    [3, name('faro')],
    [0, dagCbor.encode({ type: 'launch-rockets' })],
    [1, encodeTransaction({ type: 'member-add', peerId: newcomer, name: 'porto-3' })],
    [2, name('braga')]
  ]
}

test('a state restored from its snapshot applies the rest of the order exactly as the original does', async () => {
  const history = await varied()
  for (let cut = 0; cut <= history.length; cut++) {
    const original = new SwarmState(members)
    const applyFrom = (state: SwarmState, from: number): AppliedTransaction[] => history.slice(from).map(([creator, transaction], k) => state.apply({ transaction, creator, position: from + k, roundReceived: 1 + from + k }))
    applyFrom(original, 0)
    const prefix = new SwarmState(members)
    history.slice(0, cut).forEach(([creator, transaction], position) => prefix.apply({ transaction, creator, position, roundReceived: 1 + position }))
    const restored = SwarmState.fromSnapshot(prefix.snapshot())
    assert.equal(restored.stateHash, prefix.stateHash, `cut ${cut}: the hash is carried`)
    assert.deepEqual(Buffer.from(restored.snapshot()), Buffer.from(prefix.snapshot()), `cut ${cut}: the snapshot round-trips byte for byte`)
    const rest = applyFrom(restored, cut)
    const expected = applyFrom(prefix, cut)
    assert.deepEqual(rest, expected, `cut ${cut}: the same outcomes after the snapshot`)
    assert.equal(restored.stateHash, original.stateHash, `cut ${cut}: the same final hash as a site that applied everything`)
    assert.deepEqual(restored.memberList(), original.memberList())
    assert.deepEqual(restored.imageList({ includeDropped: true }), original.imageList({ includeDropped: true }))
    assert.deepEqual(restored.migrations(), original.migrations())
    assert.equal(restored.memberByName('PORTO')?.index, original.memberByName('porto')?.index)
    assert.equal(restored.rejectedBy('name-taken'), original.rejectedBy('name-taken'))
  }
  const final = new SwarmState(members)
  history.forEach(([creator, transaction], position) => final.apply({ transaction, creator, position, roundReceived: 1 }))
  // The history did what it says (otherwise the comparisons above prove little).
  assert.deepEqual(final.memberList().map((m) => [m.name, m.untilRound === null]), [['lisbon', true], ['site-c', true], ['site-c', false], ['faro', true]])
  assert.equal(final.memberByName('site-c')?.index, 1, 'the removed member\'s name went to the site that asked for it after the removal')
  assert.equal(final.migrations().length, 1)
  assert.equal(final.imageList().length, 1, 'the OS image was dropped by both holders; the WE image stays')
  assert.ok(final.rejected >= 4)
})

test('snapshot bytes that do not describe a state are refused, naming what is wrong', async () => {
  const state = new SwarmState(members)
  for (const [position, [creator, transaction]] of (await varied()).entries()) state.apply({ transaction, creator, position, roundReceived: 1 })
  type Entry = Record<string, unknown>
  interface Raw extends Entry { members: Entry[], images: Entry[], migrations: Entry[] }
  const good = dagCbor.decode(state.snapshot()) as Raw
  const variant = (change: (s: Raw) => void): Uint8Array => {
    const copy = dagCbor.decode(dagCbor.encode(good)) as Raw
    change(copy)
    return dagCbor.encode(copy)
  }
  const cases: Array<[bytes: Uint8Array, message: RegExp]> = [
    [new Uint8Array([0xff, 0x01]), /not dag-cbor/],
    [dagCbor.encode([1, 2]), /not a map/],
    [variant((s) => { s['version'] = 99 }), /version 99/],
    [variant((s) => { s['hash'] = new Uint8Array(4) }), /hash/],
    [variant((s) => { s['applied'] = -1 }), /applied/],
    [variant((s) => { s['rejected'] = { 'no-such-reason': 1 } }), /rejected/],
    [variant((s) => { s.members[1]!['index'] = 7 }), /members\[1\]\.index/],
    [variant((s) => { s.members[1]!['name'] = 'LISBON' }), /members\[1\]\.name.*taken/],
    [variant((s) => { s.members[1]!['peerId'] = s.members[0]!['peerId'] }), /members\[1\]\.peerId/],
    [variant((s) => { s.members[0]!['extra'] = true }), /members\[0\]: unexpected fields/],
    [variant((s) => { s.images[0]!['holders'] = [2, 1] }), /images\[0\]\.holders/],
    [variant((s) => { s.images[0]!['rootCid'] = 'not-a-cid' }), /images\[0\]: .*rootCid/],
    [variant((s) => { s.images.push(s.images[0]!) }), /images\[2\]\.rootCid: repeated/],
    [variant((s) => { s.migrations[0]!['bytesOnWire'] = -5 }), /migrations\[0\].*bytesOnWire/],
    [variant((s) => { s.migrations[0]!['recordedBy'] = 40 }), /migrations\[0\]: position or recordedBy/]
  ]
  for (const [bytes, message] of cases) {
    assert.throws(() => SwarmState.fromSnapshot(bytes), (err: Error) => err instanceof InvalidStateSnapshotError && message.test(err.message), `expected ${String(message)}`)
  }
  assert.equal(SwarmState.fromSnapshot(dagCbor.encode(good)).stateHash, state.stateHash, 'the unmodified snapshot loads')
})
