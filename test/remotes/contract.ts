// The one suite every Remote passes (style §2.2): what a remote declares is asserted
// equal to what it has, each declared capability gets its working tests, and each
// missing one a "refuses with NotSupportedError" test, so nothing is skipped silently.
// Harnesses are real stores (temp repositories, servers on port 0), never stubs.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { describe, test as nodeTest, type TestContext } from 'node:test'
import {
  AbortedError,
  ClosedError,
  HashMismatchError,
  LengthMismatchError,
  LockedError,
  NotSupportedError,
  ProxyError,
  TransferInProgressError,
} from '../../src/errors.js'
import { parseKey, type Key } from '../../src/keys/key.js'
import { ALL_CAPABILITIES, type Capability, type Logger, type Op, type Remote } from '../../src/remotes/remote.js'
import { sha256Key } from '../helpers/annex.js'
import { waitUntil } from '../helpers/wait.js'

/**
 * Each case has its own deadline, not the suite as a whole: the suite grows with the
 * contract, and a composite remote (three repositories per case) takes seconds per case on
 * a loaded machine, so a whole-suite deadline was overrun by cases that were all fine.
 */
const test = (name: string, fn: (t: TestContext) => Promise<void>) => nodeTest(name, { timeout: 90_000 }, fn)

export interface Harness {
  /** What the remote under test claims to support. */
  readonly declared: readonly Capability[]
  /** A fresh remote holding nothing; the harness closes and cleans it up in t.after. */
  make(t: TestContext): Promise<Remote>
  /** Another remote over the same store as `remote` (which may be closed by now), to look at what it left. */
  reopen(t: TestContext, remote: Remote): Promise<Remote>
  /** A composite (cluster) reports the members that stored content as plusUuids. */
  readonly composite?: boolean
}

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {} }

export function op(signal: AbortSignal = new AbortController().signal): Op {
  return { signal, log: quiet }
}

export interface Content {
  readonly bytes: Buffer
  readonly key: Key
}

/** Random bytes and their real SHA256E key. */
export function content(size = 64 * 1024, ext = '.bin'): Content {
  const bytes = randomBytes(size)
  return { bytes, key: parseKey(sha256Key(bytes, ext)) }
}

/** A byte stream of `bytes` in chunks of at most `chunk`. */
export function bodyOf(bytes: Buffer, chunk = 16 * 1024): Readable {
  const parts: Buffer[] = []
  for (let i = 0; i < bytes.length; i += chunk) parts.push(bytes.subarray(i, i + chunk))
  return Readable.from(parts, { objectMode: false })
}

/**
 * A body that delivers `bytes` and then stalls, like a client whose connection is
 * still open. `consumed` resolves when the receiver asks for more than it was
 * given (with no buffering in the body, everything given has left it); `finish`
 * sends the rest and ends.
 */
export function stallingBody(bytes: Buffer): { body: Readable; consumed: Promise<void>; finish(rest: Buffer): void } {
  let given = false
  let onConsumed!: () => void
  const consumed = new Promise<void>((resolve) => (onConsumed = resolve))
  const body = new Readable({
    highWaterMark: 0,
    read() {
      if (given) return onConsumed()
      given = true
      this.push(bytes)
    },
  })
  return {
    body,
    consumed,
    finish(rest) {
      body.push(rest)
      body.push(null)
    },
  }
}

/** Polls `cond` (a real store's state) until true; a hang fails the test instead of passing. */
export async function eventually(cond: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  await waitUntil(what, timeoutMs, cond, 10)
}

export async function storeAll(remote: Remote, c: Content): Promise<void> {
  const r = await remote.store(c.key, bodyOf(c.bytes), 0, op())
  assert.equal(r.stored, true)
}

/** Resolves once `body` was read to its end or destroyed: nobody is left holding it. */
async function bodySettled(body: Readable, what: string): Promise<void> {
  await eventually(async () => body.destroyed || body.readableEnded, `the body of ${what} to be consumed or destroyed`)
}

async function retrieveAll(remote: Remote, key: Key, offset = 0): Promise<{ length: number; bytes: Buffer; valid: boolean }> {
  const r = await remote.retrieve(key, offset, op())
  const bytes = await buffer(r.body)
  return { length: r.length, bytes, valid: await r.valid }
}

