/**
 * p2p/store: the content-addressed image store. Public entry; see README.md here.
 */
export { createImageStore, ImageStore, DEFAULT_CHUNK_SIZE, IPFS_CHUNK_SIZE, type ImageStoreInit } from './image-store.js'
export { openImageStoreClient } from './client.js'
export * from './errors.js'
export * from './types.js'
export type { ProgressDetail, ProgressOptions, StoreOperation, StoreProgressEvent } from './progress.js'
export { isAllZero, zeroLeafCidOf } from './blocks.js'
export type { AdoptedLeaf } from './import-session.js'
