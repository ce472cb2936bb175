// The two servers under comparison, each started in the repository it serves, on 127.0.0.1 and a
// free port, with the same --jobs. Both are spawned directly (no `git` wrapper process), so the
// measured process tree is the server and whatever it spawns itself.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { listeningPorts, waitUntil } from '../../test/helpers/wait.js'
import type { ServerKind } from './options.js'

export const SERVER_LABEL: Readonly<Record<ServerKind, string>> = {
  ours: 'annex-proxy',
  ref: 'git annex p2phttp',
  'ref-shell': 'git-annex-shell',
  'ref-newest': 'p2phttp (newest)',
}

/** annex-proxy's CLI is not built (yet): the table says so instead of failing. */
export class NotBuiltError extends Error {
  constructor(readonly path: string) {
    super(`not built: ${path} is missing`)
    this.name = 'NotBuiltError'
  }
}

export interface RunningServer {
  readonly kind: ServerKind
  readonly pid: number
  readonly port: number
  output(): string
  stop(): Promise<void>
}

const live = new Set<RunningServer>()

/** For SIGINT: no server outlives the bench. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...live].map((s) => s.stop()))
}

export function oursEntry(projectRoot: string): string {
  return join(projectRoot, 'dist/src/cli/main.js')
}

export type HttpServerKind = 'ours' | 'ref' | 'ref-newest'

function command(kind: HttpServerKind, projectRoot: string, port: number, jobs: number, refNewest: readonly string[] | undefined): [string, string[]] {
  const common = ['--bind', '127.0.0.1', '--port', String(port), '--wideopen', '--jobs', String(jobs)]
  if (kind === 'ref') return ['git-annex', ['p2phttp', ...common]]
  if (kind === 'ref-newest') {
    if (!refNewest) throw new Error('ref-newest needs --ref-newest CMD')
    return [refNewest[0]!, [...refNewest.slice(1), 'p2phttp', ...common]]
  }
  const entry = oursEntry(projectRoot)
  if (!existsSync(entry)) throw new NotBuiltError(entry)
  // --metrics: the bench reads request latencies from the server's own histograms.
  return [process.execPath, [entry, 'serve', ...common, '--metrics', '--log-level', 'warn']]
}

export async function startServer(
  kind: HttpServerKind,
  repo: string,
  jobs: number,
  projectRoot: string,
  env: NodeJS.ProcessEnv,
  refNewest?: readonly string[],
): Promise<RunningServer> {
  // Port 0: the server picks a free port as it binds (none picked here and bound later); which
  // one is read from /proc, as the reference does not print it.
  const [cmd, args] = command(kind, projectRoot, 0, jobs, refNewest)
  // Node options for annex-proxy only, e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile the server
  // (NODE_OPTIONS refuses --cpu-prof, and would reach the bench's own SDK runs too).
  const extra = kind === 'ours' ? (process.env.ANNEX_PROXY_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean) : []
  const child: ChildProcess = spawn(cmd, [...extra, ...args], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (d: Buffer) => {
    out += d.toString('utf8')
    if (out.length > 200_000) out = out.slice(-100_000)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const spawnFailed = new Promise<never>((_, reject) => child.once('error', reject))
  const stop = async () => {
    live.delete(server)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
  let port = 0
  const server: RunningServer = {
    kind,
    pid: child.pid ?? -1,
    get port() {
      return port
    },
    output: () => out,
    stop,
  }
  live.add(server)
  try {
    const listening = waitUntil(`${SERVER_LABEL[kind]} to listen`, 30_000, () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before listening`)
      return child.pid === undefined ? undefined : listeningPorts(child.pid)[0]
    })
    port = await Promise.race([listening, spawnFailed])
  } catch (e) {
    await stop()
    throw new Error(`${SERVER_LABEL[kind]} did not start: ${(e as Error).message}\n${out.slice(-2000)}`)
  }
  return server
}
