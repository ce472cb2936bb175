// The gateway's wrapper remotes honour the Remote contract around a real local repository:
// Guarded (locks and removes coordinated through the placement coordinator) owns the node
// inside; Reserved (room admitted before an upload) is a view made per request, so closing
// it leaves the node open.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { DiskFullError, LockedError } from '../../src/errors.js'
import { Guarded } from '../../src/gateway/guarded.js'
import { Reserved, type Admission } from '../../src/gateway/reserved.js'
import { LocalCoordinator } from '../../src/placement/coordinator.js'
import { openLocalRepo, type LocalRepo } from '../../src/remotes/local-repo.js'
import type { Remote } from '../../src/remotes/remote.js'
import { defer, makeRepo, tempDir } from '../helpers/annex.js'
import { bodyOf, content, op, remoteContract, storeAll } from '../remotes/contract.js'

const DECLARED = ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'] as const

async function localRepo(t: TestContext): Promise<LocalRepo> {
  const repo = await openLocalRepo(await makeRepo(join(await tempDir(t), 'node'), 'node'), { logIdleMs: 100 })
  defer(t, () => repo.close())
  return repo
}

async function reopenInner(t: TestContext, r: Remote): Promise<Remote> {
  const again = await openLocalRepo(((r as Guarded | Reserved).inner as LocalRepo).dir, { logIdleMs: 100 })
  defer(t, () => again.close())
  return again
}

const admitAll: Admission = { admit: async () => ({ release: async () => {} }) }

remoteContract('Guarded around LocalRepo', {
  declared: [...DECLARED],
  make: async (t) => {
    const coordinator = new LocalCoordinator()
    defer(t, () => coordinator.close())
    const g = new Guarded(await localRepo(t), coordinator)
    defer(t, () => g.close())
    return g
  },
  reopen: reopenInner,
})

remoteContract('Reserved around LocalRepo', {
  declared: [...DECLARED],
  make: async (t) => new Reserved(await localRepo(t), admitAll),
  reopen: reopenInner,
})

test('Guarded: a key held by a lock is not removed while the lock holds; closing it closes the node', async (t) => {
  const coordinator = new LocalCoordinator()
  defer(t, () => coordinator.close())
  const inner = await localRepo(t)
  const g = new Guarded(inner, coordinator)
  const c = content(1000)
  await storeAll(g, c)
  const lock = await g.lock(c.key, op())
  assert.ok(lock)
  await assert.rejects(g.remove(c.key, op()), LockedError)
  assert.equal(await inner.checkPresent(c.key, op()), true)
  await lock.release()
  assert.equal((await g.remove(c.key, op())).removed, true)
  await g.close()
  assert.equal(inner.closed, true)
})

test('Reserved: an upload without room is refused before the node sees it; closing the view leaves the node open', async (t) => {
  const inner = await localRepo(t)
  const full: Admission = { admit: async () => Promise.reject(new DiskFullError('no room on the node')) }
  const r = new Reserved(inner, full)
  const c = content(1000)
  await assert.rejects(r.startStore(c.key, op()), DiskFullError)
  await assert.rejects(r.store(c.key, bodyOf(c.bytes), 0, op()), DiskFullError)
  assert.equal(await inner.checkPresent(c.key, op()), false)
  await r.close()
  assert.equal(inner.closed, false)
})
