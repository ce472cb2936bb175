// Turns the raw runs into per-row summaries and the printed table.
import type { FloorRun } from '../scenarios/floor.js'
import { PHASES, type Phase, type TransferRun } from '../scenarios/transfer.js'
import type { Dataset } from './dataset.js'
import { isCluster, type ScenarioName, type ServerKind } from './options.js'
import { SERVER_LABEL } from './servers.js'
import { ratio, summarize, type Summary } from './stats.js'

const MiB = 1024 * 1024

export type Unit = 'MiB/s' | 'files/s'

export interface ServerSummary {
  /** In the row's unit. */
  readonly throughput?: Summary
  readonly mibPerSecond?: Summary
  readonly filesPerSecond?: Summary
  readonly wallSeconds?: Summary
  readonly cpuSeconds?: Summary
  readonly peakRssMiB?: Summary
  /** The server process alone (peakRssMiB is its whole tree). */
  readonly processPeakRssMiB?: Summary
  /** Runs whose client command for this phase was killed after the timeout. */
  readonly stalled: number
  /** Runs that never reached this phase because an earlier one stalled. */
  readonly skipped: number
  /** Runs with no figure for this phase because of an error. */
  readonly failed: number
  /** What the table shows when there is no figure at all. */
  readonly status: 'ok' | 'not built' | 'failed' | 'not run'
}

export interface Row {
  readonly scenario: ScenarioName
  readonly phase: Phase
  readonly label: string
  readonly unit: Unit
  readonly servers: Readonly<Record<'ours' | 'ref', ServerSummary>>
  /** cp -r + sync of the same bytes, in the row's unit. */
  readonly floor?: Summary
  /** annex-proxy / p2phttp: above 1 is better for throughput, below 1 is better for CPU and RSS. */
  readonly ratios: { readonly throughput?: number; readonly cpu?: number; readonly rss?: number }
}

export const unitOf = (d: Dataset): Unit => (d.fileBytes >= MiB ? 'MiB/s' : 'files/s')

export function serverSummary(d: Dataset, phase: Phase, runs: readonly TransferRun[]): ServerSummary {
  const measured = runs.flatMap((r) => (r.phases[phase] ? [r.phases[phase]] : []))
  const stalled = runs.filter((r) => r.stalled === phase).length
  const skipped = runs.filter((r) => r.stalled !== undefined && r.stalled !== phase && !r.phases[phase]).length
  const failed = runs.length - measured.length - stalled - skipped
  if (measured.length === 0) {
    if (runs.length === 0) return { status: 'not run', stalled, skipped, failed }
    if (runs.every((r) => r.notBuilt)) return { status: 'not built', stalled: 0, skipped: 0, failed: 0 }
    return { status: 'failed', stalled, skipped, failed }
  }
  const wall = measured.map((m) => m.wallSeconds)
  const mibPerSecond = summarize(wall.map((s) => d.totalBytes / MiB / s))
  const filesPerSecond = summarize(wall.map((s) => d.files / s))
  return {
    status: 'ok',
    stalled,
    skipped,
    failed,
    throughput: unitOf(d) === 'MiB/s' ? mibPerSecond : filesPerSecond,
    mibPerSecond,
    filesPerSecond,
    wallSeconds: summarize(wall),
    cpuSeconds: summarize(measured.map((m) => m.cpuSeconds)),
    peakRssMiB: summarize(measured.map((m) => m.peakRssBytes / MiB)),
    ...(measured.every((m) => m.rootPeakRssBytes !== undefined) ? { processPeakRssMiB: summarize(measured.map((m) => m.rootPeakRssBytes! / MiB)) } : {}),
  }
}

export function buildRows(datasets: readonly Dataset[], transfers: readonly TransferRun[], floors: readonly FloorRun[]): Row[] {
  const rows: Row[] = []
  for (const d of datasets.filter((x) => !isCluster(x.name))) {
    const unit = unitOf(d)
    const floorSeconds = floors.filter((f) => f.scenario === d.name).map((f) => f.cpSyncSeconds)
    const floor = summarize(floorSeconds.map((s) => (unit === 'MiB/s' ? d.totalBytes / MiB : d.files) / s))
    for (const phase of PHASES) {
      const of = (k: ServerKind) => serverSummary(d, phase, transfers.filter((t) => t.scenario === d.name && t.server === k))
      const servers = { ours: of('ours'), ref: of('ref') }
      rows.push({
        scenario: d.name,
        phase,
        label: `${d.label} ${phase === 'copy' ? 'copy --to' : 'get --from'}`,
        unit,
        servers,
        floor,
        ratios: {
          throughput: ratio(servers.ours.throughput, servers.ref.throughput),
          cpu: ratio(servers.ours.cpuSeconds, servers.ref.cpuSeconds),
          rss: ratio(servers.ours.peakRssMiB, servers.ref.peakRssMiB),
        },
      })
    }
  }
  return rows
}

function num(x: number): string {
  const a = Math.abs(x)
  return x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2)
}

