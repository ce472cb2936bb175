// WorkerPool (--jobs, --max-queue, --max-queue-wait): at most `concurrency` at once,
// the rest wait in order up to a bound and a time, then 503; an aborted waiter leaves.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { OverloadedError } from '../../src/errors.js'
import { WorkerPool, WorkerPools } from '../../src/gateway/worker-pool.js'

/** Work that runs until `finish()`; `started` resolves when a worker took it. */
function gate() {
  let finish!: () => void
  let markStarted!: () => void
  const done = new Promise<void>((r) => (finish = r))
  const started = new Promise<void>((r) => (markStarted = r))
  return {
    started,
    finish,
    work: async () => {
      markStarted()
      await done
    },
  }
}

/** A signal that never fires, one per call as the server gives each request its own (one shared by 30 queued calls would be 30 listeners on it). */
const never = () => new AbortController().signal

test('runs at most `concurrency` at once; the rest start in arrival order as workers free up', async () => {
  const pool = new WorkerPool({ concurrency: 2, maxQueue: 10, maxWaitMs: 60_000 })
  const gates = Array.from({ length: 5 }, gate)
  const order: number[] = []
  const runs = gates.map((g, i) => pool.run(never(), async () => {
    order.push(i)
    await g.work()
  }))
  await Promise.all([gates[0]!.started, gates[1]!.started])
  assert.equal(pool.inFlight, 2)
  assert.equal(pool.queued, 3)
  gates[1]!.finish()
  await gates[2]!.started
  gates[0]!.finish()
  await gates[3]!.started
  assert.equal(pool.inFlight, 2)
  gates[2]!.finish()
  gates[3]!.finish()
  await gates[4]!.started
  gates[4]!.finish()
  await Promise.all(runs)
  assert.deepEqual(order, [0, 1, 2, 3, 4])
  assert.equal(pool.inFlight, 0)
  assert.equal(pool.queued, 0)
})

test('a full queue refuses at once with OverloadedError (503)', async () => {
  const pool = new WorkerPool({ concurrency: 1, maxQueue: 2, maxWaitMs: 60_000 })
  const busy = gate()
  const first = pool.run(never(), busy.work)
  await busy.started
  const queued = [pool.run(never(), async () => 'q1'), pool.run(never(), async () => 'q2')]
  await assert.rejects(pool.run(never(), async () => 'too many'), OverloadedError)
  assert.equal(pool.queued, 2)
  busy.finish()
  await first
  assert.deepEqual(await Promise.all(queued), ['q1', 'q2'])
})

test('no queue at all: --max-queue 0 refuses whatever finds every worker busy', async () => {
  const pool = new WorkerPool({ concurrency: 1, maxQueue: 0, maxWaitMs: 60_000 })
  const busy = gate()
  const first = pool.run(never(), busy.work)
  await busy.started
  await assert.rejects(pool.run(never(), async () => 1), OverloadedError)
  busy.finish()
  await first
  assert.equal(await pool.run(never(), async () => 2), 2)
})

test('waiting longer than maxWaitMs is refused with OverloadedError and leaves the queue', async () => {
  const pool = new WorkerPool({ concurrency: 1, maxQueue: 5, maxWaitMs: 50 })
  const busy = gate()
  const first = pool.run(never(), busy.work)
  await busy.started
  let ran = false
  await assert.rejects(pool.run(never(), async () => (ran = true)), (e: unknown) => e instanceof OverloadedError && /timed out/.test(e.message))
  assert.equal(pool.queued, 0)
  busy.finish()
  await first
  assert.equal(ran, false)
  assert.equal(pool.inFlight, 0)
})

test('an abort while queued rejects with the reason, frees the place and never runs the work', async () => {
  const pool = new WorkerPool({ concurrency: 1, maxQueue: 1, maxWaitMs: 60_000 })
  const busy = gate()
  const first = pool.run(never(), busy.work)
  await busy.started
  const ac = new AbortController()
  let ran = false
  const waiting = pool.run(ac.signal, async () => (ran = true))
  assert.equal(pool.queued, 1)
  const reason = new Error('client disconnected')
  ac.abort(reason)
  await assert.rejects(waiting, (e: unknown) => e === reason)
  assert.equal(pool.queued, 0)
  // Its place is free again.
  const next = pool.run(never(), async () => 'next')
  busy.finish()
  await first
  assert.equal(await next, 'next')
  assert.equal(ran, false)
})

