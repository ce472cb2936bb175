// LocalRepo: the Remote contract on real temp repositories, then what only a local
// repository has to get right — that real git-annex, run in the same repository,
// agrees with everything it did (fsck, whereis, permissions, locks, layout, reserve).
import { Readable } from 'node:stream'
import assert from 'node:assert/strict'
import { chmod, lstat, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { AbortedError, DiskFullError, LockedError } from '../../src/errors.js'
import { parseKey, serializeKey } from '../../src/keys/key.js'
import { hashDirLower, keyFile } from '../../src/keys/object-path.js'
import { openLocalRepo, type LocalRepo, type LocalRepoOptions } from '../../src/remotes/local-repo.js'
import type { Remote } from '../../src/remotes/remote.js'
import { annex, defer, findKeysHere, git, makeRepo, p2pStdio, repoUuid, sh, shStatus, tempDir, whereisHere } from '../helpers/annex.js'
import { bodyOf, content, eventually, op, remoteContract, stallingBody, storeAll, type Content } from './contract.js'

async function localRepo(t: TestContext, opts: LocalRepoOptions & { bare?: boolean; config?: Record<string, string> } = {}): Promise<{ repo: LocalRepo; dir: string }> {
  // After-hooks run in registration order: the repository must close (its last
  // git-annex commands run in the directory) before the directory is removed.
  let repo: LocalRepo | undefined
  const d = await tempDir(t)
  defer(t, () => repo?.close())
  const dir = await makeRepo(join(d, opts.bare ? 'repo.git' : 'repo'), 'local', { bare: opts.bare ?? false })
  for (const [k, v] of Object.entries(opts.config ?? {})) await git(dir, 'config', k, v)
  repo = await openLocalRepo(dir, { logIdleMs: 100, ...opts })
  return { repo, dir }
}

/** The same repository opened again; closed before its directory is removed. */
async function reopenLocal(t: TestContext, r: Remote): Promise<Remote> {
  const again = await openLocalRepo((r as LocalRepo).dir, { logIdleMs: 100 })
  defer(t, () => again.close())
  return again
}

remoteContract('LocalRepo', {
  declared: ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'],
  make: async (t) => (await localRepo(t)).repo,
  reopen: reopenLocal,
})

remoteContract('LocalRepo (bare)', {
  declared: ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'],
  make: async (t) => (await localRepo(t, { bare: true })).repo,
  reopen: reopenLocal,
})

/** Everything under annex/objects and annex/tmp, relative to the git dir. */
async function annexFiles(gitDir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    const es = await readdir(d, { withFileTypes: true }).catch(() => [])
    for (const e of es) {
      const p = join(d, e.name)
      out.push(relative(gitDir, p))
      if (e.isDirectory()) await walk(p)
    }
  }
  await walk(join(gitDir, 'annex', 'objects'))
  await walk(join(gitDir, 'annex', 'tmp'))
  return out.sort()
}

const mode = async (p: string) => ((await lstat(p)).mode & 0o7777).toString(8)

