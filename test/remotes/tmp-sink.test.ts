// The tmp file sink's writeback ahead of the end: datasyncs while the bytes arrive, and a
// failed one fails the store even when the final fsync would succeed.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { fstatSync } from 'node:fs'
import { open, readFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'node:test'
import { TmpFileSink } from '../../src/remotes/local/tmp-sink.js'
import { tempDir } from '../helpers/annex.js'

/** `fh` with its datasync and sync calls counted, datasync answered by `datasync` when given. */
function counted(fh: FileHandle, datasync?: () => Promise<void>): { fh: FileHandle; calls: { datasync: number; sync: number; sizes: number[] } } {
  const calls = { datasync: 0, sync: 0, sizes: [] as number[] }
  const proxy = new Proxy(fh, {
    get(target, prop) {
      if (prop === 'datasync') return () => (calls.datasync++, calls.sizes.push(fstatSync(target.fd).size), datasync ? datasync() : target.datasync())
      if (prop === 'sync') return () => (calls.sync++, target.sync())
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
  return { fh: proxy, calls }
}

function chunks(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}

test('writes back while the bytes arrive, then fsyncs once at the end; the file holds every byte', async (t) => {
  const file = join(await tempDir(t), 'tmp')
  const data = randomBytes(2 * 1024 * 1024)
  const real = await open(file, 'w')
  try {
    const { fh, calls } = counted(real)
    // Batches of 64 KiB, a datasync every 256 KiB written: several while the 2 MiB arrive.
    await pipeline(Readable.from(chunks(data, 16 * 1024)), new TmpFileSink(fh, 0, new PassThrough(), 64 * 1024, 64 * 1024, 256 * 1024))
    // One at a time: how many depends on the disk, but the first starts a quarter MiB in.
    assert.ok(calls.datasync >= 1, 'a datasync during the transfer')
    assert.ok(calls.sizes[0]! < data.length / 2, `the first datasync began at ${calls.sizes[0]} of ${data.length} bytes`)
    assert.equal(calls.sync, 1)
  } finally {
    await real.close()
  }
  assert.ok((await readFile(file)).equals(data))
})

test('a failed background datasync fails the store with its error, even if the last fsync would pass', async (t) => {
  const file = join(await tempDir(t), 'tmp')
  const real = await open(file, 'w')
  const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })
  try {
    const { fh, calls } = counted(real, () => Promise.reject(eio))
    const sink = new TmpFileSink(fh, 0, new PassThrough(), 1024 * 1024, 64 * 1024, 256 * 1024)
    await assert.rejects(pipeline(Readable.from(chunks(randomBytes(1024 * 1024), 16 * 1024)), sink), (e) => e === eio)
    assert.equal(sink.ioError, eio, 'reported as the disk failing, not as bad data')
    assert.ok(calls.datasync >= 1)
    assert.equal(calls.sync, 0, 'nothing is declared durable after a lost writeback')
  } finally {
    await real.close()
  }
})
