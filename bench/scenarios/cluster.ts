// One server, one dataset, through a cluster gateway: a fresh gateway with three fresh nodes
// (bench/lib/cluster.ts) and a client, then the two timed phases
//   copy: git annex copy --to origin-mycluster -JN   (the gateway fans every file out to n1..n3)
//   get:  git annex get --from origin-mycluster -JN  (after an untimed local `drop --force`)
// ours and ref serve the gateway over annex+http (the client as in the plain scenarios, whose
// origin url is not a path); ref-shell is the reference gateway reached through git-annex-shell
// p2pstdio over a stand-in ssh, at --shell-jobs.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { sh } from '../../test/helpers/annex.js'
import { clientAnnex, StalledError } from '../lib/client.js'
import { CLUSTER, fakeSsh, makeGateway, makeShellClient } from '../lib/cluster.js'
import type { Dataset } from '../lib/dataset.js'
import type { ServerKind } from '../lib/options.js'
import { SessionMeter, type Meter } from '../lib/proc-meter.js'
import { benchEnv, countObjects, makeClient } from '../lib/repos.js'
import { NotBuiltError, startServer, type RunningServer } from '../lib/servers.js'
import { measured, seconds, type PhaseMeasurement } from '../lib/timing.js'
import { withLatency, type Latency } from '../lib/latency.js'
import type { Phase, TransferContext, TransferRun } from './transfer.js'

export interface ClusterContext extends TransferContext {
  readonly shellJobs: number
}

export async function runCluster(server: ServerKind, data: Dataset, ctx: ClusterContext): Promise<TransferRun> {
  const root = await mkdtemp(join(ctx.workdir, `annex-bench-${server}-${data.name}-`))
  const phases: Partial<Record<Phase, PhaseMeasurement>> = {}
  const latency: Partial<Record<Phase, Latency>> = {}
  const jobs = server === 'ref-shell' ? ctx.shellJobs : ctx.jobs
  let running: RunningServer | undefined
  let sessions: SessionMeter | undefined
  let setupSeconds: number | undefined
  let current: Phase | undefined
  let env = benchEnv
  const client = join(root, 'client')
  const annex = (...args: string[]) => clientAnnex(client, args, ctx.timeoutSeconds * 1000, env)
  const expectObjects = async (repo: string, what: string, n: number) => {
    const have = await countObjects(repo)
    if (have !== n) throw new Error(`${what} holds ${have} of ${n} objects`)
  }
  const remote = `origin-${CLUSTER}`
  const base = () => ({ server, scenario: data.name, phases, setupSeconds, clientJobs: jobs, latency })
  try {
    let nodes: string[] = []
    let meter: () => number | Meter = () => -1
    setupSeconds = await seconds(async () => {
      const made = await makeGateway(root, benchEnv)
      nodes = made.nodes
      if (server === 'ref-shell') {
        const ssh = await fakeSsh(root, benchEnv)
        env = ssh.env
        await makeShellClient(made.gw, client, data.dir, env)
        sessions = new SessionMeter(ssh.pidLog, ssh.timesDir)
        meter = () => sessions!
      } else {
        running = await startServer(server, made.gw, ctx.jobs, ctx.projectRoot, benchEnv, ctx.refNewest)
        await makeClient(made.gw, client, running.port, data.dir)
        const pid = running.pid
        meter = () => pid
      }
    })

    const metricsPort = server === 'ours' ? running?.port : undefined
    current = 'copy'
    const copied = await withLatency(metricsPort, 'put', () => measured(meter(), () => annex('copy', '--to', remote, `-J${jobs}`, '--quiet', data.name)))
    phases.copy = copied.result
    if (copied.latency) latency.copy = copied.latency
    for (const [i, n] of nodes.entries()) await expectObjects(n, `after copy, node n${i + 1}`, data.files)

    current = undefined
    await annex('drop', '--force', `-J${jobs}`, '--quiet', data.name)
    await expectObjects(client, 'after drop, the client', 0)

    current = 'get'
    const got = await withLatency(metricsPort, 'key', () => measured(meter(), () => annex('get', '--from', remote, `-J${jobs}`, '--quiet', data.name)))
    phases.get = got.result
    if (got.latency) latency.get = got.latency
    await expectObjects(client, 'after get, the client', data.files)
    return base()
  } catch (e) {
    const message = (e as Error).message
    if (e instanceof NotBuiltError) return { ...base(), error: message, notBuilt: true }
    const tail = running ? `\nserver output (tail):\n${running.output().slice(-2000)}` : ''
    if (e instanceof StalledError && current) return { ...base(), stalled: current, error: `${message}${tail}` }
    return { ...base(), error: `${message}${tail}` }
  } finally {
    await running?.stop()
    await sh('/', 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}
