// `annex-proxy serve` as a real process that reports where it listens: waits for its
// "annex-proxy serving" log line (never a port picked beforehand) with a deadline.
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { type After, PROJECT_ROOT, defer, gitEnv } from './annex.js'

export interface ServeProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** What the "annex-proxy serving" line said: a host:port or a socket path. */
  readonly address: string
  readonly port: number | undefined
  output(): string
  /** Resolves with the next log line (parsed) that `match` accepts, within `ms`. */
  waitFor(match: (line: Record<string, unknown>) => boolean, what: string, ms?: number): Promise<Record<string, unknown>>
  /** Ends with the process; its exit code or signal. */
  readonly exited: Promise<number | string>
}

const START_DEADLINE_MS = 60_000

export async function startServe(t: After, cwd: string, flags: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli/main.js'), 'serve', ...flags], {
    cwd,
    env: { ...gitEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const waiters = new Set<{ match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void; timer?: NodeJS.Timeout }>()
  let partial = ''
  const onData = (d: Buffer) => {
    const text = d.toString('utf8')
    out = (out + text).slice(-2_000_000)
    partial += text
    let nl: number
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl)
      partial = partial.slice(nl + 1)
      let parsed: Record<string, unknown> | undefined
      try {
        parsed = JSON.parse(line) as Record<string, unknown>
      } catch {
        parsed = { text: line }
      }
      for (const w of waiters) {
        if (w.match(parsed)) {
          waiters.delete(w)
          w.resolve(parsed)
        }
      }
    }
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  // 'exit', not 'close': a successor started by a hand-over keeps the pipes open.
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code ?? -1)))
  defer(t, async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const waitFor = (match: (l: Record<string, unknown>) => boolean, what: string, ms = START_DEADLINE_MS) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const w: { match: typeof match; resolve: (l: Record<string, unknown>) => void; timer?: NodeJS.Timeout } = {
        match,
        resolve: (l: Record<string, unknown>) => {
          clearTimeout(timer)
          resolve(l)
        },
      }
      const timer = setTimeout(() => {
        waiters.delete(w)
        reject(new Error(`waited ${ms} ms for ${what}; output: ${out.slice(-3000)}`))
      }, ms)
      w.timer = timer
      waiters.add(w)
    })
  const serving = waitFor((l) => l.msg === 'annex-proxy serving' && l.pid === child.pid, 'annex-proxy to report that it serves')
  let started = false
  // Only a start that failed ends the waits: after a hand-over the successor's lines still come.
  const failed = exited.then((c) => {
    if (started) return new Promise<never>(() => {})
    for (const w of waiters) clearTimeout(w.timer)
    waiters.clear()
    throw new Error(`annex-proxy exited (${c}) before serving: ${out.slice(-3000)}`)
  })
  failed.catch(() => {})
  serving.catch(() => {})
  const first = await Promise.race([serving, failed])
  started = true
  const address = String(first.address)
  const m = /:(\d+)$/.exec(address)
  return { child, pid: child.pid!, address, port: m && !address.startsWith('/') ? Number(m[1]) : undefined, output: () => out, waitFor, exited }
}
