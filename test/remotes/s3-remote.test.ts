// The S3 special remote served natively, against a real S3 server (Swift s3api, one per
// file): the Remote contract, chunked and not; git-annex's own S3 remote on the same
// bucket reads, fscks and drops what we stored, and the reverse; failed uploads leave no
// object and no multipart upload.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { parseRemoteConfigs } from '../../src/annex/branch-logs.js'
import { BranchReader } from '../../src/annex/branch-reader.js'
import { parseKey, serializeKey } from '../../src/keys/key.js'
import { asUuid, type Remote } from '../../src/remotes/remote.js'
import { ChunkLog } from '../../src/remotes/special/chunk-log.js'
import type { SpecialRemote } from '../../src/remotes/special/special-remote.js'
import { openS3Remote } from '../../src/remotes/s3/open.js'
import type { S3StoreOptions } from '../../src/remotes/s3/s3-store.js'
import { defer, git, makeRepo, sh, shStatus, tempDir } from '../helpers/annex.js'
import { useTestS3, type TestS3 } from '../helpers/s3-server.js'
import { waitUntil } from '../helpers/wait.js'
import { bodyOf, content, op, remoteContract, stallingBody, storeAll } from './contract.js'

const s3 = useTestS3()

export interface S3Remote {
  remote: SpecialRemote
  /** The gateway repository with git-annex's own S3 remote `s3`. */
  repo: string
  bucket: string
  uuid: string
  env: NodeJS.ProcessEnv
  /** Another SpecialRemote over the same bucket and repository. */
  reopen(t: TestContext): Promise<SpecialRemote>
}

const made = new WeakMap<Remote, S3Remote>()

