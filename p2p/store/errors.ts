/**
 * Named errors of the image store. Each has a stable `code` so that callers (the CLI, later the
 * agent's API) can tell them apart without parsing messages. Every one of them leaves the store
 * as it was before the failed call.
 */

export class ImageStoreError extends Error {
  override readonly name: string = 'ImageStoreError'
  readonly code: string = 'ERR_IMAGE_STORE'
}

/** Base of the errors that carry nothing but their message: a name and a stable code. */
function coded (name: string, code: string): typeof ImageStoreError {
  return class extends ImageStoreError {
    override readonly name: string = name
    override readonly code: string = code
  }
}

/** Another process (or another store object in this process) holds the store directory. */
export class StoreLockedError extends ImageStoreError {
  override readonly name = 'StoreLockedError'
  override readonly code = 'ERR_STORE_LOCKED'
  constructor (readonly directory: string, readonly holderPid: number | undefined) {
    super(`the image store in ${directory} is in use by ${holderPid === undefined ? 'another store object in this process' : `process ${holderPid}`}; stop it (or use its agent) and try again`)
  }
}

/** The store was used before `open()` or after `close()`. */
export class StoreClosedError extends coded('StoreClosedError', 'ERR_STORE_CLOSED') {}

/** The store on disk was written by a newer hgmig, or its files do not fit together. */
export class StoreFormatError extends coded('StoreFormatError', 'ERR_STORE_FORMAT') {}

/** An image reference (name, id or root CID) matched nothing, or more than one image. */
export class ImageNotFoundError extends ImageStoreError {
  override readonly name = 'ImageNotFoundError'
  override readonly code = 'ERR_IMAGE_NOT_FOUND'
  constructor (readonly reference: string, readonly candidates: string[]) {
    super(`no image matches "${reference}"${candidates.length > 0 ? `; images here: ${candidates.join(', ')}` : '; the store holds no images'}`)
  }
}

export class AmbiguousImageError extends ImageStoreError {
  override readonly name = 'AmbiguousImageError'
  override readonly code = 'ERR_IMAGE_AMBIGUOUS'
  constructor (readonly reference: string, readonly candidates: string[]) {
    super(`"${reference}" matches more than one image: ${candidates.join(', ')}; use a longer id or the root CID`)
  }
}

/** A WE image must name an OS base, a UD image a WE base, an OS image no base. */
export class LayerRuleError extends coded('LayerRuleError', 'ERR_LAYER_RULE') {}

/** The name is already used by another local image. */
export class ImageExistsError extends coded('ImageExistsError', 'ERR_IMAGE_EXISTS') {}

/** The image is the base of other images; remove those first. */
export class ImageInUseError extends ImageStoreError {
  override readonly name = 'ImageInUseError'
  override readonly code = 'ERR_IMAGE_IN_USE'
  constructor (readonly image: string, readonly dependents: string[]) {
    super(`image ${image} is the base of ${dependents.join(', ')}; remove ${dependents.length > 1 ? 'those' : 'that'} first`)
  }
}

/** The file to import cannot be used: unreadable, not a regular file, empty. */
export class ImportSourceError extends coded('ImportSourceError', 'ERR_IMPORT_SOURCE') {}

/** Bad option values (chunk size, layer name, profile...). */
export class InvalidOptionError extends coded('InvalidOptionError', 'ERR_INVALID_OPTION') {}

/** The disk is full: the operation was rolled back; nothing already stored was lost. */
export class StoreFullError extends coded('StoreFullError', 'ERR_STORE_FULL') {}

/**
 * A stored chunk does not hash to its CID (or is missing). Never returned as data: reads fail
 * with this error, and `verify` lists every such chunk.
 */
export class CorruptChunkError extends ImageStoreError {
  override readonly name = 'CorruptChunkError'
  override readonly code = 'ERR_CORRUPT_CHUNK'
  constructor (readonly cid: string, readonly detail: string, readonly location?: ChunkLocation) {
    super(location === undefined
      ? `chunk ${cid} is corrupt: ${detail}`
      : `image ${location.image}: chunk ${location.chunkIndex} at byte offset ${location.byteOffset} (${cid}) is corrupt: ${detail}`)
  }
}

export interface ChunkLocation {
  image: string
  chunkIndex: number
  byteOffset: number
}

/**
 * Registering adopted leaves (`registerAdopted`): leaves of the manifest are not in the store
 * (never adopted, or lost with a power cut): nothing was registered; store them and try again.
 */
export class MissingChunksError extends ImageStoreError {
  override readonly name = 'MissingChunksError'
  override readonly code = 'ERR_MISSING_CHUNKS'
  constructor (readonly rootCid: string, readonly positions: number[]) {
    super(`${positions.length} leaf chunk(s) of ${rootCid} are not in the store (positions ${positions.slice(0, 8).join(', ')}${positions.length > 8 ? ', ...' : ''}): the image was not registered`)
  }
}

/** Registering adopted leaves: the manifest's leaves build another root CID than the one named. Nothing was registered. */
export class RootMismatchError extends ImageStoreError {
  override readonly name = 'RootMismatchError'
  override readonly code = 'ERR_ROOT_MISMATCH'
  constructor (readonly expected: string, readonly actual: string) {
    super(`the leaves listed for ${expected} build ${actual}: the manifest does not belong to this root`)
  }
}

/** The operation was cancelled through its AbortSignal; nothing was registered. */
export class AbortError extends ImageStoreError {
  override readonly name = 'AbortError'
  override readonly code = 'ABORT_ERR'
  constructor (message = 'the operation was aborted') {
    super(message)
  }
}
