import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import WebSocket from 'ws'
import type { AgentEvent, ApiClient, ApiFile } from '../p2p/api/index.js'
import { AgentProcess, createSwarm, tempDataDir } from './support/agent-process.js'

interface RawResponse { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** A plain HTTP request with exactly the headers given (fetch would add or forbid some). */
async function raw (port: number, options: { method?: string, path?: string, headers?: Record<string, string>, body?: string }): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/v1/status', headers: options.headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }) })
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

function errorOf (response: RawResponse): string {
  return (JSON.parse(response.body) as { error: string }).error
}

/** Opens a WebSocket to the event stream: 101 if it opened (then closes it), else the refusal's status. */
async function upgradeStatus (port: number, headers: Record<string, string>, protocols: string[] = []): Promise<number> {
  return await new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/events`, protocols, { headers })
    socket.on('open', () => { socket.close(); resolve(101) })
    socket.on('unexpected-response', (_req, res) => { resolve(res.statusCode!); socket.terminate() })
    socket.on('error', reject)
  })
}

describe('local API', () => {
  let agent: AgentProcess
  let client: ApiClient
  let api: ApiFile
  let auth: Record<string, string>

  before(async () => {
    const data = tempDataDir()
    createSwarm(data, 'site-a')
    agent = new AgentProcess(data)
    ;({ client, api } = await agent.ready())
    auth = { Authorization: `Bearer ${api.token}` }
  })

  after(async () => { await agent.kill() })

  test('requests without the token or with a wrong one get 401, on every endpoint', async () => {
    for (const path of ['/v1/status', '/v1/latency', '/metrics', '/v1/transactions/ping', '/no-such-path']) {
      const missing = await raw(api.port, { path, method: path.includes('ping') ? 'POST' : 'GET' })
      assert.equal(missing.status, 401, path)
      assert.match(errorOf(missing), /missing "Authorization: Bearer <token>"/)
      assert.equal(missing.headers['www-authenticate'], 'Bearer realm="hgmig"')
    }
    const wrong = await raw(api.port, { headers: { Authorization: `Bearer ${'0'.repeat(64)}` } })
    assert.equal(wrong.status, 401)
    assert.match(errorOf(wrong), /wrong API token/)
    const short = await raw(api.port, { headers: { Authorization: 'Bearer abc' } })
    assert.equal(short.status, 401)
    const basic = await raw(api.port, { headers: { Authorization: `Basic ${api.token}` } })
    assert.equal(basic.status, 401, 'only the Bearer scheme counts')
    const ok = await raw(api.port, { headers: auth })
    assert.equal(ok.status, 200)
  })

  test('a foreign Origin or Host is refused with 403 even with the right token; the API\'s own origin is accepted', async () => {
    const foreign = await raw(api.port, { headers: { ...auth, Origin: 'http://evil.example' } })
    assert.equal(foreign.status, 403)
    assert.match(errorOf(foreign), /origin http:\/\/evil\.example is not allowed/)
    const otherPort = await raw(api.port, { headers: { ...auth, Origin: `http://127.0.0.1:${api.port + 1}` } })
    assert.equal(otherPort.status, 403)
    const post = await raw(api.port, { method: 'POST', path: '/v1/transactions/ping', headers: { ...auth, Origin: 'null', 'Content-Type': 'application/json' }, body: '{}' })
    assert.equal(post.status, 403, 'a cross-origin POST submits nothing')
    const rebound = await raw(api.port, { headers: { ...auth, Host: `evil.example:${api.port}` } })
    assert.equal(rebound.status, 403)
    assert.match(errorOf(rebound), /host evil\.example/)
    const own = await raw(api.port, { headers: { ...auth, Origin: `http://127.0.0.1:${api.port}` } })
    assert.equal(own.status, 200)
    assert.equal((await client.status()).transactions.pending, 0, 'the refused POST queued no transaction')
  })

  test('WebSocket upgrades need the token and the API\'s own origin', async () => {
    assert.equal(await upgradeStatus(api.port, {}), 401)
    assert.equal(await upgradeStatus(api.port, { Authorization: 'Bearer nope' }), 401)
    assert.equal(await upgradeStatus(api.port, { ...auth, Origin: 'http://evil.example' }), 403)
    assert.equal(await upgradeStatus(api.port, auth), 101)
    assert.equal(await upgradeStatus(api.port, { Origin: `http://127.0.0.1:${api.port}` }, [`hgmig.bearer.${api.token}`]), 101, 'a browser passes the token as a subprotocol')
    assert.equal(await upgradeStatus(api.port, { Origin: 'http://evil.example' }, [`hgmig.bearer.${api.token}`]), 403)
  })

  test('malformed and mistyped requests get 4xx naming the problem, and the agent keeps answering', async () => {
    const post = async (body: string, contentType = 'application/json'): Promise<RawResponse> =>
      await raw(api.port, { method: 'POST', path: '/v1/transactions/ping', headers: { ...auth, 'Content-Type': contentType }, body })
    const cases: Array<[body: string, status: number, message: RegExp, contentType?: string]> = [
      ['{bad', 400, /request body is not valid JSON/],
      ['[1]', 400, /must be a JSON object, got an array/],
      ['null', 400, /must be a JSON object, got null/],
      ['{"count":"3"}', 400, /field "count" must be an integer from 1 to 1000, got "3"/],
      ['{"count":1.5}', 400, /field "count"/],
      ['{"count":100000}', 400, /field "count"/],
      ['{"count":1,"extra":true}', 400, /unknown field "extra"/],
      ['{"count":1}', 415, /Content-Type: application\/json/, 'text/plain'],
      [JSON.stringify({ count: 1, pad: 'x'.repeat(100_000) }), 413, /larger than/]
    ]
    for (const [body, status, message, contentType] of cases) {
      const response = await post(body, contentType)
      assert.equal(response.status, status, body.slice(0, 40))
      assert.match(errorOf(response), message)
    }
    const notFound = await raw(api.port, { path: '/v1/nothing', headers: auth })
    assert.equal(notFound.status, 404)
    const wrongMethod = await raw(api.port, { method: 'DELETE', path: '/v1/status', headers: auth })
    assert.equal(wrongMethod.status, 405)
    assert.equal(wrongMethod.headers['allow'], 'GET')
    const plainGet = await raw(api.port, { path: '/v1/events', headers: auth })
    assert.equal(plainGet.status, 426)

    assert.equal(agent.child.exitCode, null, 'the agent is still running')
    const status = await client.status()
    assert.equal(status.transactions.pending + status.transactions.ordered, 0, 'no bad request submitted anything')
  })

  test('the event stream says hello with the status, then reports the ordered ping and its latency', async () => {
    const abort = new AbortController()
    const stream = client.events({ signal: abort.signal })
    const hello = await stream.next()
    assert.equal(hello.value?.type, 'hello')
    const { submitted } = await client.ping()
    assert.equal(submitted.length, 1)
    const seen: AgentEvent[] = []
    for await (const event of stream) {
      seen.push(event)
      if (seen.some((e) => e.type === 'transaction') && seen.some((e) => e.type === 'latency')) break
    }
    abort.abort()
    const transaction = seen.find((e) => e.type === 'transaction')
    assert.ok(transaction?.type === 'transaction')
    assert.equal(transaction.kind, 'ping')
    assert.equal(transaction.outcome, 'applied')
    assert.equal(transaction.site, 'site-a')
    const latency = seen.find((e) => e.type === 'latency')
    assert.ok(latency?.type === 'latency' && latency.sample.latencyMs > 0)
    const status = await client.status()
    assert.equal(status.stateHash, transaction.stateHash)
  })
})
