import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createImageStore, StoreFullError } from '../p2p/store/index.js'

test('disk full: the import fails with StoreFullError and the store is unharmed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hgmig-store-full-'))
  const small = join(dir, 'small-disk')
  mkdirSync(small)
  // A real full disk: a 12 MiB tmpfs. Mounting needs root; elsewhere the test is skipped, not faked.
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', small], { encoding: 'utf8' })
  if (mounted.status !== 0) {
    t.skip(`cannot mount a small tmpfs here (${mounted.stderr.trim() || 'mount failed'})`)
    return
  }
  try {
    const store = createImageStore({ directory: join(small, 'store') })
    await store.open()
    try {
      const fits = join(dir, 'fits.img')
      writeFileSync(fits, randomBytes(3 << 20))
      const kept = await store.add(fits, { layer: 'os' })
      const tooBig = join(dir, 'too-big.img')
      writeFileSync(tooBig, randomBytes(24 << 20))
      await assert.rejects(store.add(tooBig, { layer: 'os' }), (err: unknown) => err instanceof StoreFullError && /no space left/.test(err.message))
      assert.deepEqual((await store.list()).map((i) => i.id), [kept.id], 'nothing half-registered')
      const report = await store.verify(kept.id)
      assert.equal(report.corrupt.length + report.corruptNodes.length, 0, 'the image stored before is intact')
      const out = join(dir, 'out.img')
      await store.export(kept.id, out)
      assert.ok(readFileSync(out).equals(readFileSync(fits)))
    } finally {
      await store.close()
    }
  } finally {
    spawnSync('umount', [small])
    rmSync(dir, { recursive: true, force: true })
  }
})
