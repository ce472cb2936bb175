import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { finished } from 'node:stream/promises'
import { test } from 'node:test'
import fc from 'fast-check'
import { FileRangeReadable } from '../../src/streams/file-range.js'

async function withFile(data: Buffer, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'file-range-'))
  try {
    const path = join(dir, 'f')
    await writeFile(path, data)
    await fn(path)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Resolves once the stream emitted 'close' (its file handle is closed by then). */
function closed(r: FileRangeReadable): Promise<void> {
  return r.closed ? Promise.resolve() : new Promise((resolve) => r.once('close', () => resolve()))
}

/** True once the descriptor is closed (a read on a closed FileHandle fails with EBADF). */
async function isClosed(fh: import('node:fs/promises').FileHandle): Promise<boolean> {
  return fh.stat().then(
    () => false,
    (e: NodeJS.ErrnoException) => e.code === 'EBADF',
  )
}

test('any range, read size and chunk size: exactly the bytes of the range, no chunk larger than asked, the file closed at the end', async () => {
  const data = randomBytes(50_000)
  await withFile(data, async (path) => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: data.length }),
        fc.integer({ min: 0, max: data.length }),
        fc.integer({ min: 1, max: 20_000 }),
        fc.integer({ min: 1, max: 20_000 }),
        fc.boolean(),
        async (a, b, readBytes, chunkBytes, flowing) => {
          const [start, end] = a <= b ? [a, b] : [b, a]
          const fh = await open(path, 'r')
          const r = new FileRangeReadable(fh, { start, end, readBytes, chunkBytes })
          const parts: Buffer[] = []
          // Flowing mode (pipe, pipeline): one chunk per 'data'. Paused mode (read(), async
          // iteration) joins what is buffered, at most the high-water mark and one chunk.
          if (flowing) {
            r.on('data', (c: Buffer) => parts.push(c))
            await new Promise((resolve, reject) => r.once('end', resolve).once('error', reject))
          } else for await (const c of r) parts.push(c as Buffer)
          const most = flowing ? chunkBytes : 2 * chunkBytes
          assert.ok(parts.every((c) => c.length > 0 && c.length <= most), `chunks of ${parts.map((c) => c.length).join(',')} for chunkBytes ${chunkBytes}`)
          assert.deepEqual(Buffer.concat(parts), data.subarray(start, end))
          assert.equal(r.bytesRead, end - start)
          await closed(r)
          assert.ok(await isClosed(fh), 'the file handle is closed once the range was read')
        },
      ),
      { numRuns: 60 },
    )
  })
})

test('a file shorter than the range ends early, bytesRead telling how much there was', async () => {
  const data = randomBytes(100_000)
  await withFile(data, async (path) => {
    const fh = await open(path, 'r')
    const r = new FileRangeReadable(fh, { start: 10, end: data.length, readBytes: 16_384, chunkBytes: 4096 })
    await truncate(path, 30_000)
    const parts: Buffer[] = []
    for await (const c of r) parts.push(c as Buffer)
    assert.equal(r.bytesRead, 30_000 - 10)
    assert.deepEqual(Buffer.concat(parts), data.subarray(10, 30_000))
  })
})

test('destroyed mid-range: the file handle is closed, nothing more is pushed', async () => {
  const data = randomBytes(200_000)
  await withFile(data, async (path) => {
    const fh = await open(path, 'r')
    const r = new FileRangeReadable(fh, { start: 0, end: data.length, readBytes: 8192, chunkBytes: 1024 })
    const first = await new Promise<Buffer>((resolve) => r.once('data', resolve))
    assert.equal(first.length, 1024)
    r.destroy()
    await closed(r)
    assert.ok(await isClosed(fh), 'destroy closes the file handle')
    assert.ok(r.bytesRead < data.length, 'reading stopped before the end')
  })
})

test('a read error (the handle closed under it) destroys the stream with that error', async () => {
  await withFile(randomBytes(10_000), async (path) => {
    const fh = await open(path, 'r')
    const r = new FileRangeReadable(fh, { start: 0, end: 10_000, readBytes: 4096, chunkBytes: 4096 })
    await fh.close()
    await assert.rejects(finished(r.resume()), (e: NodeJS.ErrnoException) => e.code === 'EBADF' || /closed/i.test(e.message))
  })
})

test('bad options are refused', async () => {
  await withFile(Buffer.alloc(10), async (path) => {
    const fh = await open(path, 'r')
    try {
      assert.throws(() => new FileRangeReadable(fh, { start: 5, end: 4, readBytes: 1, chunkBytes: 1 }), RangeError)
      assert.throws(() => new FileRangeReadable(fh, { start: 0, end: 4, readBytes: 0, chunkBytes: 1 }), RangeError)
      assert.throws(() => new FileRangeReadable(fh, { start: 0, end: 4, readBytes: 1, chunkBytes: 0 }), RangeError)
    } finally {
      await fh.close()
    }
  })
})