async function storedOffset(remote: Remote, key: Key): Promise<number> {
  const s = await remote.startStore(key, op())
  assert.equal(s.kind, 'offset')
  return s.kind === 'offset' ? s.offset : -1
}

interface CapabilitySuite {
  works(h: Harness): void
  refuses(h: Harness): void
}

const suites: Record<Capability, CapabilitySuite> = {
  'retrieve-from-offset': {
    works(h) {
      test('retrieve from an offset returns only the tail', async (t) => {
        const remote = await h.make(t)
        const c = content(100_000)
        await storeAll(remote, c)
        const r = await retrieveAll(remote, c.key, 12_345)
        assert.equal(r.length, c.bytes.length - 12_345)
        assert.deepEqual(r.bytes, c.bytes.subarray(12_345))
        assert.equal(r.valid, true)
        const end = await retrieveAll(remote, c.key, c.bytes.length)
        assert.equal(end.length, 0)
        assert.equal(end.bytes.length, 0)
        const past = await retrieveAll(remote, c.key, c.bytes.length + 10)
        assert.equal(past.length, 0)
      })
    },
    refuses(h) {
      test('retrieve from an offset refuses with NotSupportedError', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        await assert.rejects(remote.retrieve(c.key, 10, op()), NotSupportedError)
      })
    },
  },
  'resume-store': {
    works(h) {
      test('abort mid-store, then resume from the kept offset, commits the content', async (t) => {
        const remote = await h.make(t)
        const c = content(300_000)
        const half = 120_000
        const ac = new AbortController()
        const { body, consumed } = stallingBody(c.bytes.subarray(0, half))
        const first = remote.store(c.key, body, 0, op(ac.signal))
        await consumed
        // The bytes have left the body; wait until the store holds them, then cut.
        await eventually(async () => (await storedOffset(remote, c.key)) >= half, 'the first bytes to be kept')
        ac.abort()
        await assert.rejects(first, ProxyError)
        assert.equal(await remote.checkPresent(c.key, op()), false)
        const offset = await storedOffset(remote, c.key)
        assert.ok(offset > 0 && offset <= half, `resume offset ${offset}`)
        const r = await remote.store(c.key, bodyOf(c.bytes.subarray(offset)), offset, op())
        assert.equal(r.stored, true)
        assert.deepEqual((await retrieveAll(remote, c.key)).bytes, c.bytes)
      })
      test('a body that ends short keeps its bytes for resume', async (t) => {
        const remote = await h.make(t)
        const c = content(50_000)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(0, 20_000)), 0, op()), LengthMismatchError)
        assert.equal(await remote.checkPresent(c.key, op()), false)
        assert.equal(await storedOffset(remote, c.key), 20_000)
        assert.equal((await remote.store(c.key, bodyOf(c.bytes.subarray(20_000)), 20_000, op())).stored, true)
      })
      test('resuming from an offset shorter than what is kept starts over there', async (t) => {
        const remote = await h.make(t)
        const c = content(50_000)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(0, 30_000)), 0, op()), LengthMismatchError)
        assert.equal((await remote.store(c.key, bodyOf(c.bytes.subarray(10_000)), 10_000, op())).stored, true)
        assert.deepEqual((await retrieveAll(remote, c.key)).bytes, c.bytes)
      })
      test('resuming past what is kept is refused and changes nothing', async (t) => {
        const remote = await h.make(t)
        const c = content(50_000)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(0, 10_000)), 0, op()), LengthMismatchError)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(20_000)), 20_000, op()), LengthMismatchError)
        assert.equal(await storedOffset(remote, c.key), 10_000)
        assert.equal(await remote.checkPresent(c.key, op()), false)
      })
      test('a resumed store with bad bytes after the prefix fails verification and keeps nothing', async (t) => {
        const remote = await h.make(t)
        const c = content(50_000)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(0, 10_000)), 0, op()), LengthMismatchError)
        const bad = Buffer.from(c.bytes.subarray(10_000))
        bad[bad.length - 1]! ^= 0xff
        await assert.rejects(remote.store(c.key, bodyOf(bad), 10_000, op()), HashMismatchError)
        assert.equal(await remote.checkPresent(c.key, op()), false)
        assert.equal(await storedOffset(remote, c.key), 0)
      })
    },
    refuses(h) {
      test('resume-store: offsets stay 0 and store from an offset refuses with NotSupportedError', async (t) => {
        const remote = await h.make(t)
        const c = content(10_000)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(0, 5000)), 0, op()))
        assert.equal(await storedOffset(remote, c.key), 0)
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(5000)), 5000, op()), NotSupportedError)
      })
    },
  },
  lock: {
    works(h) {
      test('a lock blocks removal until released', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        const lock = await remote.lock(c.key, op())
        assert.ok(lock, 'present content locks')
        await assert.rejects(remote.remove(c.key, op()), LockedError)
        assert.equal(await remote.checkPresent(c.key, op()), true)
        await lock.release()
        await lock.release() // idempotent
        assert.equal((await remote.remove(c.key, op())).removed, true)
        assert.equal(await remote.checkPresent(c.key, op()), false)
      })
      test('two locks: removal waits for both', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        const a = await remote.lock(c.key, op())
        const b = await remote.lock(c.key, op())
        assert.ok(a && b)
        await a.release()
        await assert.rejects(remote.remove(c.key, op()), LockedError)
        await b.release()
        assert.equal((await remote.remove(c.key, op())).removed, true)
      })
      test('locking absent content yields no lock', async (t) => {
        const remote = await h.make(t)
        assert.equal(await remote.lock(content(10).key, op()), undefined)
      })
    },
    refuses(h) {
      test('lock refuses with NotSupportedError', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        await assert.rejects(remote.lock(c.key, op()), NotSupportedError)
      })
    },
  },
  'remove-before': {
    works(h) {
      test('removeBefore with a past deadline refuses; with a future one removes', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        assert.equal((await remote.removeBefore(c.key, 0, op())).removed, false)
        assert.equal(await remote.checkPresent(c.key, op()), true)
        assert.equal((await remote.removeBefore(c.key, Number.MAX_SAFE_INTEGER, op())).removed, true)
        assert.equal(await remote.checkPresent(c.key, op()), false)
      })
    },
    refuses(h) {
      test('removeBefore refuses with NotSupportedError', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        await assert.rejects(remote.removeBefore(c.key, Number.MAX_SAFE_INTEGER, op()), NotSupportedError)
        assert.equal(await remote.checkPresent(c.key, op()), true)
      })
    },
  },
  timestamp: {
    works(h) {
      test('timestamp is a whole, non-decreasing number of seconds', async (t) => {
        const remote = await h.make(t)
        const a = await remote.timestamp(op())
        const b = await remote.timestamp(op())
        assert.ok(Number.isSafeInteger(a) && a >= 0, `timestamp ${a}`)
        assert.ok(b >= a)
      })
      test('a deadline one minute after the remote timestamp still removes', async (t) => {
        const remote = await h.make(t)
        if (!remote.capabilities.has('remove-before')) return
        const c = content(1000)
        await storeAll(remote, c)
        const now = await remote.timestamp(op())
        assert.equal((await remote.removeBefore(c.key, now, op())).removed, false)
        assert.equal((await remote.removeBefore(c.key, now + 60, op())).removed, true)
      })
    },
    refuses(h) {
      test('timestamp refuses with NotSupportedError', async (t) => {
        const remote = await h.make(t)
        await assert.rejects(remote.timestamp(op()), NotSupportedError)
      })
    },
  },
}

