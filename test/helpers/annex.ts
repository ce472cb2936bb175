// Real git-annex repositories and processes for tests: servers on 127.0.0.1 and port 0
// only (each reports the port it got), everything undone by `defer` in reverse order of creation.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { listeningPorts } from './wait.js'

const run = promisify(execFile)

export interface After {
  after(fn: () => unknown): void
}

const cleanups = new WeakMap<After, Array<() => unknown>>()

/**
 * Registers cleanup for the end of test `t`. node:test runs `after` hooks in the order
 * they were added and skips the rest when one fails; here they unwind last-in-first-out
 * (servers stop before their directories are removed) and every one runs.
 */
export function defer(t: After, fn: () => unknown): void {
  let stack = cleanups.get(t)
  if (!stack) {
    const s: Array<() => unknown> = []
    stack = s
    cleanups.set(t, s)
    t.after(async () => {
      let first: unknown
      while (s.length > 0) {
        try {
          await s.pop()!()
        } catch (e) {
          first ??= e
        }
      }
      if (first !== undefined) throw first
    })
  }
  stack.push(fn)
}

/** A fresh directory, removed after the test (objects are read-only, so chmod first). */
export async function tempDir(t: After, prefix = 'annex-proxy-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  defer(t, async () => {
    await run('chmod', ['-R', 'u+w', d]).catch(() => {})
    await rm(d, { recursive: true, force: true, maxRetries: 5 })
  })
  return d
}

/** The environment every git and git-annex of the tests runs in: fixed identity, no system config. */
export const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'annex-proxy test',
  GIT_AUTHOR_EMAIL: 'test@annex-proxy.invalid',
  GIT_COMMITTER_NAME: 'annex-proxy test',
  GIT_COMMITTER_EMAIL: 'test@annex-proxy.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
}

export interface RunResult {
  stdout: string
  stderr: string
}

