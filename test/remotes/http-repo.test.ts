// HttpRepo: the Remote contract against a real `git annex p2phttp` and against annex-proxy,
// each serving a real temp repository; then what only an HTTP upstream has to get right.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { after, describe, test, type TestContext } from 'node:test'
import { AbortedError, HashMismatchError, LengthMismatchError, TransferInProgressError } from '../../src/errors.js'
import { serializeKey } from '../../src/keys/key.js'
import { HttpRepo } from '../../src/remotes/http-repo.js'
import type { Remote } from '../../src/remotes/remote.js'
import { annex, defer, makeRepo, repoUuid, startAnnexProxy, startReference, tempDir, type After, type Served } from '../helpers/annex.js'
import { holdsLock, waitUntil } from '../helpers/wait.js'
import { bodyOf, content, op, remoteContract, stallingBody, storeAll } from './contract.js'

const CLIENT_UUID = '00000000-0000-4000-8000-0000000000c1'

const suiteScope: After = { after: (fn) => after(fn) }

interface Upstream {
  readonly dir: string
  readonly uuid: string
  readonly served: { readonly port: number }
}

/**
 * `git annex p2phttp` with 16 jobs: startReference's 4 serve only 2 requests at once and
 * every held lock takes one of them (transcripts/08), which the two-lock test would wedge.
 */
async function startReferenceJobs(t: After, repo: string, flags: string[] = ['--wideopen'], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  return startReference(t, repo, flags, { ...process.env, ...env }, { jobs: 16 })
}

/** One served temp repository for the whole file (keys are random, so tests do not meet). */
async function startUpstream(_kind: 'annex-proxy'): Promise<Upstream> {
  const d = await tempDir(suiteScope)
  const dir = await makeRepo(join(d, 'upstream'), 'upstream')
  return { dir, uuid: await repoUuid(dir), served: await startAnnexProxy(suiteScope, dir) }
}

// Started at load time: hooks registered from inside a running test would belong to that test.
const shared = await startUpstream('annex-proxy')
const annexProxy = async () => shared

/**
 * A fresh reference server and repository per test: broken puts (cut, short, scrubbed)
 * seem to leave the reference's workers busy, and a shared server wedged after ~10 of
 * them (its -J16 serves 8 requests at once).
 */
async function reference(t: TestContext): Promise<Upstream & { served: Served }> {
  const d = await tempDir(t)
  const dir = await makeRepo(join(d, 'upstream'), 'upstream')
  return { dir, uuid: await repoUuid(dir), served: await startReferenceJobs(t, dir) }
}

function httpRepo(t: TestContext, up: Upstream, opts: Partial<ConstructorParameters<typeof HttpRepo>[1]> = {}): HttpRepo {
  const repo = new HttpRepo(`annex+http://127.0.0.1:${up.served.port}/git-annex/`, { uuid: up.uuid, clientUuid: CLIENT_UUID, ...opts })
  defer(t, () => repo.close())
  return repo
}

const ALL = ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'] as const

/** Another client of the same upstream repository. */
function reopenHttp(t: TestContext, r: Remote): Promise<Remote> {
  const h = r as HttpRepo
  const again = new HttpRepo(h.annexUrl, { uuid: h.uuid, clientUuid: CLIENT_UUID })
  defer(t, () => again.close())
  return Promise.resolve(again)
}

remoteContract('HttpRepo → annex-proxy', { declared: ALL, make: async (t) => httpRepo(t, await annexProxy()), reopen: reopenHttp })

// The whole contract against the reference fails where the reference itself differs:
// it holds a put's bytes in memory until the body ends or breaks, so "wait until the
// store holds the first bytes, then cut" never sees them (and the stalled test hangs the
// suite). HTTP_REPO_REFERENCE_CONTRACT=1 runs it anyway; by default the cases below run.
if (process.env.HTTP_REPO_REFERENCE_CONTRACT === '1') {
  remoteContract('HttpRepo → git annex p2phttp', { declared: ALL, make: async (t) => httpRepo(t, await reference(t)), reopen: reopenHttp })
}

