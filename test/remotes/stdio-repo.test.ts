// StdioRepo: the Remote contract against real `git-annex-shell p2pstdio` on temp
// repositories, then what is particular to a peer reached over stdio.
import assert from 'node:assert/strict'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { AbortedError, HashMismatchError, LengthMismatchError, LockedError, NotSupportedError, ReadOnlyError, RemoteUnavailableError } from '../../src/errors.js'
import { parseKey, serializeKey } from '../../src/keys/key.js'
import { openStdioRepo, shellQuote, sshCommand, type StdioRepo, type StdioRepoOptions } from '../../src/remotes/stdio-repo.js'
import { annex, defer, git, makeRepo, repoUuid, tempDir, whereisHere } from '../helpers/annex.js'
import { bodyOf, content, eventually, op, remoteContract, storeAll } from './contract.js'

const CLIENT = '00000000-0000-4000-8000-0000000000c1'

async function stdioRepo(t: TestContext, opts: Partial<StdioRepoOptions> = {}): Promise<{ repo: StdioRepo; dir: string }> {
  const d = await tempDir(t)
  const dir = await makeRepo(join(d, 'peer'), 'peer')
  const repo = openStdioRepo({ uuid: await repoUuid(dir), clientUuid: CLIENT, dir, ...opts })
  defer(t, () => repo.close())
  return { repo, dir }
}

remoteContract('StdioRepo (git-annex-shell p2pstdio)', {
  declared: ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'],
  make: async (t) => (await stdioRepo(t)).repo,
  reopen: async (t, r) => {
    const again = openStdioRepo((r as StdioRepo).options)
    defer(t, () => again.close())
    return again
  },
})

