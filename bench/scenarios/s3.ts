// S3 behind a gateway (issue #10's bench): the same data sets sent with the real git-annex client
//   copy: git annex copy --to <remote> -JN      get: git annex get --from <remote> -JN
// to a proxied S3 special remote (`origin-s3`), and to a cluster of two local nodes and one S3
// node (`origin-mycluster`, every file to every node), served by annex-proxy and by the reference
// (`git annex p2phttp`), against one real S3 server (Swift s3api, scripts/test-s3) started for the
// run. The physical reference is the SDK's own rate to the same server: the data set uploaded
// (lib-storage, -JN files at once, 8 MiB parts, 4 in flight) and downloaded to files (-JN at once).
// Also measured: the peak of the gateway's temp files (.git/annex/tmp and othertmp, where the
// reference stages every proxied transfer) and, for the get, how much annex-proxy's chunk cache
// kept. Nothing here asserts a speed.
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { annex, git, makeRepo, sh } from '../../test/helpers/annex.js'
import { startTestS3, type TestS3 } from '../../test/helpers/s3-server.js'
import { clientAnnex, StalledError } from '../lib/client.js'
import type { Dataset } from '../lib/dataset.js'
import { benchEnv, countObjects, makeClient } from '../lib/repos.js'
import { NotBuiltError, SERVER_LABEL, startServer, type RunningServer } from '../lib/servers.js'
import { ratio, summarize, type Summary } from '../lib/stats.js'
import { measured, seconds, syncDisks, type PhaseMeasurement } from '../lib/timing.js'
import type { Phase } from './transfer.js'

export type S3Server = 'ours' | 'ref'
const SERVERS: readonly S3Server[] = ['ours', 'ref']
const MiB = 1024 * 1024

export const isS3Scenario = (name: string): boolean => name.startsWith('s3-')
const clustered = (d: Dataset) => d.name.startsWith('s3-cluster-')

export interface S3Context {
  readonly workdir: string
  readonly jobs: number
  readonly projectRoot: string
  readonly timeoutSeconds: number
  readonly repeat: number
  readonly servers: readonly string[]
  readonly log: (msg: string) => void
}

interface S3PhaseRun extends PhaseMeasurement {
  /** Largest total size of the gateway's .git/annex/tmp and othertmp seen during the phase. */
  readonly gatewayTempPeakBytes: number
}

interface S3Run {
  readonly server: S3Server
  readonly scenario: string
  readonly repetition: number
  readonly phases: Partial<Record<Phase, S3PhaseRun>>
  /** Bytes in annex-proxy's chunk cache after the get. */
  readonly cacheBytesAfterGet?: number
  readonly stalled?: Phase
  readonly error?: string
}

interface SdkRun {
  readonly scenario: string
  readonly repetition: number
  readonly uploadSeconds: number
  readonly downloadSeconds: number
}

export interface S3Row {
  readonly scenario: string
  readonly label: string
  readonly phase: Phase
  readonly unit: 'MiB/s' | 'files/s'
  readonly sdk?: Summary
  readonly ours?: Summary
  readonly ref?: Summary
  /** ours ÷ SDK direct, ours ÷ reference. */
  readonly ofSdk?: number
  readonly vsRef?: number
  readonly tempPeakMiB: { readonly ours?: number; readonly ref?: number }
  readonly cpuSeconds: { readonly ours?: Summary; readonly ref?: Summary }
  readonly peakRssMiB: { readonly ours?: Summary; readonly ref?: Summary }
  readonly failures: { readonly ours: number; readonly ref: number }
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  for (const e of entries) if (e.isFile()) n += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size
  return n
}

/** Polls the gateway's temp directories while `fn` runs; resolves with the largest total seen. */
async function tempPeak(gw: string, fn: () => Promise<PhaseMeasurement>): Promise<S3PhaseRun> {
  let peak = 0
  let running = true
  const dirs = ['tmp', 'othertmp'].map((d) => join(gw, '.git', 'annex', d))
  const poll = (async () => {
    while (running) {
      const total = (await Promise.all(dirs.map(dirBytes))).reduce((a, b) => a + b, 0)
      peak = Math.max(peak, total)
      await new Promise((r) => setTimeout(r, 50))
    }
  })()
  try {
    const m = await fn()
    return { ...m, gatewayTempPeakBytes: peak }
  } finally {
    running = false
    await poll
  }
}

