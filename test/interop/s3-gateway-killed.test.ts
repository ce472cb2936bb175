// A gateway SIGKILLed in the middle of a multipart upload to a proxied S3 remote (real
// client, real S3 server): the parts it sent stay in the bucket as an unfinished upload
// until the gateway is started again; then that upload is aborted, nothing of it is
// visible, and the client's retry stores the object.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, git, gitEnv, makeClient, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { startCountingProxy } from '../helpers/counting-proxy.js'
import { useTestS3 } from '../helpers/s3-server.js'

const s3 = useTestS3()

const SIZE = 20 * 1024 * 1024

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    assert.ok(Date.now() < deadline, `waited ${deadlineMs / 1000} s for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('a gateway killed mid multipart upload: its upload is aborted when it starts again, and the retry stores the object', async (t) => {
  const t0 = Date.now()
  const mark = (what: string) => t.diagnostic(`${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  const server = s3()
  const root = await tempDir(t)
  const bucket = await server.bucket()
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await sh(gw, 'git', ['annex', 'initremote', 's3', 'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${server.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4'], { env: { ...gitEnv, ...server.env } })
  await git(gw, 'config', 'remote.s3.annex-proxy', 'true')
  await annex(gw, 'updateproxy')
  const first = await startAnnexProxy(t, gw)
  // The client's bytes reach the gateway slowly enough to kill it mid-upload.
  const slow = await startCountingProxy(t, first.port, { upBytesPerSecond: 3 * 1024 * 1024 })
  const client = await makeClient(gw, join(root, 'client'), slow.port)
  await writeFile(join(client, 'big.bin'), randomBytes(SIZE))
  await annex(client, 'add', '-q', 'big.bin')
  await git(client, 'commit', '-q', '-m', 'big')
  const key = (await annex(client, 'lookupkey', 'big.bin')).stdout.trim()

  const copy = spawn('git-annex', ['copy', '--to', 'origin-s3', 'big.bin'], { cwd: client, env: gitEnv, stdio: 'ignore' })
  const copied = new Promise((r) => copy.once('exit', r))
  t.after(() => copy.kill('SIGKILL'))
  const journal = join(gw, '.git', 'annex', 'annex-proxy', 'multipart')
  const written = async () => (await readdir(journal, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile() && !e.name.endsWith('.tmp'))
  const started = await until('the gateway to start a multipart upload and write it down', 120_000, async () => {
    assert.equal(copy.exitCode, null, 'the copy ended before the gateway could be killed')
    const p = await server.pendingUploads(bucket)
    return p.length > 0 && (await written()).length > 0 ? p : undefined
  })
  assert.equal(started.length, 1)
  assert.ok(started[0]!.startsWith(`${key} `), started[0])
  mark('killing the gateway')
  first.child.kill('SIGKILL')
  await copied
  assert.notEqual(copy.exitCode, 0, 'the copy failed with its gateway')
  assert.deepEqual(await server.pendingUploads(bucket), started, 'the killed gateway left its upload unfinished')
  assert.ok(!(await server.list(bucket)).includes(key), 'nothing of it is visible')

  // Started again: the server opens its S3 remote at once, before any request, so the
  // orphan goes without a client asking; then the retry goes through.
  const second = await startAnnexProxy(t, gw)
  await until('the orphaned upload to be aborted by the restarted gateway, before any request', 60_000, async () => ((await server.pendingUploads(bucket)).length === 0 ? true : undefined))
  mark('orphan aborted')
  await git(client, 'config', 'remote.origin.annexUrl', `annex+http://127.0.0.1:${second.port}/git-annex/`)
  await annex(client, 'copy', '-q', '--to', 'origin-s3', 'big.bin')
  mark('retry copied')
  assert.deepEqual(await server.pendingUploads(bucket), [], 'the retry left no upload behind')
  // Stored by the gateway only after the bytes verified.
  assert.ok((await server.list(bucket)).includes(key))
  assert.deepEqual(await written(), [], 'no upload is written down any more')
})
