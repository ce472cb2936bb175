// The location-log writer: a record settles only once the git-annex branch holds it
// (clients fetch the branch right after an upload), concurrent records share commits, and
// a branch that cannot be committed to for a while loses nothing.
import assert from 'node:assert/strict'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { LocationLog } from '../../src/annex/location-log.js'
import { parseKey } from '../../src/keys/key.js'
import { asUuid } from '../../src/remotes/remote.js'
import { annex, git, makeRepo, repoUuid, sha256Key, tempDir } from '../helpers/annex.js'

const keyOf = (i: number) => parseKey(sha256Key(Buffer.from(`content ${i}\n`)))

/** What the committed git-annex branch (not the journal) says about `key`. */
async function inBranch(repo: string, key: string): Promise<string> {
  const path = (await annex(repo, 'examinekey', '--format=${hashdirlower}${key}.log', key)).stdout
  return (await git(repo, 'show', `git-annex:${path}`).catch(() => ({ stdout: '' }))).stdout
}

const commits = async (repo: string) => Number((await git(repo, 'rev-list', '--count', 'git-annex')).stdout.trim())
const journal = (repo: string) => readdir(join(repo, '.git/annex/journal')).catch(() => [] as string[])

test('a record settles once the git-annex branch holds it; concurrent records share commits', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  // A group waits as long as it takes the child to answer every line sent (here: always).
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'commit', groupWaitMs: 120_000 })
  t.after(() => log.close())
  const k0 = keyOf(0)
  await log.record(k0, uuid, true)
  assert.match(await inBranch(repo, sha256Key(Buffer.from('content 0\n'))), new RegExp(` 1 ${uuid}$`, 'm'))
  assert.deepEqual(await journal(repo), [])

  const before = await commits(repo)
  const n = 20
  await Promise.all(Array.from({ length: n }, (_, i) => log.record(keyOf(i + 1), uuid, true)))
  for (let i = 1; i <= n; i++) assert.match(await inBranch(repo, sha256Key(Buffer.from(`content ${i}\n`))), new RegExp(` 1 ${uuid}$`, 'm'), `key ${i}`)
  // All 20 lines are sent before the first is answered; the commit waits for the child to
  // answer every one of them, then takes them all.
  assert.equal((await commits(repo)) - before, 1, `${n} concurrent records, one commit`)

  await log.record(k0, uuid, false)
  assert.match(await inBranch(repo, sha256Key(Buffer.from('content 0\n'))), new RegExp(` 0 ${uuid}$`, 'm'))
})

test('while the branch cannot be updated, records still settle from the journal and the next commit takes them', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'commit' })
  t.after(() => log.close())
  // A writer holding the branch's ref lock, as a push being received does.
  const lock = join(repo, '.git/refs/heads/git-annex.lock')
  await writeFile(lock, '')
  await log.record(keyOf(1), uuid, true)
  assert.equal(await inBranch(repo, sha256Key(Buffer.from('content 1\n'))), '', 'not committed while the ref is locked')
  assert.equal((await journal(repo)).length, 1, 'kept in the journal')
  await rm(lock)
  await log.record(keyOf(2), uuid, true)
  for (const i of [1, 2]) assert.match(await inBranch(repo, sha256Key(Buffer.from(`content ${i}\n`))), new RegExp(` 1 ${uuid}$`, 'm'), `key ${i}`)
  assert.deepEqual(await journal(repo), [])
})

test("settle 'journal' (p2pstdio sessions, cluster nodes): a record settles in the journal; idle and close commit it", async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'journal' })
  t.after(() => log.close())
  await log.record(keyOf(1), uuid, true)
  assert.equal((await journal(repo)).length, 1, 'journalled')
  assert.equal(await inBranch(repo, sha256Key(Buffer.from('content 1\n'))), '', 'not committed yet')
  await log.close()
  assert.match(await inBranch(repo, sha256Key(Buffer.from('content 1\n'))), new RegExp(` 1 ${uuid}$`, 'm'), 'committed on close')
  assert.deepEqual(await journal(repo), [])

  const idle = new LocationLog(repo, { idleMs: 50, settle: 'journal' })
  t.after(() => idle.close())
  await idle.record(keyOf(2), uuid, true)
  const deadline = Date.now() + 60_000
  while ((await inBranch(repo, sha256Key(Buffer.from('content 2\n')))) === '') {
    assert.ok(Date.now() < deadline, 'the idle commit did not come within 60 s')
    await new Promise((r) => setTimeout(r, 50))
  }
})
