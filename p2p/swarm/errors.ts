export class SwarmConfigError extends Error {
  override readonly name = 'SwarmConfigError'
  readonly code = 'ERR_SWARM_CONFIG'
}
