// The git-annex-shell front (bin/git-annex-shell): put first on the ssh user's PATH, or named
// in an authorized_keys `command=`, it serves `p2pstdio` with annex-proxy and hands every
// other git-annex-shell command (configlist, git-upload-pack through git-shell, inannex, …)
// to the real git-annex-shell, with its arguments, stdio and environment unchanged.
import { spawn } from 'node:child_process'
import { accessSync, constants, realpathSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../errors.js'
import { requireGitAnnex } from '../annex/git-annex-version.js'
import { runP2pStdio } from './p2pstdio.js'
import { routeShellArgs } from './shell-args.js'

const OWN_FRONT = fileURLToPath(new URL('../../../bin/git-annex-shell', import.meta.url))

function realpath(p: string): string | undefined {
  try {
    return realpathSync(p)
  } catch {
    return undefined
  }
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The real git-annex-shell: $ANNEX_PROXY_GIT_ANNEX_SHELL, else the first `git-annex-shell` on
 * PATH that is not this front (by its resolved path, so symlinks to the front are skipped too).
 */
export function findRealGitAnnexShell(env: NodeJS.ProcessEnv): string {
  const configured = env.ANNEX_PROXY_GIT_ANNEX_SHELL
  if (configured) return configured
  const fronts = new Set([OWN_FRONT, env.ANNEX_PROXY_FRONT].filter((p): p is string => !!p).map((p) => realpath(p) ?? p))
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    const candidate = join(dir, 'git-annex-shell')
    const real = realpath(candidate)
    if (real === undefined || fronts.has(real) || !executable(candidate)) continue
    return candidate
  }
  throw new ConfigError('the real git-annex-shell is not on PATH (install git-annex, or set ANNEX_PROXY_GIT_ANNEX_SHELL to its path)')
}

/** Runs the command git-annex-shell was given; resolves with the exit status. */
export async function runGitAnnexShell(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const route = routeShellArgs(argv)
  if (route.kind === 'p2pstdio') {
    // As `annex-proxy p2pstdio`: without git-annex a session would open and then fail its
    // first upload (the location log); say what to install instead.
    await requireGitAnnex(env)
    return runP2pStdio(route.args, env)
  }
  const real = findRealGitAnnexShell(env)
  const child = spawn(real, [...argv], { stdio: 'inherit', env })
  const forward = (sig: NodeJS.Signals) => () => void child.kill(sig)
  const handlers = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const)
  for (const [s, h] of handlers) process.on(s, h)
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new ConfigError(`cannot run ${real}: ${e.message}`)))
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? (osSignal(signal) ?? 1) : 1)))
    })
  } finally {
    for (const [s, h] of handlers) process.off(s, h)
  }
}

function osSignal(s: NodeJS.Signals): number | undefined {
  return (osConstants.signals as Record<string, number | undefined>)[s]
}
