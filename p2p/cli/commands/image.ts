import { existsSync } from 'node:fs'
import { Command, Option } from 'commander'
import { dataDirLayout, loadGenesis } from '../../agent/index.js'
import { AgentNotRunningError, ApiClient, ApiImageStoreClient, apiFilePath } from '../../api/index.js'
import { LAYERS, openImageStoreClient, type ImageInfo, type ImageStoreClient, type Layer, type SimilarityReport, type StoreProgressEvent } from '../../store/index.js'

/** What the agent answers to a fetch (p2p/agent/transfers.ts FetchSummary). */
interface FetchSummaryView {
  image: ImageInfo
  chunksFetched: number
  bytesFetched: number
  chunksLocal: number
  chunksZero: number
  durationMs: number
  sources: Array<{ site: string, chunks: number, bytes: number, dropReason?: string }>
}
import type { GlobalOptions } from '../index.js'
import { formatBytes, ProgressBar } from '../progress-bar.js'
import { registerTransferCommands } from './image-transfers.js'

interface JsonOption { json?: boolean }

export function register (program: Command): void {
  const image = program.command('image').description('the site\'s VM image store: OS, WE and UD images as content-addressed chunk DAGs')
  const jsonOption = new Option('--json', 'machine-readable output')

  image.command('add')
    .description('import a disk image file (raw, qcow2 or any file, read as bytes) as one of the three layers')
    .argument('<file>', 'the image file')
    .addOption(new Option('--layer <layer>', 'os, we (needs an OS --base) or ud (needs a WE --base)').choices(LAYERS).makeOptionMandatory())
    .option('--base <image>', 'the base image: name, id or root CID')
    .option('--name <name>', 'a name unique in this store (default: the file name)')
    .option('--private', 'never advertise this image to the swarm')
    .addOption(new Option('--profile <profile>', 'ipfs: root CID as `ipfs add` prints it (CIDv0, 256 KiB, dag-pb leaves)').choices(['hgmig', 'ipfs']).default('hgmig'))
    .addOption(jsonOption)
    .action(async (file: string, options: { layer: Layer, base?: string, name?: string, private?: boolean, profile: 'hgmig' | 'ipfs' } & JsonOption, command: Command) => {
      await withStore(command, 'importing', async (store, progress, signal) => {
        const info = await store.add(file, { ...options, onProgress: progress.update, signal })
        progress.stop()
        print(options, info, () => `added ${info.name} (${info.id}) ${info.layer.toUpperCase()} ${formatBytes(info.size)} ${info.rootCid}`)
      })
    })

  simpleCommand(image.command('list').alias('ls').description('list the local images'), undefined,
    async (store) => await store.list(), imageTable)

  simpleCommand(image.command('show').description('details of one image: layer, base, size, chunks, what it shares'), '<image>',
    async (store, reference) => await store.show(reference), (d) => [
      `name       ${d.name}`, `id         ${d.id}`, `layer      ${d.layer.toUpperCase()}`,
      `base       ${d.base === null ? '-' : `${d.baseName ?? ''} (${d.base})`}`, `root       ${d.rootCid}`,
      `size       ${formatBytes(d.size)} (${d.size} bytes)`, `chunks     ${d.chunkCount} of ${formatBytes(d.chunkSize)}, ${d.distinctChunks} distinct (profile ${d.profile})`,
      `zero       ${formatBytes(d.zeroBytes)}`, `shared     ${formatBytes(d.sharedBytes)} also in other local images or zero`,
      `exclusive  ${formatBytes(d.exclusiveStoredBytes)} stored for this image alone`, `visibility ${d.public ? 'public' : 'private'}`,
      `created    ${d.created}`, `dependents ${d.dependents.length === 0 ? '-' : d.dependents.join(', ')}`
    ].join('\n'))

  image.command('export')
    .description('write an image back to a file, byte-identical (every chunk is checked on the way)')
    .argument('<image>', 'name, id or root CID')
    .argument('<out>', 'the file to write (refused if it exists, unless --force)')
    .option('--force', 'replace OUT if it exists')
    .addOption(jsonOption)
    .action(async (reference: string, out: string, options: { force?: boolean } & JsonOption, command: Command) => {
      await withStore(command, 'exporting', async (store, progress, signal) => {
        const result = await store.export(reference, out, { overwrite: options.force === true, onProgress: progress.update, signal })
        progress.stop()
        print(options, result, () => `wrote ${result.path} (${formatBytes(result.bytes)})`)
      })
    })

  image.command('verify')
    .description('re-hash every stored chunk of an image; exit status 1 if any is corrupt')
    .argument('<image>', 'name, id or root CID')
    .addOption(jsonOption)
    .action(async (reference: string, options: JsonOption, command: Command) => {
      await withStore(command, 'verifying', async (store, progress, signal) => {
        const report = await store.verify(reference, { onProgress: progress.update, signal })
        progress.stop()
        const bad = report.corrupt.length + report.corruptNodes.length
        print(options, report, () => [
          `${report.name}: ${report.chunksChecked} chunks (${formatBytes(report.bytesChecked)}) and ${report.innerNodesChecked} inner nodes checked, ${bad === 0 ? 'all good' : `${bad} corrupt`}`,
          ...report.corrupt.map((c) => `corrupt: image ${c.image}, chunk ${c.chunkIndex} at byte offset ${c.byteOffset} (${c.cid}): ${c.reason}`),
          ...report.corruptNodes.map((n) => `corrupt inner node ${n.cid}: ${n.reason}`)
        ].join('\n'))
        if (bad > 0) process.exitCode = 1
      })
    })

  image.command('similarity')
    .description('bytes of A also in B, at chunk granularity, per layer (the paper\'s (m, n)); with --matrix, every pair')
    .argument('[images...]', 'A and B (name, id or root CID); with --matrix, the images to compare (default: all)')
    .option('--matrix', 'the similarity of every pair of the given (or all) images')
    .addOption(jsonOption)
    .action(async (references: string[], options: { matrix?: boolean } & JsonOption, command: Command) => {
      await withStore(command, '', async (store) => {
        if (options.matrix === true) {
          const matrix = await store.similarityMatrix(references.length === 0 ? undefined : references)
          print(options, matrix, () => matrix.images.map((img, i) =>
            `${img.name.padEnd(24)} ${(matrix.ratios[i] ?? []).map((r) => `${(100 * r).toFixed(1).padStart(6)}%`).join(' ')}`).join('\n'))
          return
        }
        if (references.length !== 2) command.error('hgmig: similarity takes two images (or --matrix)')
        const report = await store.similarity(references[0] as string, references[1] as string)
        print(options, report, () => similarityText(report))
      })
    })

  simpleCommand(image.command('presence').description('how much of an image is already at this site in other local images (or is zeros): what need not cross the WAN'), '<image>',
    async (store, reference) => await store.presence(reference),
    (p) => `${formatBytes(p.presentBytes)} of ${formatBytes(p.size)} (${(100 * p.ratio).toFixed(1)} %) already here, ${formatBytes(p.zeroBytes)} of it zeros`)

  simpleCommand(image.command('rm').alias('remove').description('remove an image; frees the chunks no other image uses (disk space comes back with gc)'), '<image>',
    async (store, reference) => await store.remove(reference),
    (r) => `removed ${r.name} (${r.image}): ${r.freedChunks} chunks freed, ${formatBytes(r.freedBytes)} to reclaim with 'hgmig image gc'`)

  image.command('swarm')
    .description('every image announced in the swarm: layer, size, which sites hold it, whether this site knows its chunk list; needs the running agent')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (options: JsonOption, command: Command) => {
      const { data } = command.optsWithGlobals<GlobalOptions>()
      const view = await (await ApiClient.forDataDir(data)).images()
      print(options, view, () => view.images.length === 0
        ? 'no image is announced in the swarm'
        : view.images.map((i) => `${i.name.padEnd(24)} ${i.layer.toUpperCase()}  ${formatBytes(i.size).padStart(10)}  ${i.public ? 'public ' : 'private'}  at ${i.holders.join(', ')}${i.local ? ' (here)' : ''}${i.manifest ? '' : ' — chunk list not known here yet'}  ${i.rootCid}`).join('\n'))
    })

  image.command('fetch')
    .description('pull an image another site announced (its base first) from every site that holds it; needs the running agent')
    .argument('<image>', 'its name or root CID, as `hgmig image swarm` lists them')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (reference: string, options: JsonOption, command: Command) => {
      const { data, json } = command.optsWithGlobals<GlobalOptions & JsonOption>()
      const client = await ApiClient.forDataDir(data)
      const progress = new ProgressBar('fetching', process.stderr.isTTY === true && json !== true)
      const controller = new AbortController()
      const cancel = (): void => { controller.abort() }
      process.once('SIGINT', cancel)
      try {
        const summary = await client.storeCall({ method: 'fetch', args: [reference] }, { signal: controller.signal, onProgress: (event) => { progress.update(event as StoreProgressEvent) } }) as FetchSummaryView
        progress.stop()
        print(options, summary, () => [
          `fetched ${summary.image.name} (${summary.image.rootCid}) ${formatBytes(summary.image.size)}: ${summary.chunksFetched} chunks (${formatBytes(summary.bytesFetched)}) over the network, ${summary.chunksLocal} already here, ${summary.chunksZero} all-zero, in ${(summary.durationMs / 1000).toFixed(1)} s`,
          ...summary.sources.map((source) => `  from ${source.site}: ${source.chunks} chunks, ${formatBytes(source.bytes)}${source.dropReason === undefined ? '' : ` (dropped: ${source.dropReason})`}`)
        ].join('\n'))
      } finally {
        progress.stop()
        process.off('SIGINT', cancel)
      }
    })

  image.command('replicate')
    .description('ask another site to pull an image (pre-warming it for a migration); it fetches in the background')
    .argument('<image>', 'its name or root CID')
    .requiredOption('--to <site>', 'the site that should hold it (name or peer id)')
    .addOption(new Option('--json', 'machine-readable output'))
    .action(async (reference: string, options: JsonOption & { to: string }, command: Command) => {
      const { data } = command.optsWithGlobals<GlobalOptions>()
      const result = await (await ApiClient.forDataDir(data)).storeCall({ method: 'replicate', args: [reference, options.to] }) as { site: string, rootCid: string, accepted: boolean }
      print(options, result, () => `${result.site} ${result.accepted ? 'is fetching' : 'declined'} ${result.rootCid}; its "hgmig image list" shows it when done`)
    })

  registerTransferCommands(image)

  image.command('gc')
    .description('delete chunks of unfinished imports and compact pack files to give disk space back')
    .addOption(jsonOption)
    .action(async (options: JsonOption, command: Command) => {
      await withStore(command, 'compacting', async (store, progress, signal) => {
        const r = await store.gc({ onProgress: progress.update, signal })
        progress.stop()
        print(options, r, () => `${r.orphansDeleted} orphan chunks deleted, ${r.packsCompacted} pack files compacted, ${formatBytes(r.bytesReclaimed)} reclaimed`)
      })
    })

  simpleCommand(image.command('stats').description('the store as a whole: images, chunks, bytes on disk'), undefined,
    async (store) => await store.stats(),
    (s) => `${s.images} images, ${s.chunks} chunks (${s.zeroChunks} all-zero), ${formatBytes(s.storedBytes)} stored in ${s.packFiles} pack files, ${formatBytes(s.deadBytes)} dead, chunk size ${formatBytes(s.chunkSize)}`)
}

