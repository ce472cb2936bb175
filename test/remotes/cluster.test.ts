// Cluster: the Remote contract over three real local repositories, then what only a
// fanout has to get right — one pass over the body, a failing node dropped without
// failing the rest, and a GET that fails over mid-stream without starting again.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { buffer } from 'node:stream/consumers'
import { test, type TestContext } from 'node:test'
import { HashMismatchError } from '../../src/errors.js'
import { parseKey, serializeKey, type Key } from '../../src/keys/key.js'
import { hashedBytes } from '../../src/streams/verify.js'
import { Cluster, type ClusterNode, type ClusterPolicy } from '../../src/remotes/cluster.js'
import { openLocalRepo, type LocalRepo } from '../../src/remotes/local-repo.js'
import { asUuid, type Remote, type Uuid } from '../../src/remotes/remote.js'
import { openStdioRepo } from '../../src/remotes/stdio-repo.js'
import { defer, makeRepo, repoUuid, tempDir } from '../helpers/annex.js'
import { bodyOf, content, op, remoteContract } from './contract.js'

const CLUSTER_UUID = asUuid('ac09ac21-6bb7-8ee3-959e-35f17b3d2701')

interface Made {
  cluster: Cluster
  nodes: LocalRepo[]
  log: Map<string, Set<string>>
}

/** Every node wants everything; the location log is kept in memory. */
async function makeCluster(t: TestContext, n = 3, opts: { diskReserve?: (i: number) => number; member?: (remote: LocalRepo, all: readonly LocalRepo[]) => ClusterNode; root?: string } = {}): Promise<Made> {
  const root = opts.root ?? (await tempDir(t))
  const nodes: LocalRepo[] = []
  for (let i = 0; i < n; i++) {
    const dir = await makeRepo(join(root, `n${i}`), `n${i}`)
    const repo = await openLocalRepo(dir, { logIdleMs: 100, ...(opts.diskReserve ? { diskReserve: opts.diskReserve(i) } : {}) })
    defer(t, () => repo.close())
    nodes.push(repo)
  }
  const log = new Map<string, Set<string>>()
  const cluster = clusterOver(nodes, log, opts.member)
  return { cluster, nodes, log }
}

/** A Cluster over `nodes`; the location log is kept in `log`. */
function clusterOver<R extends Remote>(nodes: readonly R[], log: Map<string, Set<string>>, member?: (remote: R, all: readonly R[]) => ClusterNode): Cluster {
  const members: ClusterNode[] = nodes.map((remote, i) => member?.(remote, nodes) ?? { remote, cost: 100 + i })
  const policy: ClusterPolicy = {
    nodes: members,
    targets: async () => ({ nodes: members, release: () => {} }),
    holders: async (key: Key) => {
      const held = log.get(serializeKey(key)) ?? new Set()
      return { held: members.filter((m) => held.has(m.remote.uuid)), rest: members.filter((m) => !held.has(m.remote.uuid)) }
    },
    record: async (key: Key, uuids: readonly Uuid[], present: boolean) => {
      const k = serializeKey(key)
      const held = log.get(k) ?? new Set<string>()
      for (const u of uuids) present ? held.add(u) : held.delete(u)
      log.set(k, held)
    },
  }
  return new Cluster(CLUSTER_UUID, policy, { highWaterMark: 64 * 1024, stallMs: 10_000 })
}

const made = new WeakMap<Remote, Made>()

remoteContract('Cluster of three local repositories', {
  declared: ['retrieve-from-offset', 'resume-store', 'remove-before', 'timestamp'],
  composite: true,
  make: async (t) => {
    const m = await makeCluster(t)
    made.set(m.cluster, m)
    return m.cluster
  },
  // The nodes belong to whoever made them, not to the cluster: a new cluster over the same ones.
  reopen: async (_t, r) => {
    const m = made.get(r)!
    return clusterOver(m.nodes, m.log)
  },
})

