// `annex-proxy serve`: builds the server, listens, and stops in order on SIGTERM/SIGINT.
// On SIGHUP it hands its listening socket to a new copy of itself and stops once that one
// serves: a restart during which the socket never stops accepting.
// Shared by the `serve` and `demo` commands, so neither imports the other.
import type { ServeConfig } from '../config/config.js'
import { buildServer } from '../server.js'
import { listenMetrics } from '../metrics/endpoint.js'
import { announceReady, handOver, listen } from './listener.js'
import { capYoungGeneration } from '../config/young-generation.js'

/** `onListening`: called with where it listens (`host:port` or a socket path), before anything else is logged. */
export async function serve(cfg: ServeConfig, opts: { onListening?: (address: string) => void } = {}): Promise<void> {
  // `serve` set it before loading this module; `demo` gets it here.
  capYoungGeneration(cfg.youngGenerationMiB)
  const server = await buildServer(cfg)
  const log = server.app.log
  const listening = await listen(server.app, cfg)
  opts.onListening?.(listening.address)
  // With --directory, repositories are still being found: the registry logs how many once it knows.
  const found = cfg.directories.length > 0 ? { directories: cfg.directories } : { repositories: server.registry.uuids }
  // Where it listens is logged whatever --log-level (short of silent): with --port 0 it is the
  // only way to learn the port, for an operator's scripts and for tests alike.
  const announce = cfg.logLevel === 'silent' ? log : log.child({}, { level: 'info' })
  // uptimeMs: how long this process took to get here (Node's start and module loading included).
  announce.info({ address: listening.address, listener: listening.how, pid: process.pid, uptimeMs: Math.round(performance.now()), ...found }, 'annex-proxy serving')
  const metricsListener =
    server.metrics && cfg.metricsPort !== undefined ? await listenMetrics(server.metrics, cfg.metricsBind ?? cfg.bind, cfg.metricsPort) : undefined
  if (metricsListener) announce.info({ metricsPort: metricsListener.port }, 'metrics on their own port')
  announceReady()
  let stopping = false
  let handedOver = false
  const stop = (sig: string) => {
    if (stopping) {
      // A second signal: stop now, aborting whatever is in flight.
      void server.close(0).finally(() => process.exit(130))
      return
    }
    stopping = true
    void metricsListener?.close()
    log.info({ signal: sig }, 'shutting down: finishing in-flight requests')
    server
      .close()
      .then(() => (handedOver ? undefined : listening.release()))
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed')
          process.exit(1)
        },
      )
  }
  const restart = () => {
    if (stopping) return
    stopping = true
    log.info({ pid: process.pid }, 'SIGHUP: starting a new process and handing it the listening socket')
    handOver(server.app).then(
      (pid) => {
        handedOver = true
        stopping = false
        log.info({ successor: pid }, 'the new process serves; this one stops accepting and drains')
        stop('SIGHUP')
      },
      (err: unknown) => {
        stopping = false
        log.error({ err }, 'hand-over failed: this process goes on serving')
      },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', restart)
}