/** A command that takes at most one IMAGE, runs one store call and prints its result (as JSON with --json). */
function simpleCommand<T> (command: Command, imageArgument: '<image>' | undefined, run: (store: ImageStoreClient, reference: string, signal: AbortSignal) => Promise<T>, text: (value: T) => string): void {
  if (imageArgument !== undefined) command.argument(imageArgument, 'name, id or root CID')
  command.addOption(new Option('--json', 'machine-readable output'))
  command.action(async (...args: unknown[]) => {
    const self = args[args.length - 1] as Command
    const options = args[args.length - 2] as JsonOption
    const reference = imageArgument === undefined ? '' : args[0] as string
    await withStore(self, '', async (store, _progress, signal) => {
      const value = await run(store, reference, signal)
      print(options, value, () => text(value))
    })
  })
}

/** Opens the store of --data, runs the action with a progress bar and Ctrl-C wired to an AbortSignal, closes the store. */
async function withStore (command: Command, label: string, action: (store: ImageStoreClient, progress: ProgressBar, signal: AbortSignal) => Promise<void>): Promise<void> {
  const { data, json } = command.optsWithGlobals<GlobalOptions & JsonOption>()
  const store = await openStore(data)
  const progress = new ProgressBar(label, process.stderr.isTTY === true && json !== true && label !== '')
  const controller = new AbortController()
  const cancel = (): void => { controller.abort() }
  process.once('SIGINT', cancel)
  try {
    await action(store, progress, controller.signal)
  } finally {
    progress.stop()
    process.off('SIGINT', cancel)
    await store.close()
  }
}

