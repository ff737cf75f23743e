/**
 * A site's persistent libp2p identity: an Ed25519 key in the data directory, readable only by
 * its owner. The same key signs the site's hashgraph events.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { SwarmConfigError } from './errors.js'

export async function loadOrCreateIdentity (path: string): Promise<PrivateKey> {
  let bytes: Buffer | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new SwarmConfigError(`cannot read identity ${path}: ${(err as Error).message}`)
  }
  if (bytes !== undefined) {
    const mode = (await stat(path)).mode & 0o777
    // Loosened permissions mean someone could have read the key: refuse rather than sign with it.
    if ((mode & 0o077) !== 0) throw new SwarmConfigError(`identity ${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 on it`)
    try {
      const key = privateKeyFromProtobuf(bytes)
      if (key.type !== 'Ed25519') throw new Error(`key type ${key.type}, expected Ed25519`)
      return key
    } catch (err) {
      throw new SwarmConfigError(`identity ${path} is not a valid libp2p Ed25519 key: ${(err as Error).message}`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  await chmod(path, 0o600)
  return key
}
