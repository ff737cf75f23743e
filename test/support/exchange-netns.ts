/**
 * A small WAN lab for the exchange benchmark (needs root, iproute2 and the tbf qdisc): one network
 * namespace per site, each joined by a veth pair to a bridge that lives in a hub namespace of its
 * own (the host's network is never touched), and a token-bucket filter (tbf) on the egress of every
 * site given a rate. `netem` is not available on these machines, so there is no added delay.
 */
import { execFileSync } from 'node:child_process'

export interface LabSiteSpec {
  /** Short name, [a-z0-9]{1,3}: part of the namespace and interface names. */
  name: string
  /** Egress limit of the site's link, Mbit/s (tbf); unlimited if omitted. */
  egressMbit?: number
}

export interface LabSite {
  name: string
  netns: string
  ip: string
  egressMbit: number | undefined
}

export class NetnsLabError extends Error {
  override readonly name = 'NetnsLabError'
}

function run (command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim()
    throw new NetnsLabError(`${command} ${args.join(' ')} failed: ${stderr === '' ? (err as Error).message : stderr}`)
  }
}

/** Whether this process can build the lab (root, `ip` and `tc`), with the reason when it cannot. */
export function netnsLabUnavailable (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, tc)'
  for (const tool of ['ip', 'tc']) {
    try { execFileSync(tool, ['-V'], { stdio: 'ignore' }) } catch { return `${tool} (iproute2) is not installed` }
  }
  return undefined
}

export class NetnsLab {
  readonly sites: LabSite[]
  private readonly hub: string
  private readonly bridge: string
  private destroyed = false

  /** `tag` keeps concurrent labs apart (e.g. the pid); at most 4 characters of it are used. */
  constructor (specs: LabSiteSpec[], tag: string, subnet = '10.213.0') {
    const short = tag.replace(/[^a-z0-9]/gi, '').slice(-4)
    this.hub = `hx${short}-hub`
    this.bridge = `hx${short}br`
    this.sites = specs.map((spec, i) => {
      if (!/^[a-z0-9]{1,3}$/.test(spec.name)) throw new NetnsLabError(`lab site name ${JSON.stringify(spec.name)} must be 1-3 of [a-z0-9]`)
      return { name: spec.name, netns: `hx${short}-${spec.name}`, ip: `${subnet}.${i + 1}`, egressMbit: spec.egressMbit }
    })
    const cleanup = (): void => { this.destroy() }
    process.once('exit', cleanup)
    try {
      run('ip', ['netns', 'add', this.hub])
      run('ip', ['-n', this.hub, 'link', 'add', this.bridge, 'type', 'bridge'])
      run('ip', ['-n', this.hub, 'link', 'set', this.bridge, 'up'])
      for (const site of this.sites) this.addSite(site, short)
    } catch (err) {
      this.destroy()
      throw err
    }
  }

  private addSite (site: LabSite, short: string): void {
    const inside = `hx${short}${site.name}a`
    const outside = `hx${short}${site.name}b`
    run('ip', ['netns', 'add', site.netns])
    run('ip', ['-n', site.netns, 'link', 'set', 'lo', 'up'])
    run('ip', ['-n', site.netns, 'link', 'add', inside, 'type', 'veth', 'peer', 'name', outside, 'netns', this.hub])
    run('ip', ['-n', this.hub, 'link', 'set', outside, 'master', this.bridge])
    run('ip', ['-n', this.hub, 'link', 'set', outside, 'up'])
    run('ip', ['-n', site.netns, 'addr', 'add', `${site.ip}/24`, 'dev', inside])
    run('ip', ['-n', site.netns, 'link', 'set', inside, 'up'])
    if (site.egressMbit !== undefined) {
      // burst: at least rate/HZ and larger than a GSO super-packet (64 KiB), which tbf would drop.
      const burstBytes = Math.max(256 * 1024, Math.ceil(site.egressMbit * 1e6 / 8 / 100))
      run('ip', ['netns', 'exec', site.netns, 'tc', 'qdisc', 'add', 'dev', inside, 'root', 'tbf', 'rate', `${site.egressMbit}mbit`, 'burst', String(burstBytes), 'latency', '50ms'])
    }
  }

  site (name: string): LabSite {
    const site = this.sites.find((s) => s.name === name)
    if (site === undefined) throw new NetnsLabError(`no lab site ${name}`)
    return site
  }

  /** Removes every namespace (and with them the veths and the bridge); safe to call twice. */
  destroy (): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const ns of [...this.sites.map((s) => s.netns), this.hub]) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }) } catch { /* not created */ }
    }
  }
}
