/** Drives a test peer in a child process over JSON lines (see gossip-peer.ts). */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'

export class PeerProcess {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly waiting: Array<(value: unknown) => void> = []
  readonly stderr: string[] = []
  private exited = false

  constructor (script: string, args: string[]) {
    this.child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    createInterface({ input: this.child.stdout }).on('line', (line) => { this.waiting.shift()?.(JSON.parse(line)) })
    this.child.stderr.on('data', (chunk: Buffer) => { this.stderr.push(chunk.toString()) })
    this.child.on('exit', () => {
      this.exited = true
      for (const resolve of this.waiting.splice(0)) resolve({ error: `peer exited: ${this.stderr.join('')}` })
    })
  }

  async call<T = Record<string, unknown>> (command: Record<string, unknown>): Promise<T> {
    if (this.exited) throw new Error(`peer has exited: ${this.stderr.join('')}`)
    const answer = await new Promise<unknown>((resolve) => {
      this.waiting.push(resolve)
      this.child.stdin.write(JSON.stringify(command) + '\n')
    })
    const error = (answer as { error?: string }).error
    if (error !== undefined) throw new Error(`${JSON.stringify(command)} failed: ${error}`)
    return answer as T
  }

  kill (): Promise<void> {
    return new Promise((resolve) => {
      if (this.exited) { resolve(); return }
      this.child.once('exit', () => { resolve() })
      this.child.kill('SIGKILL')
    })
  }

  async stop (): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => { resolve() }))
    this.child.stdin.end()
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
    await this.kill()
  }
}

/** Polls `probe` until it returns a value, or fails with `what` after `timeoutMs` (a liveness bound, not a speed check). */
export async function eventually<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  let lastProbeFailed: boolean
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined) return value
      lastProbeFailed = false
    } catch (err) {
      lastError = err
      lastProbeFailed = true
    }
    if (Date.now() > deadline) {
      // Say whether the condition was unmet at the end or the probe itself kept failing.
      const why = lastError === undefined ? '' : lastProbeFailed ? `: ${String(lastError)}` : ` (condition unmet; an earlier probe failed: ${String(lastError)})`
      throw new Error(`timed out waiting for ${what}${why}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