async function bucketObjects(client: S3Client, bucket: string): Promise<number> {
  let n = 0
  let token: string | undefined
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }))
    n += (r.Contents ?? []).filter((o) => o.Key !== 'annex-uuid').length
    token = r.IsTruncated ? r.NextContinuationToken : undefined
  } while (token)
  return n
}

/** Runs `fn` over `items`, `limit` at a time. */
async function eachLimit<T>(items: readonly T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!)
    }),
  )
}

/** The SDK straight to the server: upload the data set, then download it to files. */
async function sdkDirect(s3: TestS3, d: Dataset, ctx: S3Context, repetition: number): Promise<SdkRun> {
  const client = s3.client()
  const bucket = await s3.bucket('sdk')
  const files = (await readdir(d.dir)).sort()
  const out = await mkdtemp(join(ctx.workdir, 'annex-bench-s3-sdk-'))
  try {
    await syncDisks()
    const uploadSeconds = await seconds(() =>
      eachLimit(files, ctx.jobs, async (f) => {
        await new Upload({ client, params: { Bucket: bucket, Key: f, Body: createReadStream(join(d.dir, f)) }, partSize: 8 * MiB, queueSize: 4 }).done()
      }),
    )
    await syncDisks()
    const downloadSeconds = await seconds(() =>
      eachLimit(files, ctx.jobs, async (f) => {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: f }))
        await pipeline(r.Body as Readable, createWriteStream(join(out, f)))
      }),
    )
    return { scenario: d.name, repetition, uploadSeconds, downloadSeconds }
  } finally {
    await rm(out, { recursive: true, force: true })
  }
}