function cell(s: ServerSummary, pick: (s: ServerSummary) => Summary | undefined): string {
  const v = pick(s)
  const lost = [
    s.stalled ? `${s.stalled} stalled` : '',
    s.skipped ? `${s.skipped} skipped` : '',
    s.failed ? `${s.failed} failed` : '',
  ].filter(Boolean)
  if (!v) return s.status === 'failed' ? lost.join(', ') : s.status === 'ok' ? '–' : s.status
  const figure = v.n > 1 ? `${num(v.median)} ±${num(v.spread)}` : num(v.median)
  return lost.length ? `${figure} (+${lost.join(', ')})` : figure
}

const ratioCell = (r: number | undefined) => (r === undefined ? '–' : `${r.toFixed(2)}×`)

export function formatTable(rows: readonly Row[]): string {
  const header = [
    'scenario',
    SERVER_LABEL.ours,
    SERVER_LABEL.ref,
    'ratio',
    'physical floor',
    'CPU s ours',
    'CPU s ref',
    'ratio',
    'RSS MiB ours',
    'RSS MiB ref',
    'ratio',
  ]
  const body = rows.map((r) => [
    `${r.label} (${r.unit})`,
    cell(r.servers.ours, (s) => s.throughput),
    cell(r.servers.ref, (s) => s.throughput),
    ratioCell(r.ratios.throughput),
    r.floor ? cell({ status: 'ok', stalled: 0, skipped: 0, failed: 0, throughput: r.floor }, (s) => s.throughput) : '–',
    cell(r.servers.ours, (s) => s.cpuSeconds),
    cell(r.servers.ref, (s) => s.cpuSeconds),
    ratioCell(r.ratios.cpu),
    cell(r.servers.ours, (s) => s.peakRssMiB),
    cell(r.servers.ref, (s) => s.peakRssMiB),
    ratioCell(r.ratios.rss),
  ])
  const all = [header, ...body]
  const widths = header.map((_, i) => Math.max(...all.map((line) => line[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...body.map(line)].join('\n')
}

/** One phase of a cluster scenario: a line per server, each compared with annex-proxy. */
export interface ClusterRow {
  readonly scenario: ScenarioName
  readonly phase: Phase
  readonly label: string
  readonly unit: Unit
  /** cp -r of the files to 3 directories + sync, in the row's unit (of the files, not the bytes written). */
  readonly floor?: Summary
  readonly servers: readonly {
    readonly server: ServerKind
    /** How the client reached the gateway, e.g. "annex+http, -J4". */
    readonly via: string
    readonly summary: ServerSummary
    /** annex-proxy / this server (undefined for annex-proxy itself and for missing figures). */
    readonly ratios: { readonly throughput?: number; readonly cpu?: number; readonly rss?: number }
  }[]
}

export function buildClusterRows(
  datasets: readonly Dataset[],
  transfers: readonly TransferRun[],
  floors: readonly FloorRun[],
  servers: readonly ServerKind[],
  via: (s: ServerKind) => string,
): ClusterRow[] {
  const rows: ClusterRow[] = []
  for (const d of datasets.filter((x) => isCluster(x.name))) {
    const unit = unitOf(d)
    const floorSeconds = floors.filter((f) => f.scenario === d.name).map((f) => f.cpSyncSeconds)
    const floor = summarize(floorSeconds.map((s) => (unit === 'MiB/s' ? d.totalBytes / MiB : d.files) / s))
    for (const phase of PHASES) {
      const of = (k: ServerKind) => serverSummary(d, phase, transfers.filter((t) => t.scenario === d.name && t.server === k))
      const ours = of('ours')
      rows.push({
        scenario: d.name,
        phase,
        label: `${d.label} ${phase === 'copy' ? 'copy --to' : 'get --from'} cluster`,
        unit,
        floor,
        servers: servers.map((k) => {
          const summary = of(k)
          return {
            server: k,
            via: via(k),
            summary,
            ratios:
              k === 'ours'
                ? {}
                : {
                    throughput: ratio(ours.throughput, summary.throughput),
                    cpu: ratio(ours.cpuSeconds, summary.cpuSeconds),
                    rss: ratio(ours.peakRssMiB, summary.peakRssMiB),
                  },
          }
        }),
      })
    }
  }
  return rows
}

export function formatClusterTable(rows: readonly ClusterRow[]): string {
  const header = ['cluster scenario (3 nodes)', 'server (client reaches the gateway by)', 'throughput', 'ours ÷ this', 'physical floor', 'CPU s', 'ours ÷ this', 'RSS MiB', 'ours ÷ this']
  const body: string[][] = []
  for (const r of rows) {
    for (const [i, s] of r.servers.entries()) {
      body.push([
        i === 0 ? `${r.label} (${r.unit})` : '',
        `${SERVER_LABEL[s.server]}, ${s.via}`,
        cell(s.summary, (x) => x.throughput),
        s.server === 'ours' ? '' : ratioCell(s.ratios.throughput),
        i === 0 && r.floor ? cell({ status: 'ok', stalled: 0, skipped: 0, failed: 0, throughput: r.floor }, (x) => x.throughput) : '',
        cell(s.summary, (x) => x.cpuSeconds),
        s.server === 'ours' ? '' : ratioCell(s.ratios.cpu),
        cell(s.summary, (x) => x.peakRssMiB),
        s.server === 'ours' ? '' : ratioCell(s.ratios.rss),
      ])
    }
  }
  const all = [header, ...body]
  const widths = header.map((_, i) => Math.max(...all.map((line) => line[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i <= 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...body.map(line)].join('\n')
}
