import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AgentProcess, foundingSwarm, hgmig, hgmigOk as cli, reportAgents, type FoundingSite } from './support/agent-process.js'
import { randomImage, writePlan } from './support/image-generator.js'
import { eventually } from './support/peer-process.js'

test('through the agents: a synthetic VM is created at A, migrated to B from the CLI, runs there, the swarm records it, and its log exports', async () => {
  const agents: AgentProcess[] = []
  const files = mkdtempSync(join(tmpdir(), 'hgmig-migrate-'))
  try {
    const [a, b, c] = await foundingSwarm(['site-a', 'site-b', 'site-c'], agents) as [FoundingSite, FoundingSite, FoundingSite]
    const osFile = join(files, 'os.img')
    const weFile = join(files, 'we.img')
    await writePlan(randomImage('os', 64, 0.25, 21), osFile)
    await writePlan(randomImage('we', 32, 0, 22), weFile)
    cli('image', 'add', osFile, '--layer', 'os', '--name', 'os', '--data', a.dir)
    cli('image', 'add', weFile, '--layer', 'we', '--base', 'os', '--name', 'we', '--data', a.dir)
    // B already holds the OS image: only the WE layer's chunks need to travel.
    cli('image', 'add', osFile, '--layer', 'os', '--name', 'os', '--data', b.dir)
    for (const site of [a, b]) {
      await eventually(`${site.name} knows both chunk lists and holdings`, async () => {
        const view = await site.client.images()
        return view.images.length === 2 && view.images.every((i) => i.manifest) && view.images.find((i) => i.name === 'os')?.holders.length === 2 ? true : undefined
      }, 120_000)
    }

    const vm = JSON.parse(cli('vm', 'create', '--os', 'os', '--we', 'we', '--memory', '8MiB', '--workload', 'dynamic', '--name', 'web', '--json', '--data', a.dir)) as { name: string }
    assert.equal(vm.name, 'web')
    assert.match(cli('vm', 'ls', '--data', a.dir), /^web\s/m)
    const suggestion = JSON.parse(cli('migrate', 'web', '--suggest', '--json', '--data', a.dir)) as unknown
    assert.ok(JSON.stringify(suggestion).includes('site-b'), 'site-b is among the suggested targets')
    // The estimate follows the bandwidth asked about: a tenth of it, more time for the same bytes.
    const atFull = await a.client.migrationPlan('web', 'site-b', { bandwidth: 100_000_000 }) as { estimatedSeconds: number, bytesToSend: { total: number } }
    const atTenth = await a.client.migrationPlan('web', 'site-b', { bandwidth: 10_000_000 }) as { estimatedSeconds: number, bytesToSend: { total: number } }
    assert.equal(atTenth.bytesToSend.total, atFull.bytesToSend.total)
    assert.ok(atTenth.estimatedSeconds > atFull.estimatedSeconds, `${atTenth.estimatedSeconds} s at 10 MB/s vs ${atFull.estimatedSeconds} s at 100 MB/s`)
    await assert.rejects(a.client.migrationPlan('web', 'site-b', { bandwidth: -5 }), /"bandwidth" must be a positive integer/)
    // A name the swarm's migration record could not hold is refused when the VM is created, not after its migration.
    await assert.rejects(a.client.createVm({ name: 'v'.repeat(129), os: 'os', we: 'we', memoryBytes: 8 << 20 }), /"name" must be at most 128 characters \(got 129\)/)

    const result = JSON.parse(cli('migrate', 'web', '--to', 'site-b', '--max-downtime', '300ms', '--json', '--data', a.dir)) as { id: string, state: string }
    assert.equal(result.state, 'completed', JSON.stringify(result))
    assert.match(cli('vm', 'ls', '--data', b.dir), /^web\s.*running/m)
    // Every site's history shows the migration, by consensus.
    for (const site of [a, b, c]) {
      await eventually(`${site.name} has the migration in its history`, async () => {
        const { history } = await site.client.migrations() as { history: Array<{ migration: string, from: string, to: string }> }
        return history.some((h) => h.migration === result.id && h.from === 'site-a' && h.to === 'site-b') ? true : undefined
      }, 120_000)
    }
    const statuses = await eventually('the same state hash everywhere', async () => {
      const all = await Promise.all([a, b, c].map(async (s) => await s.client.status()))
      return all.every((s) => s.stateHash === all[0]!.stateHash) ? all : undefined
    }, 120_000)
    assert.equal(new Set(statuses.map((s) => s.stateHash)).size, 1)

    const out = join(files, 'log.ndjson')
    cli('logs', 'export', out, '--format', 'ndjson', '--migration', result.id, '--data', a.dir)
    const phases = new Set(readFileSync(out, 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { phase: string | null }).phase))
    for (const phase of ['plan', 'transfer', 'precopy', 'switchover']) assert.ok(phases.has(phase), `the log has phase ${phase} (has ${[...phases].join(', ')})`)
    assert.equal(existsSync(`${out}.partial`), false, 'the export was renamed into place')
    // "-" writes to stdout; an export that cannot be written says so and leaves nothing behind.
    const firstLine = cli('logs', 'export', '-', '--format', 'ndjson', '--migration', result.id, '--data', a.dir).split('\n')[0]
    assert.equal(firstLine, readFileSync(out, 'utf8').split('\n')[0])
    const unwritable = join(files, 'no-such-dir', 'log.csv')
    const failed = hgmig('logs', 'export', unwritable, '--format', 'csv', '--data', a.dir)
    assert.notEqual(failed.status, 0)
    assert.match(failed.stderr, /log export to .*no-such-dir\/log\.csv failed, nothing written: .*ENOENT/)
    assert.equal(existsSync(join(files, 'no-such-dir')), false)
    // A reader polling the log (the UI) asks only for entries after the last it saw.
    const whole = JSON.parse(await a.client.exportLog('json')) as { entries: Array<{ seq: number }> }
    const middle = whole.entries[Math.floor(whole.entries.length / 2)]!.seq
    const newer = JSON.parse(await a.client.exportLog('json', { after: middle })) as { entries: Array<{ seq: number }> }
    const counted = await a.client.exportLogStream('ndjson', { after: middle })
    assert.equal(counted.rows, newer.entries.length, 'the agent counts the rows it will send')
    await counted.body.cancel()
    assert.deepEqual(newer.entries.map((e) => e.seq), whole.entries.filter((e) => e.seq > middle).map((e) => e.seq))
    await assert.rejects(a.client.exportLog('json', { after: -1 }), /query "after" must be an integer of at least 0, got "-1"/)

    // The base layer came through the block exchange from site-a: the target's log names the source.
    const targetLog = join(files, 'target.ndjson')
    cli('logs', 'export', targetLog, '--format', 'ndjson', '--migration', result.id, '--data', b.dir)
    const baseDone = readFileSync(targetLog, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { data: { baseDone?: boolean, sources?: Array<{ site: string, bytes: number }> } }).find((e) => e.data.baseDone === true)
    assert.ok(baseDone?.data.sources?.some((s) => s.site === 'site-a' && s.bytes > 0), `base chunks from site-a: ${JSON.stringify(baseDone)}`)
    // The source keeps those per-source figures in its record once the migration is over.
    const { migrations: atSource } = await a.client.migrations() as { migrations: Array<{ id: string, result?: { sources?: Array<{ site: string, bytes: number }> } }> }
    const record = atSource.find((m) => m.id === result.id)
    assert.ok(record?.result?.sources?.some((s) => s.site === 'site-a' && s.bytes > 0), `per-source figures at the source: ${JSON.stringify(record?.result)}`)

    // Live statistics where the VM runs now; destroyed there, it is gone.
    const stats = JSON.parse(cli('vm', 'stats', 'web', '--json', '--data', b.dir)) as { state: string, pagesWritten: number }
    assert.equal(stats.state, 'running')
    assert.ok(stats.pagesWritten > 0)
    cli('vm', 'destroy', 'web', '--data', b.dir)
    assert.doesNotMatch(cli('vm', 'ls', '--data', b.dir), /^web\s/m)

    // Parameters mid-flight from the CLI: a migration capped at 1 MiB/s with a 50 ms downtime limit
    // gets its cap lifted and a 2 s limit while it pre-copies, and completes.
    cli('vm', 'create', '--os', 'os', '--we', 'we', '--memory', '32MiB', '--workload', 'dynamic', '--name', 'slow', '--data', a.dir)
    const slow = JSON.parse(cli('migrate', 'slow', '--to', 'site-b', '--bandwidth', '1MiB', '--max-downtime', '50ms', '--no-wait', '--json', '--data', a.dir)) as { id: string }
    const sourceRow = async (): Promise<{ phase: string, state: string, result: { parameters?: unknown } } | undefined> =>
      ((await a.client.migrations()).migrations as Array<{ id: string, role: string, phase: string, state: string, result: { parameters?: unknown } }>).find((m) => m.id === slow.id && m.role === 'source')
    await eventually('the slow migration to pre-copy', async () => (await sourceRow())?.phase === 'precopy' ? true : undefined, 120_000)
    const refused = hgmig('migration', 'set', slow.id, '--max-downtime', '0ms', '--data', a.dir)
    assert.notEqual(refused.status, 0)
    assert.match(refused.stderr, /maxDowntimeMs/)
    const updated = JSON.parse(cli('migration', 'set', slow.id, '--bandwidth', '0', '--max-downtime', '2s', '--json', '--data', a.dir)) as { result: { parameters?: unknown } }
    assert.deepEqual(updated.result.parameters, { maxBandwidth: 0, downtimeLimitMs: 2000 })
    const finished = await eventually('the slow migration to end', async () => {
      const row = await sourceRow()
      return row !== undefined && row.state !== 'running' ? row : undefined
    }, 180_000)
    assert.equal(finished.state, 'completed')

    // Bad requests are refused with the reason, and the agent goes on.
    const unknown = hgmig('migrate', 'no-such-vm', '--to', 'site-b', '--data', a.dir)
    assert.notEqual(unknown.status, 0)
    assert.match(unknown.stderr, /no-such-vm/)
    const nowhere = hgmig('migrate', 'web', '--to', 'atlantis', '--data', b.dir)
    assert.match(nowhere.stderr, /no current member named "atlantis"/)
  } catch (err) {
    reportAgents(agents, 6000)
    throw err
  } finally {
    await Promise.all(agents.map(async (agent) => { await agent.kill() }))
  }
})
