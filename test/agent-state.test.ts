import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { encodeTransaction, MAX_TRANSACTION_BYTES, SwarmState, type AppliedTransaction } from '../p2p/agent/index.js'

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
