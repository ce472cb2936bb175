// The git-annex every command needs (the location log is written by it, git-annex-shell and
// the gateway's configuration come from it): found on PATH and at least the version that
// has p2phttp and clusters, else one line saying what to install — the same rule
// scripts/install-git-annex.sh applies for `npm start` and `npm test`.
import { execFile } from 'node:child_process'
import { GitAnnexMissingError } from '../errors.js'

/** git-annex 10.20240731: p2phttp, clusters and proxies. */
export const MIN_GIT_ANNEX = '10.20240731'

/** Compares dotted versions numerically: <0, 0, >0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0)
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/** The installed git-annex's version (without a `-g…` build suffix), or undefined when none runs. */
export function gitAnnexVersion(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('git-annex', ['version', '--raw'], { env, timeout: 30_000 }, (err, stdout) => {
      const v = String(stdout).trim().split('-')[0]
      resolve(err || !v ? undefined : v)
    })
  })
}

/** What to do about it, in one line. */
export function installAdvice(found: string | undefined): string {
  const what = found === undefined ? 'no git-annex is on PATH' : `git-annex ${found} is too old`
  return (
    `annex-proxy needs git-annex >= ${MIN_GIT_ANNEX} and ${what}: run 'sudo bash scripts/install-git-annex.sh' ` +
    `(Debian 12 via bookworm-backports, Debian 13 from its main suite), or install it from https://git-annex.branchable.com/install/`
  )
}

/** Resolves when a new enough git-annex is on PATH; else rejects with installAdvice(). */
export async function requireGitAnnex(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const v = await gitAnnexVersion(env)
  if (v === undefined || compareVersions(v, MIN_GIT_ANNEX) < 0) throw new GitAnnexMissingError(installAdvice(v))
}
