// The chunk cache in front of the special remotes it is for, a real S3 server (Swift
// s3api) and a directory special remote: a resume whose hash state the cache no longer
// has (never cached, evicted by a small cache, a cached chunk damaged on disk) still
// verifies the whole object at the gateway. Each case damages the remote's copy where the
// cache does not cover it, so a verdict taken without hashing (the remote's length check)
// is caught, and each would deliver wrong bytes called valid if the prefix were skipped.
import assert from 'node:assert/strict'
import { chmod, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import { BranchReader } from '../../src/annex/branch-reader.js'
import { parseRemoteConfigs } from '../../src/annex/branch-logs.js'
import { serializeKey, type Key } from '../../src/keys/key.js'
import { ChunkCached } from '../../src/remotes/chunk-cached.js'
import { DirectoryStore } from '../../src/remotes/directory/directory-store.js'
import { asUuid, type Remote } from '../../src/remotes/remote.js'
import { openS3Remote } from '../../src/remotes/s3/open.js'
import { ChunkLog } from '../../src/remotes/special/chunk-log.js'
import { chunkConfigOf } from '../../src/remotes/special/chunks.js'
import { SpecialRemote } from '../../src/remotes/special/special-remote.js'
import { CacheSpace, ChunkCache } from '../../src/streams/chunk-cache.js'
import { DiskReserve } from '../../src/streams/disk-reserve.js'
import { annex, defer, git, makeRepo, sh, tempDir } from '../helpers/annex.js'
import { useTestS3 } from '../helpers/s3-server.js'
import { content, op, storeAll } from './contract.js'

const s3 = useTestS3()
const quiet = { info() {}, warn() {}, error() {}, debug() {} }
const CHUNK = 10_000
const SIZE = 50_000

interface Under {
  remote: Remote
  /** Puts `bytes` in place of the key's object on the remote, behind the gateway's back. */
  replace(key: Key, bytes: Buffer): Promise<void>
}

async function directoryUnder(t: TestContext): Promise<Under> {
  const d = await tempDir(t)
  const repo = await makeRepo(join(d, 'gw'), 'gateway')
  const dir = join(d, 'dsr')
  await sh(d, 'mkdir', [dir])
  await annex(repo, 'initremote', 'dsr', 'type=directory', `directory=${dir}`, 'encryption=none')
  const uuid = asUuid((await git(repo, 'config', 'remote.dsr.annex-uuid')).stdout.trim())
  const chunkLog = await ChunkLog.open(repo)
  const remote = new SpecialRemote({ uuid, store: new DirectoryStore(dir), chunking: chunkConfigOf(new Map()), chunkLog, onClose: () => chunkLog.close() })
  defer(t, () => remote.close())
  return {
    remote,
    async replace(key, bytes) {
      const name = serializeKey(key)
      const found = (await readdir(dir, { recursive: true, withFileTypes: true })).find((e) => e.isFile() && e.name === name)
      assert.ok(found, `the object of ${name} in the directory remote`)
      const file = join(found.parentPath, found.name)
      await chmod(dirname(file), 0o755)
      await writeFile(`${file}.new`, bytes)
      await sh(dirname(file), 'mv', [`${file}.new`, file])
    },
  }
}

async function s3Under(t: TestContext): Promise<Under> {
  const server = s3()
  const d = await tempDir(t)
  const repo = await makeRepo(join(d, 'gw'), 'gateway')
  await git(repo, 'config', 'annex.security.allowed-ip-addresses', 'all')
  const bucket = await server.bucket()
  const params = ['type=S3', 'encryption=none', 'host=127.0.0.1', `port=${server.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4']
  await sh(repo, 'git', ['annex', 'initremote', 's3', ...params], { env: { ...process.env, ...server.env } })
  const uuid = asUuid((await git(repo, 'config', 'remote.s3.annex-uuid')).stdout.trim())
  const reader = await BranchReader.open(repo)
  const config = parseRemoteConfigs(await reader.readText('remote.log')).get(uuid)!
  await reader.close()
  const chunkLog = await ChunkLog.open(repo)
  defer(t, () => chunkLog.close())
  const remote = await openS3Remote({ uuid, gitDir: join(repo, '.git'), config, chunkLog, env: {}, store: {} })
  defer(t, () => remote.close())
  const client = server.client()
  defer(t, () => client.destroy())
  return {
    remote,
    async replace(key, bytes) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: serializeKey(key), Body: bytes }))
    },
  }
}

async function cached(t: TestContext, under: Under, cacheBytes: number) {
  const dir = join(await tempDir(t, 'chunk-cache-'), 'cache')
  const cache = await ChunkCache.open({ dir, chunkBytes: CHUNK, space: new CacheSpace(cacheBytes), reserve: new DiskReserve(dirname(dir), 0), log: quiet })
  defer(t, () => cache.close())
  return { remote: new ChunkCached(under.remote, cache), cache, dir }
}

async function get(remote: Remote, key: Key, offset = 0) {
  const r = await remote.retrieve(key, offset, op())
  const bytes = await buffer(r.body)
  return { length: r.length, bytes, valid: await r.valid }
}

function flipped(bytes: Buffer, at: number): Buffer {
  const b = Buffer.from(bytes)
  b[at]! ^= 1
  return b
}

async function chunkFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
}

const chunkOf = (f: string) => Number(/\/([0-9]+)-[0-9a-f]+\.chunk$/.exec(f)?.[1] ?? -1)

for (const [name, make] of [
  ['directory special remote', directoryUnder],
  ['S3 (Swift s3api)', s3Under],
] as const) {
  describe(`chunk cache over a ${name}: resume verifies the whole object`, { timeout: 120_000 }, () => {
    test('resume with nothing cached and the tail wrong on the remote: not valid', async (t) => {
      const under = await make(t)
      const { remote, dir } = await cached(t, under, 1_000_000)
      const c = content(SIZE)
      await storeAll(under.remote, c)
      await under.replace(c.key, flipped(c.bytes, 45_000))
      const r = await get(remote, c.key, 30_000)
      assert.equal(r.length, SIZE - 30_000)
      assert.equal(r.valid, false)
      assert.deepEqual(await chunkFiles(dir), [], 'nothing kept of content that failed verification')
    })

    test('resume with nothing cached and the object right: valid, the prefix read once more only to hash it', async (t) => {
      const under = await make(t)
      const { remote } = await cached(t, under, 1_000_000)
      const c = content(SIZE)
      await storeAll(under.remote, c)
      const r = await get(remote, c.key, 30_000)
      assert.deepEqual(r.bytes, c.bytes.subarray(30_000))
      assert.equal(r.valid, true)
      assert.equal(remote.stats.upstreamBytes, SIZE)
      const before = remote.stats.upstreamBytes
      assert.equal((await get(remote, c.key, 30_000)).valid, true)
      assert.equal(remote.stats.upstreamBytes, before, 'the next resume is served from the cache')
    })

    test('a small cache evicted the prefix: the cached tail is served, the prefix hashed from the remote, the tail not fetched', async (t) => {
      const under = await make(t)
      // Room for two chunk files of five.
      const { remote, dir } = await cached(t, under, 22_000)
      const c = content(SIZE)
      await storeAll(under.remote, c)
      assert.equal((await get(remote, c.key)).valid, true)
      assert.deepEqual((await chunkFiles(dir)).map(chunkOf).sort(), [3, 4])
      await under.replace(c.key, flipped(c.bytes, 42_000))
      const before = remote.stats.upstreamBytes
      const r = await get(remote, c.key, 35_000)
      assert.deepEqual(r.bytes, c.bytes.subarray(35_000), 'the right tail from the cache, not the remote damaged one')
      assert.equal(r.valid, true)
      assert.equal(remote.stats.upstreamBytes - before, 30_000, 'only chunks 0-2 read again')
    })

    test('a cached chunk damaged on disk, at the start and in the middle: fetched again, never served', async (t) => {
      const under = await make(t)
      const { remote, dir } = await cached(t, under, 1_000_000)
      const c = content(SIZE)
      await storeAll(under.remote, c)
      await get(remote, c.key)
      for (const f of await chunkFiles(dir)) {
        if (chunkOf(f) !== 0 && chunkOf(f) !== 2) continue
        const b = await readFile(f)
        b[777]! ^= 0x10
        await writeFile(f, b)
      }
      const before = remote.stats.upstreamBytes
      const whole = await get(remote, c.key)
      assert.deepEqual(whole.bytes, c.bytes)
      assert.equal(whole.valid, true)
      assert.equal(remote.stats.upstreamBytes - before, 2 * CHUNK, 'the two damaged chunks came from the remote')
      // Damaged again, and the remote wrong there too: a resume past both is not valid.
      for (const f of await chunkFiles(dir)) {
        if (chunkOf(f) !== 0) continue
        const b = await readFile(f)
        b[777]! ^= 0x10
        await writeFile(f, b)
      }
      await under.replace(c.key, flipped(c.bytes, 777))
      const r = await get(remote, c.key, 25_000)
      assert.deepEqual(r.bytes, c.bytes.subarray(25_000))
      assert.equal(r.valid, false)
    })
  })
}
