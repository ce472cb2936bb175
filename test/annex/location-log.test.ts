// The location-log writer: a record settles only once the git-annex branch holds it
// (clients fetch the branch right after an upload), concurrent records share commits, and
// a branch that cannot be committed to for a while loses nothing.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { LocationLog } from '../../src/annex/location-log.js'
import { parseKey } from '../../src/keys/key.js'
import { asUuid } from '../../src/remotes/remote.js'
import { annex, git, gitEnv, makeRepo, repoUuid, sha256Key, stopChild, tempDir, whereisHere } from '../helpers/annex.js'
import { childPids } from '../helpers/estate.js'
import { waitUntil } from '../helpers/wait.js'

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
  await waitUntil('the idle commit of record 2', 60_000, async () => (await inBranch(repo, sha256Key(Buffer.from('content 2\n')))) !== '', 50)
})

test("the idle commit keeps the helper processes: records after it spawn none; they retire later, on their own timer", async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  const log = new LocationLog(repo, { idleMs: 50, retireMs: 60_000, settle: 'journal' })
  t.after(() => log.close())
  const committed = (n: number) => waitUntil(`the idle commit of record ${n}`, 60_000, async () => (await inBranch(repo, sha256Key(Buffer.from(`content ${n}\n`)))) !== '', 50)
  await log.record(keyOf(1), uuid, true)
  await committed(1)
  const helpers = childPids().sort()
  assert.ok(helpers.length > 0, 'the commit started helper processes')
  await log.record(keyOf(2), uuid, true)
  await committed(2)
  // Kept, not stopped and forked again (other children may come and go meanwhile on a busy machine).
  const after = new Set(childPids())
  assert.deepEqual(helpers.filter((p) => !after.has(p)), [], 'the helpers of the first commit served the second record and its commit')
  // The commit empties the journal just after it moves the branch.
  await waitUntil('the journal emptied by the second commit', 60_000, async () => (await journal(repo)).length === 0)
})

/** `git annex setpresentkey --batch` in `repo`, one line at a time. */
function setpresentkeyBatch(t: Parameters<typeof tempDir>[0], repo: string): (line: string) => Promise<string> {
  const child = spawn('git', ['annex', 'setpresentkey', '--batch'], { cwd: repo, env: gitEnv, stdio: ['pipe', 'pipe', 'inherit'] })
  t.after(() => stopChild(child))
  const waiting: Array<(l: string) => void> = []
  createInterface({ input: child.stdout }).on('line', (l) => waiting.shift()?.(l))
  return (line) =>
    new Promise<string>((resolve) => {
      waiting.push(resolve)
      child.stdin.write(line + '\n')
    })
}

test('written by this process into the journal while a real git-annex writes the same logs: no line is lost, and git-annex reads ours (whereis, readpresentkey)', { timeout: 240_000 }, async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  const other = '00000000-0000-4000-8000-00000000000b'
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'journal' })
  t.after(() => log.close())
  const theirs = setpresentkeyBatch(t, repo)
  const N = 60
  // Both writers on every key at about the same moment: ours in groups, theirs line by line.
  await Promise.all([
    Promise.all(Array.from({ length: N }, (_, i) => log.record(keyOf(i), uuid, true))),
    (async () => {
      for (let i = 0; i < N; i++) assert.equal(await theirs(`${sha256Key(Buffer.from(`content ${i}\n`))} ${other} 1`), `setpresentkey ${sha256Key(Buffer.from(`content ${i}\n`))} ok`)
    })(),
  ])
  for (let i = 0; i < N; i += 7) {
    const k = sha256Key(Buffer.from(`content ${i}\n`))
    assert.equal(await whereisHere(repo, k), true, `key ${i}: whereis, from the journal`)
    await annex(repo, 'readpresentkey', k, other)
  }
  await log.close()
  for (let i = 0; i < N; i++) {
    const lines = await inBranch(repo, sha256Key(Buffer.from(`content ${i}\n`)))
    assert.match(lines, new RegExp(`^\\d+s 1 ${uuid}$`, 'm'), `key ${i}: ours`)
    assert.match(lines, new RegExp(`^\\d+s 1 ${other}$`, 'm'), `key ${i}: theirs`)
  }
  // No process of ours wrote the lines: no setpresentkey ran for them.
  assert.ok(!(await readdir(join(repo, '.git/annex/othertmp')).catch(() => [])).length, 'no temp file left behind')
})