test('an upload reads the body once and lands verified on every node; the reply lists them', async (t) => {
  const { cluster, nodes, log } = await makeCluster(t)
  const c = content(3 * 1024 * 1024 + 5)
  let pulled = 0
  const body = Readable.from(
    (function* () {
      for (let i = 0; i < c.bytes.length; i += 64 * 1024) {
        const part = c.bytes.subarray(i, i + 64 * 1024)
        pulled += part.length
        yield part
      }
    })(),
  )
  const r = await cluster.store(c.key, body, 0, op())
  assert.equal(pulled, c.bytes.length, 'the body was read exactly once')
  assert.deepEqual([...r.plusUuids].sort(), nodes.map((n) => n.uuid).sort())
  for (const n of nodes) assert.deepEqual(await buffer((await n.retrieve(c.key, 0, op())).body), c.bytes)
  assert.equal(log.get(serializeKey(c.key))?.size, 3)
})

test('a node that refuses or dies mid-upload is dropped; the others store and only they are listed', async (t) => {
  // Node 1 refuses at once (its disk reserve cannot be met); node 2 is closed mid-upload.
  const { cluster, nodes } = await makeCluster(t, 3, { diskReserve: (i) => (i === 1 ? Number.MAX_SAFE_INTEGER / 2 : 0) })
  const c = content(4 * 1024 * 1024)
  let sent = 0
  const body = Readable.from(
    (async function* () {
      for (let i = 0; i < c.bytes.length; i += 256 * 1024) {
        // The node goes away while the upload is under way (not awaited: it dies, the upload goes on).
        if (sent === c.bytes.length / 2) void nodes[2]!.destroy()
        sent += 256 * 1024
        yield c.bytes.subarray(i, i + 256 * 1024)
      }
    })(),
  )
  const r = await cluster.store(c.key, body, 0, op())
  assert.deepEqual(r.plusUuids, [nodes[0]!.uuid])
  assert.equal(await nodes[0]!.checkPresent(c.key, op()), true)
  assert.equal(await nodes[1]!.checkPresent(c.key, op()), false)
})

test('a GET whose node dies mid-stream fails over and resumes at the byte reached', async (t) => {
  const { cluster, nodes } = await makeCluster(t, 2)
  const c = content(8 * 1024 * 1024)
  await cluster.store(c.key, bodyOf(c.bytes), 0, op())
  const r = await cluster.retrieve(c.key, 0, op())
  assert.equal(r.length, c.bytes.length)
  const parts: Buffer[] = []
  let got = 0
  let killed = false
  for await (const chunk of r.body as AsyncIterable<Buffer>) {
    parts.push(chunk)
    got += chunk.length
    if (!killed && got > 1024 * 1024) {
      killed = true
      // The serving node (best ranked: lowest cost) goes away.
      await nodes[0]!.destroy()
    }
  }
  assert.ok(killed)
  assert.deepEqual(Buffer.concat(parts), c.bytes)
  assert.equal(await r.valid, true)
})

test('a GET at equal cost is served by the node fewer gateways away, whichever sorts first otherwise', async (t) => {
  const served: string[] = []
  const firstUuid = (all: readonly LocalRepo[]) => [...all].map((n) => n.uuid as string).sort()[0]
  // Equal cost, nothing in flight, nothing measured: without hops the smaller UUID would
  // serve; here it is the one behind another gateway.
  const { cluster, nodes } = await makeCluster(t, 2, {
    member: (remote, all) => ({
      remote: new Proxy(remote, {
        get: (target, p) => {
          if (p === 'retrieve') return (...a: Parameters<LocalRepo['retrieve']>) => (served.push(target.uuid), target.retrieve(...a))
          const v = Reflect.get(target, p, target) as unknown
          return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v
        },
      }),
      cost: 100,
      hops: remote.uuid === firstUuid(all) ? 2 : 1,
    }),
  })
  const c = content(64 * 1024)
  await cluster.store(c.key, bodyOf(c.bytes), 0, op())
  const r = await cluster.retrieve(c.key, 0, op())
  assert.deepEqual(await buffer(r.body), c.bytes)
  const near = nodes.find((n) => n.uuid !== firstUuid(nodes))!
  assert.deepEqual(served, [near.uuid])
})

