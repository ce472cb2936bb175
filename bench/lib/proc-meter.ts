// CPU time and peak RSS of a process and all its descendants, from /proc (Linux only).
//
// CPU: the sum over the tree of utime+stime+cutime+cstime, read when the meter starts and when it
// stops; the difference is the work done in between. A descendant that exits and is reaped by its
// parent moves its time into the parent's cutime/cstime, so short-lived children are counted too.
// RSS: every `intervalMs` the tree's resident pages are summed; the peak is the largest sum, or the
// root's VmHWM (reset through clear_refs when the meter starts) if that is larger, which catches a
// spike of the root between two samples.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

export interface Usage {
  readonly cpuSeconds: number
  readonly peakRssBytes: number
  readonly samples: number
}

interface Stat {
  readonly pid: number
  readonly ppid: number
  readonly cpuTicks: number
  readonly rssPages: number
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
const PAGE_SIZE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096

function readStat(pid: number): Stat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined // exited meanwhile
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const n = (i: number) => Number(f[i] ?? 0)
  // f[0] = field 3 (state); utime..cstime = fields 14..17; rss = field 24.
  return { pid, ppid: n(1), cpuTicks: n(11) + n(12) + n(13) + n(14), rssPages: n(21) }
}

/** The root and every live descendant (a scan of /proc; the kernel here has no task/…/children). */
export function processTree(root: number): Stat[] {
  const byParent = new Map<number, Stat[]>()
  let rootStat: Stat | undefined
  for (const name of readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const s = readStat(pid)
    if (!s) continue
    if (pid === root) rootStat = s
    const siblings = byParent.get(s.ppid)
    if (siblings) siblings.push(s)
    else byParent.set(s.ppid, [s])
  }
  if (!rootStat) return []
  const tree: Stat[] = [rootStat]
  for (let i = 0; i < tree.length; i++) tree.push(...(byParent.get(tree[i]!.pid) ?? []))
  return tree
}

function rootHwmBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

export class ProcessTreeMeter {
  #startTicks = 0
  #peakPages = 0
  #samples = 0
  #lastTicks = 0
  #timer: NodeJS.Timeout | undefined

  constructor(readonly rootPid: number, readonly intervalMs = 50) {}

  start(): void {
    try {
      writeFileSync(`/proc/${this.rootPid}/clear_refs`, '5') // 5 = reset the peak RSS (VmHWM)
    } catch {
      // not ours to reset, or an old kernel: the sampled peak still stands
    }
    this.#startTicks = this.#sample()
    this.#timer = setInterval(() => this.#sample(), this.intervalMs)
  }

  stop(): Usage {
    clearInterval(this.#timer)
    const endTicks = this.#sample()
    const peakRssBytes = Math.max(this.#peakPages * PAGE_SIZE, rootHwmBytes(this.rootPid))
    return { cpuSeconds: (endTicks - this.#startTicks) / CLK_TCK, peakRssBytes, samples: this.#samples }
  }

  /** One sample: updates the RSS peak and returns the tree's CPU ticks. */
  #sample(): number {
    const tree = processTree(this.rootPid)
    if (tree.length === 0) return this.#lastTicks // the root is gone: keep what was last seen
    let ticks = 0
    let pages = 0
    for (const s of tree) {
      ticks += s.cpuTicks
      pages += s.rssPages
    }
    this.#peakPages = Math.max(this.#peakPages, pages)
    this.#samples++
    this.#lastTicks = ticks
    return ticks
  }
}
