// The chunk cache in front of an S3 special remote the gateway proxies, with the real
// client and a real S3 server (Swift s3api, scripts/test-s3): `git annex get` killed at
// 60% and run again fetches less than half of the object from S3 again, a second
// client's get fetches nothing from S3, both verify, and a chunk damaged on the gateway's
// disk is fetched again instead of served. Requests and bytes are counted by a relay the
// gateway reaches S3 through (remote.log's port is the relay's).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, git, gitEnv, makeClient, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { startCountingProxy } from '../helpers/counting-proxy.js'
import { useTestS3 } from '../helpers/s3-server.js'

const s3 = useTestS3()

const SIZE = 48 * 1024 * 1024
const CHUNK = 1024 * 1024

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
}

test('S3 behind the gateway: a get killed at 60% resumes fetching under half again; a second client fetches nothing from S3; a damaged chunk is not served', async (t) => {
  const server = s3()
  const root = await tempDir(t)
  const counted = await startCountingProxy(t, server.port)
  const bucket = await server.bucket()
  const env = { ...gitEnv, ...server.env }
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await sh(gw, 'git', ['annex', 'initremote', 's3', 'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${counted.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4'], { env })
  await git(gw, 'config', 'remote.s3.annex-proxy', 'true')
  await annex(gw, 'updateproxy')
  const gateway = await startAnnexProxy(t, gw, ['--wideopen', '--cache-chunk', String(CHUNK)])
  // The first client downloads slowly enough to be interrupted mid-way.
  const slow = await startCountingProxy(t, gateway.port, { downBytesPerSecond: 12 * 1024 * 1024 })

  const client = await makeClient(gw, join(root, 'client'), slow.port)
  const content = randomBytes(SIZE)
  await writeFile(join(client, 'big.bin'), content)
  await annex(client, 'add', '-q', 'big.bin')
  await git(client, 'commit', '-q', '-m', 'big')
  const key = (await annex(client, 'lookupkey', 'big.bin')).stdout.trim()
  await annex(client, 'copy', '-q', '--to', 'origin-s3', 'big.bin')
  assert.ok((await server.list(bucket)).includes(key), 'the object is in the bucket')
  await annex(client, 'drop', '-q', '--force', 'big.bin')
  // The file's commit reaches the gateway for the second client.
  await annex(client, 'sync', '-q', '--no-content')
  const objectGets = () => counted.requests.filter((r) => r.startsWith(`GET /${bucket}/${key}`)).length

  const tmp = join(client, '.git', 'annex', 'tmp', key)
  const get = spawn('git-annex', ['get', '--from', 'origin-s3', 'big.bin'], { cwd: client, env: gitEnv, stdio: 'ignore' })
  const exited = new Promise((r) => get.once('exit', r))
  const deadline = Date.now() + 120_000
  for (;;) {
    const size = (await stat(tmp).catch(() => ({ size: 0 }))).size
    if (size >= 0.6 * SIZE) break
    assert.equal(get.exitCode, null, 'the download finished before it could be interrupted')
    assert.ok(Date.now() < deadline, `waited 120 s for the download to reach 60% (at ${size} bytes)`)
    await new Promise((r) => setTimeout(r, 10))
  }
  get.kill('SIGKILL')
  await exited
  const partial = (await stat(tmp)).size
  assert.ok(partial >= 0.6 * SIZE && partial < SIZE, `the client kept ${partial} bytes`)

  const before = counted.downBytes
  await annex(client, 'get', '-q', '--from', 'origin-s3', 'big.bin')
  const again = counted.downBytes - before
  t.diagnostic(`killed at ${partial} of ${SIZE} bytes; the resumed get fetched ${again} bytes from S3`)
  // The rest of the object from the chunk the client stopped in (or the one before it),
  // plus at most what the killed transfer was still reading when it was counted (the
  // gateway notices the kill later on a busy machine): never the part already sent.
  const bound = SIZE - (Math.floor(partial / CHUNK) - 1) * CHUNK + Math.max(0, SIZE - before) + 65536
  assert.ok(again <= bound, `the resumed get fetched ${again} bytes from S3 again (at most ${bound} expected)`)
  assert.deepEqual(await readFile(join(client, 'big.bin')), content)
  await annex(client, 'fsck', '-q', 'big.bin')

  // A second client: no object bytes come from S3.
  const client2 = await makeClient(gw, join(root, 'client2'), gateway.port)
  const gets = objectGets()
  const bytes = counted.downBytes
  await annex(client2, 'get', '-q', '--from', 'origin-s3', 'big.bin')
  assert.deepEqual(await readFile(join(client2, 'big.bin')), content)
  await annex(client2, 'fsck', '-q', 'big.bin')
  assert.equal(objectGets(), gets, 'no GET of the object reached S3')
  assert.ok(counted.downBytes - bytes < 4096, `S3 sent ${counted.downBytes - bytes} bytes`)

  // A chunk damaged on the gateway's disk: detected, fetched again, never served.
  const chunks = (await filesUnder(join(gw, '.git', 'annex', 'annex-proxy-cache'))).filter((f) => f.endsWith('.chunk'))
  assert.equal(chunks.length, SIZE / CHUNK)
  const victim = chunks.find((f) => /\/11-[0-9a-f]+\.chunk$/.test(f))!
  const b = await readFile(victim)
  b[54_321]! ^= 0x04
  await writeFile(victim, b)
  await annex(client2, 'drop', '-q', '--force', 'big.bin')
  const before3 = counted.downBytes
  await annex(client2, 'get', '-q', '--from', 'origin-s3', 'big.bin')
  assert.deepEqual(await readFile(join(client2, 'big.bin')), content)
  await annex(client2, 'fsck', '-q', 'big.bin')
  const refetched = counted.downBytes - before3
  assert.equal(objectGets(), gets + 1, 'one ranged GET for the damaged chunk')
  assert.ok(refetched >= CHUNK && refetched < SIZE / 4, `fetched ${refetched} bytes from S3 for one damaged chunk`)
})