/** The initremote line for the test server. */
export function s3InitParams(server: TestS3, bucket: string, extra: string[] = []): string[] {
  return ['type=S3', 'encryption=none', 'host=127.0.0.1', `port=${server.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4', ...extra]
}

async function s3Remote(t: TestContext, extra: string[] = [], storeOpts: S3StoreOptions = {}): Promise<S3Remote> {
  const server = s3()
  let remote: SpecialRemote | undefined
  t.after(() => remote?.close())
  const d = await tempDir(t)
  const repo = await makeRepo(join(d, 'gw'), 'gateway')
  await git(repo, 'config', 'annex.security.allowed-ip-addresses', 'all')
  const bucket = await server.bucket()
  const env = { ...process.env, ...server.env }
  await sh(repo, 'git', ['annex', 'initremote', 's3', ...s3InitParams(server, bucket, extra)], { env })
  const uuid = (await git(repo, 'config', 'remote.s3.annex-uuid')).stdout.trim()
  const reader = await BranchReader.open(repo)
  const config = parseRemoteConfigs(await reader.readText('remote.log')).get(asUuid(uuid))!
  await reader.close()
  const open = async (tt: TestContext) => {
    const chunkLog = await ChunkLog.open(repo)
    defer(tt, () => chunkLog.close())
    // Credentials from the creds file git-annex's initremote cached, not the environment.
    return openS3Remote({ uuid: asUuid(uuid), gitDir: join(repo, '.git'), config, chunkLog, env: {}, store: storeOpts })
  }
  remote = await open(t)
  const r: S3Remote = {
    remote,
    repo,
    bucket,
    uuid,
    env,
    reopen: async (t2) => {
      const again = await open(t2)
      defer(t2, () => again.close())
      return again
    },
  }
  made.set(remote, r)
  return r
}

const reopen = (t: TestContext, r: Remote) => made.get(r)!.reopen(t)

const DECLARED = ['retrieve-from-offset', 'remove-before', 'timestamp'] as const

remoteContract('S3 special remote', { declared: [...DECLARED], make: async (t) => (await s3Remote(t)).remote, reopen })
remoteContract('S3 special remote, chunk=20KiB', { declared: [...DECLARED], make: async (t) => (await s3Remote(t, ['chunk=20KiB'])).remote, reopen })

async function annexHas(r: S3Remote, key: string): Promise<boolean> {
  return (await shStatus(r.repo, 'git', ['annex', 'checkpresentkey', key, 's3'])).code === 0
}

describe('S3 special remote and git-annex agree', () => {
  for (const extra of [[], ['chunk=100KiB'], ['fileprefix=sub/dir/']]) {
    const label = extra.join(' ') || 'unchunked'
    test(`what annex-proxy stores git-annex reads, fscks and drops (${label})`, async (t) => {
      const r = await s3Remote(t, extra)
      const c = content(350_000)
      await storeAll(r.remote, c)
      const k = serializeKey(c.key)
      assert.equal(await annexHas(r, k), true)
      // git-annex asks a remote that is not cheap to check only for keys its location log
      // puts there; the gateway records that (Recorded), this remote alone does not.
      await sh(r.repo, 'git', ['annex', 'setpresentkey', k, r.uuid, '1'])
      await sh(r.repo, 'git', ['annex', 'get', '--from', 's3', '--key', k], { env: r.env })
      const obj = (await sh(r.repo, 'git', ['annex', 'contentlocation', k])).stdout.trim()
      assert.deepEqual(await readFile(join(r.repo, obj)), c.bytes)
      await sh(r.repo, 'git', ['annex', 'fsck', '--from', 's3', '--key', k], { env: r.env })
      await sh(r.repo, 'git', ['annex', 'drop', '--from', 's3', '--force', '--key', k], { env: r.env })
      assert.equal(await r.remote.checkPresent(c.key, op()), false)
      const left = (await s3().list(r.bucket)).filter((n) => n !== `${extra[0]?.startsWith('fileprefix=') ? 'sub/dir/' : ''}annex-uuid`)
      assert.deepEqual(left, [])
    })

    test(`what git-annex stores annex-proxy reads and drops (${label})`, async (t) => {
      const r = await s3Remote(t, extra)
      const bytes = randomBytes(333_333)
      await writeFile(join(r.repo, 'g.bin'), bytes)
      await sh(r.repo, 'git', ['annex', 'add', 'g.bin'])
      await sh(r.repo, 'git', ['annex', 'copy', '--to', 's3', 'g.bin'], { env: r.env })
      const key = parseKey((await sh(r.repo, 'git', ['annex', 'lookupkey', 'g.bin'])).stdout.trim())
      assert.equal(await r.remote.checkPresent(key, op()), true)
      const got = await r.remote.retrieve(key, 123_456, op())
      assert.equal(got.length, bytes.length - 123_456)
      assert.deepEqual(await buffer(got.body), bytes.subarray(123_456))
      assert.equal(await got.valid, true)
      assert.equal((await r.remote.remove(key, op())).removed, true)
      assert.equal(await annexHas(r, serializeKey(key)), false)
    })
  }

  test('object names are git-annex\'s: the key, chunk keys with the whole size, annex-uuid holds the UUID', async (t) => {
    const r = await s3Remote(t, ['chunk=100KiB', 'fileprefix=p/'])
    const c = content(250_000)
    await storeAll(r.remote, c)
    const k = serializeKey(c.key)
    const names = await s3().list(r.bucket)
    const name = k.replace('--', '-S102400-C#--')
    assert.deepEqual(names, ['p/annex-uuid', ...[1, 2, 3].map((n) => `p/${name.replace('#', String(n))}`)].sort())
  })

  test('a multipart upload that fails verification leaves no object and no upload', async (t) => {
    const r = await s3Remote(t, [], { partSize: 5 * 1024 * 1024 })
    const c = content(12 * 1024 * 1024)
    const bad = Buffer.from(c.bytes)
    bad[bad.length - 1]! ^= 1
    await assert.rejects(r.remote.store(c.key, bodyOf(bad, 256 * 1024), 0, op()))
    assert.deepEqual(await s3().list(r.bucket), ['annex-uuid'])
    assert.deepEqual(await s3().pendingUploads(r.bucket), [])
    // The right bytes then go up as a multipart upload git-annex reads.
    await storeAll(r.remote, c)
    assert.equal(await annexHas(r, serializeKey(c.key)), true)
  })

  test('a client gone mid multipart upload leaves no object and no upload', async (t) => {
    const r = await s3Remote(t, [], { partSize: 5 * 1024 * 1024 })
    const c = content(16 * 1024 * 1024)
    const { body, consumed } = stallingBody(c.bytes.subarray(0, 11 * 1024 * 1024))
    const p = r.remote.store(c.key, body, 0, op())
    await consumed
    body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
    await assert.rejects(p)
    assert.deepEqual(await s3().list(r.bucket), ['annex-uuid'])
    assert.deepEqual(await s3().pendingUploads(r.bucket), [])
  })

  test('a client gone before the first part of a multipart-sized key leaves no object and no upload', async (t) => {
    // The key's size says several parts: the upload is created while the first part arrives.
    const r = await s3Remote(t, [], { partSize: 5 * 1024 * 1024 })
    const c = content(16 * 1024 * 1024)
    const { body, consumed } = stallingBody(c.bytes.subarray(0, 1024 * 1024))
    const p = r.remote.store(c.key, body, 0, op())
    await consumed
    await waitUntil('the multipart upload created before its first part is complete', 30_000, async () => (await s3().pendingUploads(r.bucket)).length === 1)
    body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
    await assert.rejects(p)
    assert.deepEqual(await s3().list(r.bucket), ['annex-uuid'])
    assert.deepEqual(await s3().pendingUploads(r.bucket), [])
  })

  test('a bucket whose annex-uuid names another remote is refused', async (t) => {
    const r = await s3Remote(t)
    const reader = await BranchReader.open(r.repo)
    const config = parseRemoteConfigs(await reader.readText('remote.log')).get(asUuid(r.uuid))!
    await reader.close()
    const chunkLog = await ChunkLog.open(r.repo)
    t.after(() => chunkLog.close())
    await assert.rejects(
      openS3Remote({ uuid: asUuid('11111111-2222-4333-8444-555555555555'), gitDir: join(r.repo, '.git'), config, chunkLog, env: s3().env }),
      /names another special remote/,
    )
  })
})
