// Committing git-annex's journal with git plumbing (journal-commit.ts), next to real git-annex
// processes on the same repository: a journal written before a push keeps the pushed lines
// (`git annex merge` put the journal file over them), and concurrent git-annex writers, readers
// and pushes into refs/heads/git-annex lose no line.
import assert from 'node:assert/strict'
import { watch } from 'node:fs'
import { access, mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { journalFileName } from '../../src/annex/branch-logs.js'
import { commitJournal, fileJournal, unionMerge } from '../../src/annex/journal-commit.js'
import { LocationLog } from '../../src/annex/location-log.js'
import { parseKey } from '../../src/keys/key.js'
import { asUuid } from '../../src/remotes/remote.js'
import { annex, git, makeRepo, repoUuid, sh, sha256Key, tempDir } from '../helpers/annex.js'
import { waitUntil } from '../helpers/wait.js'

const keyName = (i: number) => sha256Key(Buffer.from(`content ${i}\n`))

/** What the committed git-annex branch (not the journal) of `repo` says about `key`. */
async function inBranch(repo: string, key: string): Promise<string> {
  const path = (await annex(repo, 'examinekey', '--format=${hashdirlower}${key}.log', key)).stdout
  return (await git(repo, 'show', `git-annex:${path}`).catch(() => ({ stdout: '' }))).stdout
}

const journal = (gitDir: string) => readdir(join(gitDir, 'annex/journal')).catch(() => [] as string[])

/** A served bare repository and a publisher's clone of it, both git-annex repositories. */
async function servedAndPublisher(t: Parameters<typeof tempDir>[0]) {
  const root = await tempDir(t)
  const srv = await makeRepo(join(root, 'srv.git'), 'srv', { bare: true })
  const pub = join(root, 'pub')
  await git(root, 'clone', '-q', srv, pub)
  await annex(pub, 'init', '-q', 'pub')
  const [su, pu] = [asUuid(await repoUuid(srv)), await repoUuid(pub)]
  return { root, srv, pub, su, pu }
}

/**
 * The server's line for `k` reaches its journal (not committed), then the publisher records its
 * own copy and pushes its git-annex branch into the server's (a fast-forward).
 */
async function journalThenPush({ srv, pub, su, pu }: Awaited<ReturnType<typeof servedAndPublisher>>, k: string): Promise<void> {
  await git(srv, '-c', 'annex.alwayscommit=false', 'annex', 'setpresentkey', k, su, '1')
  assert.equal((await journal(srv)).length, 1)
  await annex(pub, 'setpresentkey', k, pu, '1')
  await annex(pub, 'merge')
  await git(pub, 'push', '-q', 'origin', 'git-annex')
  assert.match(await inBranch(srv, k), new RegExp(` 1 ${pu}$`, 'm'), 'pushed')
}

/**
 * The names created, changed or removed directly in each of `dirs` (made when missing) while `fn` runs (inotify,
 * through fs.watch). A marker written into each directory afterwards is waited for, so every
 * event of `fn` has been read (one inotify queue per event loop, read in order).
 */
async function touchedWhile(dirs: Readonly<Record<string, string>>, fn: () => Promise<unknown>): Promise<string[]> {
  await Promise.all(Object.values(dirs).map((dir) => mkdir(dir, { recursive: true })))
  const seen: string[] = []
  const watchers = Object.entries(dirs).map(([label, dir]) =>
    watch(dir, (_event, name) => seen.push(`${label}/${name ?? '?'}`)).on('error', (e) => seen.push(`${label}: ${e.message}`)),
  )
  try {
    await fn()
    const marker = `marker-${process.pid}`
    // (A directory removed meanwhile gets none: its removal is an event in its parent or its own.)
    const marked = (
      await Promise.all(Object.entries(dirs).map(([label, dir]) => writeFile(join(dir, marker), '').then(() => [label], () => seen.push(`${label} removed`) && [])))
    ).flat()
    await waitUntil('the markers written after the commit to be seen by fs.watch', 20_000, () => marked.every((label) => seen.includes(`${label}/${marker}`)))
    await Promise.all(marked.map((label) => rm(join(dirs[label]!, marker))))
    return [...new Set(seen.filter((s) => !s.endsWith(`/${marker}`)))].sort()
  } finally {
    for (const w of watchers) w.close()
  }
}

/** Every file below `dir`, as paths relative to it. */
const files = async (dir: string) => new Set(await readdir(dir, { recursive: true }))

test('fileJournal undoes journalFileName for branch paths whose segments do not start with _', () => {
  const segment = fc.stringMatching(/^[a-zA-Z0-9.\-][a-zA-Z0-9._\-]{0,12}$/)
  fc.assert(
    fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), (segs) => {
      const p = segs.join('/')
      assert.equal(fileJournal(journalFileName(p)), p)
    }),
  )
  assert.equal(fileJournal('af2_781_SHA256E-s5--a__b.log'), 'af2/781/SHA256E-s5--a_b.log')
  assert.equal(fileJournal('uuid.log'), 'uuid.log')
})

