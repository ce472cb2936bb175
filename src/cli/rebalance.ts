// `annex-proxy rebalance`: moves content between the nodes of a gateway's clusters so that
// each node holds what its balanced preferred content wants (gateway/rebalance.ts), in one
// run. Runs in the gateway repository, beside a serving annex-proxy or not; with --redis it
// shares reservations and locks with the fleet serving the same nodes.
import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'
import { optionsHelp, type OptionSpec } from '../config/config.js'
import { Gateway } from '../gateway/gateway.js'
import { rebalance, type RebalanceResult } from '../gateway/rebalance.js'
import { LocalCoordinator, type Coordinator } from '../placement/coordinator.js'
import { RedisCoordinator } from '../placement/redis-coordinator.js'
import { stderrLogger } from './stderr-log.js'

export const REBALANCE_OPTIONS = {
  repo: { type: 'string', arg: 'DIR', help: 'the gateway repository (default: the working directory)' },
  cluster: { type: 'string', multiple: true, arg: 'NAME', help: 'rebalance this cluster (repeatable; default: every annex.cluster.NAME)' },
  'dry-run': { type: 'boolean', help: 'print the plan (each key: the nodes it is copied to and dropped from) and change nothing' },
  jobs: { type: 'string', short: 'J', arg: 'N', help: 'moves carried out at once (default 1)' },
  redis: { type: 'string', arg: 'URL', help: 'the Redis of a fleet of gateways serving these nodes: share reservations and locks with it' },
  'redis-lease': { type: 'string', arg: 'S', help: 'seconds this process\'s reservations and locks outlive it in Redis (default 30)' },
  'log-level': { type: 'string', arg: 'LEVEL', help: 'warnings and above on stderr by default (debug, info, warn, error)' },
  help: { type: 'boolean', short: 'h', help: 'this text' },
} as const satisfies Readonly<Record<string, OptionSpec>>

export const REBALANCE_USAGE = `usage: annex-proxy rebalance [OPTION]...
  Moves content between the nodes of the gateway's clusters until every node holds what its
  preferred content wants, evaluated as git-annex's --rebalance does (balanced=g:N as
  fullybalanced, sizebalanced=g:N as fullysizebalanced), in one run: a second run moves
  nothing. Each copy is verified by its new node and logged before any copy is dropped; a
  drop keeps numcopies verified copies and never touches locked content. Exit status 1 when
  a move could not be carried out completely.
${optionsHelp(REBALANCE_OPTIONS)}`

function int(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined) return def
  const n = Number(raw)
  if (!/^[0-9]+$/.test(raw) || n < min || n > max) throw new ConfigError(`--${name} needs a whole number from ${min} to ${max}, got '${raw}'`)
  return n
}

/** Resolves with the exit status. */
export async function runRebalance(argv: readonly string[], io: { cwd: string; out: (s: string) => void }): Promise<number> {
  let o
  try {
    o = parseArgs({ args: [...argv], options: REBALANCE_OPTIONS, strict: true, allowPositionals: false }).values
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n${REBALANCE_USAGE}`)
  }
  if (o.help) {
    io.out(REBALANCE_USAGE)
    return 0
  }
  const jobs = int('jobs', o.jobs, 1, 1, 64)
  const lease = int('redis-lease', o['redis-lease'], 30, 1, 86_400)
  const log = stderrLogger(o['log-level'] ?? 'warn')
  let coordinator: Coordinator
  if (o.redis === undefined) coordinator = new LocalCoordinator()
  else {
    const redis = new RedisCoordinator({ url: o.redis, leaseMs: lease * 1000, log })
    await redis.connect()
    coordinator = redis
  }
  const closing = new AbortController()
  const stop = () => closing.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  let gateway: Gateway | undefined
  try {
    gateway = await Gateway.open(o.repo ?? io.cwd, { hasher: 'auto', log, fanoutHighWaterMark: 1 << 20, fanoutStallMs: 60_000, coordinator, jobs })
    const clusters = o.cluster ?? [...gateway.snapshot.clusters.keys()]
    if (clusters.length === 0) throw new ConfigError(`${gateway.dir} is the gateway of no cluster (no annex.cluster.NAME in its git config)`)
    let status = 0
    for (const cluster of clusters) {
      io.out(`cluster ${cluster}${o['dry-run'] ? ' (dry run: nothing is changed)' : ''}\n`)
      const before = (await gateway.placementState()).committed
      const r = await rebalance(gateway, { cluster, dryRun: o['dry-run'] ?? false, jobs, log, signal: closing.signal, say: (l) => io.out(`  ${l}\n`) })
      const after = o['dry-run'] ? r.plan.sizes : (await gateway.placementState()).committed
      io.out(summary(r, gateway, before, after, o['dry-run'] ?? false))
      if (r.failed.length > 0 || closing.signal.aborted) status = 1
    }
    return status
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    // Closing commits the location log, as git-annex does at the end of a command.
    await gateway?.close()
    await coordinator.close()
  }
}

function summary(r: RebalanceResult, gateway: Gateway, before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>, dryRun: boolean): string {
  const lines: string[] = []
  const moves = r.plan.moves.length
  lines.push(dryRun ? `  plan: ${moves} key${moves === 1 ? '' : 's'} to move, numcopies ${r.numCopies}` : `  moved ${r.done} of ${moves} key${moves === 1 ? '' : 's'} (${r.bytesCopied} bytes copied), numcopies ${r.numCopies}`)
  for (const [u, name] of r.names) {
    const max = gateway.snapshot.maxSize.get(u as never)
    lines.push(`  ${name}: ${before.get(u) ?? 0} → ${after.get(u) ?? 0} bytes${max === undefined ? '' : ` of maxsize ${max}`}`)
  }
  if (!r.plan.settled && r.plan.unstable.length > 0)
    lines.push(`  ${r.plan.unstable.length} key(s) have no stable place under these expressions and maxsizes (each move would change where the others want to be): left where they are`)
  if (r.plan.short.length > 0) lines.push(`  ${r.plan.short.length} key(s) wanted by a node with no room for them`)
  for (const f of r.failed) lines.push(`  not done: ${f.key}: ${f.reason}`)
  return `${lines.join('\n')}\n`
}