export function remoteContract(name: string, h: Harness): void {
  describe(`${name} honours Remote`, () => {
    test('declares exactly its capabilities', async (t) => {
      const remote = await h.make(t)
      assert.deepEqual([...remote.capabilities].sort(), [...h.declared].sort())
    })

    test('store → checkPresent → retrieve returns the same bytes', async (t) => {
      const remote = await h.make(t)
      const c = content(200_000)
      assert.equal(await remote.checkPresent(c.key, op()), false)
      assert.deepEqual(await remote.startStore(c.key, op()), { kind: 'offset', offset: 0 })
      const r = await remote.store(c.key, bodyOf(c.bytes), 0, op())
      assert.equal(r.stored, true)
      if (h.composite) assert.ok(r.plusUuids.length > 0 && new Set(r.plusUuids).size === r.plusUuids.length, `members listed once: ${r.plusUuids.join(' ')}`)
      else assert.deepEqual(r.plusUuids, [])
      assert.equal(await remote.checkPresent(c.key, op()), true)
      assert.equal((await remote.startStore(c.key, op())).kind, 'present')
      const got = await retrieveAll(remote, c.key)
      assert.equal(got.length, c.bytes.length)
      assert.deepEqual(got.bytes, c.bytes)
      assert.equal(got.valid, true)
    })

    test('storing content that is already present succeeds without it', async (t) => {
      const remote = await h.make(t)
      const c = content(1000)
      await storeAll(remote, c)
      assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
      assert.equal((await remote.storePresent(c.key, op())).stored, true)
    })

    test('an empty key stores and retrieves', async (t) => {
      const remote = await h.make(t)
      const c = content(0)
      await storeAll(remote, c)
      const got = await retrieveAll(remote, c.key)
      assert.equal(got.length, 0)
      assert.equal(got.valid, true)
    })

    test('retrieving an absent key yields length 0, no bytes, valid=false', async (t) => {
      const remote = await h.make(t)
      const got = await retrieveAll(remote, content(10).key)
      assert.deepEqual(got, { length: 0, bytes: Buffer.alloc(0), valid: false })
    })

    test('storePresent of content that did not arrive is not stored', async (t) => {
      const remote = await h.make(t)
      assert.equal((await remote.storePresent(content(10).key, op())).stored, false)
    })

    test('bad hash leaves no object and nothing to resume', async (t) => {
      const remote = await h.make(t)
      const c = content(50_000)
      const bad = Buffer.from(c.bytes)
      bad[777]! ^= 1
      await assert.rejects(remote.store(c.key, bodyOf(bad), 0, op()), HashMismatchError)
      assert.equal(await remote.checkPresent(c.key, op()), false)
      assert.equal(await storedOffset(remote, c.key), 0)
    })

    test('a body longer than the key leaves no object and nothing to resume', async (t) => {
      const remote = await h.make(t)
      const c = content(5000)
      await assert.rejects(remote.store(c.key, bodyOf(Buffer.concat([c.bytes, Buffer.from('x')])), 0, op()), LengthMismatchError)
      assert.equal(await remote.checkPresent(c.key, op()), false)
      assert.equal(await storedOffset(remote, c.key), 0)
    })

    test('a short body leaves no object', async (t) => {
      const remote = await h.make(t)
      const c = content(50_000)
      await assert.rejects(remote.store(c.key, bodyOf(c.bytes.subarray(0, 49_999)), 0, op()), LengthMismatchError)
      assert.equal(await remote.checkPresent(c.key, op()), false)
    })

    test('abort mid-store leaves no object', async (t) => {
      const remote = await h.make(t)
      const c = content(100_000)
      const ac = new AbortController()
      const { body, consumed } = stallingBody(c.bytes.subarray(0, 40_000))
      const p = remote.store(c.key, body, 0, op(ac.signal))
      await consumed
      ac.abort()
      await assert.rejects(p, AbortedError)
      assert.equal(await remote.checkPresent(c.key, op()), false)
    })

    test('a body that fails mid-store (connection drop) leaves no object', async (t) => {
      const remote = await h.make(t)
      const c = content(100_000)
      const { body, consumed } = stallingBody(c.bytes.subarray(0, 40_000))
      const p = remote.store(c.key, body, 0, op())
      await consumed
      body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
      await assert.rejects(p, ProxyError)
      assert.equal(await remote.checkPresent(c.key, op()), false)
    })

    test('a sender that reports its content invalid does not get it committed', async (t) => {
      const remote = await h.make(t)
      const c = content(10_000)
      await assert.rejects(remote.store(c.key, bodyOf(c.bytes), 0, { ...op(), senderValid: Promise.resolve(false) }), ProxyError)
      assert.equal(await remote.checkPresent(c.key, op()), false)
      assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, { ...op(), senderValid: Promise.resolve(true) })).stored, true)
    })

    test('a second concurrent store of the same key is refused; the first completes', async (t) => {
      const remote = await h.make(t)
      const c = content(100_000)
      const { body, consumed, finish } = stallingBody(c.bytes.subarray(0, 30_000))
      const first = remote.store(c.key, body, 0, op())
      await consumed
      await assert.rejects(remote.store(c.key, bodyOf(c.bytes), 0, op()), TransferInProgressError)
      finish(c.bytes.subarray(30_000))
      assert.equal((await first).stored, true)
      assert.deepEqual((await retrieveAll(remote, c.key)).bytes, c.bytes)
    })

    test('a store issued the moment the previous one of the key settled is not refused as concurrent', async (t) => {
      const remote = await h.make(t)
      const c = content(10_000)
      const bad = Buffer.from(c.bytes)
      bad[0]! ^= 1
      const again = remote.store(c.key, bodyOf(bad), 0, op()).then(
        () => assert.fail('bad content stored'),
        () => remote.store(c.key, bodyOf(c.bytes), 0, op()),
      )
      assert.equal((await again).stored, true)
    })

    test('concurrent stores of different keys all commit', async (t) => {
      const remote = await h.make(t)
      const cs = Array.from({ length: 8 }, (_, i) => content(10_000 + i))
      const rs = await Promise.all(cs.map((c) => remote.store(c.key, bodyOf(c.bytes, 1000), 0, op())))
      assert.ok(rs.every((r) => r.stored))
      for (const c of cs) assert.equal(await remote.checkPresent(c.key, op()), true)
    })

    test('remove of absent content is removed:true', async (t) => {
      const remote = await h.make(t)
      assert.deepEqual(await remote.remove(content(10).key, op()), { removed: true, plusUuids: [] })
    })

    test('remove deletes present content', async (t) => {
      const remote = await h.make(t)
      const c = content(1000)
      await storeAll(remote, c)
      assert.equal((await remote.remove(c.key, op())).removed, true)
      assert.equal(await remote.checkPresent(c.key, op()), false)
      assert.equal((await retrieveAll(remote, c.key)).length, 0)
      // And it can come back.
      await storeAll(remote, c)
      assert.equal(await remote.checkPresent(c.key, op()), true)
    })


    describe('lifecycle', () => {
      test('new work after close() is refused with ClosedError, before close() resolves', async (t) => {
        const remote = await h.make(t)
        const c = content(1000)
        await storeAll(remote, c)
        const closing = remote.close()
        assert.equal(remote.closed, true)
        const body = bodyOf(c.bytes)
        const refused: Array<[string, Promise<unknown>]> = [
          ['checkPresent', remote.checkPresent(c.key, op())],
          ['retrieve', remote.retrieve(c.key, 0, op())],
          ['startStore', remote.startStore(c.key, op())],
          ['store', remote.store(c.key, body, 0, op())],
          ['storePresent', remote.storePresent(c.key, op())],
          ['remove', remote.remove(c.key, op())],
          ['removeBefore', remote.removeBefore(c.key, Number.MAX_SAFE_INTEGER, op())],
          ['timestamp', remote.timestamp(op())],
          ['lock', remote.lock(c.key, op())],
        ]
        for (const [name, p] of refused) await assert.rejects(p, ClosedError, `${name} after close()`)
        await bodySettled(body, 'a store refused because the remote is closed')
        await closing
        await assert.rejects(remote.checkPresent(c.key, op()), ClosedError)
        // Refused means untouched: the content is still there.
        const again = await h.reopen(t, remote)
        assert.equal(await again.checkPresent(c.key, op()), true)
      })

      test('close() during a store lets it complete, then resolves', async (t) => {
        const remote = await h.make(t)
        const c = content(100_000)
        const { body, consumed, finish } = stallingBody(c.bytes.subarray(0, 30_000))
        const storing = remote.store(c.key, body, 0, op())
        await consumed
        let closedAt: 'before' | 'after' | undefined
        let stored = false
        const closing = remote.close().then(() => (closedAt ??= stored ? 'after' : 'before'))
        await assert.rejects(remote.checkPresent(c.key, op()), ClosedError)
        finish(c.bytes.subarray(30_000))
        assert.equal((await storing).stored, true)
        stored = true
        await closing
        assert.equal(closedAt, 'after', 'close() resolved only once the store had settled')
        const again = await h.reopen(t, remote)
        assert.deepEqual((await retrieveAll(again, c.key)).bytes, c.bytes)
      })

      test('close() during a retrieve lets its body be read to the end', async (t) => {
        const remote = await h.make(t)
        const c = content(3 * 1024 * 1024)
        await storeAll(remote, c)
        const r = await remote.retrieve(c.key, 0, op())
        const closing = remote.close()
        await assert.rejects(remote.checkPresent(c.key, op()), ClosedError)
        assert.deepEqual(await buffer(r.body), c.bytes)
        assert.equal(await r.valid, true)
        await closing
      })

      test('destroy() during a store aborts it and leaves nothing visible', async (t) => {
        const remote = await h.make(t)
        const c = content(100_000)
        const { body, consumed } = stallingBody(c.bytes.subarray(0, 30_000))
        const storing = remote.store(c.key, body, 0, op())
        const outcome = storing.then(
          () => 'stored',
          (e: unknown) => e,
        )
        await consumed
        await remote.destroy(new Error('shutting down'))
        assert.equal(remote.closed, true)
        // destroy() resolves once the work it aborted has settled.
        const settled = await Promise.race([outcome, Promise.resolve('pending')])
        assert.ok(settled instanceof AbortedError, `the store ended with ${String(settled)}`)
        assert.equal(body.destroyed, true, 'the body of an aborted store is destroyed')
        await assert.rejects(remote.store(c.key, bodyOf(c.bytes), 0, op()), ClosedError)
        const again = await h.reopen(t, remote)
        assert.equal(await again.checkPresent(c.key, op()), false)
        assert.equal((await retrieveAll(again, c.key)).length, 0)
      })

      test('destroy() during a retrieve destroys its body', async (t) => {
        const remote = await h.make(t)
        const c = content(8 * 1024 * 1024)
        await storeAll(remote, c)
        const r = await remote.retrieve(c.key, 0, op())
        await remote.destroy()
        await assert.rejects(buffer(r.body))
        assert.equal(await r.valid, false)
      })

      test('close() and destroy() are idempotent and may follow each other', async (t) => {
        const a = await h.make(t)
        await Promise.all([a.close(), a.close()])
        await a.close()
        await a.destroy()
        await a.destroy(new Error('again'))
        const b = await h.make(t)
        await Promise.all([b.destroy(), b.destroy(), b.close()])
        await b.close()
        await assert.rejects(b.timestamp(op()), ClosedError)
      })

      test('a store consumes or destroys its body, also when it refuses before reading it', async (t) => {
        const remote = await h.make(t)
        const c = content(50_000)
        // Transfer in progress: refused at once.
        const { body: first, consumed, finish } = stallingBody(c.bytes.subarray(0, 10_000))
        const storing = remote.store(c.key, first, 0, op())
        await consumed
        const second = bodyOf(c.bytes)
        await assert.rejects(remote.store(c.key, second, 0, op()), TransferInProgressError)
        await bodySettled(second, 'a store refused as a concurrent transfer')
        finish(c.bytes.subarray(10_000))
        assert.equal((await storing).stored, true)
        await bodySettled(first, 'a store that completed')
        // Present already: the bytes are not needed.
        const present = bodyOf(c.bytes)
        assert.equal((await remote.store(c.key, present, 0, op())).stored, true)
        await bodySettled(present, 'a store of content already present')
        // An offset beyond the key's size (or any offset, without resume-store).
        const d = content(1000)
        const beyond = bodyOf(d.bytes)
        await assert.rejects(remote.store(d.key, beyond, 5000, op()), ProxyError)
        await bodySettled(beyond, 'a store refused for its offset')
        // Bad content: refused after reading.
        const bad = Buffer.from(d.bytes)
        bad[0]! ^= 1
        const badBody = bodyOf(bad)
        await assert.rejects(remote.store(d.key, badBody, 0, op()), ProxyError)
        await bodySettled(badBody, 'a store refused for its content')
      })
    })

    for (const cap of ALL_CAPABILITIES) {
      describe(cap, () => (h.declared.includes(cap) ? suites[cap].works(h) : suites[cap].refuses(h)))
    }
  })
}
