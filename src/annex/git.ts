// Running git and git-annex in a repository we were given by path. Variables a git
// hook or wrapper may have exported (GIT_DIR, GIT_WORK_TREE, …) would silently point
// the commands at another repository than `cwd`, so they are dropped.
import { spawn } from 'node:child_process'
import { GitCommandError } from '../errors.js'

const REPO_VARS = ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_COMMON_DIR', 'GIT_NAMESPACE']

export function repoEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const v of REPO_VARS) delete env[v]
  return env
}

const KEEP = 64 << 10

/** Runs `git args…` in `cwd`; resolves with stdout, rejects with stderr on a non-zero exit. */
export function runGit(cwd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn('git', args, { cwd, env: repoEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    proc.stdout.on('data', (d: Buffer) => out.push(d))
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-KEEP)
    })
    proc.once('error', reject)
    proc.once('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'))
      else reject(new GitCommandError(`git ${args.join(' ')} exited ${code ?? signal}: ${err.trim()}`, err))
    })
  })
}

/**
 * Runs `git args…` in `cwd` with extra environment (e.g. GIT_INDEX_FILE) and `input` on stdin;
 * resolves with stdout as bytes, rejects with stderr on a non-zero exit.
 */
export function runGitBytes(cwd: string, args: string[], opts: { readonly env?: NodeJS.ProcessEnv; readonly input?: string | Buffer } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const proc = spawn('git', args, { cwd, env: { ...repoEnv(), ...opts.env }, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    proc.stdout!.on('data', (d: Buffer) => out.push(d))
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-KEEP)
    })
    if (proc.stdin) {
      // A git that exits early (bad input) closes the pipe; its exit status reports why.
      proc.stdin.on('error', () => undefined)
      proc.stdin.end(opts.input)
    }
    proc.once('error', reject)
    proc.once('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out))
      else reject(new GitCommandError(`git ${args.join(' ')} exited ${code ?? signal}: ${err.trim()}`, err))
    })
  })
}
