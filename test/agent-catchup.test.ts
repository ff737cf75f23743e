/**
 * Catch-up from a checkpoint (issue 4), with agents as separate OS processes on loopback and their
 * real SQLite logs: a restarted member starts from its newest checkpoint and replays only the log
 * after it, reaching the state hash of the others and of a full replay; a damaged checkpoint falls
 * back to the previous one. Checkpoints every 4 decided rounds here (HGMIG_CHECKPOINT_ROUNDS) so
 * that a short test has several.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AgentProcess, foundingSwarm, reportAgents, type FoundingSite } from './support/agent-process.js'
import { loggedEvents, orderUntilRound, replayLine, sameState } from './support/checkpoint-sites.js'

process.env.HGMIG_CHECKPOINT_ROUNDS = '4'

function checkpointRounds (dir: string): number[] {
  try {
    return readdirSync(join(dir, 'checkpoints')).map((n) => /^checkpoint-(\d+)\.cbor$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => b - a)
  } catch {
    return []
  }
}

test('a restarted member starts from its newest checkpoint, replays only the log after it and reaches the others\' and a full replay\'s state hash; a damaged checkpoint falls back to the previous one', async () => {
  const agents: AgentProcess[] = []
  try {
    const sites = await foundingSwarm(['site-a', 'site-b', 'site-c'], agents)
    const [a, b] = sites as [FoundingSite, FoundingSite, FoundingSite]
    await orderUntilRound(a.client, 14)
    await sameState(sites, 'before the restart')
    assert.ok(checkpointRounds(a.dir).length >= 2, `site-a wrote no two checkpoints by round 14:\n${a.agent.log.slice(-3000)}`)
    assert.match(a.agent.log, /checkpoint of round \d+ saved: \d+ bytes/)

    // 1. Restart from the newest checkpoint: only the tail of the log is replayed.
    await a.agent.stop()
    const newest = checkpointRounds(a.dir)[0]!
    const total = loggedEvents(a.dir)
    const restarted = new AgentProcess(a.dir, ['--bootstrap', (await b.client.status()).listen[0]!])
    agents.push(restarted)
    a.agent = restarted
    a.client = (await restarted.ready()).client
    const fromCheckpoint = replayLine(restarted)
    assert.equal(fromCheckpoint.after, `the checkpoint of round ${newest}`)
    assert.ok(fromCheckpoint.events < total, `replayed ${fromCheckpoint.events} of the log's ${total} events: not fewer`)
    await orderUntilRound(b.client, newest + 10)
    const afterRestart = await sameState(sites, 'after the restart from a checkpoint')

    // 2. Full replay (checkpoints removed) gives the same state hash.
    await a.agent.stop()
    const reference = await sameState(sites.slice(1), 'the others while site-a is down')
    rmSync(join(a.dir, 'checkpoints'), { recursive: true, force: true })
    const full = new AgentProcess(a.dir, ['--bootstrap', (await b.client.status()).listen[0]!])
    agents.push(full)
    a.agent = full
    a.client = (await full.ready()).client
    assert.equal(replayLine(full).after, 'the whole log')
    assert.equal(replayLine(full).events, loggedEvents(a.dir), 'a full replay reads every logged event')
    const fullStatus = await a.client.status()
    if (fullStatus.transactions.ordered === (await b.client.status()).transactions.ordered) assert.equal(fullStatus.stateHash, reference)
    assert.notEqual(afterRestart, undefined)
    await orderUntilRound(b.client, (await b.client.status()).lastDecidedRound + 9)
    await sameState(sites, 'after the full replay')

    // 3. A damaged newest checkpoint: logged, and the previous one is used.
    assert.ok(checkpointRounds(a.dir).length >= 2, 'the full replay and what followed wrote two checkpoints')
    await a.agent.stop()
    const [damaged, previous] = checkpointRounds(a.dir) as [number, number]
    const file = join(a.dir, 'checkpoints', `checkpoint-${String(damaged).padStart(12, '0')}.cbor`)
    const bytes = readFileSync(file)
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff
    writeFileSync(file, bytes)
    const fallback = new AgentProcess(a.dir, ['--bootstrap', (await b.client.status()).listen[0]!])
    agents.push(fallback)
    a.agent = fallback
    a.client = (await fallback.ready()).client
    assert.match(fallback.log, new RegExp(`checkpoint of round ${damaged} unusable \\(invalid checkpoint: .*damaged.*\\): trying the checkpoint of round ${previous}`))
    assert.equal(replayLine(fallback).after, `the checkpoint of round ${previous}`)
    await b.client.ping()
    await sameState(sites, 'after the fallback')
    // Checkpoints written during a replay name the replay's log position: every one but the damaged was usable.
    for (const agent of agents) assert.doesNotMatch(agent.log, /does not continue the frontier/)
  } catch (err) {
    reportAgents(agents)
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