/** What real git-annex says about the repository, key by key. */
async function assertGitAnnexAgrees(dir: string, present: Content[], absent: Content[]): Promise<void> {
  // fsck verifies every present object against its key and the location log. Keys
  // we removed have no copy left anywhere, which `fsck --all` reports: exactly those
  // keys, and nothing else, may fail.
  const fsck = await shStatus(dir, 'git', ['annex', 'fsck', '--all', '--quiet'])
  const complaints = `${fsck.stdout}${fsck.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^fsck: \d+ failed$/.test(l))
  assert.deepEqual(complaints.sort(), absent.map((c) => `** No known copies exist of ${serializeKey(c.key)}`).sort(), complaints.join('\n'))
  assert.equal(fsck.code, absent.length ? 1 : 0)
  const here = await findKeysHere(dir)
  for (const c of present) {
    const k = serializeKey(c.key)
    assert.ok(here.includes(k), `findkeys --in here lists ${k}`)
    assert.equal(await whereisHere(dir, k), true, `whereis shows ${k} here`)
  }
  for (const c of absent) {
    const k = serializeKey(c.key)
    assert.ok(!here.includes(k), `findkeys --in here omits ${k}`)
    assert.equal(await whereisHere(dir, k), false, `whereis does not show ${k} here`)
  }
}

describe('LocalRepo in a real git-annex repository', { timeout: 120_000 }, () => {
  test('after stores and removes, git annex fsck passes and whereis agrees with findkeys --in here', async (t) => {
    const { repo, dir } = await localRepo(t)
    const cs = Array.from({ length: 10 }, (_, i) => content(1000 + i * 997))
    // Concurrent stores of different keys must each reach the location log.
    await Promise.all(cs.map((c) => repo.store(c.key, bodyOf(c.bytes, 500), 0, op())))
    const [gone, kept] = [cs.slice(0, 4), cs.slice(4)]
    await Promise.all(gone.map((c) => repo.remove(c.key, op())))
    await repo.close()
    await assertGitAnnexAgrees(dir, kept, gone)
    // close() committed the journal into the git-annex branch.
    assert.deepEqual(await readdir(join(dir, '.git/annex/journal')), [])
    const uuid = await repoUuid(dir)
    for (const c of cs) {
      const log = (await git(dir, 'show', `git-annex:${hashDirLower(c.key)}${keyFile(c.key)}.log`)).stdout
      const status = kept.includes(c) ? '1' : '0'
      assert.match(log, new RegExp(`^\\d+(\\.\\d+)?s ${status} ${uuid}$`, 'm'))
    }
  })

  test('the journal is committed once the log has been idle (default)', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(100)
    await storeAll(repo, c)
    const logPath = `git-annex:${hashDirLower(c.key)}${keyFile(c.key)}.log`
    // git-annex commits first and then empties the journal: wait for both.
    await eventually(
      async () => (await shStatus(dir, 'git', ['show', logPath])).code === 0 && (await readdir(join(dir, '.git/annex/journal'))).length === 0,
      'the location log to be committed and the journal emptied',
    )
  })

  test("logSettle 'commit': the location log is in the git-annex branch, not only the journal, when a store or remove settles", async (t) => {
    const { repo, dir } = await localRepo(t, { logSettle: 'commit' })
    const c = content(100)
    await storeAll(repo, c)
    const logPath = `git-annex:${hashDirLower(c.key)}${keyFile(c.key)}.log`
    // Clients fetch the branch right after an upload (DataLad's publish): it must be settled.
    assert.match((await git(dir, 'show', logPath)).stdout, new RegExp(` 1 ${repo.uuid}$`, 'm'))
    assert.deepEqual(await readdir(join(dir, '.git/annex/journal')), [])
    await repo.remove(c.key, op())
    assert.match((await git(dir, 'show', logPath)).stdout, new RegExp(` 0 ${repo.uuid}$`, 'm'))
  })

  test('committing the location log touches only the git-annex branch, never the work tree', async (t) => {
    const { repo, dir } = await localRepo(t)
    const head = (await git(dir, 'rev-parse', 'HEAD')).stdout
    // A pushed synced/main, as `git annex sync` from a client leaves it: plain
    // `git annex merge` would merge it into the checked-out branch.
    await git(dir, 'commit', '-q', '--allow-empty', '-m', 'from a client')
    await git(dir, 'branch', 'synced/main')
    await git(dir, 'reset', '-q', '--hard', 'HEAD~1')
    await storeAll(repo, content(100))
    await repo.close()
    assert.equal((await git(dir, 'rev-parse', 'HEAD')).stdout, head)
  })

  test('objects get the path and permissions git annex add gives them', async (t) => {
    const { repo, dir } = await localRepo(t)
    const ours = content(5000, '.txt')
    await storeAll(repo, ours)
    // The same kind of content added by git-annex itself, in the same repository.
    const theirs = content(5000, '.txt')
    await writeFile(join(dir, 'theirs.txt'), theirs.bytes)
    await annex(dir, 'add', '-q', 'theirs.txt')
    const where = async (c: Content) => join(dir, (await annex(dir, 'contentlocation', serializeKey(c.key))).stdout.trim())
    const [o, r] = [await where(ours), await where(theirs)]
    assert.equal(o, repo.paths(ours.key).object)
    for (const [a, b] of [
      [o, r],
      [dirname(o), dirname(r)],
      [dirname(dirname(o)), dirname(dirname(r))],
      [dirname(dirname(dirname(o))), dirname(dirname(dirname(r)))],
    ] as const) {
      assert.equal(await mode(a), await mode(b), `${relative(dir, a)} vs ${relative(dir, b)}`)
    }
    assert.equal(await mode(o), '444')
    assert.equal(await mode(dirname(o)), '555')
  })

  test('bare repository: content under hashdirlower, and git-annex agrees', async (t) => {
    const { repo, dir } = await localRepo(t, { bare: true })
    const c = content(3000)
    const gone = content(3000)
    await storeAll(repo, c)
    await storeAll(repo, gone)
    await repo.remove(gone.key, op())
    const obj = repo.paths(c.key).object
    assert.equal(relative(dir, obj), `annex/objects/${hashDirLower(c.key)}${keyFile(c.key)}/${keyFile(c.key)}`)
    // git-annex prints it relative to the bare repository, as `./annex/objects/…`.
    assert.equal(join(dir, (await annex(dir, 'contentlocation', serializeKey(c.key))).stdout.trim()), obj)
    await repo.close()
    await assertGitAnnexAgrees(dir, [c], [gone])
  })

  test('a repository tuned with objecthash1 and objecthashlower: git-annex finds what we store', async (t) => {
    let repo: LocalRepo | undefined
    t.after(() => repo?.close())
    const dir = join(await tempDir(t), 'tuned')
    await sh(dirname(dir), 'git', ['init', '-q', '-b', 'main', dir])
    await sh(dir, 'git', ['-c', 'annex.tune.objecthash1=true', '-c', 'annex.tune.objecthashlower=true', 'annex', 'init', '-q', 'tuned'])
    repo = await openLocalRepo(dir, { logIdleMs: 100 })
    const [c, gone] = [content(2000), content(2000)]
    await storeAll(repo, c)
    await storeAll(repo, gone)
    await repo.remove(gone.key, op())
    const obj = repo.paths(c.key).object
    assert.equal(relative(dir, obj), `.git/annex/objects/${hashDirLower(c.key, 1)}${keyFile(c.key)}/${keyFile(c.key)}`)
    assert.equal(join(dir, (await annex(dir, 'contentlocation', serializeKey(c.key))).stdout.trim()), obj)
    await repo.close()
    await assertGitAnnexAgrees(dir, [c], [gone])
    assert.deepEqual(await annexFiles(join(dir, '.git')), [dirname(relative(join(dir, '.git'), obj)).split('/').slice(0, 3).join('/'), dirname(relative(join(dir, '.git'), obj)), relative(join(dir, '.git'), obj)].sort())
  })

  test('content put in place by git-annex under the other hash layout is found', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(2000)
    await writeFile(join(dir, 'f.bin'), c.bytes)
    await annex(dir, 'add', '-q', 'f.bin')
    // Move it from hashdirmixed to hashdirlower, which git-annex also checks.
    const mixed = repo.paths(c.key).object
    const lower = join(dir, '.git/annex/objects', hashDirLower(c.key), keyFile(c.key), keyFile(c.key))
    await sh(dir, 'mkdir', ['-p', dirname(lower)])
    await chmod(dirname(mixed), 0o755)
    await rename(mixed, lower)
    assert.equal(await repo.checkPresent(c.key, op()), true)
    assert.deepEqual(await buffer((await repo.retrieve(c.key, 0, op())).body), c.bytes)
    assert.equal((await repo.remove(c.key, op())).removed, true)
    await assert.rejects(lstat(lower))
  })

  test('remove prunes the empty object directories, as git-annex does', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(100)
    await storeAll(repo, c)
    const before = await annexFiles(join(dir, '.git'))
    assert.ok(before.length > 0)
    await repo.remove(c.key, op())
    assert.deepEqual(await annexFiles(join(dir, '.git')), [])
  })

  test('our lock writes a retention file real git annex drop honours', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(1000)
    await storeAll(repo, c)
    const lock = await repo.lock(c.key, op())
    assert.ok(lock)
    const rtm = `${repo.paths(c.key).object}.rtm`
    const text = await readFile(rtm, 'utf8')
    assert.match(text, /^\d+(\.\d{1,9})?s$/)
    const until = Number(text.slice(0, -1))
    assert.ok(Math.abs(until - (Date.now() / 1000 + 600)) < 30, `retention until ${text}`)
    await assert.rejects(annex(dir, 'drop', '--force', '--key', serializeKey(c.key)), /content is locked/)
    assert.equal(await repo.checkPresent(c.key, op()), true)
    await lock.release()
    await assert.rejects(lstat(rtm))
    await annex(dir, 'drop', '--force', '--key', serializeKey(c.key))
    assert.equal(await repo.checkPresent(c.key, op()), false)
  })

  test("git-annex's own LOCKCONTENT (git-annex-shell p2pstdio) blocks our remove", async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(1000)
    await storeAll(repo, c)
    const s = await p2pStdio(t, dir)
    s.send(`LOCKCONTENT ${serializeKey(c.key)}`)
    assert.equal(await s.next(), 'SUCCESS')
    await assert.rejects(repo.remove(c.key, op()), LockedError)
    await assert.rejects(repo.removeBefore(c.key, Number.MAX_SAFE_INTEGER, op()), LockedError)
    s.send('UNLOCKCONTENT')
    await s.close()
    assert.equal((await repo.remove(c.key, op())).removed, true)
  })

  test("git-annex's fcntl lock on .lck blocks our remove even without a retention file", async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(1000)
    await storeAll(repo, c)
    const s = await p2pStdio(t, dir)
    s.send(`LOCKCONTENT ${serializeKey(c.key)}`)
    assert.equal(await s.next(), 'SUCCESS')
    // A local-path remote's lock (Remote/Git.hs) is this shared lock with no .rtm.
    const obj = repo.paths(c.key).object
    await chmod(dirname(obj), 0o755)
    await rm(`${obj}.rtm`)
    await assert.rejects(repo.remove(c.key, op()), LockedError)
    s.send('UNLOCKCONTENT')
    await s.close()
    assert.equal((await repo.remove(c.key, op())).removed, true)
  })

  test('an expired retention file does not block removal and is cleaned up', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(1000)
    await storeAll(repo, c)
    const obj = repo.paths(c.key).object
    await chmod(dirname(obj), 0o755)
    await writeFile(`${obj}.rtm`, '1000.5s')
    await chmod(dirname(obj), 0o555)
    assert.equal((await repo.remove(c.key, op())).removed, true)
    assert.deepEqual(await annexFiles(join(dir, '.git')), [])
  })

  test('a partial upload we kept is what git-annex-shell offers to resume from', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(50_000)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes.subarray(0, 12_345)), 0, op()))
    const s = await p2pStdio(t, dir)
    s.send(`PUT  ${serializeKey(c.key)}`)
    assert.equal(await s.next(), 'PUT-FROM 12345')
  })

  test('bad data leaves neither object nor tmp; an abort keeps only the tmp prefix', async (t) => {
    const { repo, dir } = await localRepo(t)
    const c = content(80_000)
    const bad = Buffer.from(c.bytes)
    bad[0]! ^= 1
    await assert.rejects(repo.store(c.key, bodyOf(bad), 0, op()))
    assert.deepEqual(await annexFiles(join(dir, '.git')), [])
    const ac = new AbortController()
    const { body, consumed } = stallingBody(c.bytes.subarray(0, 30_000))
    const p = repo.store(c.key, body, 0, op(ac.signal))
    await consumed
    await eventually(async () => (await stat(repo.paths(c.key).tmp)).size === 30_000, 'the prefix to reach the tmp file')
    ac.abort()
    await assert.rejects(p, AbortedError)
    assert.deepEqual(await annexFiles(join(dir, '.git')), [`annex/tmp/${keyFile(c.key)}`])
  })

  test('destroy() aborts an upload in flight and keeps its prefix for resume', async (t) => {
    const { repo } = await localRepo(t)
    const c = content(80_000)
    const { body, consumed } = stallingBody(c.bytes.subarray(0, 20_000))
    const p = repo.store(c.key, body, 0, op())
    const failed = assert.rejects(p, AbortedError)
    await consumed
    await eventually(async () => (await stat(repo.paths(c.key).tmp).catch(() => undefined))?.size === 20_000, 'the prefix')
    await repo.destroy()
    await failed
    assert.equal((await stat(repo.paths(c.key).tmp)).size, 20_000)
    const again = await openLocalRepo(repo.dir, { logIdleMs: 100 })
    defer(t, () => again.close())
    assert.deepEqual(await again.startStore(c.key, op()), { kind: 'offset', offset: 20_000 })
  })

  test('retrieve reports invalid when the object is replaced while read', async (t) => {
    const { repo } = await localRepo(t)
    const c = content(100_000)
    await storeAll(repo, c)
    const r = await repo.retrieve(c.key, 0, op())
    const obj = repo.paths(c.key).object
    await chmod(dirname(obj), 0o755)
    const other = `${obj}.new`
    await writeFile(other, c.bytes)
    await rename(other, obj)
    const bytes = await buffer(r.body)
    assert.equal(bytes.length, r.length)
    assert.equal(await r.valid, false)
  })

  test('annex.diskreserve larger than the free space refuses with git-annex\'s message and writes nothing', async (t) => {
    const { repo, dir } = await localRepo(t, { config: { 'annex.diskreserve': '1000 PB' } })
    assert.equal(repo.diskReserve, 1000 * 1000 ** 5)
    const c = content(10_000)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), (e: unknown) => {
      assert.ok(e instanceof DiskFullError)
      assert.match(e.message, /^not enough free space, need \d+(\.\d+)? [kMGTPEZYRQ]?B more \(use --force to override this check or adjust annex\.diskreserve\)$/)
      return true
    })
    assert.deepEqual(await annexFiles(join(dir, '.git')), [])
    assert.deepEqual(await repo.startStore(c.key, op()), { kind: 'offset', offset: 0 })
  })

  test('annex.diskreserve is read in git-annex units, defaulting to 100 MB', async (t) => {
    for (const [value, bytes] of [
      [undefined, 100_000_000],
      ['1 GiB', 2 ** 30],
      ['1GB', 1e9],
      ['100 megabytes', 1e8],
      ['0.5tb', 5e11],
      ['512', 512],
      ['garbage', 100_000_000],
    ] as const) {
      const { repo } = await localRepo(t, value === undefined ? {} : { config: { 'annex.diskreserve': value } })
      assert.equal(repo.diskReserve, bytes, `annex.diskreserve=${value}`)
    }
  })

  test('in-flight stores count against the reserve', async (t) => {
    let repo: LocalRepo | undefined
    t.after(() => repo?.close())
    const dir = await makeRepo(join(await tempDir(t), 'repo'), 'local')
    const free = Number((await sh(dir, 'df', ['--output=avail', '-B1', '.'])).stdout.split('\n')[1])
    // One 4 GB upload fits in the 6 GB left above the reserve, two at once do not; the 2 GB
    // margins absorb what other tests write to this disk meanwhile (the suite runs a 1 GiB
    // fanout beside it). Only the first 1000 bytes are ever sent: reservations are by key size.
    const GB = 1_000_000_000
    assert.ok(free > 7 * GB, `this test needs 7 GB free on ${dir}, ${free} bytes are`)
    await git(dir, 'config', 'annex.diskreserve', String(free - 6 * GB))
    repo = await openLocalRepo(dir)
    const ka = parseKey(`SHA256E-s${4 * GB}--${'a'.repeat(64)}`)
    const kb = parseKey(`SHA256E-s${4 * GB + 1}--${'b'.repeat(64)}`)
    const ac = new AbortController()
    const first = stallingBody(Buffer.alloc(1000))
    const p = repo.store(ka, first.body, 0, op(ac.signal))
    await first.consumed
    await assert.rejects(repo.store(kb, Readable.from([Buffer.alloc(1000)]), 0, op()), DiskFullError)
    ac.abort()
    await assert.rejects(p, AbortedError)
    // Its reservation ended with it.
    const c = content(1000)
    assert.equal((await repo.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
  })
})
