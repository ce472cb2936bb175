// The ssh stand-in of spec/recipes.md: git and git-annex reach `ssh://localhost/path` remotes
// through it, and it runs the remote command here, so the real git-annex-shell serves them
// without an ssh daemon.
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * The script: skips ssh's options, answers git's `-G` probe with 1, refuses host `!dne!` (the
 * unavailable remote of testremote) with exit 255, drops the host, and runs the command with
 * `run` (a shell fragment that gets the command line as "$*").
 */
export function fakeSshScript(run = 'exec sh -c "$*"'): string {
  return `#!/bin/bash
# ssh stand-in (recipes.md): skip options, answer git's -G probe with 1, drop the host, run the command here.
while [ $# -gt 0 ]; do
  case "$1" in
    -G) exit 1 ;;
    -o|-p|-i|-l|-F|-S) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
# git annex testremote's "unavailable remote" is the same url with host !dne!: refuse it as ssh would.
case "$1" in '!dne!') echo "ssh: Could not resolve hostname $1: Name or service not known" >&2; exit 255 ;; esac
shift
${run}
`
}

/**
 * Writes `<root>/bin/ssh` and returns the environment in which git and git-annex use it.
 * `log`: a file each remote command line is appended to. `run`: as fakeSshScript's.
 */
export async function installFakeSsh(root: string, opts: { log?: string; run?: string } = {}): Promise<NodeJS.ProcessEnv> {
  const bin = join(root, 'bin')
  await mkdir(bin, { recursive: true })
  const logLine = opts.log === undefined ? '' : `printf '%s\\n' "$*" >> '${opts.log}'\n`
  await writeFile(join(bin, 'ssh'), fakeSshScript(`${logLine}${opts.run ?? 'exec sh -c "$*"'}`))
  await chmod(join(bin, 'ssh'), 0o755)
  return { PATH: `${bin}:${process.env.PATH ?? ''}`, GIT_SSH_COMMAND: join(bin, 'ssh'), GIT_SSH_VARIANT: 'simple', GIT_ANNEX_USE_GIT_SSH: '1' }
}
