// The server's Prometheus metrics (prom-client), in one registry per server. The HTTP layer
// feeds them from fastify hooks (http-hooks.ts); the data plane reports the few events only it
// sees (verification failures, cluster nodes dropped) through the narrow ServerEvents interface,
// so nothing below the HTTP layer imports prom-client.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Events the data plane reports; every method is optional to call and cheap. */
export interface ServerEvents {
  /** Content refused because its checksum or length did not verify. */
  verificationFailed(repo: string, reason: 'hash' | 'length'): void
  /** A cluster node dropped from an upload's fanout (failed or stalled). */
  fanoutNodeDropped(cluster: string, node: string): void
}

/** What the P2P-over-HTTP plugin reports. */
export interface HttpEvents extends ServerEvents {
  putAnswered(repo: string, result: 'stored' | 'not_stored'): void
  observe(o: Observed): void
}

/** Gauges read when /metrics is scraped. */
export interface Observed {
  queueDepth?: () => number
  workersBusy?: () => number
  locksHeld?: () => number
}

export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

export class ServerMetrics implements HttpEvents {
  readonly registry = new Registry()
  readonly bytesIn: Counter<'repo'>
  readonly bytesOut: Counter<'repo'>
  readonly transfersInFlight: Gauge<'direction'>
  readonly requestDuration: Histogram<'endpoint' | 'status'>
  readonly puts: Counter<'repo' | 'result'>
  readonly verificationFailures: Counter<'repo' | 'reason'>
  readonly fanoutNodesDropped: Counter<'cluster' | 'node'>
  readonly overloaded: Counter
  private readonly observed: Observed = {}

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    this.bytesIn = new Counter({ name: 'annex_proxy_received_bytes_total', help: 'HTTP bytes received (headers and bodies) per served repository UUID', labelNames: ['repo'], registers })
    this.bytesOut = new Counter({ name: 'annex_proxy_sent_bytes_total', help: 'HTTP bytes sent (headers and bodies) per served repository UUID', labelNames: ['repo'], registers })
    this.transfersInFlight = new Gauge({ name: 'annex_proxy_transfers_in_flight', help: 'Content transfers being served: direction "in" (put), "out" (key GET)', labelNames: ['direction'], registers })
    this.requestDuration = new Histogram({
      name: 'annex_proxy_request_duration_seconds',
      help: 'Time from request to response end, per P2P-over-HTTP endpoint and status',
      labelNames: ['endpoint', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.puts = new Counter({ name: 'annex_proxy_puts_total', help: 'put requests answered, per repository and result (stored, not_stored, error)', labelNames: ['repo', 'result'], registers })
    this.verificationFailures = new Counter({ name: 'annex_proxy_verification_failures_total', help: 'Uploads refused because content did not match its key (reason: hash or length)', labelNames: ['repo', 'reason'], registers })
    this.fanoutNodesDropped = new Counter({ name: 'annex_proxy_fanout_nodes_dropped_total', help: 'Cluster nodes dropped from an upload fanout (failed or stalled)', labelNames: ['cluster', 'node'], registers })
    this.overloaded = new Counter({ name: 'annex_proxy_overloaded_total', help: 'Requests refused with 503 (queue full or waited too long)', registers })
    const observed = this.observed
    new Gauge({
      name: 'annex_proxy_queue_depth',
      help: 'Requests waiting for a worker (--jobs)',
      registers,
      collect() {
        this.set(observed.queueDepth?.() ?? 0)
      },
    })
    new Gauge({
      name: 'annex_proxy_workers_busy',
      help: 'Workers (--jobs) serving a request',
      registers,
      collect() {
        this.set(observed.workersBusy?.() ?? 0)
      },
    })
    new Gauge({
      name: 'annex_proxy_locks_held',
      help: 'Content locks held for clients (lockcontent/keeplocked)',
      registers,
      collect() {
        this.set(observed.locksHeld?.() ?? 0)
      },
    })
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'annex_proxy_' })
  }

  /** Registers where the scrape-time gauges read from. */
  observe(o: Observed): void {
    Object.assign(this.observed, o)
  }

  verificationFailed(repo: string, reason: 'hash' | 'length'): void {
    this.verificationFailures.inc({ repo, reason })
  }

  putAnswered(repo: string, result: 'stored' | 'not_stored'): void {
    this.puts.inc({ repo, result })
  }

  fanoutNodeDropped(cluster: string, node: string): void {
    this.fanoutNodesDropped.inc({ cluster, node })
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
