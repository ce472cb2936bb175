// README's two commands on a fresh machine without git-annex: a copy of the project's files
// (what a clean clone holds) and a PATH with everything this machine has except git-annex
// and apt-get (so nothing can be installed). `npm ci` works; `npm start`, `npm test` and the
// CLI itself each stop with one line saying what to install, instead of
// "git: 'annex' is not a git command" and a failed `git annex init`.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { copyFile, mkdir, readdir, symlink } from 'node:fs/promises'
import { delimiter, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { test } from 'node:test'
import { PROJECT_ROOT, tempDir } from '../helpers/annex.js'

const run = promisify(execFile)
const HIDDEN = new Set(['git-annex', 'git-annex-shell', 'git-remote-annex', 'git-remote-tor-annex', 'apt-get'])

/** A PATH of one folder linking every command on this one's PATH but the hidden ones. */
async function pathWithout(root: string): Promise<string> {
  const bin = join(root, 'bin')
  await mkdir(bin)
  const seen = new Set<string>()
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const names = await readdir(dir).catch(() => [] as string[])
    for (const n of names) {
      if (HIDDEN.has(n) || seen.has(n)) continue
      seen.add(n)
      await symlink(join(dir, n), join(bin, n))
    }
  }
  // The node running the tests first: npm and the scripts use the same one.
  await symlink(process.execPath, join(bin, 'node')).catch(() => undefined)
  return bin
}

async function cleanCopy(root: string): Promise<string> {
  const dir = join(root, 'annex-proxy')
  const { stdout } = await run('git', ['-C', PROJECT_ROOT, 'ls-files', '-z'], { maxBuffer: 16 << 20 })
  for (const f of stdout.split('\0').filter(Boolean)) {
    await mkdir(dirname(join(dir, f)), { recursive: true })
    await copyFile(join(PROJECT_ROOT, f), join(dir, f)).catch((e: NodeJS.ErrnoException) => {
      // A file deleted in the working tree and not yet committed: a clone would not have it either.
      if (e.code !== 'ENOENT') throw e
    })
  }
  return dir
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

function sh(cwd: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', reject)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      if (signal === 'SIGKILL') reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`))
      else resolve({ code, stdout, stderr })
    })
  })
}

const ADVICE = /^annex-proxy needs git-annex >= 10\.20240731 and no git-annex is on PATH: .*(sudo bash scripts\/install-git-annex\.sh|git-annex\.branchable\.com\/install)/m

test("README's commands with git-annex absent: npm ci works, npm start and npm test stop with one line saying what to install", { timeout: 900_000 }, async (t) => {
  const root = await tempDir(t)
  const bin = await pathWithout(root)
  const dir = await cleanCopy(root)
  const env: NodeJS.ProcessEnv = {
    HOME: process.env.HOME,
    PATH: bin,
    LANG: 'C.UTF-8',
    // npm's cache as the machine has it; nothing else of the caller's environment.
    npm_config_cache: process.env.npm_config_cache ?? join(process.env.HOME ?? '/root', '.npm'),
    ANNEX_PROXY_DATA: join(root, 'data'),
  }
  const hidden = await sh(dir, 'git', ['annex', 'version'], env, 60_000)
  assert.notEqual(hidden.code, 0, 'git-annex is hidden from PATH')

  const ci = await sh(dir, 'npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], env, 600_000)
  assert.equal(ci.code, 0, `npm ci:\n${ci.stdout}\n${ci.stderr}`)

  const start = await sh(dir, 'npm', ['start'], env, 120_000)
  assert.notEqual(start.code, 0, 'npm start stops')
  assert.match(start.stderr, ADVICE, `npm start says what to install:\n${start.stderr}`)
  assert.equal(start.stderr.trim().split('\n').length, 1, `one line:\n${start.stderr}`)
  assert.doesNotMatch(start.stdout + start.stderr, /is not a git command|Command failed/)

  const npmTest = await sh(dir, 'npm', ['test'], env, 120_000)
  assert.notEqual(npmTest.code, 0, 'npm test stops')
  assert.match(npmTest.stderr, ADVICE, `npm test says what to install:\n${npmTest.stderr}`)
  assert.equal(npmTest.stderr.trim().split('\n').length, 1, `one line:\n${npmTest.stderr}`)

  // Every command that needs git-annex, run directly, says the same.
  for (const args of [['demo'], ['serve', '--wideopen'], ['p2pstdio', dir, '00000000-0000-4000-8000-000000000001'], ['git-annex-shell', 'p2pstdio', dir, '00000000-0000-4000-8000-000000000001'], ['rebalance', '--dry-run']]) {
    const r = await sh(dir, 'node', ['dist/src/cli/main.js', ...args], env, 60_000)
    assert.equal(r.code, 1, `annex-proxy ${args[0]} exits 1`)
    assert.match(r.stderr, ADVICE, `annex-proxy ${args[0]}:\n${r.stderr}`)
    assert.equal(r.stderr.trim().split('\n').length, 1, `annex-proxy ${args[0]}: one line`)
    assert.equal(r.stdout, '', `annex-proxy ${args[0]}: nothing on stdout`)
  }
})