/** One server, one data set: a fresh gateway with a fresh bucket (and, for a cluster, two local nodes). */
async function runServer(s3: TestS3, server: S3Server, d: Dataset, ctx: S3Context, repetition: number): Promise<S3Run> {
  const root = await mkdtemp(join(ctx.workdir, `annex-bench-s3-${server}-${d.name}-`))
  const phases: Partial<Record<Phase, S3PhaseRun>> = {}
  let running: RunningServer | undefined
  let current: Phase | undefined
  const client = join(root, 'client')
  const env = { ...benchEnv, ...s3.env }
  const annexC = (...args: string[]) => clientAnnex(client, args, ctx.timeoutSeconds * 1000, benchEnv)
  const base = { server, scenario: d.name, repetition, phases }
  const sdk = s3.client()
  try {
    const gw = await makeRepo(join(root, 'gw'), 'gw')
    await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
    const bucket = await s3.bucket('gw')
    await sh(gw, 'git', ['annex', 'initremote', 's3', 'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${s3.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4'], { env })
    const nodes: string[] = []
    let remote = 'origin-s3'
    if (clustered(d)) {
      for (const n of ['n1', 'n2']) {
        nodes.push(await makeRepo(join(root, n), n))
        await git(gw, 'remote', 'add', n, `../${n}`)
        await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
      }
      await git(gw, 'config', 'remote.s3.annex-cluster-node', 'mycluster')
      await sh(gw, 'git', ['annex', 'initcluster', 'mycluster'], { env })
      await sh(gw, 'git', ['annex', 'updatecluster'], { env })
      remote = 'origin-mycluster'
    } else {
      await git(gw, 'config', 'remote.s3.annex-proxy', 'true')
      await annex(gw, 'updateproxy')
    }
    running = await startServer(server, gw, ctx.jobs, ctx.projectRoot, env)
    await makeClient(gw, client, running.port, d.dir)
    const pid = running.pid
    const jobs = `-J${ctx.jobs}`

    current = 'copy'
    phases.copy = await tempPeak(gw, () => measured(pid, () => annexC('copy', '--to', remote, jobs, '--quiet', d.name)))
    const inBucket = await bucketObjects(sdk, bucket)
    if (inBucket !== d.files) throw new Error(`after copy, the bucket holds ${inBucket} of ${d.files} objects`)
    for (const [i, n] of nodes.entries()) if ((await countObjects(n)) !== d.files) throw new Error(`after copy, node n${i + 1} lacks objects`)

    current = undefined
    await annexC('drop', '--force', jobs, '--quiet', d.name)
    current = 'get'
    phases.get = await tempPeak(gw, () => measured(pid, () => annexC('get', '--from', remote, jobs, '--quiet', d.name)))
    if ((await countObjects(client)) !== d.files) throw new Error('after get, the client lacks objects')
    const cacheBytesAfterGet = server === 'ours' ? await dirBytes(join(gw, '.git', 'annex', 'annex-proxy-cache')) : undefined
    return { ...base, ...(cacheBytesAfterGet !== undefined ? { cacheBytesAfterGet } : {}) }
  } catch (e) {
    const message = (e as Error).message
    const tail = running ? `\nserver output (tail):\n${running.output().slice(-2000)}` : ''
    if (e instanceof StalledError && current) return { ...base, stalled: current, error: `${message}${tail}` }
    if (e instanceof NotBuiltError) return { ...base, error: message }
    return { ...base, error: `${message}${tail}` }
  } finally {
    await running?.stop()
    sdk.destroy()
    await sh('/', 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}

function rate(d: Dataset, s: number): number {
  return d.fileBytes >= MiB ? d.totalBytes / MiB / s : d.files / s
}

export function buildS3Rows(datasets: readonly Dataset[], runs: readonly S3Run[], sdk: readonly SdkRun[]): S3Row[] {
  const rows: S3Row[] = []
  for (const d of datasets) {
    for (const phase of ['copy', 'get'] as const) {
      const of = (server: S3Server) => runs.filter((r) => r.scenario === d.name && r.server === server)
      const summary = (server: S3Server, f: (m: S3PhaseRun) => number) => summarize(of(server).flatMap((r) => (r.phases[phase] ? [f(r.phases[phase])] : [])))
      const peak = (server: S3Server) => {
        const v = of(server).flatMap((r) => (r.phases[phase] ? [r.phases[phase].gatewayTempPeakBytes / MiB] : []))
        return v.length ? Math.max(...v) : undefined
      }
      const sdkRate = summarize(sdk.filter((r) => r.scenario === d.name).map((r) => rate(d, phase === 'copy' ? r.uploadSeconds : r.downloadSeconds)))
      const ours = summary('ours', (m) => rate(d, m.wallSeconds))
      const ref = summary('ref', (m) => rate(d, m.wallSeconds))
      const oursPeak = peak('ours')
      const refPeak = peak('ref')
      const oursCpu = summary('ours', (m) => m.cpuSeconds)
      const refCpu = summary('ref', (m) => m.cpuSeconds)
      const oursRss = summary('ours', (m) => m.peakRssBytes / MiB)
      const refRss = summary('ref', (m) => m.peakRssBytes / MiB)
      const ofSdk = ratio(ours, sdkRate)
      const vsRef = ratio(ours, ref)
      rows.push({
        scenario: d.name,
        label: `${clustered(d) ? '2 local + 1 S3 nodes' : 'proxied S3'} ${d.label}`,
        phase,
        unit: d.fileBytes >= MiB ? 'MiB/s' : 'files/s',
        ...(sdkRate ? { sdk: sdkRate } : {}),
        ...(ours ? { ours } : {}),
        ...(ref ? { ref } : {}),
        ...(ofSdk !== undefined ? { ofSdk } : {}),
        ...(vsRef !== undefined ? { vsRef } : {}),
        tempPeakMiB: { ...(oursPeak !== undefined ? { ours: oursPeak } : {}), ...(refPeak !== undefined ? { ref: refPeak } : {}) },
        cpuSeconds: { ...(oursCpu ? { ours: oursCpu } : {}), ...(refCpu ? { ref: refCpu } : {}) },
        peakRssMiB: { ...(oursRss ? { ours: oursRss } : {}), ...(refRss ? { ref: refRss } : {}) },
        failures: { ours: of('ours').filter((r) => !r.phases[phase]).length, ref: of('ref').filter((r) => !r.phases[phase]).length },
      })
    }
  }
  return rows
}

const fmt = (s: Summary | undefined, digits = 1) => (s ? `${s.median.toFixed(digits)}${s.n > 1 ? ` ±${s.spread.toFixed(digits)}` : ''}` : '–')
const times = (r: number | undefined) => (r === undefined ? '–' : `${r.toFixed(2)}×`)
const mib = (n: number | undefined) => (n === undefined ? '–' : n < 0.05 ? '0' : n.toFixed(1))

export function formatS3Table(rows: readonly S3Row[]): string {
  const head = '| scenario | phase | SDK direct | annex-proxy | ÷ SDK | git annex p2phttp | ÷ p2phttp | gateway temp peak MiB ours / ref | server CPU s ours / ref | server peak RSS MiB ours / ref |'
  const sep = '|---|---|---|---|---|---|---|---|---|---|'
  const lines = rows.map((r) => {
    const failed = (n: number) => (n > 0 ? ` (+${n} failed)` : '')
    return `| ${r.label} (${r.unit}) | ${r.phase} | ${fmt(r.sdk)} | ${fmt(r.ours)}${failed(r.failures.ours)} | ${times(r.ofSdk)} | ${fmt(r.ref)}${failed(r.failures.ref)} | ${times(r.vsRef)} | ${mib(r.tempPeakMiB.ours)} / ${mib(r.tempPeakMiB.ref)} | ${fmt(r.cpuSeconds.ours, 2)} / ${fmt(r.cpuSeconds.ref, 2)} | ${fmt(r.peakRssMiB.ours, 0)} / ${fmt(r.peakRssMiB.ref, 0)} |`
  })
  return [head, sep, ...lines].join('\n')
}

/** Every S3 scenario in `datasets`, `repeat` times; one S3 server for all of it. */
export async function runS3Scenarios(datasets: readonly Dataset[], ctx: S3Context): Promise<{ rows: S3Row[]; runs: S3Run[]; sdk: SdkRun[]; text: string }> {
  const runs: S3Run[] = []
  const sdk: SdkRun[] = []
  const servers = SERVERS.filter((s) => ctx.servers.includes(s))
  ctx.log('starting the test S3 server (scripts/test-s3/start) …')
  const s3 = await startTestS3()
  try {
    for (let rep = 0; rep < ctx.repeat; rep++) {
      for (const d of datasets) {
        const direct = await sdkDirect(s3, d, ctx, rep)
        sdk.push(direct)
        ctx.log(`[${rep + 1}/${ctx.repeat}] ${d.name} ${d.label} SDK direct: upload ${direct.uploadSeconds.toFixed(2)} s, download ${direct.downloadSeconds.toFixed(2)} s`)
        const order = rep % 2 === 0 ? servers : [...servers].reverse()
        for (const server of order) {
          const r = await runServer(s3, server, d, ctx, rep)
          runs.push(r)
          const phases = Object.entries(r.phases).map(([p, m]) => `${p} ${m.wallSeconds.toFixed(2)} s (server CPU ${m.cpuSeconds.toFixed(2)} s, temp peak ${(m.gatewayTempPeakBytes / MiB).toFixed(1)} MiB)`)
          ctx.log(`[${rep + 1}/${ctx.repeat}] ${d.name} ${SERVER_LABEL[server]}: ${[...phases, r.error ? `error: ${r.error.split('\n')[0]}` : ''].filter(Boolean).join(', ')}`)
        }
      }
    }
  } finally {
    await s3.stop()
  }
  const rows = buildS3Rows(datasets, runs, sdk)
  const text =
    `${formatS3Table(rows)}\n\n` +
    'S3: one Swift s3api server on 127.0.0.1 (scripts/test-s3), a fresh bucket per run. SDK direct = @aws-sdk/lib-storage upload and GetObject\n' +
    'to files, -JN files at once: the physical reference. ÷ SDK and ÷ p2phttp = annex-proxy over that line. Gateway temp peak = the most\n' +
    'bytes seen at once in the gateway\'s .git/annex/tmp + othertmp (polled every 50 ms). Cluster: n1, n2 local + the S3 remote, every file\n' +
    'to every node. annex-proxy keeps what its GETs read in its chunk cache (default --cache-size 1GiB).\n'
  return { rows, runs, sdk, text }
}
