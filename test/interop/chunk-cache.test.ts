// The chunk cache with the real client: `git annex get` through the gateway from a
// remote it reaches over the network, killed at 60% and run again, then a second client,
// then a chunk damaged on the gateway's disk. What reaches the remote is counted by a
// relay in front of it.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, git, gitEnv, makeClient, makeRepo, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { startCountingProxy } from '../helpers/counting-proxy.js'

const SIZE = 32 * 1024 * 1024
const CHUNK = 1024 * 1024

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
}

test('a get killed at 60% resumes from the gateway cache; a second client costs the remote nothing; a damaged chunk is fetched again, not served', async (t) => {
  const root = await tempDir(t)
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  // The remote: a clone of the gateway served over annex+http, reached through a counting relay.
  const r1 = join(root, 'r1')
  await git(root, 'clone', '-q', gw, r1)
  await annex(r1, 'init', '-q', 'r1')
  const content = randomBytes(SIZE)
  await writeFile(join(r1, 'big.bin'), content)
  await annex(r1, 'add', '-q', 'big.bin')
  await git(r1, 'commit', '-q', '-m', 'big')
  const key = (await annex(r1, 'lookupkey', 'big.bin')).stdout.trim()
  const upstream = await startAnnexProxy(t, r1)
  const counted = await startCountingProxy(t, upstream.port)

  await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await git(gw, 'remote', 'add', 'r1', '../r1')
  await git(gw, 'config', 'remote.r1.annexUrl', `annex+http://127.0.0.1:${counted.port}/git-annex/`)
  await annex(gw, 'sync', '-q', '--no-content', '--no-push', 'r1')
  await git(gw, 'config', 'remote.r1.annex-proxy', 'true')
  await annex(gw, 'updateproxy')
  const gateway = await startAnnexProxy(t, gw, ['--wideopen', '--cache-chunk', String(CHUNK)])
  // Clients download slowly enough to be interrupted mid-way.
  const slow = await startCountingProxy(t, gateway.port, { downBytesPerSecond: 8 * 1024 * 1024 })

  const client = await makeClient(gw, join(root, 'client'), slow.port)
  const tmp = join(client, '.git', 'annex', 'tmp', key)
  const get = spawn('git-annex', ['get', '--from', 'origin-r1', 'big.bin'], { cwd: client, env: gitEnv, stdio: 'ignore' })
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
  const first = counted.downBytes
  const requestsAtKill = counted.requests.length

  await annex(client, 'get', '-q', '--from', 'origin-r1', 'big.bin')
  const again = counted.downBytes - first
  t.diagnostic(`killed at ${partial} of ${SIZE} bytes; the resumed get fetched ${again} bytes from the remote`)
  // The gateway asks the remote only from the chunk the client stopped in (or the one
  // before it): what was already sent is served from the cache.
  const resumedFrom = counted.requests.slice(requestsAtKill).filter((r) => r.startsWith('GET ')).map((r) => Number(/[?&]offset=(\d+)/.exec(r)?.[1] ?? 0))
  assert.ok(resumedFrom.length > 0 && resumedFrom.every((o) => o >= (Math.floor(partial / CHUNK) - 1) * CHUNK), `the resumed get asked the remote from offsets ${resumedFrom.join(', ')}`)
  // Bytes: the rest of the object from there, plus at most what the killed transfer was
  // still reading when it was counted (the gateway notices the kill later on a busy machine).
  const bound = SIZE - (Math.floor(partial / CHUNK) - 1) * CHUNK + Math.max(0, SIZE - first) + 65536
  assert.ok(again <= bound, `the resumed get fetched ${again} bytes from the remote again (at most ${bound} expected)`)
  assert.deepEqual(await readFile(join(client, 'big.bin')), content)
  await annex(client, 'fsck', '-q', 'big.bin')

  // A second client: every chunk is on the gateway, no content is fetched from the remote
  // (the client's own checkpresent still reaches it, a few hundred bytes).
  const client2 = await makeClient(gw, join(root, 'client2'), gateway.port)
  const requestsBefore = counted.requests.length
  const bytesBefore = counted.downBytes
  await annex(client2, 'get', '-q', '--from', 'origin-r1', 'big.bin')
  assert.deepEqual(await readFile(join(client2, 'big.bin')), content)
  const asked = counted.requests.slice(requestsBefore)
  assert.deepEqual(asked.filter((r) => r.startsWith('GET')), [], asked.join('\n'))
  assert.ok(counted.downBytes - bytesBefore < 4096, `the remote sent ${counted.downBytes - bytesBefore} bytes: ${asked.join('\n')}`)

  // One chunk damaged on the gateway's disk: detected, fetched again, never served.
  const chunks = (await filesUnder(join(gw, '.git', 'annex', 'annex-proxy-cache'))).filter((f) => f.endsWith('.chunk'))
  assert.equal(chunks.length, SIZE / CHUNK)
  const victim = chunks.find((f) => /\/7-[0-9a-f]+\.chunk$/.test(f))!
  const b = await readFile(victim)
  b[12_345]! ^= 0x20
  await writeFile(victim, b)
  await annex(client2, 'drop', '-q', '--force', 'big.bin')
  const before3 = counted.downBytes
  await annex(client2, 'get', '-q', '--from', 'origin-r1', 'big.bin')
  assert.deepEqual(await readFile(join(client2, 'big.bin')), content)
  await annex(client2, 'fsck', '-q', 'big.bin')
  // The damaged chunk comes again; the remote's read is cut at the next cached chunk, so
  // only what TCP had in flight beyond it (a few MiB on loopback) is fetched in vain.
  const refetched = counted.downBytes - before3
  assert.ok(refetched >= CHUNK && refetched < SIZE / 4, `fetched ${refetched} bytes for one damaged chunk`)
})
