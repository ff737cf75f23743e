import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { EventLog, Hashgraph } from '../p2p/hashgraph/index.js'
import { createSwarmKey, createSwarmNode, HashgraphGossip, parseSwarmKey } from '../p2p/swarm/index.js'
import { eventually } from './support/peer-process.js'

/**
 * The hop trace bench/swarm.ts reads (HGMIG_HOP_TRACE): a one-member swarm on a real libp2p node
 * and a real event log orders its own transactions alone, and every own event's way through the
 * member is written in order — creating, committed (signed, inserted, in SQLite), created, durable,
 * published — with the event-loop delay line at stop.
 */
test('HGMIG_HOP_TRACE writes each own event\'s stages in order and the event-loop delay at stop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-hop-trace-'))
  const traceFile = join(dir, 'hops.trace')
  const key = await generateKeyPair('Ed25519')
  const log = new EventLog(join(dir, 'hashgraph.sqlite'))
  const ordered: string[] = []
  const hashgraph = new Hashgraph({
    members: [key.publicKey],
    self: { creator: 0, key },
    log,
    onTransactions: (txs) => { for (const t of txs) ordered.push(Buffer.from(t.transaction).toString()) }
  })
  hashgraph.start()
  const node = await createSwarmNode({ privateKey: key, swarmKey: parseSwarmKey(new TextDecoder().decode(createSwarmKey())), listen: ['/ip4/127.0.0.1/tcp/0'] })
  process.env.HGMIG_HOP_TRACE = traceFile
  const gossip = new HashgraphGossip({ node, hashgraph, swarmId: 'trace-swarm', peers: () => [peerIdFromPrivateKey(key)] })
  delete process.env.HGMIG_HOP_TRACE
  try {
    await gossip.start()
    for (let i = 0; i < 5; i++) gossip.submit(Buffer.from(`tx-${i}`))
    await eventually('the lone member ordered its transactions', async () => ordered.length === 5 ? true : undefined)
  } finally {
    await gossip.stop()
    await node.stop()
    hashgraph.stop()
    log.close()
  }
  try {
    const lines = readFileSync(traceFile, 'utf8').trim().split('\n').map((l) => l.split(' '))
    const stages = new Map<string, Map<string, number>>()
    for (const [stage, id, at] of lines) {
      if (stage === 'loop-delay') continue
      let byId = stages.get(stage!)
      if (byId === undefined) stages.set(stage!, byId = new Map())
      byId.set(id!, Number(at))
    }
    const created = [...(stages.get('creating')?.keys() ?? [])]
    assert.ok(created.length >= 2, `own events traced: ${created.length}`)
    for (const id of created) {
      const times = ['creating', 'committed', 'created', 'durable', 'published'].map((stage) => stages.get(stage)?.get(id))
      assert.ok(times.every((t) => t !== undefined && Number.isFinite(t)), `every stage of event ${id.slice(0, 8)} traced: ${JSON.stringify(times)}`)
      for (let i = 1; i < times.length; i++) assert.ok(times[i]! >= times[i - 1]!, `event ${id.slice(0, 8)}: stage ${i} not before stage ${i - 1}: ${JSON.stringify(times)}`)
    }
    const loopDelay = lines.filter((l) => l[0] === 'loop-delay')
    assert.equal(loopDelay.length, 1, 'one event-loop delay line, written at stop')
    const [p50, p90, p99, mean] = loopDelay[0]!.slice(1).map(Number)
    assert.ok([p50, p90, p99, mean].every((v) => v !== undefined && Number.isFinite(v) && v >= 0), `loop delay figures: ${loopDelay[0]!.join(' ')}`)
    assert.ok(p50! <= p90! && p90! <= p99!, `loop delay percentiles in order: ${loopDelay[0]!.join(' ')}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a minimum event interval that is not a number ≥ 0 is refused with the setting named', async () => {
  const key = await generateKeyPair('Ed25519')
  const hashgraph = new Hashgraph({ members: [key.publicKey], self: { creator: 0, key } })
  const node = await createSwarmNode({ privateKey: key, swarmKey: parseSwarmKey(new TextDecoder().decode(createSwarmKey())), listen: ['/ip4/127.0.0.1/tcp/0'] })
  try {
    for (const bad of ['-1', 'soon']) {
      process.env.HGMIG_MIN_EVENT_INTERVAL_MS = bad
      try {
        assert.throws(() => new HashgraphGossip({ node, hashgraph, swarmId: 's', peers: () => [] }), (err: Error) => err instanceof RangeError && /minEventIntervalMs/.test(err.message) && /HGMIG_MIN_EVENT_INTERVAL_MS/.test(err.message))
      } finally {
        delete process.env.HGMIG_MIN_EVENT_INTERVAL_MS
      }
    }
    assert.throws(() => new HashgraphGossip({ node, hashgraph, swarmId: 's', peers: () => [], minEventIntervalMs: -2 }), RangeError)
  } finally {
    await node.stop()
  }
})