test('an already aborted request is refused even with a worker free', async () => {
  const pool = new WorkerPool({ concurrency: 4, maxQueue: 4, maxWaitMs: 60_000 })
  const ac = new AbortController()
  ac.abort(new Error('gone'))
  let ran = false
  await assert.rejects(pool.run(ac.signal, async () => (ran = true)), /gone/)
  assert.equal(ran, false)
  assert.equal(pool.inFlight, 0)
})

test('work that fails frees its worker for the next in line', async () => {
  const pool = new WorkerPool({ concurrency: 1, maxQueue: 4, maxWaitMs: 60_000 })
  const failing = pool.run(never(), async () => {
    throw new Error('boom')
  })
  const next = pool.run(never(), async () => 'after')
  await assert.rejects(failing, /boom/)
  assert.equal(await next, 'after')
  assert.equal(pool.inFlight, 0)
})

test('no listener stays on a signal after its work ran, was refused or was aborted', async () => {
  const pool = new WorkerPool({ concurrency: 1, maxQueue: 1, maxWaitMs: 20 })
  const counting = () => {
    const ac = new AbortController()
    let n = 0
    const add = ac.signal.addEventListener.bind(ac.signal)
    const remove = ac.signal.removeEventListener.bind(ac.signal)
    ac.signal.addEventListener = ((...a: Parameters<typeof add>) => (n++, add(...a))) as typeof add
    ac.signal.removeEventListener = ((...a: Parameters<typeof remove>) => (n--, remove(...a))) as typeof remove
    return { signal: ac.signal, ac, listeners: () => n }
  }
  const busy = gate()
  const first = counting()
  const running = pool.run(first.signal, busy.work)
  await busy.started
  const timedOut = counting()
  await assert.rejects(pool.run(timedOut.signal, async () => 1), OverloadedError)
  const refused = counting()
  const queued = counting()
  const q = pool.run(queued.signal, async () => 2)
  await assert.rejects(pool.run(refused.signal, async () => 3), OverloadedError)
  busy.finish()
  await running
  assert.equal(await q, 2)
  for (const c of [first, timedOut, refused, queued]) assert.equal(c.listeners(), 0)
})

test('property: never more than `concurrency` at once, everything admitted runs once', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 30 }), async (concurrency, delays) => {
      const pool = new WorkerPool({ concurrency, maxQueue: delays.length, maxWaitMs: 60_000 })
      let running = 0
      let peak = 0
      const ran: number[] = []
      await Promise.all(
        delays.map((d, i) =>
          pool.run(never(), async () => {
            running++
            peak = Math.max(peak, running)
            for (let k = 0; k < d; k++) await Promise.resolve()
            ran.push(i)
            running--
          }),
        ),
      )
      assert.ok(peak <= concurrency)
      assert.deepEqual([...ran].sort((a, b) => a - b), delays.map((_, i) => i))
    }),
    { numRuns: 200 },
  )
})

test('WorkerPools: each repository has its own workers and queue; idle ones are let go', async () => {
  const pools = new WorkerPools({ concurrency: 1, maxQueue: 0, maxWaitMs: 60_000 })
  const busy = gate()
  const a = pools.run('repo-a', never(), busy.work)
  await busy.started
  // repo-a is full with no queue; repo-b is not affected.
  await assert.rejects(pools.run('repo-a', never(), async () => 1), OverloadedError)
  assert.equal(await pools.run('repo-b', never(), async () => 'b'), 'b')
  assert.equal(pools.inFlight, 1)
  busy.finish()
  await a
  assert.equal(pools.inFlight, 0)
  assert.equal(pools.queued, 0)
  assert.equal((pools as unknown as { pools: Map<string, unknown> }).pools.size, 0, 'no pool kept for idle repositories')
  assert.equal(await pools.run('repo-a', never(), async () => 'a again'), 'a again')
})
