/**
 * Serves the built renderer (the desktop UI) from the API's own origin, so the browser fallback and
 * the Electron window load the page from the same origin the API accepts. The files are public code
 * and need no token: the token reaches the page out of band (the URL fragment, never sent to the
 * server, or Electron's preload). Every page carries a strict Content-Security-Policy that lets it
 * talk to this API only and be framed by nobody.
 */
import { createReadStream, type Stats } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, resolve, sep } from 'node:path'

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8'
}

export interface StaticSite {
  /** The directory served (absolute). */
  readonly root: string
  /** Whether `request` is for the UI rather than the API (GET/HEAD outside /v1/ and /metrics). */
  handles: (request: IncomingMessage) => boolean
  /** Answers a request `handles` accepted; `apiOrigin` is e.g. http://127.0.0.1:41234. */
  serve: (request: IncomingMessage, response: ServerResponse, apiOrigin: string) => Promise<void>
}

export function createStaticSite (dir: string): StaticSite {
  return new RendererFiles(resolve(dir))
}

/** The policy every UI response carries: scripts and styles from this origin only, API calls to this API only. */
export function contentSecurityPolicy (apiOrigin: string): string {
  const ws = apiOrigin.replace(/^http/, 'ws')
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    `connect-src ${apiOrigin} ${ws}`,
    "base-uri 'none'",
    "form-action 'none'",
    "object-src 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
}

class RendererFiles implements StaticSite {
  constructor (readonly root: string) {}

  handles (request: IncomingMessage): boolean {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false
    const path = pathOf(request)
    return !(path === '/metrics' || path === '/v1' || path.startsWith('/v1/'))
  }

  async serve (request: IncomingMessage, response: ServerResponse, apiOrigin: string): Promise<void> {
    const headers = {
      'Content-Security-Policy': contentSecurityPolicy(apiOrigin),
      'X-Frame-Options': 'DENY',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Resource-Policy': 'same-origin'
    }
    // A page on a DNS-rebound name must not get even the public files: the API refuses such hosts too.
    const host = request.headers.host
    const port = new URL(apiOrigin).port
    if (host === `localhost:${port}`) {
      // The API accepts its own origin only (http://127.0.0.1:PORT): send the page there. Browsers
      // keep the URL fragment (the token) across the redirect.
      response.writeHead(307, { ...headers, Location: `${apiOrigin}${request.url ?? '/'}`, 'Content-Length': 0 })
      response.end()
      return
    }
    if (host !== `127.0.0.1:${port}`) {
      return end(response, 403, headers, `host ${host ?? '(none)'} is not allowed (only 127.0.0.1:${port})`)
    }
    let path: string
    try {
      path = decodeURIComponent(pathOf(request))
    } catch {
      return end(response, 400, headers, 'malformed path')
    }
    if (path.includes('\0')) return end(response, 400, headers, 'malformed path')
    const wanted = resolve(this.root, '.' + path)
    if (wanted !== this.root && !wanted.startsWith(this.root + sep)) return end(response, 404, headers, 'not found')

    let file = wanted
    let info = await statOrNull(file)
    if (info?.isDirectory() === true) {
      file = join(file, 'index.html')
      info = await statOrNull(file)
    }
    // Client-side routes (no extension) get the app; a missing asset is a plain 404.
    if (info === null && extname(path) === '') {
      file = join(this.root, 'index.html')
      info = await statOrNull(file)
    }
    if (info === null || !info.isFile()) {
      return end(response, 404, headers, info === null && file === join(this.root, 'index.html')
        ? `the UI is not built in ${this.root} (run npm run build)`
        : 'not found')
    }
    // Vite names bundled assets by content hash: they never change under a name.
    const immutable = file.startsWith(join(this.root, 'assets') + sep)
    response.writeHead(200, {
      ...headers,
      'Content-Type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': info.size,
      'Cache-Control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache'
    })
    if (request.method === 'HEAD') { response.end(); return }
    await new Promise<void>((resolveDone) => {
      const stream = createReadStream(file)
      stream.on('error', () => { response.destroy(); resolveDone() })
      stream.on('end', () => { resolveDone() })
      stream.pipe(response)
    })
  }
}

function pathOf (request: IncomingMessage): string {
  const url = request.url ?? '/'
  const query = url.search(/[?#]/)
  return query === -1 ? url : url.slice(0, query)
}

async function statOrNull (file: string): Promise<Stats | null> {
  try {
    return await stat(file)
  } catch {
    return null
  }
}

function end (response: ServerResponse, status: number, headers: Record<string, string>, message: string): void {
  const body = `${message}\n`
  response.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' })
  response.end(body)
}
