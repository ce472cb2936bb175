// One server, one dataset: a fresh served repo and client, then the two timed phases
//   copy: git annex copy --to origin -JN   (upload; the server receives and verifies)
//   get:  git annex get --from origin -JN  (download; after an untimed local `drop --force`)
// --force keeps the drop off the server: a plain drop would lock every key on it first.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { sh } from '../../test/helpers/annex.js'
import { clientAnnex, StalledError } from '../lib/client.js'
import type { Dataset } from '../lib/dataset.js'
import type { ClientKind, ServerKind } from '../lib/options.js'
import { withLatency, type Latency } from '../lib/latency.js'
import { benchEnv, countObjects, makeClient, makeServedRepo } from '../lib/repos.js'
import { NotBuiltError, startServer, type RunningServer } from '../lib/servers.js'
import { measured, seconds, type PhaseMeasurement } from '../lib/timing.js'

export type Phase = 'copy' | 'get'
export const PHASES: readonly Phase[] = ['copy', 'get']

export interface TransferRun {
  readonly server: ServerKind
  /** Which client moved the data (default git-annex). */
  readonly client?: ClientKind
  /** Request latency per phase from annex-proxy's /metrics (its servers only). */
  readonly latency?: Partial<Record<Phase, Latency>>
  /** Peak RSS of the client process tree (annex-proxy upload runs). */
  readonly clientPeakRssBytes?: number
  readonly scenario: Dataset['name']
  readonly phases: Partial<Record<Phase, PhaseMeasurement>>
  /** Fresh repos, server start, client clone and `git annex add` (untimed in the table). */
  readonly setupSeconds?: number
  /** The phase whose client command was killed after the timeout; later phases did not run. */
  readonly stalled?: Phase
  /** Why the run stopped early: "not built: …", a stall, a failed command, a missing object. */
  readonly error?: string
  readonly notBuilt?: boolean
  /** The client's -J, when it is not the server's --jobs (ref-shell cluster runs). */
  readonly clientJobs?: number
}

export interface TransferContext {
  readonly workdir: string
  readonly jobs: number
  readonly projectRoot: string
  readonly timeoutSeconds: number
  readonly refNewest?: readonly string[]
}

export async function runTransfer(server: ServerKind, data: Dataset, ctx: TransferContext): Promise<TransferRun> {
  const root = await mkdtemp(join(ctx.workdir, `annex-bench-${server}-${data.name}-`))
  const phases: Partial<Record<Phase, PhaseMeasurement>> = {}
  const latency: Partial<Record<Phase, Latency>> = {}
  let running: RunningServer | undefined
  let setupSeconds: number | undefined
  let current: Phase | undefined
  const client = join(root, 'client')
  const annex = (...args: string[]) => clientAnnex(client, args, ctx.timeoutSeconds * 1000, benchEnv)
  const expectObjects = async (repo: string, what: string, n: number) => {
    const have = await countObjects(repo)
    if (have !== n) throw new Error(`${what} holds ${have} of ${n} objects`)
  }
  const jobs = `-J${ctx.jobs}`
  try {
    const served = join(root, 'srv')
    setupSeconds = await seconds(async () => {
      await makeServedRepo(served)
      if (server === 'ref-shell') throw new Error('git-annex-shell is compared in the cluster scenarios only')
      running = await startServer(server, served, ctx.jobs, ctx.projectRoot, benchEnv, ctx.refNewest)
      await makeClient(served, client, running.port, data.dir)
    })
    const pid = running!.pid
    const metricsPort = server === 'ours' ? running!.port : undefined

    current = 'copy'
    const copied = await withLatency(metricsPort, 'put', () => measured(pid, () => annex('copy', '--to', 'origin', jobs, '--quiet', data.name)))
    phases.copy = copied.result
    if (copied.latency) latency.copy = copied.latency
    await expectObjects(served, 'after copy, the served repo', data.files)

    current = undefined
    await annex('drop', '--force', jobs, '--quiet', data.name)
    await expectObjects(client, 'after drop, the client', 0)

    current = 'get'
    const got = await withLatency(metricsPort, 'key', () => measured(pid, () => annex('get', '--from', 'origin', jobs, '--quiet', data.name)))
    phases.get = got.result
    if (got.latency) latency.get = got.latency
    await expectObjects(client, 'after get, the client', data.files)
    return { server, scenario: data.name, phases, setupSeconds, latency }
  } catch (e) {
    const message = (e as Error).message
    const base = { server, scenario: data.name, phases, setupSeconds, latency }
    if (e instanceof NotBuiltError) return { ...base, error: message, notBuilt: true }
    const tail = running ? `\nserver output (tail):\n${running.output().slice(-2000)}` : ''
    if (e instanceof StalledError && current) return { ...base, stalled: current, error: `${message}${tail}` }
    return { ...base, error: `${message}${tail}` }
  } finally {
    await running?.stop()
    await sh('/', 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}
