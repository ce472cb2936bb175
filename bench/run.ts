// npm run bench: the same workload against annex-proxy and `git annex p2phttp`, plus the physical
// floor, printed as one table and written to bench/results/latest.json. See bench/README.md.
// Nothing here asserts anything about speed: it measures and reports.
import { existsSync } from 'node:fs'
import { realpathSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sh } from '../test/helpers/annex.js'
import { makeDataset, sizeLabel, type Dataset } from './lib/dataset.js'
import { isCluster, parseOptions, USAGE, type Options, type ServerKind } from './lib/options.js'
import { buildClusterRows, buildRows, formatClusterTable, formatTable } from './lib/report.js'
import { oursEntry, SERVER_LABEL, stopAllServers } from './lib/servers.js'
import { runCluster } from './scenarios/cluster.js'
import { runFloor, type FloorRun } from './scenarios/floor.js'
import { runTransfer, type TransferRun } from './scenarios/transfer.js'
import { runUploadClient } from './scenarios/upload.js'
import { runPlacement } from './scenarios/placement.js'
import { buildProductRows, markdownReport, svgChart } from './lib/product.js'
import { isS3Scenario, runS3Scenarios } from './scenarios/s3.js'

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const log = (msg: string) => process.stderr.write(`${msg}\n`)

async function environment(refNewest: readonly string[] | undefined) {
  const version = await sh('/', 'git', ['annex', 'version', '--raw']).then((r) => r.stdout.trim(), () => 'unknown')
  const newest = refNewest ? await sh('/', refNewest[0]!, [...refNewest.slice(1), 'version', '--raw']).then((r) => r.stdout.trim(), () => 'unknown') : undefined
  return {
    gitAnnex: version,
    ...(newest ? { gitAnnexNewest: newest } : {}),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))),
  }
}

/** Servers take turns going first, so neither always meets a cold (or a warm) machine. */
function order(servers: readonly ServerKind[], repetition: number): ServerKind[] {
  const s = [...servers]
  for (let i = 0; i < repetition % s.length; i++) s.push(s.shift()!)
  return s
}

