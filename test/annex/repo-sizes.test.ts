// RepoSizes against git-annex's own accounting: `git annex maxsize --json` reports the
// size git-annex counts for every repository (the same RepoSize its maxsize and
// sizebalanced decisions use). Location changes made by git-annex itself, some committed to
// the branch and some left in the journal, then more changes on top (the incremental path:
// branch diffs, journal files that change and go away).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { journalFileName, locationLogOfJournal, locationLogPath } from '../../src/annex/branch-logs.js'
import { BranchReader } from '../../src/annex/branch-reader.js'
import { RepoSizes } from '../../src/annex/repo-sizes.js'
import { keyFile, keyOfFile } from '../../src/keys/object-path.js'
import { parseKey, serializeKey, tryParseKey, type Key } from '../../src/keys/key.js'
import { defer, git, makeRepo, sh, tempDir } from '../helpers/annex.js'

const UUIDS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '33333333-3333-4333-8333-333333333333']

/** What git-annex counts: uuid → size, for the repositories it reports a size for. */
async function annexSizes(repo: string): Promise<Map<string, number>> {
  const { stdout } = await sh(repo, 'git', ['annex', 'maxsize', '--json'])
  const j = JSON.parse(stdout) as { repositories: { uuid: string; size: { size: number } }[] }
  return new Map(j.repositories.filter((r) => r.size.size > 0).map((r) => [r.uuid, r.size.size]))
}

/** One setpresentkey batch: lines `<key> <uuid> <1|0>`. */
async function setPresent(repo: string, lines: string[]): Promise<void> {
  await sh(repo, 'git', ['annex', 'setpresentkey', '--batch'], { input: lines.join('\n') + '\n' })
}

const sorted = (m: ReadonlyMap<string, number>) => [...m].sort(([a], [b]) => a.localeCompare(b))

test('repository sizes equal git-annex maxsize --json, from the branch, the journal and both, as they change', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  // Changes stay in the journal until `git annex merge` commits them.
  await git(repo, 'config', 'annex.alwayscommit', 'false')
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())
  const sizes = new RepoSizes(reader)
  const check = async (what: string) => {
    await sizes.refresh()
    assert.deepEqual(sorted(sizes.sizes()), sorted(await annexSizes(repo)), what)
  }

  // Key names that need keyFile's escapes, unsized keys (they count 0), chunk keys.
  const keys = [
    'SHA256E-s1000--aaa.txt',
    'WORM-s500-m1700000000--a&b%c:d_e',
    'WORM-s7--under_score__twice',
    'WORM--nosize',
    'SHA256-s123456789--ffff',
    'SHA256E-s20-S10-C2--bbb.bin',
  ]
  for (const k of keys) assert.equal(serializeKey(parseKey(k)), k)
  await check('a fresh repository')

  await setPresent(repo, keys.flatMap((k, i) => UUIDS.slice(0, 1 + (i % 3)).map((u) => `${k} ${u} 1`)))
  await check('all in the journal')
  await sh(repo, 'git', ['annex', 'merge'])
  await check('all committed')

  // On top of the branch: removals and additions in the journal.
  await setPresent(repo, [`${keys[0]} ${UUIDS[0]} 0`, `${keys[4]} ${UUIDS[2]} 1`, `${keys[1]} ${UUIDS[1]} 0`])
  await check('journal over the branch')
  // The same log changed again in the journal.
  await setPresent(repo, [`${keys[4]} ${UUIDS[2]} 0`, `${keys[4]} ${UUIDS[0]} 0`])
  await check('a journal file changed again')
  await sh(repo, 'git', ['annex', 'merge'])
  await check('committed again (a branch diff, the journal gone)')

  // Many keys at once, over several commits.
  const many = Array.from({ length: 300 }, (_, i) => `SHA256E-s${i * 37 + 1}--k${i}.dat`)
  await setPresent(repo, many.map((k, i) => `${k} ${UUIDS[i % 3]} 1`))
  await sh(repo, 'git', ['annex', 'merge'])
  await setPresent(repo, many.filter((_, i) => i % 4 === 0).map((k, i) => `${k} ${UUIDS[i % 3]} 0`))
  await check('300 keys, a quarter changed in the journal')
  await sh(repo, 'git', ['annex', 'merge'])
  await check('300 keys committed')

  // The branch rewritten (`git annex forget` drops its history) and the old commits
  // collected: there is nothing to diff from, so it is read afresh.
  await sh(repo, 'git', ['annex', 'forget', '--force', '--drop-dead'])
  await sh(repo, 'git', ['reflog', 'expire', '--expire=now', '--all'])
  await sh(repo, 'git', ['gc', '-q', '--prune=now'])
  await setPresent(repo, [`${many[1]} ${UUIDS[1]} 0`])
  await sh(repo, 'git', ['annex', 'merge'])
  // git-annex's own size database still counts the key dropped after the rewrite (it
  // diffs from the commit gc removed), so a fresh clone, which counts from scratch, is the judge.
  await sizes.refresh()
  const judge = join(dir, 'judge')
  await sh(dir, 'git', ['clone', '-q', repo, judge])
  await sh(judge, 'git', ['annex', 'init', '-q', 'judge'])
  assert.deepEqual(sorted(sizes.sizes()), sorted(await annexSizes(judge)), 'after forget and gc')

  // A fresh reader starting from a branch with history agrees too.
  const fresh = new RepoSizes(reader)
  await fresh.refresh()
  assert.deepEqual(sorted(fresh.sizes()), sorted(await annexSizes(judge)))
})