test('content dropped by git-annex and put back, then recorded present by this process in the same second: git annex fsck finds the log right (the clock advanced past the drop)', { timeout: 240_000 }, async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  const files = ['a.bin', 'b.bin', 'c_d.bin']
  for (const f of files) await writeFile(join(repo, f), `bytes of ${f}\n`)
  await annex(repo, 'add', '-q', ...files)
  await git(repo, 'commit', '-q', '-m', 'add')
  const keys = await Promise.all(files.map(async (f) => (await annex(repo, 'lookupkey', f)).stdout.trim()))
  const objects = await Promise.all(keys.map(async (k) => join(repo, (await annex(repo, 'examinekey', '--format=.git/annex/objects/${hashdirmixed}${key}/${key}', k)).stdout)))
  await annex(repo, 'drop', '-q', '--force', ...files)
  for (const [i, f] of files.entries()) {
    await mkdir(dirname(objects[i]!), { recursive: true })
    await writeFile(objects[i]!, `bytes of ${f}\n`)
  }
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'commit' })
  t.after(() => log.close())
  await Promise.all(keys.map((k) => log.record(parseKey(k), uuid, true)))
  const before = await Promise.all(keys.map((k) => inBranch(repo, k)))
  for (const [i, b] of before.entries()) assert.match(b, new RegExp(`^\\d+s 1 ${uuid}\\n$`), `key ${i}: one line, present`)
  await log.close()
  const fsck = await annex(repo, 'fsck', '--fast', ...files)
  assert.doesNotMatch(fsck.stdout + fsck.stderr, /fixing location log|location log/i)
  assert.deepEqual(await Promise.all(keys.map((k) => inBranch(repo, k))), before, 'fsck changed no location log')
  assert.equal(await whereisHere(repo, keys[2]!), true)
})

test('a repository whose configuration makes git-annex do more than write the journal (core.sharedRepository: file modes) is written by git annex setpresentkey', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  await git(repo, 'config', 'core.sharedRepository', 'group')
  const uuid = asUuid(await repoUuid(repo))
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'commit' })
  t.after(() => log.close())
  await log.record(keyOf(1), uuid, true)
  // The child stays until idle or close: it is there now.
  const cmdline = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    } catch {
      return [] // gone meanwhile
    }
  }
  const children = childPids()
    .map(cmdline)
    .filter((cmd) => cmd.includes('setpresentkey'))
  assert.equal(children.length, 1, 'one git annex setpresentkey')
  assert.match(await inBranch(repo, sha256Key(Buffer.from('content 1\n'))), new RegExp(` 1 ${uuid}$`, 'm'))
})

test("the journal commit's author and committer are what git var answers in the repository (run by the journal-lock holder), and its message follows an annex.commitmessage set in .git/config by the next run", async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = asUuid(await repoUuid(repo))
  await git(repo, 'config', 'user.name', 'Config Name')
  await git(repo, 'config', 'user.email', 'config@annex-proxy.invalid')
  // The server's own environment, not the test helpers' fixed identity: what git would use for it.
  const env = { ...process.env }
  for (const v of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE']) delete env[v]
  const ident = (v: string) => execFileSync('git', ['var', v], { cwd: join(repo, '.git'), env, encoding: 'utf8' }).trim().replace(/ \d+ [+-]\d{4}$/, '')
  const log = new LocationLog(repo, { idleMs: 60_000, settle: 'commit' })
  t.after(() => log.close())
  const last = async () => (await git(repo, 'log', '-1', '--format=%an <%ae>%n%cn <%ce>%n%B', 'git-annex')).stdout
  await log.record(keyOf(1), uuid, true)
  assert.equal(await last(), `${ident('GIT_AUTHOR_IDENT')}\n${ident('GIT_COMMITTER_IDENT')}\nupdate\n\n`)

  // Read again once the helpers are retired (flush), as a new git-annex process would.
  await git(repo, 'config', 'annex.commitmessage', 'ingest')
  await log.flush()
  await log.record(keyOf(2), uuid, true)
  assert.equal(await last(), `${ident('GIT_AUTHOR_IDENT')}\n${ident('GIT_COMMITTER_IDENT')}\ningest\n\n`)
  // A repository the journal writer does not write itself (core.sharedRepository): the
  // committer reads the configuration on its own.
  await git(repo, 'config', 'annex.commitmessage', 'shared')
  await git(repo, 'config', 'core.sharedRepository', 'group')
  await log.flush()
  await log.record(keyOf(3), uuid, true)
  assert.equal(await last(), `${ident('GIT_AUTHOR_IDENT')}\n${ident('GIT_COMMITTER_IDENT')}\nshared\n\n`)
})
