// CPU time and peak RSS of a process and all its descendants, from /proc (Linux only).
//
// CPU: the sum over the tree of utime+stime+cutime+cstime, read when the meter starts and when it
// stops; the difference is the work done in between. A descendant that exits and is reaped by its
// parent moves its time into the parent's cutime/cstime, so short-lived children are counted too.
// RSS: every `intervalMs` the tree's resident pages are summed; the peak is the largest sum, or the
// root's VmHWM (reset through clear_refs when the meter starts) if that is larger, which catches a
// spike of the root between two samples.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Usage {
  readonly cpuSeconds: number
  readonly peakRssBytes: number
  /**
   * The root process's own peak (its VmHWM, reset at start), without its descendants: for a
   * server, the gateway process itself, apart from the git and git-annex helpers it runs.
   * Absent when there is no single root (SessionMeter).
   */
  readonly rootPeakRssBytes?: number
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
  return processTrees([root]).get(root) ?? []
}

/** root → the root and its live descendants, for several roots with one scan of /proc (absent: gone). */
export function processTrees(roots: Iterable<number>): Map<number, Stat[]> {
  const byParent = new Map<number, Stat[]>()
  const byPid = new Map<number, Stat>()
  for (const name of readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const s = readStat(pid)
    if (!s) continue
    byPid.set(pid, s)
    const siblings = byParent.get(s.ppid)
    if (siblings) siblings.push(s)
    else byParent.set(s.ppid, [s])
  }
  const out = new Map<number, Stat[]>()
  for (const root of roots) {
    const rootStat = byPid.get(root)
    if (!rootStat) continue
    const tree: Stat[] = [rootStat]
    for (let i = 0; i < tree.length; i++) tree.push(...(byParent.get(tree[i]!.pid) ?? []))
    out.set(root, tree)
  }
  return out
}

function rootHwmBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

export class ProcessTreeMeter implements Meter {
  #startTicks = 0
  #peakPages = 0
  #rootPeakPages = 0
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
    const rootPeak = Math.max(this.#rootPeakPages * PAGE_SIZE, rootHwmBytes(this.rootPid))
    const peakRssBytes = Math.max(this.#peakPages * PAGE_SIZE, rootPeak)
    return { cpuSeconds: (endTicks - this.#startTicks) / CLK_TCK, peakRssBytes, rootPeakRssBytes: rootPeak, samples: this.#samples }
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
    this.#rootPeakPages = Math.max(this.#rootPeakPages, tree[0]!.rssPages)
    this.#samples++
    this.#lastTicks = ticks
    return ticks
  }
}

/** What a timed phase meters: a server's process tree, or the sessions of a server that has none. */
export interface Meter {
  start(): void
  stop(): Promise<Usage> | Usage
}

/**
 * The server side of a reference gateway reached through `git-annex-shell` over the stand-in ssh
 * (bench/lib/cluster.ts): no process runs between commands, each ssh session is one. The
 * stand-in appends its pid to `pidLog` when a session starts, runs the command as its child, and
 * when it ends writes bash's `times` to `timesDir/<pid>` (its second line: the children's
 * user+system, which holds every reaped descendant).
 * CPU: the sum of those for the sessions that ended during the phase, plus, for any still alive
 * at the end, its tree as last sampled. RSS: every `intervalMs` the summed RSS of every live
 * session's tree without the stand-in's own bash (what an sshd would be in its place).
 */
export class SessionMeter implements Meter {
  #peakPages = 0
  #samples = 0
  #timer: NodeJS.Timeout | undefined
  readonly #lastTicks = new Map<number, number>()

  constructor(readonly pidLog: string, readonly timesDir: string, readonly intervalMs = 50) {}

  start(): void {
    writeFileSync(this.pidLog, '')
    for (const f of readdirSync(this.timesDir)) rmSync(join(this.timesDir, f))
    this.#lastTicks.clear()
    this.#sample()
    this.#timer = setInterval(() => this.#sample(), this.intervalMs)
  }

  async stop(): Promise<Usage> {
    clearInterval(this.#timer)
    this.#sample()
    // A session's `times` line is written just after its command exits: give stragglers a moment.
    let ended = this.#ended()
    for (let i = 0; i < 40 && [...this.#pids()].some((p) => !ended.has(p)); i++) {
      await new Promise((r) => setTimeout(r, 50))
      ended = this.#ended()
    }
    let seconds = 0
    for (const s of ended.values()) seconds += s
    for (const pid of this.#pids()) if (!ended.has(pid)) seconds += (this.#lastTicks.get(pid) ?? 0) / CLK_TCK
    return { cpuSeconds: seconds, peakRssBytes: this.#peakPages * PAGE_SIZE, samples: this.#samples }
  }

  #pids(): Set<number> {
    const text = readFileSync(this.pidLog, 'utf8')
    return new Set(text.split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0])))
  }

  /** pid → CPU seconds of the sessions that have ended (`times`: "0m0.002s 0m0.000s\n0m1.409s 0m1.010s"). */
  #ended(): Map<number, number> {
    const out = new Map<number, number>()
    for (const pid of readdirSync(this.timesDir)) {
      const times = readFileSync(join(this.timesDir, pid), 'utf8').trim().split(/\s+/)
      if (times.length !== 4) continue // being written
      const secs = times.map((t) => {
        const m = /^(\d+)m([\d.]+)s$/.exec(t)
        return m ? Number(m[1]) * 60 + Number(m[2]) : 0
      })
      out.set(Number(pid), secs[2]! + secs[3]!) // the second line: the children's user and system time
    }
    return out
  }

  #sample(): void {
    let pages = 0
    const ended = this.#ended() // (a pid that ended may be reused by now)
    for (const [pid, tree] of processTrees([...this.#pids()].filter((p) => !ended.has(p)))) {
      const below = tree.slice(1)
      pages += below.reduce((a, s) => a + s.rssPages, 0)
      // The root's own utime/stime is bash's; its children's CPU reaches cutime/cstime only when they end.
      this.#lastTicks.set(pid, below.reduce((a, s) => a + s.cpuTicks, 0))
    }
    this.#peakPages = Math.max(this.#peakPages, pages)
    this.#samples++
  }
}
