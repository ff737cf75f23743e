import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createImageStore } from '../p2p/store/index.js'
import { randomImage, writePlan } from './support/image-generator.js'

const child = fileURLToPath(new URL('./support/store-child.js', import.meta.url))

function packBytes (storeDirectory: string): number {
  const packs = join(storeDirectory, 'packs')
  return readdirSync(packs).reduce((sum, name) => sum + statSync(join(packs, name)).size, 0)
}

/** Runs an import in a child process and kills it (SIGKILL) once it has read `killAt` bytes. */
async function importAndKill (data: string, file: string, killAt: number): Promise<{ lastProgress: number, finished: boolean }> {
  const proc = spawn(process.execPath, [child, 'import', data, file], { stdio: ['ignore', 'pipe', 'inherit'] })
  let lastProgress = 0
  let finished = false
  let pending = ''
  proc.stdout.setEncoding('utf8')
  proc.stdout.on('data', (text: string) => {
    pending += text
    const lines = pending.split('\n')
    pending = lines.pop() as string
    for (const line of lines) {
      if (line === 'done') finished = true
      else lastProgress = Number(line)
      if (lastProgress >= killAt) proc.kill('SIGKILL')
    }
  })
  await new Promise((resolve) => proc.on('exit', resolve))
  return { lastProgress, finished }
}

test('an import killed with SIGKILL mid-way leaves no image; running it again reuses the stored chunks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-store-crash-'))
  const storeDirectory = join(dir, 'store')
  // 320 MiB of distinct chunks: several 64 MiB batches are indexed before the kill at 60 %.
  const plan = randomImage('big', 5120, 0, 99)
  const file = join(dir, 'big.img')
  await writePlan(plan, file)
  const killed = await importAndKill(dir, file, plan.size * 0.6)
  assert.equal(killed.finished, false, 'the child was killed before it finished')
  assert.ok(killed.lastProgress >= plan.size * 0.6 && killed.lastProgress < plan.size)

  const store = createImageStore({ directory: storeDirectory })
  await store.open()
  try {
    assert.deepEqual(await store.list(), [], 'no image registered, not even half')
    const afterCrash = await store.stats()
    assert.ok(afterCrash.chunks > 0, 'chunks of the batches indexed before the kill are kept')
    assert.equal(afterCrash.storedLeafBytes, 0, 'and no image refers to them')
    assert.equal(packBytes(storeDirectory), afterCrash.storedBytes, 'bytes written after the last indexed batch were cut off')

    const info = await store.add(file, { layer: 'os' })
    const afterRetry = await store.stats()
    const written = packBytes(storeDirectory) - afterCrash.storedBytes
    assert.ok(written < plan.size - afterCrash.storedBytes + plan.size / 100, `the retry wrote only what was missing (${written} bytes)`)
    assert.equal(afterRetry.storedLeafBytes, plan.size, 'every chunk stored exactly once')
    assert.equal(packBytes(storeDirectory), afterRetry.storedBytes, 'no garbage in the pack files')
    const report = await store.verify(info.id)
    assert.equal(report.corrupt.length + report.corruptNodes.length, 0)
    assert.equal(report.chunksChecked, 5120)
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
