// `npm start`: a ready-to-use gateway on 127.0.0.1:9417 serving a demo repository
// kept in the project's own data folder, and the git config a user needs for it.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseServeArgs } from '../config/config.js'
import { serve } from './main.js'

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

export async function runDemo(extra: string[]): Promise<void> {
  // ANNEX_PROXY_DATA moves the demo's data folder (tests use a temp dir).
  const repo = join(process.env.ANNEX_PROXY_DATA ?? join(PROJECT_ROOT, 'data'), 'demo-repo')
  if (!existsSync(join(repo, '.git', 'config'))) {
    mkdirSync(repo, { recursive: true })
    git(repo, 'init', '-q', '-b', 'main')
    git(repo, 'annex', 'init', '-q', 'annex-proxy demo')
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'annex-proxy demo repository')
  }
  const cfg = parseServeArgs(['--repo', repo, '--bind', '127.0.0.1', '--port', '9417', '--wideopen', ...extra], PROJECT_ROOT)
  const url = `annex+http://${cfg.bind}:${cfg.port}/git-annex/`
  process.stdout.write(
    [
      `annex-proxy demo: serving ${repo}`,
      `on ${url} (read-write for anyone on this machine; Ctrl-C stops it)`,
      '',
      'Use it from a git-annex client:',
      `  git clone ${repo} myclone && cd myclone`,
      '  git annex init',
      '  git config annex.security.allowed-ip-addresses 127.0.0.1',
      `  git config remote.origin.annexUrl ${url}`,
      '  git annex sync --no-content',
      '  echo hello > hello.txt && git annex add hello.txt && git commit -m hello',
      '  git annex copy --to origin hello.txt',
      '',
    ].join('\n'),
  )
  await serve(cfg)
}
