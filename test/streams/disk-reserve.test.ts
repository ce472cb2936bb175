import assert from 'node:assert/strict'
import { statfs } from 'node:fs/promises'
import { test } from 'node:test'
import fc from 'fast-check'
import { DiskFullError } from '../../src/errors.js'
import { DiskReserve, needMoreDiskSpace } from '../../src/streams/disk-reserve.js'
import { readSize, roughSize } from '../../src/annex/data-units.js'
import { tempDir } from '../helpers/annex.js'

test('data sizes parse as git-annex reads annex.diskreserve', () => {
  const cases: Array<[string, number | undefined]> = [
    ['100 megabytes', 100_000_000],
    ['1GB', 1_000_000_000],
    ['1 GiB', 1024 ** 3],
    ['512', 512],
    ['0.5tb', 500_000_000_000],
    ['10 kilobytes', 10_000],
    ['2MiB', 2 * 1024 ** 2],
    ['nonsense', undefined],
    ['', undefined],
  ]
  for (const [text, bytes] of cases) assert.equal(readSize(text), bytes, text)
})

test('the refusal message is git-annex\'s', () => {
  assert.equal(roughSize(1_230_000), '1.23 MB')
  assert.equal(roughSize(7), '7 B')
  assert.match(needMoreDiskSpace(1_500_000), /^not enough free space, need 1\.5 MB more/)
})

test('reservations of in-flight transfers count against the free space until released', async (t) => {
  const dir = await tempDir(t)
  let free = 1000
  const reserve = new DiskReserve(dir, 100, { freeBytes: async () => free })
  const a = await reserve.reserve(500)
  await assert.rejects(reserve.reserve(401), DiskFullError) // 500 + 401 + 100 > 1000
  const b = await reserve.reserve(400)
  // Bytes written leave the ledger and show up as used disk instead.
  a.consumed(300)
  free -= 300
  await assert.rejects(reserve.reserve(1), DiskFullError)
  a.release()
  b.release()
  b.release() // idempotent
  assert.equal((await reserve.reserve(600)).remaining, 600)
})

test('concurrent reservations never together exceed what is free', async (t) => {
  const dir = await tempDir(t)
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 20 }), async (sizes) => {
      const reserve = new DiskReserve(dir, 50, { freeBytes: async () => 1000 })
      const results = await Promise.allSettled(sizes.map((n) => reserve.reserve(n)))
      const granted = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
      assert.ok(granted.reduce((s, r) => s + r.remaining, 0) + 50 <= 1000)
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof DiskFullError)
      for (const r of granted) r.release()
    }),
  )
})

test('with the real filesystem: a reserve larger than the free space refuses at once', async (t) => {
  const dir = await tempDir(t)
  const s = await statfs(dir)
  const free = Number(s.bavail) * Number(s.bsize)
  await assert.rejects(new DiskReserve(dir, free + 1).reserve(1), DiskFullError)
  ;(await new DiskReserve(dir, 0).reserve(1)).release()
})