describe('HttpRepo → git annex p2phttp', { timeout: 120_000 }, () => {
  test('store → checkPresent → retrieve (also from an offset); absent and empty keys', async (t) => {
    const repo = httpRepo(t, await reference(t))
    const c = content(200_000)
    assert.deepEqual(await repo.startStore(c.key, op()), { kind: 'offset', offset: 0 })
    assert.deepEqual(await repo.store(c.key, bodyOf(c.bytes), 0, op()), { stored: true, plusUuids: [] })
    assert.equal(await repo.checkPresent(c.key, op()), true)
    assert.equal((await repo.startStore(c.key, op())).kind, 'present')
    const r = await repo.retrieve(c.key, 12_345, op())
    assert.equal(r.length, c.bytes.length - 12_345)
    assert.deepEqual(await buffer(r.body), c.bytes.subarray(12_345))
    assert.equal(await r.valid, true)
    const absent = await repo.retrieve(content(10).key, 0, op())
    assert.deepEqual([absent.length, (await buffer(absent.body)).length, await absent.valid], [0, 0, false])
    const empty = content(0)
    await storeAll(repo, empty)
    const e = await repo.retrieve(empty.key, 0, op())
    assert.deepEqual([e.length, (await buffer(e.body)).length, await e.valid], [0, 0, true])
    assert.equal((await repo.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
    assert.equal((await repo.storePresent(c.key, op())).stored, true)
    assert.equal((await repo.storePresent(content(10).key, op())).stored, false)
  })

  test('bad hash: sent one byte short, nothing committed, the prefix scrubbed, a good store right after commits', async (t) => {
    const repo = httpRepo(t, await reference(t))
    const c = content(50_000)
    const bad = Buffer.from(c.bytes)
    bad[777]! ^= 1
    await assert.rejects(repo.store(c.key, bodyOf(bad), 0, op()), HashMismatchError)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    assert.deepEqual(await repo.startStore(c.key, op()), { kind: 'offset', offset: 0 })
    assert.equal((await repo.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
  })

  test('too long, short, sender-invalid bodies commit nothing; a short body resumes', async (t) => {
    const repo = httpRepo(t, await reference(t))
    const c = content(50_000)
    await assert.rejects(repo.store(c.key, bodyOf(Buffer.concat([c.bytes, Buffer.from('x')])), 0, op()), LengthMismatchError)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, { ...op(), senderValid: Promise.resolve(false) }), HashMismatchError)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    const d = content(50_000)
    await assert.rejects(repo.store(d.key, bodyOf(d.bytes.subarray(0, 20_000)), 0, op()), LengthMismatchError)
    assert.equal(await repo.checkPresent(d.key, op()), false)
    assert.deepEqual(await repo.startStore(d.key, op()), { kind: 'offset', offset: 20_000 })
    await assert.rejects(repo.store(d.key, bodyOf(d.bytes.subarray(30_000)), 30_000, op()), LengthMismatchError)
    assert.equal((await repo.store(d.key, bodyOf(d.bytes.subarray(20_000)), 20_000, op())).stored, true)
  })

  // A putoffset the reference leaves unanswered (it holds the key's transfer lock while it
  // winds down a cut or stalled put) is asked again. Each try waits longer than the one
  // before, so a machine too busy to answer within the first timeout still gets its answer.
  const ANSWER_DEADLINE_MS = 120_000
  async function startStoreAnswered(repo: HttpRepo, key: Parameters<HttpRepo['startStore']>[0], deadline = performance.now() + ANSWER_DEADLINE_MS) {
    for (let wait = 2000; ; wait = Math.min(wait * 2, 16_000)) {
      const s = await repo.startStore(key, op(AbortSignal.timeout(wait))).catch((e) => (e instanceof AbortedError ? undefined : Promise.reject(e)))
      if (s) return s
      assert.ok(performance.now() < deadline, `the reference gave no answer to putoffset for ${serializeKey(key)} within ${ANSWER_DEADLINE_MS} ms`)
    }
  }

  test('abort mid-store: AbortedError, no object; the kept prefix resumes', async (t) => {
    const repo = httpRepo(t, await reference(t))
    const c = content(300_000)
    const ac = new AbortController()
    const { body, consumed } = stallingBody(c.bytes.subarray(0, 120_000))
    const p = repo.store(c.key, body, 0, op(ac.signal))
    await consumed
    ac.abort()
    await assert.rejects(p, AbortedError)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    // While the reference still winds down the cut put it holds the key's transfer lock,
    // and a putoffset then gets NO answer ("transfer already in progress, or unable to
    // take transfer lock" in its log): ask again with a timeout until it answers.
    const s = await startStoreAnswered(repo, c.key)
    assert.ok(s.kind === 'offset' && s.offset <= 120_000, JSON.stringify(s))
    const offset = s.kind === 'offset' ? s.offset : 0
    assert.equal((await repo.store(c.key, bodyOf(c.bytes.subarray(offset)), offset, op())).stored, true)
    const r = await repo.retrieve(c.key, 0, op())
    assert.deepEqual(await buffer(r.body), c.bytes)
  })

  // The reference (10.20250416) now and then leaves a put unanswered when several arrive at
  // once, a stall fixed in later releases (seen once in CI, 2026-12-07: this suite timed out
  // with the reference idle). Such a put is asked again, from the offset the reference kept,
  // until it answers; what is asserted is that every store commits.
  const STALL_MS = 20_000
  /** `p`'s stored, or when it gets no answer within STALL_MS, `again()`'s. */
  async function answered(p: Promise<{ stored: boolean }>, again: () => Promise<boolean>): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const stalled = new Promise<'stalled'>((r) => (timer = setTimeout(() => r('stalled'), STALL_MS)))
    try {
      const r = await Promise.race([p, stalled])
      if (r !== 'stalled') return r.stored
    } finally {
      clearTimeout(timer)
    }
    p.catch(() => undefined)
    return again()
  }
  /** Stores `x` (from the offset the reference kept), asking again while it gives no answer. */
  async function storeAnswered(repo: HttpRepo, x: { key: Parameters<HttpRepo['store']>[0]; bytes: Buffer }): Promise<boolean> {
    const deadline = performance.now() + ANSWER_DEADLINE_MS
    for (;;) {
      // While it winds down an unanswered put it holds the key's transfer lock and gives
      // putoffset no answer either (as in the abort test above).
      const s = await startStoreAnswered(repo, x.key, deadline)
      if (s.kind === 'present') return true
      const stored = await repo.store(x.key, bodyOf(x.bytes.subarray(s.offset), 1000), s.offset, op(AbortSignal.timeout(STALL_MS))).then(
        (r) => r.stored,
        (e) => (e instanceof AbortedError ? undefined : Promise.reject(e)),
      )
      if (stored !== undefined) return stored
      assert.ok(performance.now() < deadline, `the reference gave no answer to a store of ${serializeKey(x.key)} within ${ANSWER_DEADLINE_MS} ms`)
    }
  }

  test('a second concurrent store of the key is refused locally; different keys all commit', async (t) => {
    const up = await reference(t)
    const repo = httpRepo(t, up)
    const c = content(100_000)
    const { body, consumed, finish } = stallingBody(c.bytes.subarray(0, 30_000))
    const first = repo.store(c.key, body, 0, op())
    await consumed
    await assert.rejects(repo.store(c.key, bodyOf(c.bytes), 0, op()), TransferInProgressError)
    finish(c.bytes.subarray(30_000))
    // Asked again by another client: this one refuses the key while the first put is in flight.
    assert.equal(await answered(first, () => storeAnswered(httpRepo(t, up), c)), true)
    const cs = Array.from({ length: 6 }, (_, i) => content(10_000 + i))
    const rs = await Promise.all(cs.map((x) => storeAnswered(repo, x)))
    assert.ok(rs.every((stored) => stored))
  })

  // Removing locked content is not asserted here: the reference (10.20250416) gives such a
  // remove no answer at all, and goes on giving removes of that key none after the lock is
  // gone (seen with curl). Its keeplocked answers {"locked":false} as soon as it has sent
  // UNLOCKCONTENT to its own P2P server, before the lock is dropped: a remove sent at once
  // could land in between and hang the test (it did, 115 s, under load).
  test('lock: lockcontent + keeplocked held, both released, then removal works; absent content yields no lock', async (t) => {
    const up = await reference(t)
    const repo = httpRepo(t, up)
    const c = content(1000)
    await storeAll(repo, c)
    const a = await repo.lock(c.key, op())
    const b = await repo.lock(c.key, op())
    assert.ok(a && b)
    const lockFile = join(up.dir, `${(await annex(up.dir, 'contentlocation', serializeKey(c.key))).stdout.trim()}.lck`)
    try {
      assert.equal(await repo.checkPresent(c.key, op()), true)
      assert.ok(holdsLock(up.served.child.pid!, lockFile), `the reference holds a lock on ${lockFile}`)
    } finally {
      await a.release()
      await b.release()
      await a.release() // idempotent
    }
    await waitUntil('the reference to drop its content lock (/proc/locks)', 30_000, () => !holdsLock(up.served.child.pid!, lockFile))
    assert.equal((await repo.remove(c.key, op())).removed, true)
    assert.equal(await repo.checkPresent(c.key, op()), false)
    assert.equal(await repo.lock(content(10).key, op()), undefined)
  })

  test('timestamp and removeBefore', async (t) => {
    const repo = httpRepo(t, await reference(t))
    const c = content(1000)
    await storeAll(repo, c)
    const now = await repo.timestamp(op())
    assert.ok(Number.isSafeInteger(now) && now >= 0)
    assert.equal((await repo.removeBefore(c.key, now, op())).removed, false)
    assert.equal(await repo.checkPresent(c.key, op()), true)
    assert.equal((await repo.removeBefore(c.key, now + 60, op())).removed, true)
    assert.deepEqual(await repo.remove(content(10).key, op()), { removed: true, plusUuids: [] })
  })
})
