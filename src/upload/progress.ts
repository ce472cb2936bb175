// What a person sees: progress bars on a TTY (overall bytes and files with rate and ETA, one
// bar per active transfer), or one JSON line per file (--json), and a summary at the end.
import cliProgress from 'cli-progress'
import type { Key } from '../keys/key.js'
import type { SourceFile } from './files.js'
import type { FileResult, UploadEvents } from './uploader.js'

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`
}

export interface Reporter extends UploadEvents {
  stop(): void
}

/** One JSON object per finished file on `out`, as git-annex's --json does per action. */
export function jsonReporter(out: NodeJS.WritableStream): Reporter {
  return {
    done(r) {
      out.write(`${JSON.stringify(r)}\n`)
    },
    stop() {},
  }
}

export function silentReporter(): Reporter {
  return { stop() {} }
}

/** Bars on `stream` (a TTY). */
export function barReporter(totalBytes: number, totalFiles: number, stream: NodeJS.WriteStream): Reporter {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      clearOnComplete: true,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
      format: (opts, params, payload: { name: string; files?: string; rate?: string }) => {
        const width = opts.barsize ?? 30
        const done = Math.round(params.progress * width)
        const bar = '█'.repeat(done) + '░'.repeat(width - done)
        const pct = `${Math.floor(params.progress * 100)}`.padStart(3)
        const eta = params.eta > 0 && Number.isFinite(params.eta) ? `ETA ${Math.round(params.eta)}s` : ''
        const rest = payload.files !== undefined ? ` ${payload.files} files  ${payload.rate ?? ''}  ${eta}` : ''
        return `${bar} ${pct}% ${formatBytes(params.value).padStart(9)} / ${formatBytes(params.total)}${rest}  ${payload.name}`
      },
    },
    cliProgress.Presets.shades_classic,
  )
  const t0 = Date.now()
  let bytes = 0
  let files = 0
  const overall = multi.create(Math.max(1, totalBytes), 0, { name: 'total', files: `0/${totalFiles}`, rate: '' })
  const active = new Map<string, cliProgress.SingleBar>()
  const update = () => {
    const s = (Date.now() - t0) / 1000
    overall.update(bytes, { files: `${files}/${totalFiles}`, rate: s > 0 ? `${formatBytes(bytes / s)}/s` : '' })
  }
  return {
    start(f: SourceFile, _key: Key, offset: number) {
      active.set(f.name, multi.create(Math.max(1, f.size), offset, { name: f.name }))
      bytes += offset
      update()
    },
    progress(f: SourceFile, n: number) {
      bytes += n
      active.get(f.name)?.increment(n)
      update()
    },
    done(r: FileResult) {
      files++
      const b = active.get(r.file)
      if (b) {
        multi.remove(b)
        active.delete(r.file)
      }
      if (r.result !== 'stored') bytes += Math.max(0, r.size - r.bytes - r.offset)
      update()
      if (r.result === 'failed') multi.log(`failed: ${r.file}: ${r.error ?? ''}\n`)
    },
    stop() {
      multi.stop()
    },
  }
}

export interface Summary {
  readonly files: number
  readonly stored: number
  readonly present: number
  readonly failed: number
  readonly bytesSent: number
  readonly resumed: number
  readonly seconds: number
}

export function summarize(results: readonly FileResult[], seconds: number): Summary {
  let stored = 0
  let present = 0
  let failed = 0
  let bytesSent = 0
  let resumed = 0
  for (const r of results) {
    if (r.result === 'stored') stored++
    else if (r.result === 'present') present++
    else failed++
    bytesSent += r.bytes
    if (r.offset > 0) resumed++
  }
  return { files: results.length, stored, present, failed, bytesSent, resumed, seconds }
}

export function summaryText(s: Summary, notRun: number): string {
  const rate = s.seconds > 0 ? `${formatBytes(s.bytesSent / s.seconds)}/s` : ''
  const parts = [
    `${s.stored} stored`,
    `${s.present} already there`,
    ...(s.resumed > 0 ? [`${s.resumed} resumed`] : []),
    ...(s.failed > 0 ? [`${s.failed} failed`] : []),
    ...(notRun > 0 ? [`${notRun} not attempted`] : []),
  ]
  return `upload: ${parts.join(', ')}; ${formatBytes(s.bytesSent)} sent in ${s.seconds.toFixed(1)} s${rate ? ` (${rate})` : ''}`
}
