// The S3 special remote under faults, with a fault proxy in front of a real S3 server:
// injected 5xx / SlowDown answers and cut connections are retried with backoff and the
// upload still verifies; an upload that fails for good, and a client that goes away
// mid-upload through annex-proxy, leave no object and no multipart upload behind.
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { RemoteUnavailableError } from '../../src/errors.js'
import { serializeKey } from '../../src/keys/key.js'
import { asUuid } from '../../src/remotes/remote.js'
import { ChunkLog } from '../../src/remotes/special/chunk-log.js'
import type { SpecialRemote } from '../../src/remotes/special/special-remote.js'
import { openS3Remote } from '../../src/remotes/s3/open.js'
import type { S3StoreOptions } from '../../src/remotes/s3/s3-store.js'
import { annex, git, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { useTestS3 } from '../helpers/s3-server.js'
import { bodyOf, content, eventually, op } from './contract.js'

const s3 = useTestS3()
const UUID = asUuid('5e5e5e5e-1111-4222-8333-444444444444')

async function faultyRemote(t: TestContext, extra: Record<string, string> = {}, storeOpts: S3StoreOptions = {}): Promise<{ remote: SpecialRemote; proxy: FaultProxy; bucket: string }> {
  const proxy = await startFaultProxy(t, s3().port)
  const bucket = await s3().bucket()
  const repo = await makeRepo(join(await tempDir(t), 'gw'), 'gateway')
  const chunkLog = await ChunkLog.open(repo)
  t.after(() => chunkLog.close())
  const config = new Map(Object.entries({ type: 'S3', encryption: 'none', host: '127.0.0.1', port: String(proxy.port), protocol: 'http', requeststyle: 'path', bucket, ...extra }))
  const remote = await openS3Remote({ uuid: UUID, gitDir: join(repo, '.git'), config, chunkLog, env: s3().env, store: { partSize: 5 * 1024 * 1024, ...storeOpts } })
  t.after(() => remote.close())
  return { remote, proxy, bucket }
}

async function readBack(remote: SpecialRemote, key: Parameters<SpecialRemote['retrieve']>[0]): Promise<Buffer> {
  const r = await remote.retrieve(key, 0, op())
  return buffer(r.body)
}

describe('S3 faults', () => {
  test('503 SlowDown, 500 and cut connections on parts and on completion are retried; the multipart upload verifies', async (t) => {
    const { remote, proxy, bucket } = await faultyRemote(t)
    proxy.rule(({ op, nth }) => {
      if (op === 'UploadPart' && nth % 3 === 1) return { kind: 'error', status: 503, code: 'SlowDown' }
      if (op === 'UploadPart' && nth === 5) return { kind: 'cut', afterBytes: 100_000 }
      if (op === 'CreateMultipartUpload' && nth === 1) return { kind: 'error', status: 500, code: 'InternalError' }
      if (op === 'CompleteMultipartUpload' && nth === 1) return { kind: 'error', status: 503, code: 'ServiceUnavailable' }
      return { kind: 'pass' }
    })
    const c = content(17 * 1024 * 1024)
    assert.equal((await remote.store(c.key, bodyOf(c.bytes, 256 * 1024), 0, op())).stored, true)
    assert.ok(proxy.injected.some((f) => f.startsWith('UploadPart:503')), proxy.injected.join(' '))
    assert.ok(proxy.injected.includes('UploadPart:cut'), proxy.injected.join(' '))
    assert.ok(proxy.injected.includes('CompleteMultipartUpload:503 ServiceUnavailable'), proxy.injected.join(' '))
    proxy.rule(() => ({ kind: 'pass' }))
    assert.deepEqual(await readBack(remote, c.key), c.bytes)
    assert.deepEqual(await s3().pendingUploads(bucket), [])
  })

  test('a multipart upload has at most partsInFlight parts in flight (the memory bound of --s3-parts)', async (t) => {
    for (const partsInFlight of [1, 3]) {
      const { remote, proxy, bucket } = await faultyRemote(t, {}, { partsInFlight })
      // 6 parts of 5 MiB, offered all at once: only the bound holds the reader back.
      const c = content(26 * 1024 * 1024)
      assert.equal((await remote.store(c.key, bodyOf(c.bytes, 1024 * 1024), 0, op())).stored, true)
      assert.equal(proxy.seen.get('UploadPart'), 6)
      const peak = proxy.peak.get('UploadPart')!
      assert.ok(peak >= 1 && peak <= partsInFlight, `${peak} parts in flight at once with partsInFlight ${partsInFlight}`)
      t.diagnostic(`partsInFlight ${partsInFlight}: at most ${peak} UploadPart requests at once`)
      assert.deepEqual(await readBack(remote, c.key), c.bytes)
      assert.deepEqual(await s3().pendingUploads(bucket), [])
    }
  })

  test('a chunked upload whose chunk PUTs meet SlowDown and a cut connection still verifies', async (t) => {
    const { remote, proxy, bucket } = await faultyRemote(t, { chunk: '1MiB' })
    proxy.rule(({ op, nth }) => {
      if (op === 'PutObject' && nth % 2 === 0) return { kind: 'error', status: 503, code: 'SlowDown' }
      if (op === 'PutObject' && nth === 3) return { kind: 'cut', afterBytes: 200_000 }
      return { kind: 'pass' }
    })
    const c = content(3_500_000)
    assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
    assert.ok(proxy.injected.filter((f) => f.startsWith('PutObject')).length >= 3, proxy.injected.join(' '))
    proxy.rule(() => ({ kind: 'pass' }))
    assert.deepEqual(await readBack(remote, c.key), c.bytes)
    const k = serializeKey(c.key)
    assert.deepEqual(await s3().list(bucket), ['annex-uuid', ...[1, 2, 3, 4].map((n) => k.replace('--', `-S1048576-C${n}--`))].sort())
  })

  test('an upload that fails for good leaves no object and no multipart upload', async (t) => {
    const { remote, proxy, bucket } = await faultyRemote(t, {}, { maxAttempts: 3 })
    proxy.rule(({ op, nth }) => (op === 'UploadPart' && nth >= 2 ? { kind: 'error', status: 500, code: 'InternalError' } : { kind: 'pass' }))
    const c = content(12 * 1024 * 1024)
    await assert.rejects(remote.store(c.key, bodyOf(c.bytes, 256 * 1024), 0, op()), RemoteUnavailableError)
    assert.ok(proxy.injected.length >= 3, proxy.injected.join(' '))
    assert.ok((proxy.seen.get('AbortMultipartUpload') ?? 0) >= 1, 'the multipart upload was aborted')
    assert.deepEqual(await s3().list(bucket), ['annex-uuid'])
    assert.deepEqual(await s3().pendingUploads(bucket), [])
    assert.equal(await remote.checkPresent(c.key, op()), false)
  })

  test('a chunked upload that fails for good removes the chunks it wrote', async (t) => {
    const { remote, proxy, bucket } = await faultyRemote(t, { chunk: '1MiB' }, { maxAttempts: 2 })
    proxy.rule(({ op, nth }) => (op === 'PutObject' && nth >= 3 ? { kind: 'error', status: 500, code: 'InternalError' } : { kind: 'pass' }))
    const c = content(4_500_000)
    await assert.rejects(remote.store(c.key, bodyOf(c.bytes), 0, op()), RemoteUnavailableError)
    proxy.rule(() => ({ kind: 'pass' }))
    assert.deepEqual(await s3().list(bucket), ['annex-uuid'])
  })
})

describe('S3 requests per store', () => {
  const heads = (proxy: FaultProxy) => proxy.seen.get('HeadObject') ?? 0
  /** Object writes from now on (chunks included), not the bucket's annex-uuid. */
  const countWrites = (proxy: FaultProxy): (() => number) => {
    const urls: string[] = []
    proxy.rule(({ op, url }) => {
      if (op === 'PutObject' || op === 'CreateMultipartUpload') urls.push(url)
      return { kind: 'pass' }
    })
    return () => urls.filter((u) => !u.includes('annex-uuid')).length
  }

  for (const extra of [{}, { chunk: '1MiB' }] as Record<string, string>[]) {
    test(`startStore then store asks S3 whether the key is there once, not again after the claim (${extra.chunk ? 'chunked' : 'unchunked'})`, async (t) => {
      const { remote, proxy } = await faultyRemote(t, extra)
      const puts = countWrites(proxy)
      const c = content(16 * 1024)
      const before = heads(proxy)
      assert.deepEqual(await remote.startStore(c.key, op()), { kind: 'offset', offset: 0 })
      const checked = heads(proxy) - before
      assert.ok(checked >= 1, 'startStore asked S3')
      assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
      assert.equal(heads(proxy) - before, checked, 'store() sent no HEAD of its own after startStore found the key absent')
      assert.equal(puts(), 1)
      assert.deepEqual(await readBack(remote, c.key), c.bytes)
    })
  }

  test('a store of the key that completed after startStore checked is seen: answered stored, not written again', async (t) => {
    const { remote, proxy } = await faultyRemote(t, { chunk: '1MiB' })
    const puts = countWrites(proxy)
    const c = content(16 * 1024)
    assert.equal((await remote.startStore(c.key, op())).kind, 'offset')
    assert.equal((await remote.startStore(c.key, op())).kind, 'offset')
    assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
    assert.equal(puts(), 1)
    const before = heads(proxy)
    // The second client's bytes: already there, so not needed and not written.
    assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
    assert.ok(heads(proxy) > before, 'the second store asked again')
    assert.equal(puts(), 1, 'no second write')
    assert.deepEqual(await readBack(remote, c.key), c.bytes)
  })

  test('store() without a startStore before it checks after its claim', async (t) => {
    const { remote, proxy } = await faultyRemote(t)
    const puts = countWrites(proxy)
    const c = content(16 * 1024)
    assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
    const before = heads(proxy)
    assert.equal((await remote.store(c.key, bodyOf(c.bytes), 0, op())).stored, true)
    assert.ok(heads(proxy) > before)
    assert.equal(puts(), 1, 'present content is not written again')
  })
})

describe('S3 behind annex-proxy', () => {
  test('a client killed mid-upload leaves no object and no multipart upload', async (t) => {
    const root = await tempDir(t)
    const gw = await makeRepo(join(root, 'gw'), 'gw')
    await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
    const bucket = await s3().bucket()
    await sh(gw, 'git', ['annex', 'initremote', 's3', 'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${s3().port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4'], { env: s3().env })
    await git(gw, 'config', 'remote.s3.annex-proxy', 'true')
    await annex(gw, 'updateproxy')
    await mkdir(join(root, 'x'))
    const served = await startAnnexProxy(t, gw, ['--wideopen'], s3().env)
    const uuid = (await git(gw, 'config', 'remote.s3.annex-uuid')).stdout.trim()
    const c = content(40 * 1024 * 1024)
    const key = serializeKey(c.key)
    // A p2phttp PUT whose client sends 25 of 40 MiB, then its connection is cut.
    const sent = await new Promise<number>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: served.port,
        method: 'POST',
        path: `/git-annex/${uuid}/v4/put?key=${encodeURIComponent(key)}&clientuuid=00000000-0000-4000-8000-00000000c11e`,
        headers: { 'x-git-annex-data-length': String(c.bytes.length), 'content-type': 'application/octet-stream', 'content-length': String(c.bytes.length) },
      })
      req.on('error', () => undefined)
      let off = 0
      const step = 256 * 1024
      const pump = () => {
        while (off < 25 * 1024 * 1024) {
          const ok = req.write(c.bytes.subarray(off, off + step))
          off += step
          if (!ok) return void req.once('drain', pump)
        }
        // Let the gateway start its upload to S3, then the client is gone.
        eventually(async () => (await s3().pendingUploads(bucket)).length > 0, 'the gateway to start a multipart upload', 60_000).then(() => {
          req.destroy()
          resolve(off)
        })
      }
      pump()
    })
    assert.ok(sent >= 25 * 1024 * 1024)
    await eventually(async () => (await s3().pendingUploads(bucket)).length === 0, 'the multipart upload to be aborted', 60_000)
    assert.deepEqual(await s3().list(bucket), ['annex-uuid'])
  })
})
