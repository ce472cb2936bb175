// The bench's products: one row per scenario and phase, a line per client → server, written as
// Markdown (report.md), JSON (results.json) and an SVG chart (chart.svg) of throughput with the
// physical floor drawn as a line.
import type { FloorRun } from '../scenarios/floor.js'
import { PHASES, type Phase, type TransferRun } from '../scenarios/transfer.js'
import type { Dataset } from './dataset.js'
import { isCluster, type ClientKind, type ScenarioName, type ServerKind } from './options.js'
import { serverSummary, unitOf, type ServerSummary, type Unit } from './report.js'
import { SERVER_LABEL } from './servers.js'
import { summarize, type Summary } from './stats.js'

const MiB = 1024 * 1024

export interface Line {
  readonly client: ClientKind
  readonly server: ServerKind
  readonly label: string
  readonly summary: ServerSummary
  readonly clientRssMiB?: Summary
  /** Milliseconds, medians over the runs. */
  readonly p50Ms?: number
  readonly p99Ms?: number
  /** This line's throughput ÷ git-annex → p2phttp's (the reference), when both have figures. */
  readonly vsReference?: number
}

export interface ProductRow {
  readonly scenario: ScenarioName
  readonly phase: Phase
  readonly label: string
  readonly unit: Unit
  readonly floor?: Summary
  readonly lines: readonly Line[]
}

export const CLIENT_LABEL: Readonly<Record<ClientKind, string>> = { 'git-annex': 'git annex', upload: 'annex-proxy upload' }

export function lineLabel(client: ClientKind, server: ServerKind): string {
  return `${CLIENT_LABEL[client]} → ${SERVER_LABEL[server]}`
}

const median = (xs: number[]) => summarize(xs)?.median

export function buildProductRows(datasets: readonly Dataset[], transfers: readonly TransferRun[], floors: readonly FloorRun[]): ProductRow[] {
  const rows: ProductRow[] = []
  for (const d of datasets) {
    const unit = unitOf(d)
    const floorSeconds = floors.filter((f) => f.scenario === d.name).map((f) => f.cpSyncSeconds)
    const floor = summarize(floorSeconds.map((s) => (unit === 'MiB/s' ? d.totalBytes / MiB : d.files) / s))
    for (const phase of PHASES) {
      const combos = new Map<string, TransferRun[]>()
      for (const t of transfers.filter((x) => x.scenario === d.name)) {
        const client = t.client ?? 'git-annex'
        if (client === 'upload' && phase !== 'copy') continue
        const k = `${client}\u0000${t.server}`
        if (!combos.has(k)) combos.set(k, [])
        combos.get(k)!.push(t)
      }
      if (combos.size === 0) continue
      const ref = combos.get(`git-annex\u0000ref`)
      const refTp = ref ? serverSummary(d, phase, ref).throughput?.median : undefined
      const lines: Line[] = [...combos.entries()].map(([k, runs]) => {
        const [client, server] = k.split('\u0000') as [ClientKind, ServerKind]
        const summary = serverSummary(d, phase, runs)
        const rss = runs.flatMap((r) => (r.clientPeakRssBytes ? [r.clientPeakRssBytes / MiB] : []))
        const p50 = median(runs.flatMap((r) => (r.latency?.[phase] ? [r.latency[phase].p50 * 1000] : [])))
        const p99 = median(runs.flatMap((r) => (r.latency?.[phase] ? [r.latency[phase].p99 * 1000] : [])))
        const tp = summary.throughput?.median
        return {
          client,
          server,
          label: lineLabel(client, server),
          summary,
          ...(rss.length ? { clientRssMiB: summarize(rss)! } : {}),
          ...(p50 !== undefined ? { p50Ms: p50 } : {}),
          ...(p99 !== undefined ? { p99Ms: p99 } : {}),
          ...(tp !== undefined && refTp !== undefined && !(client === 'git-annex' && server === 'ref') ? { vsReference: tp / refTp } : {}),
        }
      })
      const order = (l: Line) => (l.client === 'upload' ? 0 : 10) + ['ours', 'ref', 'ref-newest', 'ref-shell'].indexOf(l.server)
      lines.sort((a, b) => order(a) - order(b))
      rows.push({
        scenario: d.name,
        phase,
        label: `${isCluster(d.name) ? 'cluster (3 nodes) ' : ''}${d.label} ${phase === 'copy' ? 'upload' : 'get'}`,
        unit,
        ...(floor ? { floor } : {}),
        lines,
      })
    }
  }
  return rows
}

function fmt(x: number | undefined, digits?: number): string {
  if (x === undefined || !Number.isFinite(x)) return '–'
  const a = Math.abs(x)
  return x.toFixed(digits ?? (a >= 100 ? 0 : a >= 10 ? 1 : 2))
}

function figure(s: ServerSummary, pick: (s: ServerSummary) => Summary | undefined): string {
  const v = pick(s)
  const lost = [s.stalled ? `${s.stalled} stalled` : '', s.skipped ? `${s.skipped} skipped` : '', s.failed ? `${s.failed} failed` : ''].filter(Boolean).join(', ')
  if (!v) return s.status === 'ok' ? '–' : lost || s.status
  const f = v.n > 1 ? `${fmt(v.median)} ±${fmt(v.spread)}` : fmt(v.median)
  return lost ? `${f} (+${lost})` : f
}

