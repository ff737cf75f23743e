import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseReplayInput, replay } from '../p2p/hashgraph/index.js'

const bin = fileURLToPath(new URL('../../bin/hgmig.js', import.meta.url))

function hgmig (args: string[], input?: string): { status: number | null, stdout: string, stderr: string } {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input, env: { ...process.env, HGMIG_DEBUG: '' } })
}

/** Four members gossiping round-robin: member i's k-th event has member i+1's latest as other-parent. */
function roundRobinGraph (members: number, eventsPerMember: number): string {
  const events: Array<Record<string, unknown>> = []
  const latest: Array<string | null> = new Array(members).fill(null)
  let time = 1_000_000
  for (let k = 0; k < eventsPerMember; k++) {
    for (let i = 0; i < members; i++) {
      const id = `m${i}e${k}`
      events.push({ id, creator: i, selfParent: latest[i], otherParent: k === 0 ? null : latest[(i + 1) % members], timestamp: time++ })
      latest[i] = id
    }
  }
  return JSON.stringify({ members, events })
}

test('consensus replay prints the engine\'s result for a file and for stdin', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-replay-'))
  const file = join(dir, 'graph.json')
  const graph = roundRobinGraph(4, 30)
  writeFileSync(file, graph)
  const fromFile = hgmig(['consensus', 'replay', file])
  assert.equal(fromFile.status, 0, fromFile.stderr)
  const output = JSON.parse(fromFile.stdout) as { events: Array<{ id: string, round: number, consensusTimestamp: string | null }>, order: string[] }
  assert.equal(output.events.length, 120)
  assert.ok(output.order.length > 0, 'a 30-step round-robin graph orders something')
  assert.deepEqual(output, JSON.parse(JSON.stringify(replay(parseReplayInput(graph)))), 'CLI and library agree')
  for (const e of output.events) {
    if (e.consensusTimestamp !== null) assert.match(e.consensusTimestamp, /^\d+$/, 'timestamps are decimal strings')
  }
  const fromStdin = hgmig(['consensus', 'replay', '-'], graph)
  assert.equal(fromStdin.stdout, fromFile.stdout)
})

test('consensus replay refuses bad input naming the event, exit code 1', () => {
  const cases: Array<[string, RegExp]> = [
    ['{"members": 2, "events": [', /not JSON/],
    ['{"members": 2, "events": [{"id": "a1", "creator": 0, "selfParent": null, "otherParent": "b1", "timestamp": 1}, {"id": "b1", "creator": 1, "selfParent": null, "otherParent": "a1", "timestamp": 1}]}', /event "a1".*"b1" does not come before it/],
    ['{"members": 2, "events": [{"id": "a1", "creator": 0, "selfParent": null, "otherParent": "zz", "timestamp": 1}]}', /event "a1": unknown parent "zz"/],
    ['{"members": 2, "events": [{"id": "a1", "creator": 2, "selfParent": null, "otherParent": null, "timestamp": 1}]}', /event "a1": creator 2 is out of range/]
  ]
  for (const [input, message] of cases) {
    const r = hgmig(['consensus', 'replay', '-'], input)
    assert.equal(r.status, 1, `exit code for ${input}`)
    assert.match(r.stderr, message)
    assert.equal(r.stdout, '')
  }
  const missing = hgmig(['consensus', 'replay', '/nonexistent/graph.json'])
  assert.equal(missing.status, 1)
  assert.match(missing.stderr, /cannot read \/nonexistent\/graph.json: no such file/)
})
