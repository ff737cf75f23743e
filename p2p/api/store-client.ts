/**
 * The image store behind a running agent, with the store's own interface: the CLI's image
 * commands use this when an agent holds the data directory, and the store itself otherwise.
 */
import { resolve } from 'node:path'
import type { AddImageOptions, ExportOptions, ImageStoreClient, ImportSource, ProgressOptions, AbortOptions, StoreProgressEvent } from '../store/index.js'
import type { ApiClient } from './client.js'
import type { StoreMethod } from './store-rpc.js'

type Returned<M extends keyof ImageStoreClient> = Awaited<ReturnType<ImageStoreClient[M]>>

export class ApiImageStoreClient implements ImageStoreClient {
  constructor (private readonly client: ApiClient) {}

  async add (source: ImportSource, options: AddImageOptions): Promise<Returned<'add'>> {
    if (typeof source !== 'string') throw new TypeError('through the agent, an image is imported from a file path')
    const { onProgress, signal, layer, base, name, profile } = options
    // The agent runs on this host but not in this directory: paths travel absolute.
    return await this.call('add', [resolve(source), { layer, base, name, private: options.private, profile }], { onProgress, signal })
  }

  async list (): Promise<Returned<'list'>> { return await this.call('list', []) }
  async show (image: string): Promise<Returned<'show'>> { return await this.call('show', [image]) }

  async export (image: string, out: string, options: ExportOptions = {}): Promise<Returned<'export'>> {
    const { onProgress, signal, overwrite } = options
    return await this.call('export', [image, resolve(out), { overwrite }], { onProgress, signal })
  }

  async verify (image: string, options: ProgressOptions & AbortOptions = {}): Promise<Returned<'verify'>> {
    return await this.call('verify', [image], options)
  }

  async similarity (a: string, b: string): Promise<Returned<'similarity'>> { return await this.call('similarity', [a, b]) }
  async similarityMatrix (images?: string[]): Promise<Returned<'similarityMatrix'>> { return await this.call('similarityMatrix', images === undefined ? [] : [images]) }
  async presence (image: string): Promise<Returned<'presence'>> { return await this.call('presence', [image]) }
  async remove (image: string): Promise<Returned<'remove'>> { return await this.call('remove', [image]) }
  async gc (options: ProgressOptions & AbortOptions = {}): Promise<Returned<'gc'>> { return await this.call('gc', [], options) }
  async stats (): Promise<Returned<'stats'>> { return await this.call('stats', []) }
  /** Nothing to close: the agent keeps its store. */
  async close (): Promise<void> {}

  private async call<T> (method: StoreMethod, args: unknown[], options: ProgressOptions & AbortOptions = {}): Promise<T> {
    return await this.client.storeCall({ method, args }, {
      signal: options.signal,
      onProgress: (event) => { options.onProgress?.(event as StoreProgressEvent) }
    }) as T
  }
}