test('counts(): whether sizes() counts a key on a repository, from the branch and the journal over it', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  await git(repo, 'config', 'annex.alwayscommit', 'false')
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())
  const sizes = new RepoSizes(reader)
  const a = 'SHA256E-s1000--a&b.bin'
  const b = 'WORM-s7--b'
  await setPresent(repo, [`${a} ${UUIDS[0]} 1`, `${b} ${UUIDS[1]} 1`])
  await sh(repo, 'git', ['annex', 'merge'])
  await sizes.refresh()
  assert.equal(sizes.counts(a, UUIDS[0]!), true)
  assert.equal(sizes.counts(a, UUIDS[1]!), false)
  assert.equal(sizes.counts(b, UUIDS[1]!), true)
  // The journal overrides the branch: a removed in it, added elsewhere.
  await setPresent(repo, [`${a} ${UUIDS[0]} 0`, `${a} ${UUIDS[2]} 1`])
  await sizes.refresh()
  assert.equal(sizes.counts(a, UUIDS[0]!), false)
  assert.equal(sizes.counts(a, UUIDS[2]!), true)
  // Unsized keys are never counted, and neither is what is not a key.
  await setPresent(repo, [`WORM--nosize ${UUIDS[0]} 1`])
  await sizes.refresh()
  assert.equal(sizes.counts('WORM--nosize', UUIDS[0]!), false)
  assert.equal(sizes.counts('not a key', UUIDS[0]!), false)
})

test('journal file names of location logs map back to their branch paths; other logs do not', () => {
  const keyArb = fc
    .record({
      size: fc.option(fc.nat({ max: 1e12 }), { nil: undefined }),
      name: fc.stringMatching(/^[a-zA-Z0-9_&%:.\-]{1,30}$/),
    })
    .map(({ size, name }) => tryParseKey(`WORM${size === undefined ? '' : `-s${size}`}--${name}`))
    .filter((k): k is Key => k !== undefined)
  fc.assert(
    fc.property(keyArb, (key) => {
      const path = locationLogPath(key)
      assert.equal(locationLogOfJournal(journalFileName(path)), path)
      assert.equal(serializeKey(keyOfFile(keyFile(key))!), serializeKey(key))
    }),
  )
  for (const other of ['uuid.log', 'remote.log', 'aaa/bbb/SHA256E-s1--x.log.met', 'aaa/bbb/WORM--x.log.rmt', 'proxy.log', 'group-preferred-content.log'])
    assert.equal(locationLogOfJournal(journalFileName(other)), undefined, other)
})
