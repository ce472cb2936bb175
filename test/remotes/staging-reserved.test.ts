// StagingReserved: the contract around a real remote, then the reserve: a transfer that
// would take the staging filesystem below annex.diskreserve is refused before it starts,
// and a transfer in flight holds its bytes against others until it ends.
import assert from 'node:assert/strict'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { join } from 'node:path'
import { DiskFullError } from '../../src/errors.js'
import { openLocalRepo, type LocalRepo } from '../../src/remotes/local-repo.js'
import { StagingReserved } from '../../src/remotes/staging-reserved.js'
import { DiskReserve } from '../../src/streams/disk-reserve.js'
import { defer, makeRepo, tempDir } from '../helpers/annex.js'
import { bodyOf, content, op, remoteContract, stallingBody, storeAll } from './contract.js'

async function staged(t: TestContext, free: () => number) {
  const dir = await makeRepo(join(await tempDir(t), 'repo'), 'local')
  const repo = await openLocalRepo(dir, { logIdleMs: 100, diskReserve: 0 })
  defer(t, () => repo.close())
  const reserve = new DiskReserve(await tempDir(t), 1_000_000, { freeBytes: async () => free() })
  return { remote: new StagingReserved(repo, reserve), repo, reserve }
}

remoteContract('StagingReserved around LocalRepo', {
  declared: ['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'],
  make: async (t) => (await staged(t, () => 2 ** 40)).remote,
  reopen: async (t, r) => {
    const again = await openLocalRepo(((r as StagingReserved).inner as LocalRepo).dir, { logIdleMs: 100, diskReserve: 0 })
    defer(t, () => again.close())
    return again
  },
})

describe('StagingReserved', () => {
  test('uploads and downloads that would cross the reserve are refused before they start', async (t) => {
    let free = 1_100_000
    const { remote, repo } = await staged(t, () => free)
    const big = content(200_000)
    const small = content(50_000)
    await assert.rejects(remote.store(big.key, bodyOf(big.bytes), 0, op()), DiskFullError)
    assert.equal(await repo.checkPresent(big.key, op()), false)
    await storeAll(remote, small)
    await storeAll(repo, big)
    await assert.rejects(remote.retrieve(big.key, 0, op()), DiskFullError)
    free = 2_000_000
    assert.deepEqual(await buffer((await remote.retrieve(big.key, 0, op())).body), big.bytes)
  })

  test('a transfer in flight holds its bytes against the reserve until it ends', async (t) => {
    const { remote, reserve } = await staged(t, () => 1_300_000)
    const a = content(200_000)
    const s = stallingBody(a.bytes.subarray(0, 1000))
    const p = remote.store(a.key, s.body, 0, op())
    await s.consumed
    await assert.rejects(reserve.reserve(200_000), DiskFullError)
    s.finish(a.bytes.subarray(1000))
    assert.equal((await p).stored, true)
    ;(await reserve.reserve(200_000)).release()
    const r = await remote.retrieve(a.key, 0, op())
    await assert.rejects(reserve.reserve(200_000), DiskFullError)
    await buffer(r.body)
    await r.valid
    ;(await reserve.reserve(200_000)).release()
  })
})
