// The Redis coordinator against a real redis-server (Debian's, on a unix socket): its Lua
// scripts keep the rules of the in-memory ledger (a model-based property test runs the
// same command sequences on both), two coordinators share reservations, holds and facts,
// a decision made on a view that moved is made again, a killed gateway's reservation
// expires with its lease while a live one's is renewed, and with Redis gone what needs it
// fails clearly while the rest goes on.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { CoordinationUnavailableError, LockedError } from '../../src/errors.js'
import type { Uuid } from '../../src/remotes/remote.js'
import type { Decided, PlaceRequest } from '../../src/placement/coordinator.js'
import { MemoryLedger, reservedBytes, type LocationFact, type ReservationView } from '../../src/placement/ledger.js'
import { RedisCoordinator } from '../../src/placement/redis-coordinator.js'
import { PROJECT_ROOT, defer } from '../helpers/annex.js'
import { startRedis } from '../helpers/redis.js'

const N = (i: number) => `00000000-0000-4000-8000-00000000000${i}` as Uuid
const NODES = [N(1), N(2), N(3)]

/** A decision that reserves `size` on `reserve`, remembering what it saw. */
function request(reserve: readonly Uuid[], size: number, seen: Array<ReadonlyMap<string, number>> = [], prepare: () => Promise<void> = async () => {}): PlaceRequest<null> {
  return {
    nodes: NODES,
    key: `WORM-s${size}--k`,
    shared: true,
    prepare,
    decide: (rs: readonly ReservationView[]): Decided<null> => {
      seen.push(reservedBytes(rs, () => false))
      return { value: null, reserve, size }
    },
  }
}

async function coordinator(t: { after(fn: () => unknown): void }, url: string, opts: { leaseMs?: number; prefix?: string } = {}) {
  const c = new RedisCoordinator({ url, ...opts })
  await c.connect()
  defer(t, () => c.close())
  return c
}

