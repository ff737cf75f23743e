/**
 * A joining site starts from a member's checkpoint (issue 4), with agents as separate OS processes on
 * loopback: the checkpoint is confirmed by f + 1 members, the site syncs only later events, reaches
 * the others' state hash and, once approved, takes part (and restarts from a checkpoint of its own).
 * The refusal of a disputed checkpoint: test/agent-catchup-refuse.test.ts.
 * Checkpoints every 4 decided rounds here (HGMIG_CHECKPOINT_ROUNDS).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AgentProcess, reportAgents } from './support/agent-process.js'
import { eventually } from './support/peer-process.js'
import { checkpointedSwarm, inviteAndJoin, loggedEvents, replayLine, sameState, type Site } from './support/checkpoint-sites.js'

process.env.HGMIG_CHECKPOINT_ROUNDS = '4'

test('a joining site starts from a checkpoint confirmed by f + 1 members, syncs only later events, reaches the same state hash, becomes a member and restarts from a checkpoint of its own', async () => {
  const agents: AgentProcess[] = []
  try {
    const founders = await checkpointedSwarm(agents)
    const a: Site = founders[0]!
    const b: Site = founders[1]!

    // An honest inviter: the checkpoint is confirmed and used.
    const e = await inviteAndJoin(b, 'site-e', agents)
    const bPeer = (await b.client.status()).peerId
    const fetched = /checkpoint of round (\d+) fetched from (\S+) \((\d+) bytes\), confirmed by (\d+) members \(f \+ 1 = 2 of n = 4\)/.exec(e.agent.log)
    assert.ok(fetched !== null, `site-e did not start from a checkpoint:\n${e.agent.log}`)
    assert.equal(fetched[2], bPeer, 'fetched from its inviter')
    assert.ok(Number(fetched[4]) >= 2, 'confirmed by at least f + 1 = 2 members')
    assert.equal(replayLine(e.agent).after, `the checkpoint of round ${fetched[1]}`)
    assert.equal((await e.client.status()).role, 'joining')
    await b.client.ping()
    await sameState([...founders, e], 'with site-e (joining)')
    const eEvents = loggedEvents(e.dir)
    const bEvents = loggedEvents(b.dir)
    assert.ok(eEvents < bEvents, `site-e logged ${eEvents} events, its inviter ${bEvents}: it should have synced only events after the checkpoint`)

    // Membership on top of a checkpoint: approved, e takes part from its first round.
    await b.client.approve({ peer: 'site-e' })
    await eventually('site-e is a member', async () => {
      const status = await e.client.status()
      if (status.role === 'member') return true
      await a.client.ping()
      return undefined
    }, 150_000)
    await e.client.ping()
    await sameState([...founders, e], 'with site-e a member')

    // A member whose log starts at a checkpoint restarts from a later one of its own, taken after it
    // was added (its key and the membership change travel in the frontier), and goes on creating events.
    await e.agent.stop()
    e.agent = new AgentProcess(e.dir)
    agents.push(e.agent)
    e.client = (await e.agent.ready()).client
    const resumed = replayLine(e.agent)
    assert.match(resumed.after, /^the checkpoint of round \d+$/)
    assert.ok(Number(/\d+/.exec(resumed.after)![0]) > Number(fetched[1]), `site-e restarted from ${resumed.after}, not from one of its own after round ${fetched[1]}`)
    assert.equal((await e.client.status()).role, 'member')
    await e.client.ping()
    await sameState([...founders, e], 'with site-e restarted')

  } catch (err) {
    reportAgents(agents)
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
