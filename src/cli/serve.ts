// `annex-proxy serve`: builds the server, listens, and stops in order on SIGTERM/SIGINT.
// Shared by the `serve` and `demo` commands, so neither imports the other.
import type { ServeConfig } from '../config/config.js'
import { buildServer } from '../server.js'
import { listenMetrics } from '../metrics/endpoint.js'

export async function serve(cfg: ServeConfig): Promise<void> {
  const server = await buildServer(cfg)
  const address = await server.app.listen({ host: cfg.bind, port: cfg.port })
  server.app.log.info({ address, repositories: server.registry.uuids }, 'annex-proxy serving')
  const metricsListener =
    server.metrics && cfg.metricsPort !== undefined ? await listenMetrics(server.metrics, cfg.metricsBind ?? cfg.bind, cfg.metricsPort) : undefined
  if (metricsListener) server.app.log.info({ metricsPort: metricsListener.port }, 'metrics on their own port')
  let stopping = false
  const stop = (sig: string) => {
    if (stopping) {
      // A second signal: stop now, aborting whatever is in flight.
      void server.close(0).finally(() => process.exit(130))
      return
    }
    stopping = true
    void metricsListener?.close()
    server.app.log.info({ signal: sig }, 'shutting down: finishing in-flight requests')
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.app.log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}