describe('RedisCoordinator', () => {
  test('two gateways share reservations; a decision on a view that moved is made again', async (t) => {
    const redis = await startRedis(t)
    const a = await coordinator(t, redis.url)
    const b = await coordinator(t, redis.url)
    const seenA: Array<ReadonlyMap<string, number>> = []
    let raced = false
    // A reads the view, then B reserves before A decides: A's compare-and-set must fail.
    const ra = await a.place(
      request([N(1)], 8, seenA, async () => {
        if (raced) return
        raced = true
        await b.place(request([N(1), N(2)], 5))
      }),
    )
    assert.equal(seenA.length, 2, 'A decided twice')
    assert.deepEqual([...seenA[1]!], [[N(1), 5], [N(2), 5]])
    const seenB: Array<ReadonlyMap<string, number>> = []
    await b.place(request([], 0, seenB))
    assert.deepEqual([...seenB[0]!].sort(), [[N(1), 13], [N(2), 5]])
    await ra.reservation.release()
    await ra.reservation.release() // idempotent
    const after: Array<ReadonlyMap<string, number>> = []
    await b.place(request([], 0, after))
    assert.deepEqual([...after[0]!].sort(), [[N(1), 5], [N(2), 5]])
  })

  test('a release publishes its facts in the same step; other gateways get them before deciding', async (t) => {
    const redis = await startRedis(t)
    const a = await coordinator(t, redis.url)
    const b = await coordinator(t, redis.url)
    const got: LocationFact[] = []
    b.subscribe(async (fs) => void got.push(...fs))
    const own: LocationFact[] = []
    a.subscribe(async (fs) => void own.push(...fs))
    const r = await a.place(request([N(1)], 7))
    const fact = { key: 'WORM-s7--k', uuid: N(1), present: true, size: 7 }
    await r.reservation.release([fact])
    await a.publish([{ ...fact, uuid: N(2) }])
    const seen: Array<ReadonlyMap<string, number>> = []
    await b.place(request([], 0, seen))
    assert.deepEqual(got, [fact, { ...fact, uuid: N(2) }])
    assert.deepEqual([...seen[0]!], [])
    await a.place(request([], 0))
    assert.deepEqual(own, [], 'a gateway does not apply its own facts')
  })

  test('holds and removes exclude each other across gateways', async (t) => {
    const redis = await startRedis(t)
    const a = await coordinator(t, redis.url)
    const b = await coordinator(t, redis.url)
    const h = await a.hold(N(1), 'K')
    assert.ok(h)
    await assert.rejects(b.exclude(N(1), 'K'), LockedError)
    const other = await b.exclude(N(2), 'K')
    await other.release()
    await h.release()
    const x = await b.exclude(N(1), 'K')
    assert.equal(await a.hold(N(1), 'K'), undefined, 'no hold while a remove runs')
    await x.release()
    const h2 = await a.hold(N(1), 'K')
    assert.ok(h2)
    await h2.release()
  })

  test('a killed gateway\'s reservation expires with its lease; a live one\'s is renewed', async (t) => {
    const redis = await startRedis(t)
    // Long enough that "held right after the kill" is checked before it can lapse under load.
    const leaseMs = 3000
    const live = await coordinator(t, redis.url, { leaseMs })
    const kept = await live.place(request([N(2)], 3))
    // Another process reserves and is killed.
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      const { RedisCoordinator } = await import(${JSON.stringify(`${PROJECT_ROOT}dist/src/placement/redis-coordinator.js`)})
      const c = new RedisCoordinator({ url: ${JSON.stringify(redis.url)}, leaseMs: ${leaseMs} })
      await c.connect()
      const before = Date.now()
      await c.place({ nodes: [${JSON.stringify(N(1))}], key: 'k', shared: true, prepare: async () => {}, decide: () => ({ value: null, reserve: [${JSON.stringify(N(1))}], size: 9 }) })
      console.log('reserved after ' + before)
      setInterval(() => {}, 1000)
    `], { stdio: ['ignore', 'pipe', 'inherit'] })
    defer(t, () => child.kill('SIGKILL'))
    // When the child asked for its reservation: its lease cannot end before this + leaseMs.
    // (Not when this side heard of it: under load that came long after, and the lease,
    // renewed every third of it, could end sooner after the kill than leaseMs - 200.)
    const reservedAfter = await new Promise<number>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /reserved after (\d+)\n/.exec(out)
        if (m) resolve(Number(m[1]))
      })
      child.once('exit', (c) => reject(new Error(`child exited ${c}`)))
    })
    child.kill('SIGKILL')
    const killedAt = Date.now()
    const reservedOn = async () => {
      const seen: Array<ReadonlyMap<string, number>> = []
      await live.place(request([], 0, seen))
      return seen[0]!
    }
    assert.equal((await reservedOn()).get(N(1)), 9, 'held right after the kill')
    for (;;) {
      const r = await reservedOn()
      if (r.get(N(1)) === undefined) break
      assert.ok(Date.now() - killedAt < leaseMs + 10_000, 'the killed gateway\'s reservation outlived its lease by 10 s')
      await new Promise((res) => setTimeout(res, 100))
    }
    assert.ok(Date.now() - reservedAfter >= leaseMs, `it expired ${Date.now() - reservedAfter} ms after it was asked for: not before its lease`)
    // The live gateway's reservation, older than several leases by now, is still there.
    assert.equal((await reservedOn()).get(N(2)), 3)
    await kept.reservation.release()
    assert.equal((await reservedOn()).get(N(2)), undefined)
  })

  test('redis gone: shared decisions and removes fail with 503-mapped errors, holds say not locked, the rest goes on; facts go out when it is back', async (t) => {
    const redis = await startRedis(t)
    const a = await coordinator(t, redis.url)
    const b = await coordinator(t, redis.url)
    const got: LocationFact[] = []
    b.subscribe(async (fs) => void got.push(...fs))
    await redis.stop()
    await assert.rejects(a.place(request([N(1)], 5)), CoordinationUnavailableError)
    const local = await a.place({ ...request([], 0), shared: false })
    await local.reservation.release()
    assert.equal(await a.hold(N(1), 'K'), undefined)
    await assert.rejects(a.exclude(N(1), 'K'), CoordinationUnavailableError)
    const fact = { key: 'WORM-s1--x', uuid: N(3), present: true, size: 1 }
    await a.publish([fact])
    await redis.restart()
    // Both clients reconnect by themselves; the outbox goes out with A's next step.
    const deadline = Date.now() + 30_000
    for (;;) {
      try {
        await a.place(request([], 0))
        await b.place(request([], 0))
        if (got.length > 0) break
      } catch (e) {
        if (!(e instanceof CoordinationUnavailableError)) throw e
      }
      assert.ok(Date.now() < deadline, 'redis back, but the fact did not arrive within 30 s')
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.deepEqual(got, [fact])
  })

  test('the Lua scripts keep the in-memory ledger\'s rules (model-based)', async (t) => {
    const redis = await startRedis(t)
    type Cmd =
      | { c: 'reserve'; nodes: number[]; size: number }
      | { c: 'release'; i: number; facts: number[] }
      | { c: 'hold'; node: number; key: number }
      | { c: 'unhold'; i: number }
      | { c: 'exclude'; node: number; key: number }
      | { c: 'unexclude'; i: number }
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({ c: fc.constant('reserve' as const), nodes: fc.subarray([0, 1, 2]), size: fc.integer({ min: 1, max: 50 }) }),
      fc.record({ c: fc.constant('release' as const), i: fc.nat(), facts: fc.subarray([0, 1, 2]) }),
      fc.record({ c: fc.constant('hold' as const), node: fc.nat({ max: 2 }), key: fc.nat({ max: 1 }) }),
      fc.record({ c: fc.constant('unhold' as const), i: fc.nat() }),
      fc.record({ c: fc.constant('exclude' as const), node: fc.nat({ max: 2 }), key: fc.nat({ max: 1 }) }),
      fc.record({ c: fc.constant('unexclude' as const), i: fc.nat() }),
    )
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { maxLength: 30 }), async (cmds) => {
        const prefix = `model${run++}:`
        const a = new RedisCoordinator({ url: redis.url, prefix, leaseMs: 600_000 })
        const b = new RedisCoordinator({ url: redis.url, prefix, leaseMs: 600_000 })
        await Promise.all([a.connect(), b.connect()])
        try {
          const model = new MemoryLedger()
          const modelFacts: LocationFact[] = []
          const got: LocationFact[] = []
          b.subscribe(async (fs) => void got.push(...fs))
          const reservations: Array<{ release(f?: readonly LocationFact[]): Promise<void>; id: string }> = []
          const holds: Array<{ release(): Promise<void>; node: string; key: string; id: string }> = []
          const excls: Array<{ release(): Promise<void>; node: string; key: string; id: string }> = []
          let n = 0
          for (const k of cmds) {
            switch (k.c) {
              case 'reserve': {
                const nodes = k.nodes.map((i) => NODES[i]!)
                const r = await a.place(request(nodes, k.size))
                const id = `m${n++}`
                model.tryReserve({ id, owner: 'a', nodes, size: k.size, key: request(nodes, k.size).key }, 600_000, new Map(), 0)
                reservations.push({ ...r.reservation, id })
                break
              }
              case 'release': {
                const r = reservations.splice(k.i % Math.max(1, reservations.length), 1)[0]
                if (!r) break
                const facts = k.facts.map((i) => ({ key: `K${i}`, uuid: NODES[i]!, present: i !== 1, size: i }))
                await r.release(facts)
                model.release(r.id, facts, 0)
                modelFacts.push(...facts)
                break
              }
              case 'hold': {
                const node = NODES[k.node]!
                const h = await a.hold(node, `K${k.key}`)
                const id = `h${n++}`
                assert.equal(h !== undefined, model.hold(node, `K${k.key}`, id, 600_000, 0), 'hold')
                if (h) holds.push({ ...h, node, key: `K${k.key}`, id })
                break
              }
              case 'unhold': {
                const h = holds.splice(k.i % Math.max(1, holds.length), 1)[0]
                if (!h) break
                await h.release()
                model.unhold(h.node, h.key, h.id)
                break
              }
              case 'exclude': {
                const node = NODES[k.node]!
                const id = `x${n++}`
                const ours = model.exclude(node, `K${k.key}`, id, 600_000, 0)
                const x = await b.exclude(node, `K${k.key}`).catch((e: unknown) => {
                  if (e instanceof LockedError) return undefined
                  throw e
                })
                assert.equal(x ? 'ok' : 'locked', ours, 'exclude')
                if (x) excls.push({ ...x, node, key: `K${k.key}`, id })
                break
              }
              case 'unexclude': {
                const x = excls.splice(k.i % Math.max(1, excls.length), 1)[0]
                if (!x) break
                await x.release()
                model.unexclude(x.node, x.key, x.id)
                break
              }
            }
            const seen: Array<ReadonlyMap<string, number>> = []
            await b.place(request([], 0, seen))
            const want = reservedBytes(model.view(NODES, 0, 0).reservations, () => false)
            assert.deepEqual([...seen[0]!].sort(), [...want].sort(), 'reserved bytes')
          }
          assert.deepEqual(got, modelFacts, 'facts, in order')
        } finally {
          await Promise.all([a.close(), b.close()])
        }
      }),
      { numRuns: Number(process.env['FC_RUNS_REDIS'] ?? 60) },
    )
  })
})