test('a GET asks the nodes the location log names first, even when a cheaper node lacks the key', async (t) => {
  const asked: string[] = []
  // Node 0 is the cheapest (cost 100) and idle, but only node 1 (cost 101) holds the key.
  const { cluster, nodes, log } = await makeCluster(t, 2, {
    member: (remote, all) => ({
      remote: new Proxy(remote, {
        get: (target, p) => {
          if (p === 'retrieve') return (...a: Parameters<LocalRepo['retrieve']>) => (asked.push(target.uuid), target.retrieve(...a))
          const v = Reflect.get(target, p, target) as unknown
          return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v
        },
      }),
      cost: 100 + all.indexOf(remote),
    }),
  })
  const c = content(64 * 1024)
  await nodes[1]!.store(c.key, bodyOf(c.bytes), 0, op())
  log.set(serializeKey(c.key), new Set([nodes[1]!.uuid]))
  const r = await cluster.retrieve(c.key, 0, op())
  assert.deepEqual(await buffer(r.body), c.bytes)
  assert.equal(await r.valid, true)
  assert.deepEqual(asked, [nodes[1]!.uuid], 'the holder was asked first, and only it')
})

test('remove-before reaches a node on another clock with the time left, not the gateway\'s deadline', async (t) => {
  // The node runs git-annex-shell in a time namespace whose monotonic clock is a day ahead,
  // as a node on another host would be; the other node is local.
  const root = await tempDir(t)
  const local = await openLocalRepo(await makeRepo(join(root, 'near'), 'near'), { logIdleMs: 100 })
  defer(t, () => local.close())
  const farDir = await makeRepo(join(root, 'far'), 'far')
  const far = openStdioRepo({
    uuid: await repoUuid(farDir),
    clientUuid: '00000000-0000-4000-8000-0000000000c1',
    dir: farDir,
    command: (a) => ['unshare', '-T', '--monotonic', '86400', '--boottime', '86400', 'git-annex-shell', ...a],
  })
  defer(t, () => far.close())
  assert.ok((await far.timestamp(op())) - (await local.timestamp(op())) > 86000, 'the far node is on another clock')
  const members: ClusterNode[] = [local, far].map((remote) => ({ remote, cost: 100 }))
  const policy: ClusterPolicy = {
    nodes: members,
    targets: async () => ({ nodes: members, release: () => {} }),
    holders: async () => ({ held: members, rest: [] }),
    record: async () => {},
  }
  const cluster = new Cluster(CLUSTER_UUID, policy, { highWaterMark: 64 * 1024, stallMs: 10_000 })
  const c = content(10_000)
  await cluster.store(c.key, bodyOf(c.bytes), 0, op())
  // A deadline already passed here: no node removes, whatever its clock says.
  const now = await cluster.timestamp(op())
  assert.deepEqual(await cluster.removeBefore(c.key, now - 1, op()), { removed: false, plusUuids: [] })
  assert.equal(await far.checkPresent(c.key, op()), true)
  assert.equal(await local.checkPresent(c.key, op()), true)
  // A minute left here is a minute left on each node: both remove.
  const r = await cluster.removeBefore(c.key, (await cluster.timestamp(op())) + 60, op())
  assert.equal(r.removed, true)
  assert.deepEqual([...r.plusUuids].sort(), [local.uuid, far.uuid].sort())
  assert.equal(await far.checkPresent(c.key, op()), false)
  assert.equal(await local.checkPresent(c.key, op()), false)
})

/** `total` bytes in 1 MiB pieces, the same for the same seed; their SHA256E key when `sha256` is not given is hashed here, not by a verifier. */
function bigContent(total: number, seed: number, sha256?: string): { key: Key; pieces: () => Generator<Buffer> } {
  const base = createHash('sha512').update(`seed ${seed}`).digest()
  const block = Buffer.alloc(1024 * 1024)
  for (let i = 0; i < block.length; i += base.length) base.copy(block, i)
  function* pieces(): Generator<Buffer> {
    for (let at = 0, i = 0; at < total; at += block.length, i++) {
      const p = Buffer.from(block.subarray(0, Math.min(block.length, total - at)))
      p.writeUInt32BE(i, 0)
      yield p
    }
  }
  let digest = sha256
  if (digest === undefined) {
    const h = createHash('sha256')
    for (const p of pieces()) h.update(p)
    digest = h.digest('hex')
  }
  return { key: parseKey(`SHA256E-s${total}--${digest}.bin`), pieces }
}

