/** Temporary directories for a test process, removed when it exits (the agents' data dirs piled up in /tmp by the thousand). */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const created: string[] = []
let registered = false

/** A new directory under the OS's temp dir, named `prefix` + random; gone once this process exits. */
export function tempDir (prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  created.push(dir)
  if (!registered) {
    registered = true
    // 'exit' runs synchronously, after the test runner is done with its files and children.
    process.once('exit', () => { for (const path of created) rmSync(path, { recursive: true, force: true }) })
  }
  return dir
}
