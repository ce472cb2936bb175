// CPU and wall time of the server's data plane for a cluster upload, without HTTP: a body in
// pieces the size of socket reads (fresh Buffers, as Node's HTTP parser hands them over), through
// the put route's exactLength, a Cluster of three local repositories (hashed once at the gateway,
// teed, written to each node's tmp file, fsynced, committed). Run against two builds to compare:
// npx tsc -p . && node dist/bench/micro/cluster-store.js [--mib 512] [--files 8] [--piece 32768] [--jobs 4] [--paced] [--dir /tmp]
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, pipeline } from 'node:stream'
import { parseKey, type Key } from '../../src/keys/key.js'
import { Cluster, type ClusterNode, type ClusterPolicy } from '../../src/remotes/cluster.js'
import { openLocalRepo, type LocalRepo } from '../../src/remotes/local-repo.js'
import { asUuid } from '../../src/remotes/remote.js'
import { exactLength } from '../../src/streams/exact-length.js'
import { makeRepo, sh } from '../../test/helpers/annex.js'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const argS = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1]! : dflt
}
const MIB = arg('--mib', 512)
const FILES = arg('--files', 8)
const PIECE = arg('--piece', 32 * 1024)
const JOBS = arg('--jobs', 4)
/** --paced: a turn of the event loop between pieces, as when the sender is slower than the server. */
const PACED = process.argv.includes('--paced')
const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet }

const base = await mkdtemp(join(argS('--dir', tmpdir()), 'cluster-store-'))
const nodes: LocalRepo[] = []
try {
  for (let i = 0; i < 3; i++) nodes.push(await openLocalRepo(await makeRepo(join(base, `n${i}`), `n${i}`), { logIdleMs: 100 }))
  const members: ClusterNode[] = nodes.map((remote, i) => ({ remote, cost: 100 + i }))
  const policy: ClusterPolicy = {
    nodes: members,
    targets: async () => ({ nodes: members, release: () => {} }),
    holders: async () => ({ held: [], rest: members }),
    record: async () => {},
  }
  const cluster = new Cluster(asUuid('ac09ac21-6bb7-8ee3-959e-35f17b3d2701'), policy, { highWaterMark: 1024 * 1024, stallMs: 60_000 })
  const size = Math.floor((MIB * 1024 * 1024) / FILES)
  // Each file: a random 1 MiB block repeated, with its index in the first bytes (distinct keys).
  const block = randomBytes(1024 * 1024)
  const files = Array.from({ length: FILES }, (_, f) => {
    const first = Buffer.from(block)
    first.writeUInt32BE(f, 0)
    const h = createHash('sha256')
    for (let at = 0; at < size; at += block.length) h.update((at === 0 ? first : block).subarray(0, Math.min(block.length, size - at)))
    return { first, key: parseKey(`SHA256E-s${size}--${h.digest('hex')}.bin`) as Key }
  })
  async function* pieces(first: Buffer): AsyncGenerator<Buffer> {
    for (let at = 0; at < size; at += PIECE) {
      if (PACED) await new Promise((r) => setImmediate(r))
      const within = at % block.length
      const src = at < block.length ? first : block
      // A fresh Buffer per piece, as the HTTP parser delivers them (a reused one would hide the GC).
      yield Buffer.from(src.subarray(within, Math.min(within + PIECE, block.length, within + size - at)))
    }
  }
  const op = { signal: new AbortController().signal, log: quiet }
  await sh('/', 'sync', [])
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(JOBS, FILES) }, async () => {
      while (next < FILES) {
        const f = files[next++]!
        const exact = exactLength(size)
        const body = pipeline(Readable.from(pieces(f.first), { objectMode: false }), exact, () => {})
        const r = await cluster.store(f.key, body, 0, { ...op, senderValid: exact.complete })
        if (!r.stored || r.plusUuids.length !== 3) throw new Error(`not stored on every node: ${JSON.stringify(r)}`)
      }
    }),
  )
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  console.log(
    `${FILES}×${(size / 2 ** 20).toFixed(1)} MiB in ${PIECE}-byte pieces, -J${JOBS}, 3 nodes${PACED ? ', paced' : ''}: wall ${wall.toFixed(2)} s, CPU user ${(cpu.user / 1e6).toFixed(2)} s + sys ${(cpu.system / 1e6).toFixed(2)} s`,
  )
} finally {
  await Promise.all(nodes.map((n) => n.close()))
  await sh('/', 'chmod', ['-R', 'u+w', base]).catch(() => {})
  await rm(base, { recursive: true, force: true })
}