const ONCE = 1024 * 1024 * 1024
/**
 * sha256 of bigContent(1 GiB, seed 1), computed once with node:crypto's createHash over the
 * same pieces: hashing 1 GiB again in every run cost 1.2 s of CPU (3.7 s at a load of 22).
 * Were the generator changed without it, the upload would be refused as a hash mismatch.
 */
const ONCE_SHA256 = 'c7319fc54b624f0bf5fdc44f775ab8552bd32e42539657d5c19323394e66312a'

/**
 * A folder for the three nodes of the 1 GiB upload: in /dev/shm when it has room for three
 * copies with a margin, so the 3 GiB the nodes write and fsync cost memory copies instead of
 * waiting on a disk other work shares (68 s → 37 s at a load of 21); else the temp dir. What
 * is asserted — bytes hashed, what each node commits or refuses — is the same either way.
 */
async function nodesRoot(t: TestContext): Promise<string> {
  const shm = '/dev/shm'
  const room = await statfs(shm).then(
    (s) => s.bavail * s.bsize,
    () => 0,
  )
  if (room < 3 * ONCE + 2 * 1024 ** 3) return tempDir(t)
  const d = await mkdtemp(join(shm, 'annex-proxy-once-'))
  defer(t, async () => {
    await promisify(execFile)('chmod', ['-R', 'u+w', d]).catch(() => {})
    await rm(d, { recursive: true, force: true, maxRetries: 5 })
  })
  return d
}

test('a cluster upload of 1 GiB to 3 local nodes hashes 1 GiB once; a corrupt one is refused by every node, nothing committed', { timeout: 600_000 }, async (t) => {
  const { cluster, nodes } = await makeCluster(t, 3, { root: await nodesRoot(t) })
  // Generated as it is sent (1 MiB at a time), never held whole.
  const big = bigContent(ONCE, 1, ONCE_SHA256)
  const before = hashedBytes()
  const r = await cluster.store(big.key, Readable.from(big.pieces(), { objectMode: false }), 0, op())
  assert.equal(hashedBytes() - before, ONCE, 'bytes hashed for one upload to three nodes (3 GiB before hash-once)')
  assert.deepEqual([...r.plusUuids].sort(), nodes.map((n) => n.uuid).sort())
  for (const n of nodes) {
    assert.equal(await n.checkPresent(big.key, op()), true)
    assert.equal((await stat(n.paths(big.key).object)).size, ONCE)
    // Room for the next part (three more copies were 3 GiB of memory in /dev/shm).
    await rm(n.paths(big.key).object, { force: true }).catch(() => undefined)
  }

  // Corrupt in its last MiB: the gateway refuses it, and so does every node; nothing stays.
  const good = bigContent(16 * 1024 * 1024, 2)
  const corrupt = Readable.from(
    (function* () {
      const all = [...good.pieces()]
      all[all.length - 1]![100]! ^= 1
      yield* all
    })(),
    { objectMode: false },
  )
  await assert.rejects(cluster.store(good.key, corrupt, 0, op()), HashMismatchError)
  for (const n of nodes) {
    assert.equal(await n.checkPresent(good.key, op()), false)
    assert.equal(await stat(n.paths(good.key).tmp).catch(() => undefined), undefined, 'no tmp file left to resume from')
  }
})

test('a node resuming from a prefix of its own verifies that prefix: a bad one is refused, the others commit', async (t) => {
  const { cluster, nodes } = await makeCluster(t, 3)
  const c = content(300_000)
  // Node 0 keeps a prefix that is NOT the content's (written by someone else, say).
  const tmp = nodes[0]!.paths(c.key).tmp
  await mkdir(dirname(tmp), { recursive: true })
  const wrong = Buffer.from(c.bytes.subarray(0, 100_000))
  wrong[10]! ^= 1
  await writeFile(tmp, wrong)
  const r = await cluster.store(c.key, bodyOf(c.bytes), 0, op())
  assert.deepEqual([...r.plusUuids].sort(), [nodes[1]!.uuid, nodes[2]!.uuid].sort())
  assert.equal(await nodes[0]!.checkPresent(c.key, op()), false)
})
