// `npm start`: a ready-to-use gateway on 127.0.0.1:9417, kept in the project's own data
// folder: a repository that is the gateway to cluster `demo` of three node repositories,
// each wanting `balanced=demo:2` (so every file lands on two of the three), set up with
// git-annex's own commands as tips/clusters has it. It prints the git config a user needs.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseServeArgs } from '../config/config.js'
import { serve } from './serve.js'

const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url))

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', args, {
    cwd,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: process.env.GIT_AUTHOR_NAME ?? 'annex-proxy demo',
      GIT_AUTHOR_EMAIL: process.env.GIT_AUTHOR_EMAIL ?? 'demo@annex-proxy.invalid',
      GIT_COMMITTER_NAME: process.env.GIT_COMMITTER_NAME ?? 'annex-proxy demo',
      GIT_COMMITTER_EMAIL: process.env.GIT_COMMITTER_EMAIL ?? 'demo@annex-proxy.invalid',
    },
  })
}

const NODES = ['node1', 'node2', 'node3'] as const

/** The gateway and its nodes, made once; later starts serve what is there. */
function makeGateway(data: string): string {
  const repo = join(data, 'demo-repo')
  if (existsSync(join(repo, '.git', 'config'))) return repo
  const init = (dir: string, description: string) => {
    mkdirSync(dir, { recursive: true })
    git(dir, 'init', '-q', '-b', 'main')
    git(dir, 'annex', 'init', '-q', description)
    git(dir, 'commit', '-q', '--allow-empty', '-m', `annex-proxy ${description}`)
  }
  for (const n of NODES) init(join(data, `demo-${n}`), `demo ${n}`)
  // The gateway last: its existence says the whole setup is complete.
  const tmp = join(data, 'demo-repo.partial')
  rmSync(tmp, { recursive: true, force: true })
  init(tmp, 'annex-proxy demo gateway')
  for (const n of NODES) {
    git(tmp, 'remote', 'add', n, `../demo-${n}`)
    git(tmp, 'config', `remote.${n}.annex-cluster-node`, 'demo')
  }
  git(tmp, 'annex', 'initcluster', 'demo')
  git(tmp, 'annex', 'updatecluster')
  for (const n of NODES) {
    git(tmp, 'annex', 'group', n, 'demo')
    git(tmp, 'annex', 'wanted', n, 'balanced=demo:2')
  }
  // Remote urls are relative, and the nodes sit beside the gateway either way.
  renameSync(tmp, repo)
  return repo
}

/**
 * A directory special remote `archive` proxied by the gateway (served natively, streamed).
 * Added to a demo made before it existed too.
 */
function ensureArchive(data: string, repo: string): void {
  try {
    execFileSync('git', ['config', 'remote.archive.annex-uuid'], { cwd: repo, stdio: 'ignore' })
    return
  } catch {
    // not there yet
  }
  const dir = join(data, 'demo-archive')
  mkdirSync(dir, { recursive: true })
  git(repo, 'annex', 'initremote', 'archive', 'type=directory', `directory=${dir}`, 'encryption=none')
  git(repo, 'config', 'remote.archive.annex-proxy', 'true')
  git(repo, 'annex', 'updateproxy')
}

export async function runDemo(extra: string[]): Promise<void> {
  // ANNEX_PROXY_DATA moves the demo's data folder (tests use a temp dir).
  const data = process.env.ANNEX_PROXY_DATA ?? join(PROJECT_ROOT, 'data')
  const repo = makeGateway(data)
  ensureArchive(data, repo)
  const cfg = parseServeArgs(['--repo', repo, '--bind', '127.0.0.1', '--port', '9417', '--wideopen', ...extra], PROJECT_ROOT)
  // Printed once listening, with the port it got (--port 0 picks any free one).
  const printHelp = (address: string) => {
    const url = `annex+http://${address}/git-annex/`
    process.stdout.write(
      [
        `annex-proxy demo: serving ${repo}, gateway to cluster "demo" of ${NODES.map((n) => `demo-${n}`).join(', ')}`,
        `and to the directory special remote "archive" (${join(data, 'demo-archive')})`,
        `on ${url} (read-write for anyone on this machine; Ctrl-C stops it)`,
        '',
        'Use it from a git-annex client:',
        `  git clone ${repo} myclone && cd myclone`,
        '  git annex init',
        '  git config annex.security.allowed-ip-addresses 127.0.0.1',
        `  git config remote.origin.annexUrl ${url}`,
        '  git annex sync --no-content',
        '  echo hello > hello.txt && git annex add hello.txt && git commit -m hello',
        '  git annex copy --to origin-demo hello.txt     # one upload, stored on 2 of the 3 nodes',
        '  git annex copy --to origin-archive hello.txt  # the directory special remote, streamed through the gateway',
        '  git annex whereis hello.txt',
        '',
      ].join('\n'),
    )
  }
  await serve(cfg, { onListening: printHelp })
}
