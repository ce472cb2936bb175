// One server, one dataset: a fresh served repo and client, then the two timed phases
//   copy: git annex copy --to origin -JN   (upload; the server receives and verifies)
//   get:  git annex get --from origin -JN  (download; after an untimed local `drop --force`)
// --force keeps the drop off the server: a plain drop would lock every key on it first.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { sh } from '../../test/helpers/annex.js'
import type { Dataset } from '../lib/dataset.js'
import type { ServerKind } from '../lib/options.js'
import { benchEnv, countObjects, makeClient, makeServedRepo } from '../lib/repos.js'
import { NotBuiltError, startServer, type RunningServer } from '../lib/servers.js'
import { measured, type PhaseMeasurement } from '../lib/timing.js'

export type Phase = 'copy' | 'get'
export const PHASES: readonly Phase[] = ['copy', 'get']

export interface TransferRun {
  readonly server: ServerKind
  readonly scenario: Dataset['name']
  readonly phases: Partial<Record<Phase, PhaseMeasurement>>
  /** Why the run stopped early: "not built: …", a failed command, a missing object. */
  readonly error?: string
  readonly notBuilt?: boolean
}

export interface TransferContext {
  readonly workdir: string
  readonly jobs: number
  readonly projectRoot: string
}

const CLIENT_TIMEOUT_MS = 30 * 60_000

export async function runTransfer(server: ServerKind, data: Dataset, ctx: TransferContext): Promise<TransferRun> {
  const root = await mkdtemp(join(ctx.workdir, `annex-bench-${server}-${data.name}-`))
  const phases: Partial<Record<Phase, PhaseMeasurement>> = {}
  let running: RunningServer | undefined
  const client = join(root, 'client')
  const clientAnnex = (...args: string[]) => sh(client, 'git', ['annex', ...args], { timeoutMs: CLIENT_TIMEOUT_MS })
  const expectObjects = async (repo: string, what: string, n: number) => {
    const have = await countObjects(repo)
    if (have !== n) throw new Error(`${what} holds ${have} of ${n} objects`)
  }
  try {
    const served = await makeServedRepo(join(root, 'srv'))
    running = await startServer(server, served, ctx.jobs, ctx.projectRoot, benchEnv)
    const pid = running.pid
    await makeClient(served, client, running.port, data.dir)

    phases.copy = await measured(pid, () => clientAnnex('copy', '--to', 'origin', `-J${ctx.jobs}`, '--quiet', data.name))
    await expectObjects(served, 'after copy, the served repo', data.files)

    await clientAnnex('drop', '--force', `-J${ctx.jobs}`, '--quiet', data.name)
    await expectObjects(client, 'after drop, the client', 0)

    phases.get = await measured(pid, () => clientAnnex('get', '--from', 'origin', `-J${ctx.jobs}`, '--quiet', data.name))
    await expectObjects(client, 'after get, the client', data.files)
    return { server, scenario: data.name, phases }
  } catch (e) {
    const notBuilt = e instanceof NotBuiltError
    const message = (e as Error).message
    const tail = running ? `\nserver output (tail):\n${running.output().slice(-2000)}` : ''
    return { server, scenario: data.name, phases, error: notBuilt ? message : `${message}${tail}`, notBuilt }
  } finally {
    await running?.stop()
    await sh('/', 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}