async function main(opts: Options): Promise<void> {
  const started = performance.now()
  const via = (k: ServerKind) => (k === 'ref-shell' ? `p2pstdio over a stand-in ssh, -J${opts.shellJobs}` : `annex+http, -J${opts.jobs}`)
  const env = await environment(opts.refNewest)
  const sizes = opts.scenarios.map((s) => (s === 'placement' ? `placement ${opts.sizes[s].files}×4–16 kB` : `${isCluster(s) ? 'cluster ' : ''}${opts.sizes[s].files}×${sizeLabel(opts.sizes[s].fileBytes)}`)).join(', ')
  const shellNote = opts.scenarios.some(isCluster) && opts.servers.includes('ref-shell') ? ` (-J${opts.shellJobs} via git-annex-shell)` : ''
  const title =
    `annex-proxy bench: ${opts.quick ? 'QUICK mode' : 'full mode'} (${sizes}), client -J${opts.jobs}${shellNote}, server --jobs ${opts.jobs}, ` +
    `${opts.repeat} repetition${opts.repeat > 1 ? 's (median ±half-range)' : ''}\n` +
    `git-annex ${env.gitAnnex}${env.gitAnnexNewest ? ` (ref-newest: ${env.gitAnnexNewest})` : ''}, node ${env.node}, ${env.cpus} × ${env.cpuModel}, ${env.memoryGiB} GiB, load ${env.loadavgAtStart.join(' ')} at start`
  log(title)
  if (opts.servers.includes('ours') && !existsSync(oursEntry(PROJECT_ROOT))) log(`note: ${oursEntry(PROJECT_ROOT)} is missing: annex-proxy shows as "not built"`)

  await mkdir(opts.workdir, { recursive: true })
  const dataRoot = await mkdtemp(join(opts.workdir, 'annex-bench-data-'))
  const transfers: (TransferRun & { repetition: number })[] = []
  const floors: (FloorRun & { repetition: number })[] = []
  const datasets: Dataset[] = []
  let s3: Awaited<ReturnType<typeof runS3Scenarios>> | undefined
  try {
    log('generating random data …')
    for (const s of opts.scenarios) if (s !== 'placement') datasets.push(await makeDataset(dataRoot, s, opts.sizes[s]))
    for (let rep = 0; rep < opts.repeat; rep++) {
      for (const d of datasets.filter((x) => !isS3Scenario(x.name))) {
        const cluster = isCluster(d.name)
        const name = `${cluster ? 'cluster ' : ''}${d.label}`
        const f = await runFloor(d, opts.workdir, cluster ? 3 : 1)
        floors.push({ ...f, repetition: rep })
        log(`[${rep + 1}/${opts.repeat}] ${name} physical floor: cp${cluster ? ' ×3' : ''} ${f.cpSeconds.toFixed(2)} s, cp+sync ${f.cpSyncSeconds.toFixed(2)} s`)
        // git-annex-shell is how the reference's cluster gateway works; for a plain repository it is not a server to compare.
        const ctx = { workdir: opts.workdir, jobs: opts.jobs, shellJobs: opts.shellJobs, projectRoot: PROJECT_ROOT, timeoutSeconds: opts.timeoutSeconds, refNewest: opts.refNewest }
        // git-annex-shell is how the reference's cluster gateway works; for a plain repository it is not a server to compare.
        for (const server of order(opts.servers.filter((k) => cluster || k !== 'ref-shell'), rep)) {
          for (const client of opts.clients) {
            if (client === 'upload' && server === 'ref-shell') continue
            const t =
              client === 'upload'
                ? await runUploadClient(server as 'ours' | 'ref' | 'ref-newest', d, ctx, cluster)
                : cluster
                  ? await runCluster(server, d, ctx)
                  : await runTransfer(server, d, ctx)
            transfers.push({ ...t, repetition: rep })
            const phases = Object.entries(t.phases).map(([p, m]) => `${p} ${m.wallSeconds.toFixed(2)} s (server CPU ${m.cpuSeconds.toFixed(2)} s)`)
            const setup = t.setupSeconds === undefined ? [] : [`setup ${t.setupSeconds.toFixed(1)} s`]
            const who = client === 'upload' ? `annex-proxy upload → ${SERVER_LABEL[server]}` : SERVER_LABEL[server]
            log(`[${rep + 1}/${opts.repeat}] ${name} ${who}${cluster ? ` (${via(server)})` : ''}: ${[...setup, ...phases, t.error ? `error: ${t.error.split('\n')[0]}` : ''].filter(Boolean).join(', ')}`)
          }
        }
      }
    }
    const s3Sets = datasets.filter((x) => isS3Scenario(x.name))
    if (s3Sets.length > 0) s3 = await runS3Scenarios(s3Sets, { workdir: opts.workdir, jobs: opts.jobs, projectRoot: PROJECT_ROOT, timeoutSeconds: opts.timeoutSeconds, repeat: opts.repeat, servers: opts.servers, log })
  } finally {
    await rm(dataRoot, { recursive: true, force: true })
  }
  datasets.splice(0, datasets.length, ...datasets.filter((x) => !isS3Scenario(x.name)))
  // Not a throughput figure: whether nodes stay within their maxsize (bench/scenarios/placement.ts).
  const placement = opts.scenarios.includes('placement')
    ? await runPlacement(opts.servers, opts.sizes.placement.files, { workdir: opts.workdir, projectRoot: PROJECT_ROOT, timeoutSeconds: opts.timeoutSeconds, refNewest: opts.refNewest, serverJobs: opts.jobs }, log)
    : undefined

  // The classic tables compare servers under the real git-annex client.
  const annexRuns = transfers.filter((t) => (t.client ?? 'git-annex') === 'git-annex')
  const rows = opts.servers.includes('ours') && opts.servers.includes('ref') ? buildRows(datasets, annexRuns, floors) : []
  const clusterRows = buildClusterRows(datasets, annexRuns, floors, opts.servers, via)
  const products = buildProductRows(datasets, transfers, floors)
  const totalSeconds = (performance.now() - started) / 1000
  const errors = transfers
    .filter((t) => t.error && !t.notBuilt)
    .map((t) => `run ${t.repetition + 1}, ${SERVER_LABEL[t.server]}, ${t.scenario}: ${t.error!.split('\n')[0]}`)
  const plain = rows.length
    ? `${formatTable(rows)}\n\n` +
      'throughput ratio = annex-proxy / p2phttp (higher is better); CPU and RSS ratios likewise (lower is better).\n' +
      'CPU = server process tree user+system seconds during the phase; RSS = its peak resident set.\n' +
      'physical floor = cp -r of the same files + sync.\n\n'
    : ''
  const clustered = clusterRows.length
    ? `${formatClusterTable(clusterRows)}\n\n` +
      'cluster: gateway gw with nodes n1..n3 (local paths), every file to every node; ours ÷ this = annex-proxy / that line.\n' +
      'CPU and RSS: annex-proxy and p2phttp = the server process tree; git-annex-shell = its ssh sessions (bench/README.md).\n' +
      'physical floor = cp -r of the files to 3 directories + sync, in files (or MiB) of the data set per second.\n\n'
    : ''
  process.stdout.write(
    `\n${title}\n\n${plain}${clustered}${s3 ? `${s3.text}\n` : ''}${placement ? `${placement.table}\n\n` : ''}Total ${totalSeconds.toFixed(0)} s.\n` +
      (errors.length ? `\nstalls and failures (details in the JSON):\n${errors.map((e) => `  ${e}`).join('\n')}\n` : ''),
  )

  const results = {
    version: 1,
    date: new Date().toISOString(),
    mode: opts.quick ? 'quick' : 'full',
    options: { repeat: opts.repeat, jobs: opts.jobs, shellJobs: opts.shellJobs, timeoutSeconds: opts.timeoutSeconds, servers: opts.servers, scenarios: opts.scenarios },
    environment: { ...env, loadavgAtEnd: loadavg().map((x) => Number(x.toFixed(2))) },
    datasets: datasets.map(({ dir: _dir, ...d }) => d),
    summary: rows,
    clusterSummary: clusterRows,
    report: products,
    ...(s3 ? { s3: { rows: s3.rows, runs: s3.runs, sdk: s3.sdk } } : {}),
    ...(placement ? { placement: placement.runs } : {}),
    runs: { transfers, floors },
    totalSeconds,
  }
  await mkdir(dirname(opts.out), { recursive: true })
  const json = `${JSON.stringify(results, null, 2)}\n`
  await writeFile(opts.out, json)
  await mkdir(opts.resultsDir, { recursive: true })
  await writeFile(join(opts.resultsDir, 'results.json'), json)
  const notes = [
    `command: annex-proxy bench ${commandLine.join(' ')}`.trim(),
    'throughput: wall time of the timed client command; MiB/s for files of 1 MiB and more, files/s below. Upload rows: copy --to for git annex, annex-proxy upload for ours.',
    'physical floor: cp -r of the same files (to 3 directories for a cluster) + sync. % of floor = throughput ÷ floor.',
    'server CPU s and RSS: the server process tree during the phase (the server and the git / git-annex helpers it runs); server process RSS: the server process alone (its own peak, VmHWM); client RSS: annex-proxy upload\'s peak.',
    "p50/p99: request latency of put (upload) or key (get) requests from annex-proxy's own /metrics histograms (bucket-interpolated); the reference has no metrics.",
    '÷ git annex → p2phttp: this line\'s throughput over the real client against the reference, same scenario and phase.',
    `load average ${env.loadavgAtStart.join(' ')} at start, ${results.environment.loadavgAtEnd.join(' ')} at end (2 cores, shared).`,
  ]
  await writeFile(join(opts.resultsDir, 'report.md'), markdownReport(title, products, notes))
  await writeFile(join(opts.resultsDir, 'chart.svg'), svgChart(title.split('\n')[0]!, products))
  log(`results written to ${opts.out} and ${opts.resultsDir}/{report.md,results.json,chart.svg}`)
}

let commandLine: readonly string[] = []

/** `annex-proxy bench ARGS` and `node dist/bench/run.js ARGS`: resolves with the exit code. */
export async function runBench(argv: readonly string[]): Promise<number> {
  commandLine = argv
  let parsed: Options | 'help'
  try {
    parsed = parseOptions(argv, PROJECT_ROOT)
  } catch (e) {
    log((e as Error).message)
    return 2
  }
  if (parsed === 'help') {
    log(USAGE)
    return 0
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping servers`)
      void stopAllServers().finally(() => process.exit(130))
    })
  }
  await main(parsed)
  return 0
}

const entry = process.argv[1] ? realpathSync(process.argv[1]) : ''
if (entry === fileURLToPath(import.meta.url)) process.exitCode = await runBench(process.argv.slice(2))
