// npm run bench: the same workload against annex-proxy and `git annex p2phttp`, plus the physical
// floor, printed as one table and written to bench/results/latest.json. See bench/README.md.
// Nothing here asserts anything about speed: it measures and reports.
import { existsSync } from 'node:fs'
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

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const log = (msg: string) => process.stderr.write(`${msg}\n`)

async function environment() {
  const version = await sh('/', 'git', ['annex', 'version', '--raw']).then((r) => r.stdout.trim(), () => 'unknown')
  return {
    gitAnnex: version,
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
  const env = await environment()
  const sizes = opts.scenarios.map((s) => `${isCluster(s) ? 'cluster ' : ''}${opts.sizes[s].files}×${sizeLabel(opts.sizes[s].fileBytes)}`).join(', ')
  const shellNote = opts.scenarios.some(isCluster) && opts.servers.includes('ref-shell') ? ` (-J${opts.shellJobs} via git-annex-shell)` : ''
  const title =
    `annex-proxy bench: ${opts.quick ? 'QUICK mode' : 'full mode'} (${sizes}), client -J${opts.jobs}${shellNote}, server --jobs ${opts.jobs}, ` +
    `${opts.repeat} repetition${opts.repeat > 1 ? 's (median ±half-range)' : ''}\n` +
    `git-annex ${env.gitAnnex}, node ${env.node}, ${env.cpus} × ${env.cpuModel}, ${env.memoryGiB} GiB, load ${env.loadavgAtStart.join(' ')} at start`
  log(title)
  if (opts.servers.includes('ours') && !existsSync(oursEntry(PROJECT_ROOT))) log(`note: ${oursEntry(PROJECT_ROOT)} is missing: annex-proxy shows as "not built"`)

  await mkdir(opts.workdir, { recursive: true })
  const dataRoot = await mkdtemp(join(opts.workdir, 'annex-bench-data-'))
  const transfers: (TransferRun & { repetition: number })[] = []
  const floors: (FloorRun & { repetition: number })[] = []
  const datasets: Dataset[] = []
  try {
    log('generating random data …')
    for (const s of opts.scenarios) datasets.push(await makeDataset(dataRoot, s, opts.sizes[s]))
    for (let rep = 0; rep < opts.repeat; rep++) {
      for (const d of datasets) {
        const cluster = isCluster(d.name)
        const name = `${cluster ? 'cluster ' : ''}${d.label}`
        const f = await runFloor(d, opts.workdir, cluster ? 3 : 1)
        floors.push({ ...f, repetition: rep })
        log(`[${rep + 1}/${opts.repeat}] ${name} physical floor: cp${cluster ? ' ×3' : ''} ${f.cpSeconds.toFixed(2)} s, cp+sync ${f.cpSyncSeconds.toFixed(2)} s`)
        // git-annex-shell is how the reference's cluster gateway works; for a plain repository it is not a server to compare.
        for (const server of order(opts.servers.filter((k) => cluster || k !== 'ref-shell'), rep)) {
          const ctx = { workdir: opts.workdir, jobs: opts.jobs, shellJobs: opts.shellJobs, projectRoot: PROJECT_ROOT, timeoutSeconds: opts.timeoutSeconds }
          const t = cluster ? await runCluster(server, d, ctx) : await runTransfer(server, d, ctx)
          transfers.push({ ...t, repetition: rep })
          const phases = Object.entries(t.phases).map(([p, m]) => `${p} ${m.wallSeconds.toFixed(2)} s (server CPU ${m.cpuSeconds.toFixed(2)} s)`)
          const setup = t.setupSeconds === undefined ? [] : [`setup ${t.setupSeconds.toFixed(1)} s`]
          log(`[${rep + 1}/${opts.repeat}] ${name} ${SERVER_LABEL[server]}${cluster ? ` (${via(server)})` : ''}: ${[...setup, ...phases, t.error ? `error: ${t.error.split('\n')[0]}` : ''].filter(Boolean).join(', ')}`)
        }
      }
    }
  } finally {
    await rm(dataRoot, { recursive: true, force: true })
  }

  const rows = buildRows(datasets, transfers, floors)
  const clusterRows = buildClusterRows(datasets, transfers, floors, opts.servers, via)
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
    `\n${title}\n\n${plain}${clustered}Total ${totalSeconds.toFixed(0)} s.\n` +
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
    runs: { transfers, floors },
    totalSeconds,
  }
  await mkdir(dirname(opts.out), { recursive: true })
  await writeFile(opts.out, `${JSON.stringify(results, null, 2)}\n`)
  log(`results written to ${opts.out}`)
}

let parsed: Options | 'help'
try {
  parsed = parseOptions(process.argv.slice(2), PROJECT_ROOT)
} catch (e) {
  log((e as Error).message)
  process.exit(2)
}
if (parsed === 'help') {
  log(USAGE)
} else {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping servers`)
      void stopAllServers().finally(() => process.exit(130))
    })
  }
  await main(parsed)
}
