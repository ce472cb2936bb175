// The served repository and the client clone, set up as spec/recipes.md says, plus the checks
// that a phase really moved every object.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { annex, git, makeRepo, sh } from '../../test/helpers/annex.js'

export const benchEnv: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'annex-proxy bench',
  GIT_AUTHOR_EMAIL: 'bench@annex-proxy.invalid',
  GIT_COMMITTER_NAME: 'annex-proxy bench',
  GIT_COMMITTER_EMAIL: 'bench@annex-proxy.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
}

/** A fresh, empty served repository. */
export const makeServedRepo = (dir: string) => makeRepo(dir, 'srv')

/**
 * A clone of `served` holding a copy of `dataDir` (added and committed), whose origin is reached
 * only through annex+http on `port`.
 *
 * remote.origin.url is first the served repo's path (git clone and `sync --no-content` need it: the
 * sync learns the server's UUID over git), then an http URL on the same port that the annex server
 * does not serve git on. With no local path left, nothing can read or write the served objects
 * except through the server (bench/README.md, "Does it really go over HTTP?").
 */
export async function makeClient(served: string, dir: string, port: number, dataDir: string): Promise<void> {
  await sh(join(dir, '..'), 'git', ['clone', '-q', served, dir])
  await annex(dir, 'init', '-q', 'client')
  await git(dir, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await git(dir, 'config', 'remote.origin.annexUrl', `annex+http://127.0.0.1:${port}/git-annex/`)
  await annex(dir, 'sync', '-q', '--no-content')
  await sh(dir, 'cp', ['-r', dataDir, '.'])
  await annex(dir, 'add', '-q', '.')
  await git(dir, 'commit', '-q', '-m', 'bench data')
  await git(dir, 'config', 'remote.origin.url', `http://127.0.0.1:${port}/not-a-git-repository`)
}

/** Object files in a repository's annex (each object sits in a directory named after its key). */
export async function countObjects(repo: string): Promise<number> {
  let n = 0
  const walk = async (dir: string): Promise<void> => {
    let entries
    try {
      entries = await readdir(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name))
      else if (e.isFile() && dir.endsWith(`/${e.name}`)) n++
    }
  }
  await walk(join(repo, '.git/annex/objects'))
  return n
}