test("unionMerge is git-annex's calcMerge: sorted unique lines, reusing a side that already is the union", () => {
  assert.deepEqual(unionMerge(['b\na\n', 'a\nb\n']), { reuse: 0 })
  assert.deepEqual(unionMerge(['b\n', 'a\nb\n']), { reuse: 1 })
  assert.deepEqual(unionMerge(['a\nb\n', 'c\n']), { content: 'a\nb\nc\n' })
  assert.deepEqual(unionMerge(['', 'x\n']), { reuse: 1 })
  assert.deepEqual(unionMerge(['x', 'x\n']), { reuse: 0 })
  fc.assert(
    fc.property(fc.array(fc.array(fc.stringMatching(/^[a-z0-9 ]{0,6}$/), { maxLength: 6 }), { minLength: 2, maxLength: 3 }), (sides) => {
      const texts = sides.map((ls) => ls.map((l) => l + '\n').join(''))
      const r = unionMerge(texts)
      const out = 'reuse' in r ? texts[r.reuse]! : r.content
      const got = new Set(out.split('\n').filter((l) => l !== ''))
      const want = new Set(sides.flat().filter((l) => l !== ''))
      assert.deepEqual(got, want)
    }),
  )
})

test("a journal written before a push into refs/heads/git-annex keeps the pushed lines when committed (git annex merge put the journal over them)", async (t) => {
  const repos = await servedAndPublisher(t)
  const { srv, su, pu } = repos
  const log = new LocationLog(srv, { idleMs: 60_000, settle: 'commit' })
  t.after(() => log.close())
  const k = keyName(1)
  const before = await commitJournal(srv)
  assert.equal(before, false, 'nothing journalled yet')
  // What a served upload does: the server's line reaches its journal (held there while the
  // first commit waits, so the push lands between journal and commit), the publisher pushes …
  await journalThenPush(repos, k)
  // … and the server commits its journal.
  await log.record(parseKey(keyName(2)), su, true)
  const lines = await inBranch(srv, k)
  assert.match(lines, new RegExp(` 1 ${su}$`, 'm'), "the server's line")
  assert.match(lines, new RegExp(` 1 ${pu}$`, 'm'), "the publisher's pushed line")
  assert.deepEqual(await journal(srv), [])
  const whereis = (await annex(srv, 'whereis', '--key', k)).stdout
  assert.match(whereis, /2 copies/, whereis)
  // git-annex's own bookkeeping agrees: its index is at the branch, nothing left to merge.
  assert.equal((await git(srv, 'rev-parse', 'git-annex')).stdout.trim(), (await sh(srv, 'head', ['-1', 'annex/index.lck'])).stdout.trim())
  await git(srv, 'fsck', '--no-progress')
})

