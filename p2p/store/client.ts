import { join } from 'node:path'
import { createImageStore } from './image-store.js'
import type { ImageStoreClient } from './types.js'

/**
 * The image commands' way in. Today no agent exists, so this opens the store of a data
 * directory directly (taking its lock: a second writer gets StoreLockedError). When the agent
 * arrives, this is where the CLI will first look for a running agent on that directory and talk
 * to its local API instead, behind the same interface.
 */
export async function openImageStoreClient (dataDirectory: string, options: { chunkSize?: number } = {}): Promise<ImageStoreClient> {
  const store = createImageStore({ directory: join(dataDirectory, 'store'), ...options })
  await store.open()
  return store
}
