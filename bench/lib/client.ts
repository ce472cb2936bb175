// The real git-annex client, run as `git-annex …` (not `git annex …`) so that a stalled command can
// be killed: killing the `git` wrapper would orphan git-annex, which goes on (spec/recipes.md).
import { spawn } from 'node:child_process'

/** The command did not finish in time; it was killed. */
export class StalledError extends Error {
  constructor(readonly args: readonly string[], readonly timeoutMs: number, program = 'git-annex') {
    super(`${program} ${args.join(' ')} stalled: no exit after ${timeoutMs / 1000} s, killed`)
    this.name = 'StalledError'
  }
}

export async function clientAnnex(cwd: string, args: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv): Promise<void> {
  const child = spawn('git-annex', args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (d: Buffer) => {
    out = (out + d.toString('utf8')).slice(-20_000)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  let stalled = false
  const timer = setTimeout(() => {
    stalled = true
    child.kill('SIGKILL')
  }, timeoutMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (c, s) => resolve([c, s]))
  }).finally(() => clearTimeout(timer))
  if (stalled) throw new StalledError(args, timeoutMs)
  if (code !== 0) throw new Error(`git-annex ${args.join(' ')} exited ${code ?? signal}\n${out.slice(-2000)}`)
}
