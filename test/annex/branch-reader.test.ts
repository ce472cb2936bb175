// BranchReader against real repositories: the journal copy wins over the branch
// (spec §7.2), private journal content is appended, missing files are undefined,
// concurrent reads are answered in order, a killed cat-file is replaced, close() ends it.
import assert from 'node:assert/strict'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { parseKey } from '../../src/keys/key.js'
import { journalFileName, locationLogPath, parseLocationLog } from '../../src/annex/branch-logs.js'
import { BranchReader } from '../../src/annex/branch-reader.js'
import { annex, defer, git, makeRepo, repoUuid, sh, tempDir } from '../helpers/annex.js'

test('journal overlay: the journal copy wins, the branch is read when there is none', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  const u = await repoUuid(repo)
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())

  assert.match(await reader.readText('uuid.log'), new RegExp(`^${u} r timestamp=`))
  assert.equal(await reader.read('no-such.log'), undefined)
  assert.equal(await reader.read('nothere/deeper/x.log'), undefined)
  // A directory of the branch is not a log file.
  await annex(repo, 'setpresentkey', 'SHA256E-s5--abc.txt', u, '1')
  await annex(repo, 'merge')
  const path = locationLogPath(parseKey('SHA256E-s5--abc.txt'))
  assert.equal(await reader.read(path.split('/')[0]!), undefined)

  // git annex merge committed the journal: the branch has it.
  const committed = await reader.readText(path)
  assert.equal(parseLocationLog(committed).get(u as never)?.status, 'present')
  assert.deepEqual(await reader.readBranch(path), Buffer.from(committed))

  // A change git-annex leaves in the journal is seen before it is committed…
  await annex(repo, 'setpresentkey', 'SHA256E-s5--abc.txt', u, '0')
  const journalled = join(reader.journalDir, journalFileName(path))
  const seen = await reader.readText(path)
  assert.equal(parseLocationLog(seen).get(u as never)?.status, 'missing')
  assert.notEqual((await reader.readBranch(path))?.toString(), seen)

  // …and a journal file wins even over a newer-looking branch line: it is the complete content.
  await mkdir(reader.journalDir, { recursive: true })
  await writeFile(`${journalled}.tmp`, `1s 1 ${u}\n`)
  await rename(`${journalled}.tmp`, journalled)
  assert.equal(await reader.readText(path), `1s 1 ${u}\n`)

  // Journal names escape '_' (spec §7.2): a key with '_' is found under its escaped name.
  const k2 = parseKey('WORM-s1-m1--a_b')
  await annex(repo, 'setpresentkey', 'WORM-s1-m1--a_b', u, '1')
  assert.equal(parseLocationLog(await reader.readText(locationLogPath(k2))).get(u as never)?.status, 'present')

  // Private journal content is appended to what the journal or branch holds.
  await mkdir(reader.privateJournalDir, { recursive: true })
  await writeFile(join(reader.privateJournalDir, 'uuid.log'), 'private-uuid p timestamp=1s\n')
  assert.match(await reader.readText('uuid.log'), new RegExp(`^${u} r timestamp=.*\\nprivate-uuid p timestamp=1s\\n$`, 's'))
})

test('reads are answered in order, a killed cat-file is replaced, close ends it', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  const u = await repoUuid(repo)
  await annex(repo, 'describe', 'here', 'a description')
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())
  const paths = ['uuid.log', 'missing.log', 'difference.log', 'uuid.log', 'x/y.log']
  const expected = await Promise.all(paths.map((p) => git(repo, 'cat-file', '-p', `git-annex:${p}`).then((r) => r.stdout, () => undefined)))
  const got = await Promise.all(Array.from({ length: 40 }, (_, i) => reader.readBranch(paths[i % paths.length]!)))
  got.forEach((b, i) => assert.equal(b?.toString(), expected[i % paths.length], `request ${i}`))
  assert.match(expected[0]!, new RegExp(`${u} a description`))

  // Kill the child under a burst of reads: every read still gets its answer.
  const inner = reader as unknown as { child?: { proc: { kill(): void; pid: number } } }
  await reader.readBranch('uuid.log')
  const first = inner.child!.proc.pid
  const burst = Array.from({ length: 10 }, () => reader.readBranch('uuid.log'))
  inner.child!.proc.kill()
  for (const b of await Promise.all(burst)) assert.equal(b?.toString(), expected[0])
  assert.notEqual(inner.child?.proc.pid, first)

  await reader.close()
  assert.equal(inner.child, undefined)
  await assert.rejects(reader.readBranch('uuid.log'), /closed/)
})

test('a private repository (annex.private): git-annex writes only journal-private, and we read it', async (t) => {
  const dir = await tempDir(t)
  await git(dir, 'init', '-q', '-b', 'main', 'p')
  const repo = join(dir, 'p')
  await git(repo, 'config', 'annex.private', 'true')
  await annex(repo, 'init', '-q', 'privrepo')
  const u = await repoUuid(repo)
  await annex(repo, 'describe', 'here', 'my private')
  await annex(repo, 'setpresentkey', 'SHA256E-s5--abc.txt', u, '1')
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())
  assert.equal(await reader.readBranch('uuid.log'), undefined, 'nothing private reaches the branch')
  assert.match(await reader.readText('uuid.log'), new RegExp(`^${u} my private timestamp=\\S+\\n$`))
  const info = JSON.parse((await annex(repo, 'info', '--json', 'here')).stdout) as { description: string }
  assert.equal(info.description, 'my private [here]')
  const text = await reader.readText(locationLogPath(parseKey('SHA256E-s5--abc.txt')))
  assert.equal(parseLocationLog(text).get(u as never)?.status, 'present')
  const whereis = JSON.parse((await annex(repo, 'whereis', '--json', '--key', 'SHA256E-s5--abc.txt')).stdout) as { whereis: { uuid: string }[] }
  assert.deepEqual(whereis.whereis.map((w) => w.uuid), [u])
})

