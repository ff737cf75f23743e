/**
 * The API client when a pooled keep-alive socket dies under a request: the race that broke agent
 * tests under load (the agent closed an idle socket while the test process was busy, and the
 * client's next request went out on it), staged deterministically by a server that answers the
 * first request on each connection and drops the connection on the second.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { ApiClient } from '../p2p/api/index.js'

async function stagedServer (): Promise<{ origin: string, requests: string[], close: () => Promise<void> }> {
  const requests: string[] = []
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    let served = 0
    socket.on('data', (chunk: Buffer) => {
      for (const [line] of chunk.toString('latin1').matchAll(/^(GET|POST) \S+/gm)) {
        requests.push(line)
        if (served++ === 0) {
          const body = '{"ok":true}'
          socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n${body}`)
        } else {
          socket.destroy()
        }
      }
    })
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}

test('a GET whose pooled connection is dropped under it is sent once more on a new one; a POST is not, and its error names the cause', async () => {
  const server = await stagedServer()
  const client = new ApiClient({ origin: server.origin, token: 'x' })
  // A turn of the event loop puts the answered connection back in the pool for the next request.
  const settle = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 20)) }
  try {
    await client.status()
    await settle()
    // Second request on the pooled connection: dropped, then sent again on a new connection.
    assert.deepEqual(await client.status(), { ok: true })
    assert.deepEqual(server.requests, ['GET /v1/status', 'GET /v1/status', 'GET /v1/status'])

    // The new connection has answered once; a POST on it is dropped, and not repeated.
    await settle()
    await assert.rejects(client.ping({ count: 1 }), (err: Error) => /other side closed|ECONNRESET|UND_ERR_SOCKET/.test(err.message))
    assert.deepEqual(server.requests.slice(3), ['POST /v1/transactions/ping'], 'the POST went out once')
  } finally {
    await server.close()
  }
})