describe('StdioRepo against git-annex-shell', { timeout: 120_000 }, () => {
  test('stored content is logged by the peer and git-annex sees it there', async (t) => {
    const { repo, dir } = await stdioRepo(t)
    const c = content(5000)
    await storeAll(repo, c)
    assert.equal(await whereisHere(dir, serializeKey(c.key)), true)
  })

  test('sessions are reused: many requests, at most maxSessions processes', async (t) => {
    const { repo } = await stdioRepo(t, { maxSessions: 2 })
    const cs = Array.from({ length: 6 }, (_, i) => content(1000 + i))
    await Promise.all(cs.map((c) => storeAll(repo, c)))
    const present = await Promise.all(cs.map((c) => repo.checkPresent(c.key, op())))
    assert.ok(present.every(Boolean))
    // Internal count, to show the cap held: live sessions never exceed it.
    assert.ok((repo as unknown as { live: number }).live <= 2)
  })

  test('idle sessions end after idleMs; the next request starts a new one', async (t) => {
    const { repo } = await stdioRepo(t, { idleMs: 50 })
    const c = content(100)
    await storeAll(repo, c)
    const pool = repo as unknown as { live: number; idle: { child: { exitCode: number | null } }[] }
    assert.equal(pool.live, 1)
    const first = pool.idle[0]!
    await eventually(async () => pool.live === 0 && first.child.exitCode !== null, 'the idle session to end')
    assert.equal(await repo.checkPresent(c.key, op()), true)
    assert.equal(pool.live, 1)
  })

  test('maxIdle bounds the sessions kept once requests end (--proxyconnections); the rest end at once', async (t) => {
    const { repo } = await stdioRepo(t, { maxSessions: 3, maxIdle: 1 })
    const cs = Array.from({ length: 6 }, (_, i) => content(2000 + i))
    await Promise.all(cs.map((c) => storeAll(repo, c)))
    const pool = repo as unknown as { live: number; idle: { child: { exitCode: number | null } }[] }
    assert.equal(pool.idle.length, 1)
    await eventually(async () => pool.live === 1, 'sessions beyond maxIdle to end')
    assert.ok((await Promise.all(cs.map((c) => repo.checkPresent(c.key, op())))).every(Boolean))
  })

  test('a request waiting for a free session can be aborted; a held lock keeps its session', async (t) => {
    const { repo } = await stdioRepo(t, { maxSessions: 1 })
    const c = content(100)
    await storeAll(repo, c)
    const lock = await repo.lock(c.key, op())
    assert.ok(lock)
    const ac = new AbortController()
    const waiting = repo.checkPresent(c.key, op(ac.signal))
    ac.abort()
    await assert.rejects(waiting, AbortedError)
    const later = repo.checkPresent(c.key, op())
    await lock.release()
    assert.equal(await later, true)
  })

  test('removing locked content: the peer ends the session, we say LockedError and recover', async (t) => {
    const { repo } = await stdioRepo(t)
    const c = content(100)
    await storeAll(repo, c)
    const lock = await repo.lock(c.key, op())
    assert.ok(lock)
    await assert.rejects(repo.remove(c.key, op()), LockedError)
    await assert.rejects(repo.removeBefore(c.key, Number.MAX_SAFE_INTEGER, op()), LockedError)
    await lock.release()
    assert.equal((await repo.remove(c.key, op())).removed, true)
  })

  test('a bad hash or an invalid verdict leaves no temp file on the peer', async (t) => {
    const { repo, dir } = await stdioRepo(t)
    const c = content(20_000)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, { ...op(), senderValid: Promise.resolve(false) }))
    const tmp = await readdir(join(dir, '.git/annex/tmp')).catch(() => [])
    assert.deepEqual(tmp, [])
    assert.equal(await repo.checkPresent(c.key, op()), false)
  })

  test('a peer with annex.verify=false still refuses bad bytes, fresh or resumed', async (t) => {
    const { repo, dir } = await stdioRepo(t)
    await git(dir, 'config', 'annex.verify', 'false')
    const c = content(30_000)
    const bad = Buffer.from(c.bytes)
    bad[25_000]! ^= 1
    await assert.rejects(repo.store(c.key, bodyOf(bad), 0, op()), HashMismatchError)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes.subarray(0, 10_000)), 0, op()), LengthMismatchError)
    // The peer keeps the good prefix; the bad tail is only caught by its full verification.
    await assert.rejects(repo.store(c.key, bodyOf(bad.subarray(10_000)), 10_000, op()), HashMismatchError)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes.subarray(0, 10_000)), 0, op()), LengthMismatchError)
    assert.equal((await repo.store(c.key, bodyOf(c.bytes.subarray(10_000)), 10_000, op())).stored, true)
    // A corrupt prefix left in the peer's temp file: our whole body verifies here, but the
    // peer resumes after its own bad bytes, so only its full verification can catch them.
    const d = content(30_000)
    await writeFile(join(dir, '.git/annex/tmp', serializeKey(d.key)), Buffer.alloc(10_000, 7))
    await assert.rejects(repo.store(d.key, bodyOf(d.bytes), 0, op()), HashMismatchError)
    assert.equal(await repo.checkPresent(d.key, op()), false)
  })

  test('keys without a hash: stored by length; an invalid verdict closes the connection instead', async (t) => {
    const { repo } = await stdioRepo(t)
    const bytes = Buffer.from('worm content\n')
    const key = parseKey(`WORM-s${bytes.length}-m1700000000--some%file.txt`)
    await assert.rejects(repo.store(key, bodyOf(bytes), 0, { ...op(), senderValid: Promise.resolve(false) }), AbortedError)
    assert.equal(await repo.checkPresent(key, op()), false)
    // All but the last byte stay with the peer, as after any dropped connection.
    assert.deepEqual(await repo.startStore(key, op()), { kind: 'offset', offset: bytes.length - 1 })
    assert.equal((await repo.store(key, bodyOf(bytes.subarray(bytes.length - 1)), bytes.length - 1, op())).stored, true)
    const got = await repo.retrieve(key, 0, op())
    assert.deepEqual(await buffer(got.body), bytes)
    const sizeless = parseKey('WORM-m1700000000--nosize')
    await assert.rejects(repo.store(sizeless, bodyOf(bytes), 0, op()), NotSupportedError)
  })

  test('a read-only peer (GIT_ANNEX_SHELL_READONLY) refuses stores with ReadOnlyError, still serves', async (t) => {
    const { repo: rw, dir } = await stdioRepo(t)
    const c = content(1000)
    await storeAll(rw, c)
    await rw.close()
    const ro = openStdioRepo({ uuid: await repoUuid(dir), clientUuid: CLIENT, dir, env: { ...process.env, GIT_ANNEX_SHELL_READONLY: '1' } })
    defer(t, () => ro.close())
    await assert.rejects(ro.store(content(10).key, bodyOf(content(10).bytes), 0, op()), ReadOnlyError)
    const got = await ro.retrieve(c.key, 0, op())
    assert.deepEqual(await buffer(got.body), c.bytes)
    assert.equal(await got.valid, true)
  })

  test('a remote command line (as ssh hands it to a shell) reaches a directory with a space and a quote', async (t) => {
    const d = await tempDir(t)
    const dir = await makeRepo(join(d, "peer dir's"), 'peer')
    const repo = openStdioRepo({
      uuid: await repoUuid(dir),
      clientUuid: CLIENT,
      dir,
      // What sshd does with the string sshCommand sends: the login shell runs it.
      command: (a) => ['sh', '-c', sshCommand('host')(a).at(-1)!],
    })
    defer(t, () => repo.close())
    const c = content(3000)
    await storeAll(repo, c)
    const got = await repo.retrieve(c.key, 0, op())
    assert.deepEqual(await buffer(got.body), c.bytes)
    assert.deepEqual(sshCommand('me@host', ['ssh', '-p', '2222'])(['p2pstdio', "/~/a'b", 'u1', '--uuid', 'u2']), [
      'ssh',
      '-p',
      '2222',
      '--',
      'me@host',
      "git-annex-shell 'p2pstdio' '/~/a'\\''b' 'u1' '--uuid' 'u2'",
    ])
    assert.equal(shellQuote(['a b', '']), "'a b' ''")
  })

  test('a command that cannot run is RemoteUnavailableError', async (t) => {
    const { dir } = await stdioRepo(t)
    const broken = openStdioRepo({ uuid: await repoUuid(dir), clientUuid: CLIENT, dir, command: (a) => ['/nonexistent/git-annex-shell', ...a] })
    defer(t, () => broken.close())
    await assert.rejects(broken.checkPresent(content(1).key, op()), RemoteUnavailableError)
  })

  test('a retrieve abandoned half-way costs its session, not the repository', async (t) => {
    const { repo } = await stdioRepo(t, { maxSessions: 1 })
    const c = content(2_000_000)
    await storeAll(repo, c)
    const got = await repo.retrieve(c.key, 0, op())
    for await (const _ of got.body) break
    assert.equal(await got.valid, false)
    assert.equal(await repo.checkPresent(c.key, op()), true)
    const ac = new AbortController()
    const again = await repo.retrieve(c.key, 1000, op(ac.signal))
    ac.abort()
    await assert.rejects(buffer(again.body))
    assert.deepEqual(await buffer((await repo.retrieve(c.key, 1_999_000, op())).body), c.bytes.subarray(1_999_000))
  })

  test('a cluster gateway behind git-annex-shell: -PLUS uuids of the nodes, bad bytes refused by all', async (t) => {
    const d = await tempDir(t)
    const gw = await makeRepo(join(d, 'gw'), 'gw')
    const nodes: string[] = []
    for (const n of ['n1', 'n2']) {
      const dir = await makeRepo(join(d, n), n)
      nodes.push(await repoUuid(dir))
      await git(gw, 'remote', 'add', n, `../${n}`)
      await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
    }
    await annex(gw, 'initcluster', 'mycluster')
    await annex(gw, 'updatecluster')
    const cluster = (await git(gw, 'config', 'annex.cluster.mycluster')).stdout.trim()
    const repo = openStdioRepo({ uuid: cluster, clientUuid: CLIENT, dir: gw, bypass: ['99999999-9999-4999-8999-999999999999'] })
    defer(t, () => repo.close())
    nodes.sort()
    const c = content(5000)
    const bad = Buffer.from(c.bytes)
    bad[10]! ^= 1
    await assert.rejects(repo.store(c.key, bodyOf(bad), 0, op()), HashMismatchError)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    const r = await repo.store(c.key, bodyOf(c.bytes), 0, op())
    assert.deepEqual({ ...r, plusUuids: [...r.plusUuids].sort() }, { stored: true, plusUuids: nodes })
    const again = await repo.startStore(c.key, op())
    assert.ok(again.kind === 'present')
    assert.deepEqual([...again.plusUuids].sort(), nodes)
    const got = await repo.retrieve(c.key, 100, op())
    assert.deepEqual(await buffer(got.body), c.bytes.subarray(100))
    assert.equal(await got.valid, true)
    // The reference gateway does not lock through a cluster (spec §1.6).
    assert.equal(await repo.lock(c.key, op()), undefined)
    const gone = await repo.remove(c.key, op())
    assert.deepEqual({ ...gone, plusUuids: [...gone.plusUuids].sort() }, { removed: true, plusUuids: nodes })
    assert.equal(await repo.checkPresent(c.key, op()), false)
  })

  test('a peer that goes away mid-DATA: RemoteUnavailableError, and what arrived is kept for resume', async (t) => {
    const d = await tempDir(t)
    const dir = await makeRepo(join(d, 'peer'), 'peer')
    // The connection breaks after 300 kB, as a dropped ssh link would.
    const repo = openStdioRepo({
      uuid: await repoUuid(dir),
      clientUuid: CLIENT,
      dir,
      command: (a) => ['sh', '-c', `dd iflag=count_bytes count=300000 bs=65536 status=none | git-annex-shell ${shellQuote(a)}`],
    })
    defer(t, () => repo.close())
    const c = content(2_000_000)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), RemoteUnavailableError)
    const start = await repo.startStore(c.key, op())
    assert.ok(start.kind === 'offset' && start.offset > 0 && start.offset < 300_000, JSON.stringify(start))
  })

  test('a wrong UUID is refused at the greeting', async (t) => {
    const { dir } = await stdioRepo(t)
    const wrong = openStdioRepo({ uuid: '11111111-2222-4333-8444-555555555555', clientUuid: CLIENT, dir })
    defer(t, () => wrong.close())
    await assert.rejects(wrong.checkPresent(content(1).key, op()), RemoteUnavailableError)
  })
})