test('large and binary blobs, names with spaces, interleaved with small reads', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  const big = Buffer.alloc(3 << 20)
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff
  await writeFile(join(dir, 'big'), big)
  const blob = (await git(repo, 'hash-object', '-w', join(dir, 'big'))).stdout.trim()
  const small = (await sh(repo, 'git', ['hash-object', '-w', '--stdin'], { input: 'a b\n' })).stdout.trim()
  const tree = (await sh(repo, 'git', ['mktree'], { input: `100644 blob ${blob}\tbig file.bin\n100644 blob ${small}\tsmall.log\n` })).stdout.trim()
  const commit = (await git(repo, 'commit-tree', tree, '-m', 'side')).stdout.trim()
  await git(repo, 'update-ref', 'refs/heads/side', commit)
  const reader = await BranchReader.open(repo, { branch: 'side' })
  defer(t, () => reader.close())
  const reads = await Promise.all([
    reader.readBranch('big file.bin'),
    reader.readBranch('small.log'),
    reader.readBranch('big file.bin'),
    reader.readBranch('nope'),
    reader.readBranch('small.log'),
  ])
  assert.ok(reads[0]!.equals(big))
  assert.ok(reads[2]!.equals(big))
  assert.equal(reads[1]!.toString(), 'a b\n')
  assert.equal(reads[3], undefined)
  assert.equal(reads[4]!.toString(), 'a b\n')
  await assert.rejects(reader.readBranch('a\nb'), /invalid branch path/)
})

test('a linked work tree and a bare repository: the journal is found in the common git dir', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  const u = await repoUuid(repo)
  await git(repo, 'worktree', 'add', '-q', join(dir, 'wt'))
  await annex(repo, 'setpresentkey', 'SHA256E-s5--abc.txt', u, '1')
  const reader = await BranchReader.open(join(dir, 'wt'))
  defer(t, () => reader.close())
  assert.equal(reader.gitDir, join(repo, '.git'))
  const path = locationLogPath(parseKey('SHA256E-s5--abc.txt'))
  assert.equal(parseLocationLog(await reader.readText(path)).get(u as never)?.status, 'present')

  const bare = await makeRepo(join(dir, 'b.git'), 'b', { bare: true })
  const ub = await repoUuid(bare)
  await annex(bare, 'setpresentkey', 'SHA256E-s5--abc.txt', ub, '1')
  const rb = await BranchReader.open(bare)
  defer(t, () => rb.close())
  assert.equal(rb.gitDir, bare)
  assert.equal(parseLocationLog(await rb.readText(path)).get(ub as never)?.status, 'present')
})

test('fetched remote git-annex branches not yet merged are listed until git annex merge', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  const other = await makeRepo(join(dir, 'o'), 'o')
  await annex(other, 'describe', 'here', 'the other one')
  await git(repo, 'remote', 'add', 'o', '../o')
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())
  assert.deepEqual(await reader.unmergedRemoteBranches(), [])
  await git(repo, 'fetch', '-q', 'o')
  assert.deepEqual(await reader.unmergedRemoteBranches(), ['refs/remotes/o/git-annex'])
  assert.doesNotMatch(await reader.readText('uuid.log'), /the other one/)
  await annex(repo, 'merge')
  assert.deepEqual(await reader.unmergedRemoteBranches(), [])
  assert.match(await reader.readText('uuid.log'), /the other one/)
})

test('readObjects: many names in one round, answered in order; missing names and trees are undefined', async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'r'), 'r')
  const reader = await BranchReader.open(repo)
  defer(t, () => reader.close())
  const blobs: string[] = []
  for (let i = 0; i < 50; i++) blobs.push((await sh(repo, 'git', ['hash-object', '-w', '--stdin'], { input: `blob ${i}\n` })).stdout.trim())
  const names = [...blobs.slice(0, 25), '0000000000000000000000000000000000000001', 'git-annex:', ...blobs.slice(25), 'git-annex:uuid.log']
  const got = await reader.readObjects(names)
  assert.equal(got.length, names.length)
  for (let i = 0; i < 50; i++) assert.equal(got[i < 25 ? i : i + 2]?.toString(), `blob ${i}\n`)
  assert.equal(got[25], undefined, 'a missing object')
  assert.equal(got[26], undefined, 'a tree')
  assert.match(got[52]!.toString(), /timestamp=/)
  // Interleaved with single reads, still in order.
  const [one, many] = await Promise.all([reader.readObject(blobs[3]!), reader.readObjects([blobs[1]!, blobs[2]!])])
  assert.equal(one?.toString(), 'blob 3\n')
  assert.deepEqual(many.map((b) => b?.toString()), ['blob 1\n', 'blob 2\n'])
})