test('committing the journal while real git-annex processes write, read and commit the same branch, and a clone pushes into it, loses no line', { timeout: 300_000 }, async (t) => {
  const { srv, pub, su, pu } = await servedAndPublisher(t)
  const other = '00000000-0000-4000-8000-00000000000a'
  const N = 24
  const log = new LocationLog(srv, { idleMs: 60_000, settle: 'commit' })
  t.after(() => log.close())

  // Our commits: one record at a time, each waiting for its commit.
  const ours = (async () => {
    for (let i = 0; i < N; i++) await log.record(parseKey(keyName(i)), su, true)
  })()
  // Another git-annex process writing the same keys' logs in the server, committing as it exits.
  const theirs = (async () => {
    for (let i = 0; i < N; i += 3) await annex(srv, 'setpresentkey', keyName(i), other, '1')
  })()
  // Readers taking git-annex's view of the branch while it moves. Not merging: git-annex's own
  // update of a pushed branch stages a journal file written before the push over the pushed
  // lines (Annex/Branch.hs updateTo', the loss commitJournal avoids), a race of git-annex's
  // that is not under test here.
  const readers = (async () => {
    for (let i = 0; i < N; i += 6) {
      // (exits 1 while the key has no copy yet)
      await git(srv, '-c', 'annex.merge-annex-branches=false', 'annex', 'whereis', '--key', keyName(i)).catch(() => undefined)
      await git(srv, '-c', 'annex.merge-annex-branches=false', 'annex', 'info', '--fast')
    }
  })()
  // The publisher: record, fetch, merge, push git-annex (DataLad's pattern); a push the server's
  // commit beat is fetched and pushed again.
  const pushes = (async () => {
    for (let i = 0; i < N; i += 2) {
      await annex(pub, 'setpresentkey', keyName(i), pu, '1')
      for (let attempt = 1; ; attempt++) {
        await git(pub, 'fetch', '-q', 'origin', 'git-annex')
        await annex(pub, 'merge')
        const r = await sh(pub, 'git', ['push', '-q', 'origin', 'git-annex'], {}).then(
          () => true,
          () => false,
        )
        if (r) break
        assert.ok(attempt < 20, `push ${i} rejected 20 times`)
      }
    }
  })()
  await Promise.all([ours, theirs, readers, pushes])
  // Whatever another process left journalled, one more commit takes.
  await commitJournal(srv)

  for (let i = 0; i < N; i++) {
    const lines = await inBranch(srv, keyName(i))
    assert.match(lines, new RegExp(` 1 ${su}$`, 'm'), `key ${i}: the server's line`)
    if (i % 3 === 0) assert.match(lines, new RegExp(` 1 ${other}$`, 'm'), `key ${i}: the other process's line`)
    if (i % 2 === 0) assert.match(lines, new RegExp(` 1 ${pu}$`, 'm'), `key ${i}: the publisher's pushed line`)
  }
  assert.deepEqual(await journal(srv), [])
  await git(srv, 'fsck', '--no-progress')
  // git-annex reads the result as it reads its own commits.
  const w = (await annex(srv, 'whereis', '--key', keyName(0))).stdout
  assert.match(w, /3 copies/, w)
})

test('a commit that fails after union-merging a pushed branch is followed by one that keeps the pushed lines (it staged the journal over the merge), and neither leaves a file of its own outside the object store: none in TMPDIR, none in the repository', async (t) => {
  const repos = await servedAndPublisher(t)
  const { root, srv, su, pu } = repos
  const k = keyName(1)
  // A pushed branch to union-merge: the merged log is a blob neither side has.
  await journalThenPush(repos, k)
  const before = await files(srv)
  // A TMPDIR that does not exist: a commit that creates anything there fails.
  const tmp = join(root, 'no-tmp')
  const saved = process.env.TMPDIR
  process.env.TMPDIR = tmp
  t.after(() => (saved === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = saved)))
  const added = async () => [...(await files(srv))].filter((f) => !before.has(f) && !f.startsWith('objects'))

  // A ref lock held by someone else fails the commit after its objects were written.
  const refLock = join(srv, 'refs/heads/git-annex.lock')
  await writeFile(refLock, '')
  await assert.rejects(commitJournal(srv), /git update-ref --stdin exited .*cannot lock ref/s)
  assert.deepEqual(await added(), ['refs/heads/git-annex.lock'])
  assert.equal((await journal(srv)).length, 1, 'the journal is kept for the next commit')

  await rm(refLock)
  assert.equal(await commitJournal(srv), true)
  const lines = await inBranch(srv, k)
  assert.match(lines, new RegExp(` 1 ${su}$`, 'm'), "the server's line")
  assert.match(lines, new RegExp(` 1 ${pu}$`, 'm'), "the publisher's pushed line")
  assert.deepEqual(await journal(srv), [])
  assert.deepEqual(await added(), [], 'nothing but objects added to the repository')
  await assert.rejects(access(tmp), { code: 'ENOENT' })
  await git(srv, 'fsck', '--no-progress')
})

test("a commit's message is the repository's annex.commitmessage when set (as upstream git-annex commits its branch; 10.20250416 ignored it), else \"update\"", async (t) => {
  const srv = await makeRepo(join(await tempDir(t), 'srv.git'), 'srv', { bare: true })
  const su = await repoUuid(srv)
  const message = async (i: number) => {
    await git(srv, '-c', 'annex.alwayscommit=false', 'annex', 'setpresentkey', keyName(i), su, '1')
    assert.equal(await commitJournal(srv), true)
    return (await git(srv, 'log', '-1', '--format=%B', 'git-annex')).stdout
  }
  assert.equal(await message(1), 'update\n\n')
  await git(srv, 'config', 'annex.commitmessage', 'ingest: 2 files')
  assert.equal(await message(2), 'ingest: 2 files\n\n')
})

