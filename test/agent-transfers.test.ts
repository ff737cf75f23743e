import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiRequestError, type AbandonTransferResponse, type AgentEvent, type TransferView } from '../p2p/api/index.js'
import { AgentProcess, foundingSwarm, hgmig, hgmigOk, reportAgents, type FoundingSite } from './support/agent-process.js'
import { randomImage, writePlan } from './support/image-generator.js'
import { eventually } from './support/peer-process.js'

interface StoreStats { images: number, chunks: number, storedBytes: number, deadBytes: number }

const stats = (site: FoundingSite): StoreStats => JSON.parse(hgmigOk('image', 'stats', '--json', '--data', site.dir)) as StoreStats
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test('a transfer whose only source stopped is listed with its progress, abandoned (its leaves released, shared chunks kept) and not resumed after a restart', async () => {
  const agents: AgentProcess[] = []
  const files = mkdtempSync(join(tmpdir(), 'hgmig-transfers-'))
  let frozen: AgentProcess | undefined
  try {
    const [a, b] = await foundingSwarm(['site-a', 'site-b'], agents) as [FoundingSite, FoundingSite]
    // 1024 chunks of 64 KiB at A. B already holds a small image made of the first 64 of them:
    // those chunks are never fetched, and must stay when the transfer is abandoned.
    const bigFile = join(files, 'big.img')
    await writePlan(randomImage('big', 1024, 0.1, 21), bigFile)
    hgmigOk('image', 'add', bigFile, '--layer', 'os', '--name', 'big-os', '--data', a.dir)
    const smallFile = join(files, 'small.img')
    await writePlan(randomImage('small', 64, 0, 21), smallFile)
    hgmigOk('image', 'add', smallFile, '--layer', 'os', '--name', 'local-os', '--data', b.dir)
    await eventually('B knows the chunk list of big-os', async () => (await b.client.images()).images.find((i) => i.name === 'big-os')?.manifest === true ? true : undefined, 120_000)
    const before = stats(b)

    // The fetch starts; A (the only source) is frozen (SIGSTOP) at B's first progress report, and
    // let run in 20 ms slices until B has stored 100 chunks from it: the fetcher keeps at most 4 MiB
    // asked of a source, so a frozen source cannot finish a 58 MiB transfer behind our back.
    const streaming = new AbortController()
    const seen: AgentEvent[] = []
    void (async () => { for await (const event of b.client.events({ signal: streaming.signal })) seen.push(event) })().catch(() => {})
    await eventually('B\'s event stream', async () => seen.length > 0 ? true : undefined)
    const cancelFetch = new AbortController()
    const fetching = b.client.storeCall({ method: 'fetch', args: ['big-os'] }, { signal: cancelFetch.signal }).then(() => 'done', (err: Error) => err.message)
    await eventually('B\'s first progress report', async () => seen.some((e) => e.type === 'transfer' && e.progress.name === 'big-os') ? true : undefined, 60_000)
    a.agent.child.kill('SIGSTOP')
    frozen = a.agent
    const running = await eventually('B stored 100 chunks from A', async () => {
      const transfer = (await b.client.transfers()).transfers.find((t) => t.name === 'big-os')
      if (transfer !== undefined && (transfer.sources.find((s) => s.site === 'site-a')?.chunks ?? 0) >= 100) return transfer
      a.agent.child.kill('SIGCONT')
      await sleep(20)
      a.agent.child.kill('SIGSTOP')
      await sleep(300)
      return undefined
    }, 120_000)
    assert.ok(running.chunksDone < running.chunksTotal, `the transfer is not complete (${running.chunksDone}/${running.chunksTotal})`)
    assert.equal(running.chunksTotal, 1024)
    assert.equal(running.bytesTotal, 1024 * 65536)
    assert.ok(['running', 'failed'].includes(running.state), running.state)
    const fromA = running.sources.find((s) => s.site === 'site-a')!
    const here = running.sources.find((s) => s.site === null)!
    assert.ok(fromA.bytes > 0 && fromA.bytes === fromA.chunks * 65536, `site-a delivered ${fromA.chunks} chunks, ${fromA.bytes} bytes`)
    assert.ok(here.chunks >= 64, 'zeros and the 64 chunks B had count as done here')
    assert.equal(running.bytesDone, (fromA.chunks + here.chunks) * 65536)
    assert.equal(running.finishedAt, null)
    assert.ok(Date.parse(running.startedAt) > 0)

    // The CLI prints what the API returns.
    const listed = JSON.parse(hgmigOk('image', 'transfers', '--json', '--data', b.dir)) as { transfers: TransferView[] }
    const cliView = listed.transfers.find((t) => t.rootCid === running.rootCid)!
    assert.deepEqual({ ...cliView, bytesPerSecond: null, etaSeconds: null, state: null, chunksDone: null, bytesDone: null, sources: null, lastError: null },
      { ...running, bytesPerSecond: null, etaSeconds: null, state: null, chunksDone: null, bytesDone: null, sources: null, lastError: null })
    const text = hgmigOk('image', 'transfers', '--data', b.dir)
    assert.match(text, new RegExp(`big-os {2}(running|failed) {2}\\d+/1024 chunks`))
    assert.match(text, /from site-a: \d+ chunks/)
    assert.match(text, /here \(zeros, chunks already at this site\): \d+ chunks/)
    const interrupted = stats(b)
    assert.ok(interrupted.storedBytes > before.storedBytes, 'the fetched leaves are in B\'s store')

    // The user cancels the fetch (closing its request): it stays as it ended. The agent resumes
    // only what a crash or stop interrupted before it started, not what a user cancelled since.
    cancelFetch.abort()
    assert.match(await fetching, /abort/i)
    const stateOf = async (): Promise<string | undefined> => (await b.client.transfers()).transfers.find((t) => t.name === 'big-os')?.state
    // Interrupted, or failed if the frozen source had been dropped already.
    const ended = await eventually('the cancelled transfer to stop', async () => { const state = await stateOf(); return state !== undefined && state !== 'running' ? state : undefined }, 30_000)
    // Two of the agent's member checks (every 5 s), each of which resumes what is due.
    await sleep(11_000)
    assert.equal(await stateOf(), ended, 'a cancelled fetch is not resumed behind the user\'s back')
    assert.equal(b.agent.log.includes('resuming the interrupted transfer'), false, b.agent.log)

    // Abandoning an unknown image is a named error, through the API (404) and the CLI.
    await assert.rejects(b.client.abandonTransfer('no-such-image'), (err: Error) => err instanceof ApiRequestError && err.status === 404 && /no image "no-such-image" is being fetched here or announced/.test(err.message))
    const unknown = hgmig('image', 'abandon', 'no-such-image', '--data', b.dir)
    assert.equal(unknown.status, 1)
    assert.match(unknown.stderr, /no image "no-such-image" is being fetched here or announced in the swarm \(transfers here: big-os/)

    // Abandon (by name, through the CLI): stopped if it ran, forgotten, its leaves released.
    const abandoned = JSON.parse(hgmigOk('image', 'abandon', 'big-os', '--json', '--data', b.dir)) as AbandonTransferResponse
    assert.equal(abandoned.rootCid, running.rootCid)
    assert.equal(abandoned.chunksTotal, 1024)
    assert.ok(abandoned.chunksDone >= running.chunksDone)
    assert.equal(abandoned.freedBytes, interrupted.storedBytes - before.storedBytes, 'every leaf the transfer stored, and only those, was released')
    assert.equal(abandoned.freedChunks, interrupted.chunks - before.chunks)
    assert.equal((await b.client.transfers()).transfers.some((t) => t.rootCid === running.rootCid), false, 'no longer listed')
    const released = stats(b)
    assert.equal(released.storedBytes, before.storedBytes, 'the store holds what it held before the fetch')
    assert.equal(released.chunks, before.chunks)
    assert.equal(released.deadBytes - interrupted.deadBytes, abandoned.freedBytes, 'the released leaves are dead bytes in the pack files')
    // More than a quarter of the pack bytes are dead (100+ fetched chunks against 64 kept): gc compacts.
    const gc = JSON.parse(hgmigOk('image', 'gc', '--json', '--data', b.dir)) as { bytesReclaimed: number }
    assert.equal(gc.bytesReclaimed, abandoned.freedBytes, 'gc gave the released bytes back')
    assert.equal(stats(b).deadBytes, 0)
    hgmigOk('image', 'verify', 'local-os', '--data', b.dir)
    // Nothing left to abandon: a named error that says so.
    const again = hgmig('image', 'abandon', 'big-os', '--data', b.dir)
    assert.equal(again.status, 1)
    assert.match(again.stderr, /nothing to abandon for "big-os": it has no transfer at this site/)
    const abandonedEvent = await eventually('the transfer-abandoned event', async () => seen.find((e) => e.type === 'transfer-abandoned'), 30_000)
    streaming.abort()
    assert.deepEqual((abandonedEvent as Extract<AgentEvent, { type: 'transfer-abandoned' }>).abandoned, abandoned)

    // A restart with the source back does not resume it.
    a.agent.child.kill('SIGCONT')
    frozen = undefined
    await b.agent.stop()
    const restarted = new AgentProcess(b.dir, ['--bootstrap', (await a.client.status()).listen[0]!])
    agents.push(restarted)
    const client = (await restarted.ready()).client
    await eventually('B connected to A again', async () => (await client.status()).members.every((m) => m.connected) ? true : undefined, 120_000)
    // Two of the agent's member checks (every 5 s), each of which resumes interrupted transfers.
    await sleep(11_000)
    assert.deepEqual((await client.transfers()).transfers.filter((t) => t.state !== 'done'), [])
    assert.equal(restarted.log.includes('resuming the interrupted transfer'), false, restarted.log)
    assert.equal(hgmigOk('image', 'list', '--data', b.dir).includes('big-os'), false)
  } catch (err) {
    reportAgents(agents, 5000)
    throw err
  } finally {
    frozen?.child.kill('SIGCONT')
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