/** Runs a command in `cwd`; rejects with its output on a non-zero exit. */
export async function sh(cwd: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const child = spawn(cmd, args, { cwd, env: { ...gitEnv, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  // A command that exits without reading stdin makes this write fail with EPIPE;
  // unhandled, that error would crash the test run. Its exit code tells the story.
  child.stdin.on('error', () => undefined)
  child.stdin.end(opts.input ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (c, s) => resolve([c, s]))
  }).finally(() => clearTimeout(timer))
  if (code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${code ?? signal}\n${stdout}\n${stderr}`)
  }
  return { stdout, stderr }
}

export const git = (cwd: string, ...args: string[]) => sh(cwd, 'git', args)
export const annex = (cwd: string, ...args: string[]) => sh(cwd, 'git', ['annex', ...args])

/** `git init` + `git annex init` + an empty commit, like the transcripts' mkrepo. */
/** Ends a child process: SIGTERM, then SIGKILL if it has not exited 10 s later; resolves once it closed. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const closed = new Promise((r) => child.once('close', r))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await closed
  clearTimeout(timer)
}

export async function makeRepo(dir: string, description: string, opts: { bare?: boolean } = {}): Promise<string> {
  await mkdir(join(dir, '..'), { recursive: true })
  await sh(join(dir, '..'), 'git', ['init', '-q', '-b', 'main', ...(opts.bare ? ['--bare'] : []), dir])
  await annex(dir, 'init', '-q', description)
  if (!opts.bare) await git(dir, 'commit', '-q', '--allow-empty', '-m', 'init')
  return dir
}

export async function repoUuid(dir: string): Promise<string> {
  return (await git(dir, 'config', 'annex.uuid')).stdout.trim()
}

/** A clone of `server` whose origin talks annex+http to `port`. */
export async function makeClient(server: string, dir: string, port: number, opts: { url?: string } = {}): Promise<string> {
  await sh(join(dir, '..'), 'git', ['clone', '-q', server, dir])
  await annex(dir, 'init', '-q', 'client')
  await git(dir, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await git(dir, 'config', 'remote.origin.annexUrl', `annex+http://127.0.0.1:${port}/git-annex/`)
  if (opts.url) await git(dir, 'config', 'remote.origin.url', opts.url)
  await annex(dir, 'sync', '-q', '--no-content', '--no-push')
  return dir
}

/**
 * A port nothing listens on right now, for tests of "connection refused" only: never bind
 * a server to it later (another process may take it first); servers listen on port 0.
 */
export async function unusedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

export interface Served {
  port: number
  child: ChildProcess
  output: () => string
  stop(): Promise<void>
}

const START_DEADLINE_MS = 60_000

/**
 * Starts `cmd` and resolves once `listening` reports the port it listens on (the server
 * chose it: port 0), or rejects when it exits first or the deadline passes.
 */
async function startProcess(t: After, cwd: string, cmd: string, args: string[], what: string, listening: (child: ChildProcess, output: () => string) => number | undefined, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const child = spawn(cmd, args, { cwd, env: { ...gitEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (d: Buffer) => {
    out += d.toString('utf8')
    if (out.length > 1_000_000) out = out.slice(-500_000)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const stop = () => stopChild(child)
  defer(t, stop)
  const output = () => out
  const t0 = performance.now()
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening: ${out.slice(-3000)}`)
    const port = listening(child, output)
    if (port !== undefined) return { port, child, output, stop }
    if (performance.now() - t0 > START_DEADLINE_MS) throw new Error(`gave up after ${START_DEADLINE_MS} ms waiting for ${what} to listen: ${out.slice(-3000)}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/**
 * The reference: `git annex p2phttp` serving `repo` on port 0 (it does not say which port
 * it got: read from /proc which port its process listens on).
 */
export async function startReference(t: After, repo: string, flags: string[] = ['--wideopen'], env: NodeJS.ProcessEnv = {}, opts: { jobs?: number } = {}): Promise<Served> {
  return startProcess(t, repo, 'git', ['annex', 'p2phttp', '--bind', '127.0.0.1', '--port', '0', '--jobs', String(opts.jobs ?? 4), ...flags], 'git annex p2phttp', (child) => listeningPorts(child.pid!)[0], env)
}

export const PROJECT_ROOT = new URL('../../../', import.meta.url).pathname

/**
 * annex-proxy serving `repo` (or whatever `flags` name) through its real CLI, on port 0
 * unless `opts.port` (a restart on the port it had) says otherwise; the port is the one its
 * "annex-proxy serving" log line reports.
 */
export async function startAnnexProxy(t: After, cwd: string, flags: string[] = ['--wideopen'], env: NodeJS.ProcessEnv = {}, opts: { port?: number } = {}): Promise<Served> {
  const args = [join(PROJECT_ROOT, 'dist/src/cli/main.js'), 'serve', '--bind', '127.0.0.1', '--port', String(opts.port ?? 0), ...flags]
  return startProcess(t, cwd, process.execPath, args, 'annex-proxy', (child, output) => servingPort(output(), child.pid!), env)
}

/** The port in the "annex-proxy serving" line process `pid` logged, if it did yet. */
export function servingPort(output: string, pid: number): number | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('"annex-proxy serving"')) continue
    try {
      const l = JSON.parse(line) as { msg?: string; pid?: number; address?: string }
      const m = l.msg === 'annex-proxy serving' && l.pid === pid ? /:(\d+)$/.exec(l.address ?? '') : null
      if (m) return Number(m[1])
    } catch {
      // Not a whole line yet.
    }
  }
  return undefined
}

/** A SHA256E key for `data`, as `git annex add` of a file named `*<ext>` would make it. */
export function sha256Key(data: Uint8Array, ext = '.bin'): string {
  const hex = createHash('sha256').update(data).digest('hex')
  return `SHA256E-s${data.length}--${hex}${ext}`
}

/** Whether the repository's location log says the repository itself holds `key` (`git annex whereis`). */
export async function whereisHere(repo: string, key: string): Promise<boolean> {
  const { stdout } = await sh(repo, 'git', ['annex', 'whereis', '--json', '--key', key]).catch((e: unknown) => {
    // whereis exits 1 for a key with no copies, after printing its JSON.
    const m = /(\{.*\})/.exec(String(e))
    if (m) return { stdout: m[1]!, stderr: '' }
    throw e
  })
  const j = JSON.parse(stdout) as { whereis: { here: boolean }[] }
  return j.whereis.some((w) => w.here)
}

/** Keys `git annex findkeys --in here` lists: what git-annex believes this repository holds. */
export async function findKeysHere(repo: string): Promise<string[]> {
  const { stdout } = await annex(repo, 'findkeys', '--in', 'here')
  return stdout.split('\n').filter(Boolean).sort()
}

/** A `git-annex-shell p2pstdio` session on `repo`, spoken line by line (spec §1.4). */
export interface P2PSession {
  send(line: string): void
  /** The next line the server sends. */
  next(): Promise<string>
  close(): Promise<void>
}

export async function p2pStdio(t: After, repo: string, clientUuid = '00000000-0000-4000-8000-000000000001'): Promise<P2PSession> {
  const uuid = await repoUuid(repo)
  const child = spawn('git-annex-shell', ['p2pstdio', repo, clientUuid, '--uuid', uuid], { cwd: repo, env: gitEnv, stdio: ['pipe', 'pipe', 'pipe'] })
  const lines: string[] = []
  const waiting: ((l: string) => void)[] = []
  let buf = ''
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const w = waiting.shift()
      if (w) w(l)
      else lines.push(l)
    }
  })
  const closed = new Promise<void>((r) => child.once('close', () => r()))
  const close = async () => {
    child.stdin.end()
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await closed
    clearTimeout(timer)
  }
  defer(t, close)
  const session: P2PSession = {
    send: (line) => void child.stdin.write(`${line}\n`),
    next: () => {
      const l = lines.shift()
      if (l !== undefined) return Promise.resolve(l)
      return new Promise<string>((resolve, reject) => {
        waiting.push(resolve)
        void closed.then(() => reject(new Error(`git-annex-shell closed the session: ${stderr}`)))
      })
    },
    close,
  }
  const greeting = await session.next()
  if (greeting !== `AUTH-SUCCESS ${uuid}`) throw new Error(`unexpected greeting ${greeting}`)
  session.send('VERSION 4')
  const v = await session.next()
  if (v !== 'VERSION 4') throw new Error(`unexpected version reply ${v}`)
  return session
}

/** Runs a command without stdin and resolves with its exit code and output, whatever the code. */
export async function shStatus(cwd: string, cmd: string, args: string[]): Promise<RunResult & { code: number }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env: gitEnv, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(err)
      else resolve({ code: err ? (err.code as number) : 0, stdout, stderr })
    })
  })
}
