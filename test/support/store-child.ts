/**
 * A second process for the store's tests: `import DATA FILE` imports FILE into DATA/store and
 * prints each progress event's bytesDone (the crash test kills it with SIGKILL mid-way);
 * `hold DATA` opens the store, prints "ready" and waits (the lock test).
 */
import { join } from 'node:path'
import { createImageStore } from '../../p2p/store/index.js'

const [mode, data, file] = process.argv.slice(2)
const store = createImageStore({ directory: join(data as string, 'store') })
await store.open()
if (mode === 'import') {
  await store.add(file as string, { layer: 'os', onProgress: (event) => { process.stdout.write(`${event.detail.bytesDone}\n`) } })
  process.stdout.write('done\n')
  await store.close()
} else {
  process.stdout.write('ready\n')
  setInterval(() => {}, 1 << 30)
}