test("a git command of the commit that writes more than a pipe's worth to stderr does not stall the commit (the lock holder drains stdout and stderr together)", async (t) => {
  const dir = await tempDir(t)
  const srv = await makeRepo(join(dir, 'srv.git'), 'srv', { bare: true })
  const su = await repoUuid(srv)
  await git(srv, '-c', 'annex.alwayscommit=false', 'annex', 'setpresentkey', keyName(1), su, '1')
  // A git on PATH that says 300 000 bytes on stderr before running write-tree (a pipe holds 64 KiB);
  // it gives up after 150 s, so a stalled holder fails this test at its deadline rather than hanging the file.
  const bin = join(dir, 'bin')
  await mkdir(bin)
  const realGit = (await sh(dir, 'sh', ['-c', 'command -v git'])).stdout.trim()
  await writeFile(join(bin, 'git'), `#!/bin/sh\nif [ "$1" = write-tree ]; then timeout 150 sh -c \"printf '%300000s' '' >&2\"; fi\nexec ${realGit} "$@"\n`, { mode: 0o755 })
  const path = process.env.PATH
  process.env.PATH = `${bin}:${path}`
  t.after(() => {
    process.env.PATH = path
  })
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the journal commit did not finish within 60 s: its git write-tree is stalled on a full stderr pipe')), 60_000)
  })
  try {
    assert.equal(await Promise.race([commitJournal(srv), deadline]), true)
  } finally {
    clearTimeout(timer)
  }
  process.env.PATH = path
  assert.match(await inBranch(srv, keyName(1)), new RegExp(su))
})

test('a commit, plain or union-merging a pushed git-annex branch, writes no file into .git/annex/othertmp or os.tmpdir(): only git\'s index, and git-annex\'s index.lck (replaced through a temp file beside it) and journal.lck, change in .git/annex', async (t) => {
  const repos = await servedAndPublisher(t)
  const { root, srv, pub, su, pu } = repos
  const annexDir = join(srv, 'annex')
  // othertmp is made before each commit is watched (git-annex makes it while it runs and
  // removes it as it exits), so that a file written into it is seen.
  const othertmp = join(annexDir, 'othertmp')
  const tmp = join(root, 'tmp')
  await mkdir(tmp)
  const saved = process.env.TMPDIR
  process.env.TMPDIR = tmp
  t.after(() => (saved === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = saved)))
  assert.equal(tmpdir(), tmp)
  const dirs = { annex: annexDir, othertmp, tmpdir: tmp }
  const allowed = /^annex\/(index|index\.lock|index\.lck|index\.lck\.[0-9a-f]+\.tmp|journal\.lck)$/

  // A plain commit: the journal over the branch.
  await git(srv, '-c', 'annex.alwayscommit=false', 'annex', 'setpresentkey', keyName(1), su, '1')
  const plain = await touchedWhile(dirs, async () => assert.equal(await commitJournal(srv), true))
  assert.deepEqual(plain.filter((n) => !allowed.test(n)), [], `touched by a plain commit: ${plain.join(', ')}`)
  assert.ok(plain.includes('annex/index'), `the watch sees the commit's own changes: ${plain.join(', ')}`)

  // A commit that union-merges a pushed branch into a log the journal also changed: a blob
  // neither side has.
  const k = keyName(2)
  await git(pub, 'fetch', '-q', 'origin')
  await journalThenPush(repos, k)
  const merged = await touchedWhile(dirs, async () => assert.equal(await commitJournal(srv), true))
  assert.deepEqual(merged.filter((n) => !allowed.test(n)), [], `touched by a union-merging commit: ${merged.join(', ')}`)
  const lines = await inBranch(srv, k)
  assert.match(lines, new RegExp(` 1 ${su}$`, 'm'), "the server's line")
  assert.match(lines, new RegExp(` 1 ${pu}$`, 'm'), "the publisher's pushed line")
  assert.deepEqual(await readdir(othertmp), [])
  assert.deepEqual(await readdir(tmp), [])
  await git(srv, 'fsck', '--no-progress')
})
