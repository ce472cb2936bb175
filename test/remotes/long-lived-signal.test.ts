// nodejs/node#55351: on Node 20 every AbortSignal.any call leaves an entry in each input
// signal that is never collected, so combining a long-lived signal per call leaks (100 000
// calls: +49 MiB). A caller may well pass a long-lived signal (a server's lifetime) as
// op.signal: 100 000 calls on a LocalRepo must leave nothing on it and not grow the heap.
// (Measured here with the AbortSignal.any of before: an entry per retrieve, ~70 bytes of heap each.)
import assert from 'node:assert/strict'
import { getEventListeners, setMaxListeners } from 'node:events'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { openLocalRepo } from '../../src/remotes/local-repo.js'
import { defer, makeRepo, tempDir } from '../helpers/annex.js'
import { content, op, storeAll } from './contract.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Node's own table of signals depending on `s` (the one #55351 grows), when this Node has one. */
function dependants(s: AbortSignal): number | undefined {
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'kDependantSignals')
  return sym === undefined ? undefined : ((s as unknown as Record<symbol, Set<unknown> | undefined>)[sym]?.size ?? 0)
}

async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setImmediate(r))
  }
  return process.memoryUsage().heapUsed
}

test('100 000 calls with one long-lived signal leave no listener on it and do not grow the heap', { timeout: 600_000 }, async (t) => {
  const d = await tempDir(t)
  const repo = await openLocalRepo(await makeRepo(join(d, 'repo'), 'repo'), { logIdleMs: 100 })
  defer(t, () => repo.close())
  const c = content(64)
  await storeAll(repo, c)
  const lifetime = new AbortController()
  // 32 calls at once each hold a listener on it while they run (one on op.signal per call,
  // removed when it ends; that nothing stays is what this test asserts): a bounded number
  // above Node's default warning level of 10.
  setMaxListeners(64, lifetime.signal)
  const o = op(lifetime.signal)
  const calls = async (n: number) => {
    // 32 at a time: a busy server's concurrency, and quicker than one by one.
    // One in five a retrieve (the call that combined signals before), the rest checkPresent.
    const worker = async (count: number) => {
      for (let i = 0; i < count; i += 5) {
        const r = await repo.retrieve(c.key, 0, o)
        assert.equal((await buffer(r.body)).length, 64)
        assert.equal(await r.valid, true)
        for (let j = 0; j < 4; j++) assert.equal(await repo.checkPresent(c.key, o), true)
      }
    }
    await Promise.all(Array.from({ length: 32 }, () => worker(n / 32)))
  }
  assert.equal(await repo.checkPresent(c.key, o), true)
  await calls(10_080)
  const heapBefore = await settledHeap()
  const rssBefore = process.memoryUsage().rss
  await calls(100_000)
  await repo.startStore(c.key, o)
  const heapAfter = await settledHeap()
  const rssAfter = process.memoryUsage().rss
  const mib = (n: number) => (n / 1024 / 1024).toFixed(1)
  const growth = `heap ${mib(heapBefore)} → ${mib(heapAfter)} MiB, rss ${mib(rssBefore)} → ${mib(rssAfter)} MiB`
  assert.equal(getEventListeners(lifetime.signal, 'abort').length, 0, 'listeners left on the long-lived signal')
  assert.ok([undefined, 0].includes(dependants(lifetime.signal)), `${dependants(lifetime.signal)} signals left depending on the long-lived one`)
  assert.ok(heapAfter - heapBefore < 2 * 1024 * 1024, growth)
  t.diagnostic(growth)
})
