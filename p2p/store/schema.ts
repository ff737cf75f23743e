import type Database from 'better-sqlite3'
import { StoreFormatError } from './errors.js'

/**
 * Versioned schema. `PRAGMA user_version` holds how many migrations ran; each migration runs in
 * its own transaction together with the version bump, so a crash leaves either the old or the new
 * schema. Migrations are append-only: never edit one that has shipped, add the next.
 */
const MIGRATIONS: string[] = [
  // 1: the first schema.
  `
  CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

  -- Append-only pack files (packs/<id>.pack). dead_bytes: bytes of chunks deleted since, reclaimed by compaction.
  CREATE TABLE packs (
    id INTEGER PRIMARY KEY,
    bytes INTEGER NOT NULL DEFAULT 0,
    dead_bytes INTEGER NOT NULL DEFAULT 0
  );

  -- Every block of every local DAG (leaves and inner nodes), stored once.
  -- zero_data_length: not NULL for a leaf whose file data is all zero bytes: such blocks are never
  -- written, they are rebuilt on read. refcount: how many local images use the block; 0 = left by
  -- an import that did not finish (kept so that running it again reuses it; 'gc' deletes it).
  -- present: 1 when the bytes are here (a later issue records chunks known but not yet fetched).
  CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    cid BLOB NOT NULL UNIQUE,
    length INTEGER NOT NULL,
    zero_data_length INTEGER,
    pack INTEGER REFERENCES packs(id),
    offset INTEGER,
    refcount INTEGER NOT NULL DEFAULT 0,
    present INTEGER NOT NULL DEFAULT 1,
    CHECK ((zero_data_length IS NULL) = (pack IS NOT NULL))
  );
  CREATE INDEX chunks_by_pack ON chunks(pack, offset) WHERE pack IS NOT NULL;
  CREATE INDEX chunks_unreferenced ON chunks(id) WHERE refcount = 0;

  -- Complete local images only: an import registers its image in its last transaction.
  CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    layer TEXT NOT NULL CHECK (layer IN ('os', 'we', 'ud')),
    base INTEGER REFERENCES images(id),
    root_cid TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    profile TEXT NOT NULL,
    public INTEGER NOT NULL,
    created INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    zero_bytes INTEGER NOT NULL
  );
  CREATE INDEX images_by_root ON images(root_cid);
  CREATE INDEX images_by_base ON images(base);

  -- The manifest: each image's leaves in file order (chunk k covers bytes [k*chunk_size, (k+1)*chunk_size)).
  CREATE TABLE image_chunks (
    image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chunk INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (image, position)
  ) WITHOUT ROWID;
  -- The inner (non-leaf) DAG nodes of each image, so that they are reference-counted too.
  CREATE TABLE image_nodes (
    image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    chunk INTEGER NOT NULL REFERENCES chunks(id),
    PRIMARY KEY (image, chunk)
  ) WITHOUT ROWID;

  -- Imports under way. A crash leaves rows here; opening the store deletes them (the chunks stay).
  CREATE TABLE pending_imports (id INTEGER PRIMARY KEY, source TEXT NOT NULL, started INTEGER NOT NULL);
  CREATE TABLE pending_chunks (
    import INTEGER NOT NULL REFERENCES pending_imports(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    PRIMARY KEY (import, position)
  ) WITHOUT ROWID;
  CREATE TABLE pending_nodes (
    import INTEGER NOT NULL REFERENCES pending_imports(id) ON DELETE CASCADE,
    chunk INTEGER NOT NULL,
    PRIMARY KEY (import, chunk)
  ) WITHOUT ROWID;

  -- Manifests of images held by other sites (gossiped; filled by a later issue). Kept apart from
  -- local images: their chunks need not be here, so they name CIDs, not rows of 'chunks'.
  CREATE TABLE remote_images (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    root_cid TEXT NOT NULL,
    name TEXT,
    layer TEXT NOT NULL CHECK (layer IN ('os', 'we', 'ud')),
    base_root_cid TEXT,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    received INTEGER NOT NULL,
    UNIQUE (site, root_cid)
  );
  CREATE TABLE remote_image_chunks (
    remote_image INTEGER NOT NULL REFERENCES remote_images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    cid BLOB NOT NULL,
    PRIMARY KEY (remote_image, position)
  ) WITHOUT ROWID;

  -- Shared bytes of image a (by root CID) found in image b. Root CIDs name content, so an entry
  -- never goes stale; rows of removed images are deleted with them.
  CREATE TABLE similarity_cache (
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    shared_bytes INTEGER NOT NULL,
    computed INTEGER NOT NULL,
    PRIMARY KEY (a, b)
  ) WITHOUT ROWID;
  `,
  // 2: similarity of the data alone (all-zero chunks left out), beside the similarity of all bytes.
  `
  ALTER TABLE similarity_cache ADD COLUMN shared_data_bytes INTEGER;
  `,
  // 3: leaves adopted from the network (p2p/exchange) before their image exists. Each adoption (one
  // transfer) pins the chunks it stored or found here, so that gc and the removal of another image
  // leave them (their refcount is 0 until the image is registered); releasing it frees them.
  `
  CREATE TABLE adoptions (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, created INTEGER NOT NULL);
  CREATE TABLE adoption_chunks (
    chunk INTEGER NOT NULL REFERENCES chunks(id),
    adoption INTEGER NOT NULL REFERENCES adoptions(id) ON DELETE CASCADE,
    PRIMARY KEY (chunk, adoption)
  ) WITHOUT ROWID;
  CREATE INDEX adoption_chunks_by_adoption ON adoption_chunks(adoption);
  `
]

export const SCHEMA_VERSION = MIGRATIONS.length

export function migrate (db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > SCHEMA_VERSION) {
    throw new StoreFormatError(`the store's schema is version ${current}, newer than this hgmig understands (${SCHEMA_VERSION}); upgrade hgmig`)
  }
  for (let version = current; version < SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version] as string)
      db.pragma(`user_version = ${version + 1}`)
    }).immediate()
  }
}
