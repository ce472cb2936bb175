// The in-process coordinator keeps the rule PlaceRequest.prepare states: the reservations a
// decision sees are read before its prepare step reads the location log, so an upload that
// records its copy and releases its reservation while a prepare is under way is counted
// either as logged or as reserved, never as neither. (Read the other way round, -J8 uploads
// through one gateway overfilled a node by a file under load: test/interop
// placement-maxsize.) The same interleavings run against the Redis coordinator, which
// reads its view first and compares versions before reserving.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import type { Uuid } from '../../src/remotes/remote.js'
import { type Coordinator, LocalCoordinator } from '../../src/placement/coordinator.js'
import { reservedBytes } from '../../src/placement/ledger.js'
import { RedisCoordinator } from '../../src/placement/redis-coordinator.js'
import { defer } from '../helpers/annex.js'
import { startRedis } from '../helpers/redis.js'

const NODE = '00000000-0000-4000-8000-000000000001' as Uuid

/** A node's location log as a gateway reads it: which keys it holds, and their bytes. */
class Log {
  readonly keys = new Map<string, number>()
  bytes(): number {
    let s = 0
    for (const v of this.keys.values()) s += v
    return s
  }
}

/**
 * One upload of `key` (`size` bytes) to a node of maxsize `max`, as gateway.ts admit()
 * does it: prepare reads the log (then `pause`s, standing in for the rest of a refresh),
 * decide counts committed + reserved, leaving out reservations whose key the log read
 * already shows on the node. Admitted: `transfer`, record in the log, then release.
 */
async function upload(c: Coordinator, log: Log, key: string, size: number, max: number, pause: () => Promise<void>, transfer: () => Promise<void>): Promise<boolean> {
  let committed = 0
  let logged = new Set<string>()
  const placed = await c.place<boolean>({
    nodes: [NODE],
    key,
    shared: true,
    prepare: async () => {
      committed = log.bytes()
      logged = new Set(log.keys.keys())
      await pause()
    },
    decide: (rs) => {
      const reserved = reservedBytes(rs, (k) => logged.has(k)).get(NODE) ?? 0
      const room = committed + reserved + size <= max
      return { value: room, reserve: room ? [NODE] : [], size }
    },
  })
  if (!placed.value) {
    await placed.reservation.release()
    return false
  }
  try {
    await transfer()
    log.keys.set(key, size)
  } finally {
    await placed.reservation.release()
  }
  return true
}

/** Resolves when `go()` is called. */
function gate(): { wait: () => Promise<void>; go: () => void } {
  let go!: () => void
  const p = new Promise<void>((r) => (go = r))
  return { wait: () => p, go }
}

/** A: reserved; B's prepare reads the log; A records and releases; B decides. B must not fit. */
async function releaseDuringPrepare(c: Coordinator): Promise<{ a: boolean; b: boolean; bytes: number }> {
  const log = new Log()
  const aTransfer = gate()
  const bRead = gate()
  const bPause = gate()
  const a = upload(c, log, 'WORM-s60--a', 60, 100, async () => {}, aTransfer.wait)
  // A is reserved once its transfer has begun; then B's prepare reads the log (A not in it).
  await new Promise((r) => setImmediate(r))
  const b = upload(
    c,
    log,
    'WORM-s60--b',
    60,
    100,
    async () => {
      bRead.go()
      await bPause.wait()
    },
    async () => {},
  )
  await bRead.wait()
  aTransfer.go()
  const aOk = await a
  // A is logged and released; only now does B's prepare end.
  bPause.go()
  const bOk = await b
  return { a: aOk, b: bOk, bytes: log.bytes() }
}

/**
 * Random interleavings (fast-check's scheduler) of uploads of random sizes to one node:
 * whatever order prepares, transfers, records and releases take, the log never says the
 * node holds more than its maxsize.
 */
async function neverOverfills(make: () => Promise<Coordinator>, numRuns: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.scheduler(), fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 2, maxLength: 8 }), fc.integer({ min: 40, max: 150 }), async (s, sizes, max) => {
      const c = await make()
      try {
        const log = new Log()
        const runs = sizes.map((size, i) =>
          upload(
            c,
            log,
            `WORM-s${size}--k${i}`,
            size,
            max,
            () => s.schedule(Promise.resolve(), `prepare ${i}`),
            () => s.schedule(Promise.resolve(), `transfer ${i}`),
          ),
        )
        await s.waitFor(Promise.all(runs))
        assert.ok(log.bytes() <= max, `the node holds ${log.bytes()} bytes, over its maxsize ${max}`)
      } finally {
        await c.close()
      }
    }),
    { numRuns },
  )
}

describe('LocalCoordinator', () => {
  test('an upload released while another one prepares is counted as logged or as reserved, never neither', async () => {
    const c = new LocalCoordinator()
    try {
      const r = await releaseDuringPrepare(c)
      assert.deepEqual(r, { a: true, b: false, bytes: 60 })
    } finally {
      await c.close()
    }
  })

  test('random interleavings of prepares, transfers and releases never overfill a node', async () => {
    await neverOverfills(async () => new LocalCoordinator(), 500)
  })
})

describe('RedisCoordinator, the same interleavings', () => {
  test('an upload released while another one prepares is counted as logged or as reserved, never neither', async (t) => {
    const redis = await startRedis(t)
    const c = new RedisCoordinator({ url: redis.url })
    await c.connect()
    defer(t, () => c.close())
    assert.deepEqual(await releaseDuringPrepare(c), { a: true, b: false, bytes: 60 })
  })

  test('random interleavings of prepares, transfers and releases never overfill a node', async (t) => {
    const redis = await startRedis(t)
    let n = 0
    await neverOverfills(async () => {
      // A prefix per run: each starts from an empty ledger.
      const c = new RedisCoordinator({ url: redis.url, prefix: `run${n++}:` })
      await c.connect()
      return c
    }, 40)
  })
})
