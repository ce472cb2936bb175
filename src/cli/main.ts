// annex-proxy command line: `serve` (git annex p2phttp's flags) and `demo` (npm start).
import { ConfigError } from '../errors.js'
import { parseServeArgs, type ServeConfig } from '../config/config.js'
import { buildServer } from '../server.js'
import { runDemo } from './demo.js'

const USAGE = `usage:
  annex-proxy serve [--repo DIR] [--directory DIR]... [--port N] [--bind ADDR] [--jobs N]
                    [--wideopen | --unauth-readonly | --unauth-appendonly] [--unauth-nolocking]
                    [--authenv | --authenv-http] [--certfile F --privatekeyfile F [--chainfile F]]
                    [--lockedfiles N] [--hasher wasm|native|auto] [--log-level LEVEL]
  annex-proxy demo    serve a demo repository on 127.0.0.1:9417 (what npm start runs)
`

export async function serve(cfg: ServeConfig): Promise<void> {
  const server = await buildServer(cfg)
  const address = await server.app.listen({ host: cfg.bind, port: cfg.port })
  server.app.log.info({ address, repositories: server.registry.uuids }, 'annex-proxy serving')
  let stopping = false
  const stop = (sig: string) => {
    if (stopping) {
      // A second signal: stop now, aborting whatever is in flight.
      void server.close(0).finally(() => process.exit(130))
      return
    }
    stopping = true
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

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv
  switch (cmd) {
    case 'serve':
      return serve(parseServeArgs(rest, process.cwd()))
    case 'demo':
      return runDemo(rest)
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE)
      return
    default:
      throw new ConfigError(`unknown command '${cmd}'\n${USAGE}`)
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const msg = err instanceof ConfigError ? err.message : err instanceof Error ? err.message : String(err)
  process.stderr.write(`annex-proxy: ${msg}\n`)
  process.exit(err instanceof ConfigError ? 2 : 1)
})
