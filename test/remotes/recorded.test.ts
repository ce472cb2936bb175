// Recorded: a proxied remote as the gateway serves it, over a real local repository. It is
// a view: its lifecycle covers its own calls, the remote inside belongs to the gateway.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { serializeKey, type Key } from '../../src/keys/key.js'
import { openLocalRepo, type LocalRepo } from '../../src/remotes/local-repo.js'
import { Recorded } from '../../src/remotes/recorded.js'
import type { Remote, Uuid } from '../../src/remotes/remote.js'
import { defer, makeRepo, tempDir } from '../helpers/annex.js'
import { content, op, remoteContract, storeAll } from './contract.js'

interface Made {
  inner: LocalRepo
  log: Array<[string, readonly Uuid[], boolean]>
}

const made = new WeakMap<Remote, Made>()

function recordedOver(m: Made): Recorded {
  const r = new Recorded(m.inner, async (key: Key, uuids: readonly Uuid[], present: boolean) => {
    m.log.push([serializeKey(key), uuids, present])
  })
  made.set(r, m)
  return r
}

async function makeRecorded(t: TestContext): Promise<Recorded> {
  const d = await tempDir(t)
  const inner = await openLocalRepo(await makeRepo(join(d, 'node'), 'node'), { logIdleMs: 100 })
  defer(t, () => inner.close())
  return recordedOver({ inner, log: [] })
}

remoteContract('Recorded over a LocalRepo', {
  declared: ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'],
  make: makeRecorded,
  reopen: async (_t, r) => recordedOver(made.get(r)!),
})

test('stores and removals are recorded; closing the view leaves the remote inside open', async (t) => {
  const r = await makeRecorded(t)
  const { inner, log } = made.get(r)!
  const c = content(1000)
  await storeAll(r, c)
  assert.equal((await r.remove(c.key, op())).removed, true)
  assert.deepEqual(log, [
    [serializeKey(c.key), [inner.uuid], true],
    [serializeKey(c.key), [inner.uuid], false],
  ])
  await r.close()
  assert.equal(inner.closed, false)
  assert.equal(await inner.checkPresent(c.key, op()), false)
})
