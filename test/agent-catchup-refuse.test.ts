/**
 * A joining site refuses a checkpoint whose agreement the members dispute (issue 4): the inviter's
 * newest checkpoint is altered on its disk into a consistent lie (a member renamed in the state
 * snapshot, every hash recomputed), so the inviter itself uses and serves it; the other members
 * report another agreement digest for that round, and the joining site syncs the whole history
 * instead, reaching the same state hash. Agents as separate OS processes on loopback; checkpoints
 * every 4 decided rounds (HGMIG_CHECKPOINT_ROUNDS).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AgentProcess, reportAgents } from './support/agent-process.js'
import { alterNewestCheckpoint, checkpointedSwarm, inviteAndJoin, replayLine, sameState, type Site } from './support/checkpoint-sites.js'

process.env.HGMIG_CHECKPOINT_ROUNDS = '4'

test('a checkpoint whose agreement f + 1 members dispute is refused; the site syncs the whole history and reaches the same state hash', async () => {
  const agents: AgentProcess[] = []
  try {
    const founders = await checkpointedSwarm(agents)
    const a: Site = founders[0]!
    const b: Site = founders[1]!
    // A lying inviter: its checkpoint's agreement is disputed by the other members; the site syncs everything instead.
    await a.agent.stop()
    const altered = alterNewestCheckpoint(a.dir)
    a.agent = new AgentProcess(a.dir, ['--bootstrap', (await b.client.status()).listen[0]!])
    agents.push(a.agent)
    a.client = (await a.agent.ready()).client
    assert.equal(replayLine(a.agent).after, `the checkpoint of round ${altered}`, 'the altered checkpoint is self-consistent: its own site uses it')
    await sameState(founders, 'with site-a back')
    const g = await inviteAndJoin(a, 'site-g', agents)
    assert.match(g.agent.log, new RegExp(`checkpoint refused \\(the checkpoint of round ${altered} from \\S+ has agreement digest [0-9a-f]+…, but \\d+ members report another`))
    assert.equal(replayLine(g.agent).after, 'the whole log')
    await b.client.ping()
    await sameState([...founders, g], 'with site-g synced from scratch')
  } catch (err) {
    reportAgents(agents)
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
