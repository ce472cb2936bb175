// CPU and wall time of the chunk cache's writes as a proxied GET drives them: an object
// written chunk by chunk (--cache-chunk 4 MiB) in pieces of one socket read (16 KiB by
// default), each write awaited as the retrieve does. Run against two builds to compare:
// npx tsc -p . && node dist/bench/micro/chunk-cache-writes.js [--mib 512] [--piece 16384]
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseKey } from '../../src/keys/key.js'
import { CacheSpace, ChunkCache } from '../../src/streams/chunk-cache.js'
import { DiskReserve } from '../../src/streams/disk-reserve.js'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const MIB = arg('--mib', 512)
const PIECE = arg('--piece', 16 * 1024)
const CHUNK = arg('--chunk', 4 * 1024 * 1024)
const quiet = { info() {}, warn() {}, error() {}, debug() {} }

const base = await mkdtemp(join(tmpdir(), 'chunk-cache-writes-'))
try {
  const dir = join(base, 'cache')
  const cache = await ChunkCache.open({ dir, chunkBytes: CHUNK, space: new CacheSpace(2 * MIB * 1024 * 1024), reserve: new DiskReserve(base, 0), log: quiet })
  const size = MIB * 1024 * 1024
  const key = parseKey(`SHA256E-s${size}--${'0'.repeat(64)}.bin`)
  // Fresh buffers per piece, as sockets deliver them (a reused one would not show the GC).
  const source = randomBytes(CHUNK)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i * CHUNK < size; i++) {
    const len = Math.min(CHUNK, size - i * CHUNK)
    const w = await cache.begin(key, i, i * CHUNK, len, { algo: 'SHA256', impl: 'none', state: new Uint8Array(0) })
    if (!w) throw new Error('the cache refused a chunk')
    for (let at = 0; at < len; at += PIECE) await w.write(Buffer.from(source.subarray(at, Math.min(len, at + PIECE))))
    if (!(await w.commit())) throw new Error('a chunk did not commit')
  }
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const writes = (cache as { fileWrites?: number }).fileWrites
  await cache.close()
  console.log(JSON.stringify({ mib: MIB, piece: PIECE, chunk: CHUNK, wallS: +wall.toFixed(3), cpuS: +((cpu.user + cpu.system) / 1e6).toFixed(3), userS: +(cpu.user / 1e6).toFixed(3), sysS: +(cpu.system / 1e6).toFixed(3), MiBps: +(MIB / wall).toFixed(1), fileWrites: writes ?? null }))
} finally {
  await rm(base, { recursive: true, force: true })
}
