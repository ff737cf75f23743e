/** electron-builder.yml has the shape the issue asks for (packaging itself downloads Electron, so it cannot run here). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

const root = fileURLToPath(new URL('../../', import.meta.url))

interface BuilderConfig {
  appId?: string
  productName?: string
  files?: string[]
  asarUnpack?: string[]
  npmRebuild?: boolean
  linux?: { target?: string[] }
  mac?: { target?: string[] }
  win?: { target?: string[] }
}

test('electron-builder.yml: AppImage, deb, dmg and nsis; better-sqlite3 unpacked from asar and rebuilt; the built app and UI packed', () => {
  const config = parse(readFileSync(`${root}electron-builder.yml`, 'utf8')) as BuilderConfig
  assert.equal(config.appId, 'org.hgmig.app')
  assert.equal(config.productName, 'hgmig')
  assert.deepEqual(config.linux?.target, ['AppImage', 'deb'])
  assert.deepEqual(config.mac?.target, ['dmg'])
  assert.deepEqual(config.win?.target, ['nsis'])
  assert.ok(config.asarUnpack?.includes('node_modules/better-sqlite3/**'), 'the native module loads from outside the archive')
  assert.ok(config.asarUnpack?.includes('node_modules/sodium-native/**'), 'so does the protector\'s cipher')
  assert.equal(config.npmRebuild, true, 'native modules are rebuilt for Electron\'s ABI')
  for (const needed of ['dist/main/**', 'dist/p2p/**', 'dist/ui/**', 'bin/**', 'package.json']) assert.ok(config.files?.includes(needed), needed)
  assert.ok(config.files?.includes('!dist/test/**'), 'tests are not shipped')

  const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { main: string, dependencies: Record<string, string>, devDependencies: Record<string, string> }
  assert.equal(pkg.main, 'dist/main/main.js', 'Electron starts the compiled main process')
  assert.ok('better-sqlite3' in pkg.dependencies, 'better-sqlite3 is a runtime dependency, so it is packed and rebuilt')
  assert.ok('electron' in pkg.devDependencies, 'electron-builder wants Electron as a dev dependency')
})
