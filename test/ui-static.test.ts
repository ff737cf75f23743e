/**
 * The API server's static UI serving (p2p/api/static.ts through createApiServer's staticDir): the
 * files need no token, carry the CSP and anti-framing headers, never leave the directory, and the
 * API itself still needs the token.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createApiServer, type AgentBackend, type ApiServer } from '../p2p/api/index.js'

interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, body: string }

async function raw (port: number, path: string, options: { method?: string, headers?: Record<string, string> } = {}): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }) })
    })
    req.on('error', reject)
    req.end()
  })
}

// Static requests never reach the agent: a backend that fails loudly if anything asks it.
const unusedBackend = new Proxy({}, { get: () => () => { throw new Error('the static UI must not call the agent backend') } }) as AgentBackend

describe('the API server serving the UI', () => {
  let server: ApiServer
  let bare: ApiServer
  const outside = mkdtempSync(join(tmpdir(), 'hgmig-static-'))
  const dir = join(outside, 'ui')

  before(async () => {
    mkdirSync(join(dir, 'assets'), { recursive: true })
    writeFileSync(join(dir, 'index.html'), '<!doctype html><div id="root"></div>')
    writeFileSync(join(dir, 'assets', 'index-abc.js'), 'console.log(1)')
    writeFileSync(join(outside, 'secret.txt'), 'not for the web')
    server = createApiServer({ backend: unusedBackend, staticDir: dir })
    bare = createApiServer({ backend: unusedBackend })
    await Promise.all([server.start(), bare.start()])
  })

  after(async () => { await Promise.all([server.stop(), bare.stop()]) })

  test('the page loads without a token, with a CSP bound to this API and no framing', async () => {
    const page = await raw(server.port, '/')
    assert.equal(page.status, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    assert.match(page.body, /<div id="root">/)
    const csp = String(page.headers['content-security-policy'])
    assert.ok(csp.includes(`connect-src ${server.origin} ws://127.0.0.1:${server.port}`), csp)
    for (const directive of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"]) assert.ok(csp.includes(directive), directive)
    assert.equal(page.headers['x-frame-options'], 'DENY')
    assert.equal(page.headers['x-content-type-options'], 'nosniff')
    assert.equal(page.headers['cache-control'], 'no-cache')

    const script = await raw(server.port, '/assets/index-abc.js')
    assert.equal(script.status, 200)
    assert.match(String(script.headers['content-type']), /^text\/javascript/)
    assert.match(String(script.headers['cache-control']), /immutable/)
    const head = await raw(server.port, '/', { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.body, '')
  })

  test('client-side routes get the page; missing assets and paths outside the directory get 404', async () => {
    assert.match((await raw(server.port, '/consensus')).body, /<div id="root">/)
    assert.equal((await raw(server.port, '/assets/missing.js')).status, 404)
    for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt', '/..%5csecret.txt']) {
      const response = await raw(server.port, path)
      assert.ok(!response.body.includes('not for the web'), path)
      assert.ok(response.status === 404 || response.status === 400 || /<div id="root">/.test(response.body), `${path}: ${response.status}`)
    }
    assert.equal((await raw(server.port, '/a%00b')).status, 400)
  })

  test('the API keeps needing the token; foreign hosts get nothing; without staticDir nothing is served', async () => {
    assert.equal((await raw(server.port, '/v1/status')).status, 401)
    assert.equal((await raw(server.port, '/v1')).status, 401)
    assert.equal((await raw(server.port, '/metrics')).status, 401)
    assert.equal((await raw(server.port, '/', { method: 'POST' })).status, 401, 'only GET and HEAD are the UI\'s')
    const local = await raw(server.port, '/consensus?x=1', { headers: { Host: `localhost:${server.port}` } })
    assert.equal(local.status, 307, 'a page opened as localhost moves to the origin the API accepts')
    assert.equal(local.headers['location'], `${server.origin}/consensus?x=1`)
    const rebound = await raw(server.port, '/', { headers: { Host: `evil.example:${server.port}` } })
    assert.equal(rebound.status, 403)
    assert.ok(!rebound.body.includes('root'))
    assert.equal((await raw(bare.port, '/')).status, 401)
  })
})