export function markdownReport(title: string, rows: readonly ProductRow[], notes: readonly string[]): string {
  const out = [`# ${title.split('\n')[0]}`, '', ...title.split('\n').slice(1).map((l) => `${l}  `), '', '![throughput per scenario](chart.svg)', '']
  out.push('| scenario | client → server | throughput | ÷ git annex → p2phttp | physical floor | % of floor | server CPU s | server RSS MiB | server process RSS MiB | client RSS MiB | p50 ms | p99 ms |')
  out.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|')
  for (const r of rows) {
    for (const [i, l] of r.lines.entries()) {
      const tp = l.summary.throughput?.median
      out.push(
        `| ${i === 0 ? `${r.label} (${r.unit})` : ''} | ${l.label} | ${figure(l.summary, (s) => s.throughput)} | ${l.vsReference === undefined ? '' : `${fmt(l.vsReference)}×`} | ${
          i === 0 && r.floor ? fmt(r.floor.median) : ''
        } | ${tp !== undefined && r.floor ? `${fmt((100 * tp) / r.floor.median, 0)}%` : ''} | ${figure(l.summary, (s) => s.cpuSeconds)} | ${figure(l.summary, (s) => s.peakRssMiB)} | ${figure(l.summary, (s) => s.processPeakRssMiB)} | ${
          l.clientRssMiB ? fmt(l.clientRssMiB.median) : ''
        } | ${fmt(l.p50Ms)} | ${fmt(l.p99Ms)} |`,
      )
    }
  }
  out.push('', ...notes.map((n) => `- ${n}`), '')
  return out.join('\n')
}

const PALETTE: Readonly<Record<string, string>> = {
  'upload/ours': '#1b7837',
  'upload/ref': '#7fbf7b',
  'upload/ref-newest': '#a6dba0',
  'git-annex/ours': '#2166ac',
  'git-annex/ref': '#d6604d',
  'git-annex/ref-newest': '#f4a582',
  'git-annex/ref-shell': '#8c6bb1',
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** Horizontal bars per scenario (each panel on its own scale: units differ), the floor as a dashed line. */
export function svgChart(title: string, rows: readonly ProductRow[]): string {
  const W = 960
  const left = 300
  const right = 150
  const barH = 16
  const gap = 4
  const keys = [...new Set(rows.flatMap((r) => r.lines.map((l) => `${l.client}/${l.server}`)))]
  const legendRows = Math.ceil(keys.length / 3)
  let y = 40 + legendRows * 18 + 10
  const parts: string[] = []
  parts.push(`<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`)
  keys.forEach((k, i) => {
    const [client, server] = k.split('/') as [ClientKind, ServerKind]
    const x = 10 + (i % 3) * 310
    const ly = 40 + Math.floor(i / 3) * 18
    parts.push(`<rect x="${x}" y="${ly - 10}" width="12" height="12" fill="${PALETTE[k] ?? '#999'}"/><text x="${x + 18}" y="${ly}" font-size="12">${esc(lineLabel(client, server))}</text>`)
  })
  for (const r of rows) {
    const figures = r.lines.map((l) => l.summary.throughput?.median ?? 0)
    const max = Math.max(r.floor?.median ?? 0, ...figures, 1e-9) * 1.08
    const scale = (v: number) => ((W - left - right) * v) / max
    const h = r.lines.length * (barH + gap) + 26
    parts.push(`<text x="10" y="${y + 14}" font-size="13" font-weight="bold">${esc(`${r.label} (${r.unit})`)}</text>`)
    let by = y + 22
    for (const l of r.lines) {
      const v = l.summary.throughput?.median
      const color = PALETTE[`${l.client}/${l.server}`] ?? '#999'
      parts.push(`<text x="${left - 6}" y="${by + 12}" font-size="11" text-anchor="end">${esc(l.label)}</text>`)
      if (v !== undefined) {
        parts.push(`<rect x="${left}" y="${by}" width="${scale(v).toFixed(1)}" height="${barH}" fill="${color}"/>`)
        parts.push(`<text x="${(left + scale(v) + 4).toFixed(1)}" y="${by + 12}" font-size="11">${fmt(v)}</text>`)
      } else {
        parts.push(`<text x="${left + 4}" y="${by + 12}" font-size="11" fill="#b2182b">${esc(l.summary.stalled ? 'stalled' : l.summary.status)}</text>`)
      }
      by += barH + gap
    }
    if (r.floor) {
      const fx = left + scale(r.floor.median)
      parts.push(`<line x1="${fx.toFixed(1)}" y1="${y + 18}" x2="${fx.toFixed(1)}" y2="${by}" stroke="#b2182b" stroke-width="2" stroke-dasharray="5,3"/>`)
      parts.push(`<text x="${(fx + 4).toFixed(1)}" y="${y + 16}" font-size="11" fill="#b2182b">floor ${fmt(r.floor.median)}</text>`)
    }
    y += h + 12
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 10}" viewBox="0 0 ${W} ${y + 10}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`
}
