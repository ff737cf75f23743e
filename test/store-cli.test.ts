import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ImageDetails, ImageInfo, RemoveResult, SimilarityReport, VerifyReport } from '../p2p/store/index.js'

const tempDirs: string[] = []
after(() => { for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true }) })

function tempDir (label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hgmig-cli-image-${label}-`))
  tempDirs.push(dir)
  return dir
}

const bin = fileURLToPath(new URL('../../bin/hgmig.js', import.meta.url))
const child = fileURLToPath(new URL('./support/store-child.js', import.meta.url))

function hgmig (data: string, args: string[]): { status: number | null, stdout: string, stderr: string } {
  return spawnSync(process.execPath, [bin, '--data', data, ...args], { encoding: 'utf8', env: { ...process.env, HGMIG_DEBUG: '' } })
}

function json<T> (data: string, args: string[]): T {
  const r = hgmig(data, [...args, '--json'])
  assert.equal(r.status, 0, `hgmig ${args.join(' ')}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

test('image commands: add, list, show, similarity, export, verify, rm, with --json and by name, id or root CID', () => {
  const data = tempDir('main')
  const os = join(data, 'debian.img')
  const shared = randomBytes(256 * 1024)
  writeFileSync(os, Buffer.concat([shared, randomBytes(256 * 1024)]))
  const we = join(data, 'web.img')
  writeFileSync(we, Buffer.concat([shared, Buffer.alloc(256 * 1024)]))

  const debian = json<ImageInfo>(data, ['image', 'add', '--layer', 'os', os])
  assert.equal(debian.name, 'debian.img')
  const web = json<ImageInfo>(data, ['image', 'add', '--layer', 'we', '--base', debian.rootCid, '--name', 'web', '--private', we])
  assert.equal(web.base, debian.id)
  assert.equal(web.public, false)
  assert.deepEqual(json<ImageInfo[]>(data, ['image', 'list']).map((i) => i.name), ['debian.img', 'web'])

  const details = json<ImageDetails>(data, ['image', 'show', web.id])
  assert.equal(details.baseName, 'debian.img')
  assert.equal(details.zeroBytes, 256 * 1024)
  const similarity = json<SimilarityReport>(data, ['image', 'similarity', 'web', 'debian.img'])
  assert.equal(similarity.sharedBytes, 256 * 1024, 'the shared half')
  assert.equal(similarity.reverseRatio, 0.5)

  const out = join(data, 'web-out.img')
  assert.equal(hgmig(data, ['image', 'export', 'web', out]).status, 0)
  assert.ok(readFileSync(out).equals(readFileSync(we)))
  assert.deepEqual(json<VerifyReport>(data, ['image', 'verify', 'web']).corrupt, [])

  const human = hgmig(data, ['image', 'list'])
  assert.match(human.stdout, /^ID +NAME +LAYER/)
  assert.match(human.stdout, /web +WE +debian\.img/)

  const refused = hgmig(data, ['image', 'rm', 'debian.img'])
  assert.equal(refused.status, 1)
  assert.match(refused.stderr, /debian\.img is the base of web; remove that first/)
  assert.equal(json<RemoveResult>(data, ['image', 'rm', 'web']).name, 'web')
  assert.equal(json<RemoveResult>(data, ['image', 'rm', debian.id]).name, 'debian.img')
  assert.deepEqual(json<ImageInfo[]>(data, ['image', 'list']), [])
})

test('image commands refuse bad input with a clear message and exit status 1', () => {
  const data = tempDir('bad')
  const file = join(data, 'disk.img')
  writeFileSync(file, randomBytes(1000))
  const empty = join(data, 'empty.img')
  writeFileSync(empty, '')
  const cases: Array<[string[], RegExp]> = [
    [['image', 'add', '--layer', 'we', file], /a WE image needs a base/],
    [['image', 'add', '--layer', 'xx', file], /argument 'xx' is invalid/],
    [['image', 'add', '--layer', 'os', empty], /empty \(0 bytes\)/],
    [['image', 'add', '--layer', 'os', join(data, 'nope')], /cannot read .*nope: no such file/],
    [['image', 'show', 'nope'], /no image matches "nope"; the store holds no images/]
  ]
  for (const [args, message] of cases) {
    const r = hgmig(data, args)
    assert.equal(r.status, 1, `exit status of ${args.join(' ')}`)
    assert.match(r.stderr, message)
  }
})

test('a second process gets a clear error while another one holds the store', async () => {
  const data = tempDir('lock')
  const holder = spawn(process.execPath, [child, 'hold', data], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    await new Promise<void>((resolve) => { holder.stdout.once('data', () => { resolve() }) })
    const r = hgmig(data, ['image', 'list'])
    assert.equal(r.status, 1)
    assert.match(r.stderr, new RegExp(`in use by process ${holder.pid ?? 0}`))
  } finally {
    holder.kill('SIGKILL')
    await new Promise((resolve) => holder.on('exit', resolve))
  }
  assert.equal(hgmig(data, ['image', 'list']).status, 0, 'usable again once the holder is gone')
})

test('a site of a swarm chunks at the swarm\'s chunk size (from its genesis), and a store cannot change it', () => {
  const data = tempDir('swarm')
  const created = spawnSync(process.execPath, [bin, 'swarm', 'create', '--name', 'site-a', '--data', data], { encoding: 'utf8' })
  assert.equal(created.status, 0, created.stderr)
  const genesisFile = join(data, 'swarm.json')
  const genesis = JSON.parse(readFileSync(genesisFile, 'utf8')) as { chunkSize: number }
  writeFileSync(genesisFile, JSON.stringify({ ...genesis, chunkSize: 16 * 1024 }))
  const file = join(data, 'disk.img')
  writeFileSync(file, randomBytes(100 * 1024))
  assert.equal(json<ImageInfo>(data, ['image', 'add', '--layer', 'os', file]).chunkSize, 16 * 1024)
  writeFileSync(genesisFile, JSON.stringify({ ...genesis, chunkSize: 64 * 1024 }))
  const refused = hgmig(data, ['image', 'list'])
  assert.equal(refused.status, 1)
  assert.match(refused.stderr, /chunks images at 16384 bytes, not 65536/)
})

test('the data directory: --data, else HGMIG_DATA, else the per-user application-data folder', () => {
  const home = tempDir('home')
  const viaEnv = tempDir('env')
  const viaFlag = tempDir('flag')
  const file = join(home, 'disk.img')
  writeFileSync(file, randomBytes(70 * 1024))
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, HGMIG_DEBUG: '' }
  delete env.HGMIG_DATA
  delete env.XDG_CONFIG_HOME
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}): ImageInfo[] => {
    const r = spawnSync(process.execPath, [bin, ...args, '--json'], { encoding: 'utf8', env: { ...env, ...extra } })
    assert.equal(r.status, 0, `hgmig ${args.join(' ')}: ${r.stderr}`)
    const value = JSON.parse(r.stdout) as ImageInfo | ImageInfo[]
    return Array.isArray(value) ? value : [value]
  }
  run(['image', 'add', '--layer', 'os', '--name', 'in-home', file])
  assert.ok(existsSync(join(home, '.config', 'hgmig', 'store', 'index.sqlite')), 'the default: ~/.config/hgmig on Linux')
  run(['image', 'add', '--layer', 'os', '--name', 'in-env', file], { HGMIG_DATA: viaEnv })
  assert.deepEqual(run(['image', 'list'], { HGMIG_DATA: viaEnv }).map((i) => i.name), ['in-env'], 'HGMIG_DATA overrides the default')
  assert.deepEqual(run(['image', 'list', '--data', viaFlag], { HGMIG_DATA: viaEnv }), [], '--data overrides HGMIG_DATA')
  assert.deepEqual(run(['image', 'list']).map((i) => i.name), ['in-home'])
})
