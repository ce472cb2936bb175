// Uploads move the git-annex branch and the journal (issue #11): re-reading the gateway's
// configuration after each must not spawn `git config --list` (17-150 ms a spawn under
// load) when .git/config did not change. Counted with a `git` on PATH that logs its
// `config --list` invocations by parent pid and runs the real git.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
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
