/**
 * Prometheus metrics of one agent, in a registry of its own (not prom-client's global one, so two
 * agents in one process — tests — do not collide). Gauges read the agent's live values at scrape time.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export interface AgentMetricsSource {
  members: () => number
  connectedMembers: () => number
  lastDecidedRound: () => number
  hashgraphEvents: () => number
  eventsPerSecond: () => number
  pendingTransactions: () => number
}

export interface AgentMetrics {
  registry: Registry
  consensusLatency: Histogram
  orderedTransactions: Counter<'outcome'>
}

export function createAgentMetrics (source: AgentMetricsSource): AgentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'hgmig_' })
  const gauge = (name: string, help: string, read: () => number): void => {
    // Registered in `registry` by the constructor; nothing else needs the object.
    new Gauge({ name, help, registers: [registry], collect () { this.set(read()) } })
  }
  gauge('hgmig_members', 'members of the swarm', source.members)
  gauge('hgmig_members_connected', 'members (other than this site) with an open connection', source.connectedMembers)
  gauge('hgmig_last_decided_round', 'last round whose events all have their consensus order', source.lastDecidedRound)
  gauge('hgmig_hashgraph_events', 'hashgraph events this site holds (own and received)', source.hashgraphEvents)
  gauge('hgmig_events_per_second', 'hashgraph events added per second, over the last second', source.eventsPerSecond)
  gauge('hgmig_pending_transactions', 'own transactions submitted and not ordered yet', source.pendingTransactions)
  return {
    registry,
    consensusLatency: new Histogram({
      name: 'hgmig_consensus_latency_seconds',
      help: 'time from submitting an own transaction to its place in the consensus order, at this site',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry]
    }),
    orderedTransactions: new Counter({
      name: 'hgmig_ordered_transactions_total',
      help: 'transactions in the consensus order applied to the replicated state, by outcome (since start, replay included)',
      labelNames: ['outcome'],
      registers: [registry]
    })
  }
}
