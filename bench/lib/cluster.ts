// The cluster of the cluster scenarios, set up as the tips/clusters recipe and
// test/interop/cluster.test.ts do: a gateway repository `gw` with three local node repositories
// n1..n3 as remotes in cluster `mycluster`. And the client that reaches the reference's gateway
// through `git-annex-shell` over a stand-in ssh, since its p2phttp stalls on cluster copies
// (spec/protocol.md §9.19).
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { annex, git, makeRepo, sh } from '../../test/helpers/annex.js'
import { installFakeSsh } from '../../test/helpers/fake-ssh.js'

export const CLUSTER = 'mycluster'
export const NODES = ['n1', 'n2', 'n3'] as const

/** `root/gw`, gateway to cluster mycluster of `root/n1`..`root/n3` (all fresh and empty). */
export async function makeGateway(root: string, env: NodeJS.ProcessEnv): Promise<{ gw: string; nodes: string[] }> {
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  const nodes: string[] = []
  for (const n of NODES) {
    nodes.push(await makeRepo(join(root, n), n))
    await git(gw, 'remote', 'add', n, `../${n}`)
    await git(gw, 'config', `remote.${n}.annex-cluster-node`, CLUSTER)
  }
  await sh(gw, 'git', ['annex', 'initcluster', CLUSTER], { env })
  await sh(gw, 'git', ['annex', 'updatecluster'], { env })
  return { gw, nodes }
}

// What the ssh stand-in (test/helpers/fake-ssh.ts) runs here: it also tells the bench's
// SessionMeter which sessions ran (pid) and what their command cost (bash `times`, in the main
// shell: a subshell's would be its own; its own line, then its children's, into a file per
// session). It runs the command as a child rather than exec'ing it, to be there after.
const METERED_RUN = `echo "$$ $1" >> "$ANNEX_BENCH_SSH_PIDS"
sh -c "$*"
rc=$?
times > "$ANNEX_BENCH_SSH_TIMES/$$"
exit $rc`

export interface ShellClientEnv {
  readonly env: NodeJS.ProcessEnv
  /** The stand-in's session log and CPU directory, for SessionMeter. */
  readonly pidLog: string
  readonly timesDir: string
}

/** `bin/ssh` under `root` and the environment that makes git and git-annex use it. */
export async function fakeSsh(root: string, base: NodeJS.ProcessEnv): Promise<ShellClientEnv> {
  const sshEnv = await installFakeSsh(root, { run: METERED_RUN })
  const pidLog = join(root, 'ssh-sessions.log')
  const timesDir = join(root, 'ssh-times')
  await writeFile(pidLog, '')
  await mkdir(timesDir)
  return {
    pidLog,
    timesDir,
    env: {
      ...base,
      ...sshEnv,
      PATH: `${join(root, 'bin')}:${base.PATH ?? ''}`,
      ANNEX_BENCH_SSH_PIDS: pidLog,
      ANNEX_BENCH_SSH_TIMES: timesDir,
    },
  }
}

/**
 * A clone of `gw` over `ssh://localhost<gw>` holding a copy of `dataDir` (added and committed). Every
 * annex operation on origin and its proxied remotes goes through `git-annex-shell` on `gw`.
 */
export async function makeShellClient(gw: string, dir: string, dataDir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const run = (...args: string[]) => sh(dir, 'git', args, { env })
  await sh(join(dir, '..'), 'git', ['clone', '-q', `ssh://localhost${gw}`, dir], { env })
  await run('annex', 'init', '-q', 'client')
  await run('annex', 'sync', '-q', '--no-content', '--no-push')
  await sh(dir, 'cp', ['-r', dataDir, '.'])
  await annex(dir, 'add', '-q', '.')
  await git(dir, 'commit', '-q', '-m', 'bench data')
}
