// Paths inside a repository are opened safely: whoever can write into .git/annex (a
// repository's owner, when the server runs as another user) must not be able to make the
// server write, truncate, chmod or reveal a file outside it, nor hang it on a FIFO. Every
// path the server opens, stats or truncates there — the tmp file of an upload, objects,
// object directories, retention .rtm and lock .lck files — must be a regular file (or a
// real directory) and is never followed through a symlink; otherwise the call is refused
// with a clear error and the target is untouched.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { lstat, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import { UnsafePathError } from '../../src/errors.js'
import { keyFile } from '../../src/keys/object-path.js'
import { openLocalRepo, type LocalRepo } from '../../src/remotes/local-repo.js'
import { defer, makeRepo, tempDir } from '../helpers/annex.js'
import { bodyOf, content, op, storeAll } from './contract.js'

const run = promisify(execFile)

async function setup(t: TestContext): Promise<{ repo: LocalRepo; outside: string; secret: Buffer }> {
  const d = await tempDir(t)
  const repo = await openLocalRepo(await makeRepo(join(d, 'repo'), 'repo'), { logIdleMs: 100 })
  defer(t, () => repo.close())
  const outside = join(d, 'outside.txt')
  const secret = Buffer.from('a file outside the repository, 51 bytes long......\n')
  await writeFile(outside, secret, { mode: 0o644 })
  return { repo, outside, secret }
}

async function assertUntouched(outside: string, secret: Buffer): Promise<void> {
  assert.deepEqual(await readFile(outside), secret, 'the file outside was not written or truncated')
  assert.equal((await stat(outside)).mode & 0o777, 0o644, 'the file outside was not chmodded')
}

test('a symlink planted at the tmp path: upload refused, target untouched, nothing committed, its size not revealed', async (t) => {
  const { repo, outside, secret } = await setup(t)
  const c = content(100)
  const tmp = repo.paths(c.key).tmp
  await mkdir(dirname(tmp), { recursive: true })
  await symlink(outside, tmp)
  // putoffset must not answer the target's size.
  const start = await repo.startStore(c.key, op()).catch((e: unknown) => e)
  assert.ok(start instanceof UnsafePathError, `startStore answered ${JSON.stringify(start)}`)
  assert.match(start.message, /symbolic link|not a regular file/)
  await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), UnsafePathError)
  await assertUntouched(outside, secret)
  // A resumed upload would have truncated it to the offset.
  await assert.rejects(repo.store(c.key, bodyOf(c.bytes.subarray(10)), 10, op()), UnsafePathError)
  await assertUntouched(outside, secret)
  assert.equal(await repo.checkPresent(c.key, op()), false)
  assert.ok((await lstat(tmp)).isSymbolicLink(), 'the planted link is left for the owner to see')
})

test('a FIFO planted at the tmp path is refused, not waited on', async (t) => {
  const { repo } = await setup(t)
  const c = content(100)
  const tmp = repo.paths(c.key).tmp
  await mkdir(dirname(tmp), { recursive: true })
  await run('mkfifo', [tmp])
  await assert.rejects(repo.startStore(c.key, op()), UnsafePathError)
  await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), UnsafePathError)
  assert.equal(await repo.checkPresent(c.key, op()), false)
})

test('an object directory planted as a symlink: the upload is refused, nothing lands outside', async (t) => {
  const { repo } = await setup(t)
  const c = content(100)
  const object = repo.paths(c.key).object
  const elsewhere = join(dirname(dirname(dirname(dirname(object)))), '..', '..', '..', 'elsewhere')
  await mkdir(elsewhere, { recursive: true })
  await mkdir(dirname(dirname(object)), { recursive: true })
  // The key's own directory points outside the repository.
  await symlink(elsewhere, dirname(object))
  await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), UnsafePathError)
  assert.deepEqual(await run('ls', ['-A', elsewhere]).then((r) => r.stdout), '', 'nothing was written outside')
  assert.equal(await repo.checkPresent(c.key, op()), false)
})

test('a symlink or FIFO planted as an object is not served', async (t) => {
  const { repo, outside } = await setup(t)
  for (const kind of ['symlink', 'fifo'] as const) {
    const c = content(51)
    const object = repo.paths(c.key).object
    await mkdir(dirname(object), { recursive: true })
    if (kind === 'symlink') await symlink(outside, object)
    else await run('mkfifo', [object])
    assert.equal(await repo.checkPresent(c.key, op()), false, kind)
    const r = await repo.retrieve(c.key, 0, op())
    assert.equal(r.length, 0, kind)
    r.body.destroy()
  }
})

test('a retention file or content lock planted as a FIFO or symlink: remove is refused clearly, never hangs', async (t) => {
  const { repo, outside } = await setup(t)
  // Far in the future: a followed link would hold the content forever.
  await writeFile(outside, '99999999999s')
  for (const [suffix, kind] of [['.rtm', 'fifo'], ['.rtm', 'symlink'], ['.lck', 'symlink']] as const) {
    const c = content(100)
    await storeAll(repo, c)
    const object = repo.paths(c.key).object
    await run('chmod', ['u+w', dirname(object)])
    if (kind === 'fifo') await run('mkfifo', [object + suffix])
    else await symlink(outside, object + suffix)
    await run('chmod', ['u-w', dirname(object)])
    await assert.rejects(repo.remove(c.key, op()), UnsafePathError, `${suffix} ${kind}`)
    assert.equal(await repo.checkPresent(c.key, op()), true)
  }
})

test('an upload claim planted as a FIFO is refused, not waited on', async (t) => {
  const { repo } = await setup(t)
  const c = content(100)
  const claims = join(repo.layout.gitDir, 'annex', 'annex-proxy', 'claims')
  await mkdir(claims, { recursive: true })
  await run('mkfifo', [join(claims, keyFile(c.key))])
  await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), UnsafePathError)
  assert.equal(await repo.checkPresent(c.key, op()), false)
})
