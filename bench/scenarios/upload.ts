// `annex-proxy upload` as the client: the data set pushed into a fresh served repository (or
// through a fresh cluster gateway into its three nodes), timed, with the server's process tree and
// the client's own metered. Upload only: there is no get phase for this client.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { git, sh } from '../../test/helpers/annex.js'
import { CLUSTER, makeGateway } from '../lib/cluster.js'
import type { Dataset } from '../lib/dataset.js'
import { withLatency } from '../lib/latency.js'
import { ProcessTreeMeter } from '../lib/proc-meter.js'
import { benchEnv, countObjects, makeServedRepo } from '../lib/repos.js'
import { NotBuiltError, oursEntry, startServer, type HttpServerKind, type RunningServer } from '../lib/servers.js'
import { measured, seconds, type PhaseMeasurement } from '../lib/timing.js'
import { StalledError } from '../lib/client.js'
import type { Phase, TransferContext, TransferRun } from './transfer.js'
import { existsSync } from 'node:fs'

/** Runs the upload CLI; rejects on a nonzero exit, a StalledError after `timeoutMs`. Resolves with the client's peak RSS. */
async function runUploadCli(projectRoot: string, cwd: string, args: string[], timeoutMs: number): Promise<number> {
  const entry = oursEntry(projectRoot)
  if (!existsSync(entry)) throw new NotBuiltError(entry)
  const child = spawn(process.execPath, [entry, 'upload', '--quiet', ...args], { cwd, env: benchEnv, stdio: ['ignore', 'ignore', 'pipe'] })
  const meter = new ProcessTreeMeter(child.pid!)
  meter.start()
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-4000)))
  let stalled = false
  const timer = setTimeout(() => {
    stalled = true
    child.kill('SIGKILL')
  }, timeoutMs)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (c) => resolve(c))
  }).finally(() => clearTimeout(timer))
  const usage = await meter.stop()
  if (stalled) throw new StalledError(['upload', ...args], timeoutMs, 'annex-proxy')
  if (code !== 0) throw new Error(`annex-proxy upload exited ${code}: ${err.trim()}`)
  return usage.peakRssBytes
}

export async function runUploadClient(server: HttpServerKind, data: Dataset, ctx: TransferContext, cluster: boolean): Promise<TransferRun> {
  const root = await mkdtemp(join(ctx.workdir, `annex-bench-upload-${server}-${data.name}-`))
  const phases: Partial<Record<Phase, PhaseMeasurement>> = {}
  let running: RunningServer | undefined
  let setupSeconds: number | undefined
  let clientPeakRssBytes: number | undefined
  let latency: TransferRun['latency']
  const base = () => ({ server, client: 'upload' as const, scenario: data.name, phases, setupSeconds, clientJobs: ctx.jobs, ...(clientPeakRssBytes ? { clientPeakRssBytes } : {}), ...(latency ? { latency } : {}) })
  try {
    let served = ''
    let uuid = ''
    let holders: string[] = []
    setupSeconds = await seconds(async () => {
      if (cluster) {
        const made = await makeGateway(root, benchEnv)
        served = made.gw
        holders = made.nodes
        uuid = (await git(made.gw, 'config', `annex.cluster.${CLUSTER}`)).stdout.trim()
      } else {
        served = await makeServedRepo(join(root, 'srv'))
        holders = [served]
        uuid = (await git(served, 'config', 'annex.uuid')).stdout.trim()
      }
      running = await startServer(server, served, ctx.jobs, ctx.projectRoot, benchEnv, ctx.refNewest)
    })
    const args = ['--url', `annex+http://127.0.0.1:${running!.port}/git-annex/`, '--uuid', uuid, `-J${ctx.jobs}`, data.dir]
    const metricsPort = server === 'ours' ? running!.port : undefined
    const { latency: put } = await withLatency(metricsPort, 'put', async () => {
      phases.copy = await measured(running!.pid, async () => {
        clientPeakRssBytes = await runUploadCli(ctx.projectRoot, root, args, ctx.timeoutSeconds * 1000)
      })
    })
    if (put) latency = { copy: put }
    for (const [i, h] of holders.entries()) {
      const have = await countObjects(h)
      if (have !== data.files) throw new Error(`after upload, ${cluster ? `node n${i + 1}` : 'the served repo'} holds ${have} of ${data.files} objects`)
    }
    return base()
  } catch (e) {
    const message = (e as Error).message
    if (e instanceof NotBuiltError) return { ...base(), error: message, notBuilt: true }
    const tail = running ? `\nserver output (tail):\n${running.output().slice(-2000)}` : ''
    if (e instanceof StalledError) return { ...base(), stalled: 'copy', error: `${message}${tail}` }
    return { ...base(), error: `${message}${tail}` }
  } finally {
    await running?.stop()
    await sh('/', 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}
