// Uploads move the git-annex branch and the journal (issue #11): re-reading the gateway's
// configuration after each must not spawn `git config --list` (17-150 ms a spawn under
// load) when .git/config did not change. Counted with a `git` on PATH that logs its
// `config --list` invocations by parent pid and runs the real git.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { Gateway } from '../../src/gateway/gateway.js'
import { GatewayConfig } from '../../src/gateway/gateway-config.js'
import { parseKey } from '../../src/keys/key.js'
import { annex, defer, git, sha256Key, tempDir } from '../helpers/annex.js'
import { makeGateway } from './fixture.js'
import { waitUntil } from '../helpers/wait.js'

const silent = { info() {}, warn() {}, error() {}, debug() {} }

/** Puts a logging `git` first on PATH; returns the directories of the `git config --list` this process has spawned. */
async function configListsBy(t: { after(fn: () => unknown): void }): Promise<() => string[]> {
  const dir = await tempDir(t, 'annex-proxy-gitwrap-')
  const realGit = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim()
  const log = join(dir, 'config-list.log')
  writeFileSync(log, '')
  const wrapper = join(dir, 'git')
  writeFileSync(
    wrapper,
    `#!/bin/sh\ncase " $* " in *" config --list "*) echo "$PPID $PWD" >> '${log}' ;; esac\nexec '${realGit}' "$@"\n`,
  )
  chmodSync(wrapper, 0o755)
  const path = process.env.PATH
  process.env.PATH = `${dir}:${path ?? ''}`
  defer(t, () => {
    process.env.PATH = path
  })
  // git-annex runs `git config --list` too: only this process's own children count.
  const mine = `${process.pid} `
  return () => readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith(mine)).map((l) => l.slice(mine.length))
}

test('uploads to a cluster re-read the configuration without spawning git config; a .git/config edit still does', async (t) => {
  const g = await makeGateway(t)
  const configLists = await configListsBy(t)
  // 'commit': each answer commits the journal, so every upload moves refs/heads/git-annex.
  const gw = await Gateway.open(g.gw, { hasher: 'wasm', log: silent, locationLogSettle: 'commit', fanoutHighWaterMark: 64 * 1024, fanoutStallMs: 60_000 })
  defer(t, () => gw.close())
  // A second reader of the same repository, refreshed by hand after each upload so the
  // re-read is sure to have happened when counting (the gateway's own one runs on its watch).
  const cfg = await GatewayConfig.open(g.gw, { fsWatch: false, pollMs: 600_000 })
  defer(t, () => cfg.close())
  // The nodes' repositories are opened (and their config read) once, at their first upload.
  const inGateway = () => configLists().filter((d) => d === g.gw)
  const atOpen = inGateway().length
  assert.ok(atOpen >= 2, `the wrapper saw the reads at open (${atOpen})`)
  const since = () => inGateway().slice(atOpen)

  const op = { signal: new AbortController().signal, log: silent }
  const branch = async () => (await git(g.gw, 'rev-parse', 'refs/heads/git-annex')).stdout.trim()
  const uploads = 5
  for (let i = 0; i < uploads; i++) {
    const bytes = Buffer.from(`small file ${i}\n`)
    const key = parseKey(sha256Key(bytes))
    const before = await branch()
    const r = (await gw.lookup(g.cluster))!
    const s = await r.startStore(key, op)
    assert.equal(s.kind, 'offset')
    assert.equal((await r.store(key, Readable.from([bytes]), 0, op)).stored, true)
    assert.notEqual(await branch(), before, `upload ${i} moved the git-annex branch`)
    await cfg.refresh()
    assert.ok((await cfg.locations(key)).length >= 1, `upload ${i} is in the location log`)
  }
  assert.deepEqual(since(), [], `git config --list spawned over ${uploads} uploads`)

  // A log in the branch changes: seen, still without git config.
  await annex(g.gw, 'wanted', 'n1', 'include=*.txt')
  await cfg.refresh()
  assert.equal(cfg.current.preferredContent.get(g.nodes.n1 as never), 'include=*.txt')
  assert.deepEqual(since(), [], 'git config --list spawned for a branch change')

  // .git/config changes: read again, once.
  await git(g.gw, 'config', 'remote.n1.annex-cost', '42')
  await cfg.refresh()
  assert.equal(cfg.current.remotes.get('n1')?.cost, 42)
  // The gateway's own reader re-reads on its watch (100 ms debounce, 2 s poll), before or
  // after the hand refresh (after it, once, in a loaded CI run): one spawn per reader.
  await waitUntil("the gateway's own reader to re-read .git/config", 60_000, () => since().length >= 2)
  assert.deepEqual(since(), [g.gw, g.gw], 'one git config --list per reader for one .git/config edit')

  // A file .git/config includes is followed too: an edit to it alone is seen.
  await git(g.gw, 'config', 'include.path', 'annex-proxy-extra.cfg')
  await cfg.refresh()
  writeFileSync(join(g.gw, '.git', 'annex-proxy-extra.cfg'), '[remote "n1"]\n\tannex-cost = 7\n')
  await cfg.refresh()
  assert.equal(cfg.current.remotes.get('n1')?.cost, 7, 'the included file\'s setting')
})