/**
 * The running agent's store through its API when an agent holds the data directory (as kubo's CLI
 * does with its daemon: imports are then announced to the swarm); the store itself otherwise.
 */
async function openStore (data: string): Promise<ImageStoreClient> {
  if (existsSync(apiFilePath(data))) {
    try {
      return new ApiImageStoreClient(await ApiClient.forDataDir(data))
    } catch (err) {
      // A stale api.json (the agent died): the store is free, use it directly.
      if (!(err instanceof AgentNotRunningError)) throw err
    }
  }
  // A site that belongs to a swarm chunks at the swarm's size (its genesis says which).
  const layout = dataDirLayout(data)
  const chunkSize = existsSync(layout.genesis) ? (await loadGenesis(layout)).chunkSize : undefined
  return await openImageStoreClient(data, chunkSize === undefined ? {} : { chunkSize })
}

function print (options: JsonOption, value: unknown, text: () => string): void {
  process.stdout.write(`${options.json === true ? JSON.stringify(value) : text()}\n`)
}

function imageTable (images: ImageInfo[]): string {
  if (images.length === 0) return 'no images'
  const byId = new Map(images.map((i) => [i.id, i.name]))
  const rows = images.map((i) => [i.id, i.name, i.layer.toUpperCase(), i.base === null ? '-' : byId.get(i.base) ?? i.base, formatBytes(i.size), i.public ? 'public' : 'private', i.rootCid])
  const header = ['ID', 'NAME', 'LAYER', 'BASE', 'SIZE', 'VISIBILITY', 'ROOT CID']
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] as string).length)))
  return [header, ...rows].map((r) => r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c] as number)).join('  ')).join('\n')
}

function similarityText (report: SimilarityReport): string {
  const pct = (r: number): string => `${(100 * r).toFixed(1)} %`
  return [
    `${pct(report.ratio)} of ${report.a} is in ${report.b} (${formatBytes(report.sharedBytes)}; ${pct(report.dataRatio)} of its non-zero data); ${pct(report.reverseRatio)} of ${report.b} is in ${report.a}; chunk size ${formatBytes(report.chunkSize)}`,
    ...report.layers.map((l) => `  ${l.layer.toUpperCase()}: ${pct(l.ratio)} of all bytes, ${pct(l.dataRatio)} of the non-zero data (${l.a} in ${l.b})`)
  ].join('\n')
}