/**
 * Puts logging `git` and `perl` first on PATH; returns what this process has spawned since:
 * one `[directory, command]` per child (`git <subcommand>` or `perl`), in spawn order.
 */
async function spawnsBy(t: { after(fn: () => unknown): void }): Promise<() => Array<[dir: string, cmd: string]>> {
  const dir = await tempDir(t, 'annex-proxy-spawnwrap-')
  const log = join(dir, 'spawns.log')
  writeFileSync(log, '')
  for (const cmd of ['git', 'perl']) {
    const real = execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim()
    // git's subcommand is its first argument that is no option (`git config -z --list`).
    const what = cmd === 'git' ? 'sub=; for a in "$@"; do case "$a" in -*) ;; *) sub="$a"; break ;; esac; done; what="git $sub"' : 'what=perl'
    writeFileSync(join(dir, cmd), `#!/bin/sh\n${what}\nprintf '%s\\t%s\\t%s\\n' "$PPID" "$PWD" "$what" >> '${log}'\nexec '${real}' "$@"\n`)
    chmodSync(join(dir, cmd), 0o755)
  }
  const path = process.env.PATH
  process.env.PATH = `${dir}:${path ?? ''}`
  defer(t, () => {
    process.env.PATH = path
  })
  const mine = String(process.pid)
  return () =>
    readFileSync(log, 'utf8')
      .split('\n')
      .map((l) => l.split('\t'))
      .filter((f) => f[0] === mine)
      .map((f) => [f[1]!, f[2]!])
}

test('a cold gateway forks 6 helpers per repository for the location log of a cluster upload burst (was 10): the config read once for the journal writer and the committer, git var run by the journal-lock holder, the branch reader given the git directory (issue #11)', async (t) => {
  const g = await makeGateway(t)
  const spawned = await spawnsBy(t)
  const gw = await Gateway.open(g.gw, { hasher: 'wasm', log: silent, fanoutHighWaterMark: 64 * 1024, fanoutStallMs: 60_000 })
  defer(t, () => gw.close())
  const repos = { gw: g.gw, n1: join(g.root, 'n1'), n2: join(g.root, 'n2'), n3: join(g.root, 'n3') }
  const ref = (repo: string) => readFileSync(join(repo, '.git', 'refs', 'heads', 'git-annex'), 'latin1')
  const before = Object.fromEntries(Object.entries(repos).map(([n, r]) => [n, ref(r)]))
  // The server is cold: no location log written yet. Spawns of opening the gateway are not the burst's.
  const atOpen = spawned().length

  // One burst: four files stored concurrently through the cluster, as `annex-proxy upload -J4` sends them.
  const op = { signal: new AbortController().signal, log: silent }
  const r = (await gw.lookup(g.cluster))!
  await Promise.all(
    [0, 1, 2, 3].map(async (i) => {
      const bytes = Buffer.from(`burst file ${i}\n`.repeat(1000))
      const key = parseKey(sha256Key(bytes))
      const s = await r.startStore(key, op)
      assert.equal(s.kind, 'offset')
      assert.equal((await r.store(key, Readable.from([bytes]), 0, op)).stored, true)
    }),
  )
  // Every repository's location log committed (the journal commit on idle): the burst's spawns are all in.
  // Read from the files, so that the wait spawns nothing itself.
  const journalEmpty = (repo: string) => {
    try {
      return readdirSync(join(repo, '.git', 'annex', 'journal')).length === 0
    } catch {
      return true
    }
  }
  await waitUntil('every repository to commit its location log', 120_000, () =>
    Object.entries(repos).every(([n, repo]) => ref(repo) !== before[n] && journalEmpty(repo)),
  )

  const burst = spawned().slice(atOpen)
  const per: Record<string, string[]> = {}
  for (const [dir, cmd] of burst) {
    const name = Object.entries(repos).find(([, repo]) => dir === repo || dir.startsWith(repo + '/'))?.[0] ?? dir
    ;(per[name] ??= []).push(cmd)
  }
  for (const cmds of Object.values(per)) cmds.sort()
  // Each repository's location log: one `git config -z --list` (read once for the journal
  // writer's check and the committer's settings), one `git rev-parse` (the committer's git
  // directory, given to the branch reader too), the branch reader's `git cat-file --batch`, the
  // journal-lock holder (which runs `git var` itself), `git hash-object --stdin-paths` and
  // `git update-ref --stdin`. Was 10 (the config read twice, rev-parse twice, `git var` twice).
  const helpers = ['git cat-file', 'git config', 'git hash-object', 'git rev-parse', 'git update-ref', 'perl']
  // A node is opened at its first upload too (openLocalRepo: rev-parse, config).
  const node = [...helpers, 'git config', 'git rev-parse'].sort()
  assert.deepEqual(per, { gw: helpers, n1: node, n2: node, n3: node }, `the burst's spawns: ${JSON.stringify(burst)}`)
})
