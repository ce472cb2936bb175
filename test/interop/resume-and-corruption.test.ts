// Interrupted and corrupt uploads with the real client: resume from the kept prefix,
// never a partial or bad object visible, nothing left behind.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { request } from 'undici'
import { annex, defer, git, makeClient, makeRepo, repoUuid, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { startThrottleProxy } from '../helpers/throttle-proxy.js'
import { holdsOpen, waitUntil } from '../helpers/wait.js'

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name))
      else out.push(join(d, e.name))
    }
  }
  await walk(dir)
  return out
}

test('interrupted 64 MiB upload resumes from the partial offset; no partial object is ever visible', async (t) => {
  const root = await tempDir(t)
  const server = await makeRepo(join(root, 'server'), 'server')
  const served = await startAnnexProxy(t, server)
  const proxy = await startThrottleProxy(t, served.port, 32 * 1024 * 1024)
  const client = await makeClient(server, join(root, 'client'), proxy.port)
  const content = randomBytes(64 * 1024 * 1024)
  await writeFile(join(client, 'big.bin'), content)
  await annex(client, 'add', '-q', 'big.bin')
  await git(client, 'commit', '-q', '-m', 'add')
  const key = (await annex(client, 'lookupkey', 'big.bin')).stdout.trim()
  const objects = join(server, '.git', 'annex', 'objects')
  const tmp = join(server, '.git', 'annex', 'tmp', key)

  // Watch the object store the whole time: an object may only ever appear complete.
  let watching = true
  const seen: number[] = []
  const watcher = (async () => {
    while (watching) {
      for (const f of await filesUnder(objects)) seen.push((await stat(f).catch(() => ({ size: -1 }))).size)
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  defer(t, async () => {
    watching = false
    await watcher
  })

  // Run the git-annex binary itself so that killing it really stops the transfer.
  const child = spawn('git-annex', ['copy', '--to', 'origin', 'big.bin'], { cwd: client, stdio: 'ignore' })
  const exited = new Promise((r) => child.once('exit', r))
  for (;;) {
    const size = (await stat(tmp).catch(() => ({ size: 0 }))).size
    if (size >= 16 * 1024 * 1024) break
    if (child.exitCode !== null) assert.fail('the upload finished before it could be interrupted')
    await new Promise((r) => setTimeout(r, 10))
  }
  child.kill('SIGKILL')
  await exited
  // The server keeps what arrived for resume; the object is not there. Its side of the
  // transfer goes on until it notices the client is gone (bytes still in flight through the
  // proxy): wait until it has closed the tmp file, so the size read is the one it resumes from.
  await waitUntil('the server to close the interrupted upload\'s tmp file', 60_000, () => !holdsOpen(served.child.pid!, realpathSync(tmp)))
  const partial = (await stat(tmp)).size
  assert.ok(partial > 0 && partial < content.length, `partial tmp size ${partial}`)
  assert.equal((await filesUnder(objects)).length, 0)

  await annex(client, 'copy', '--to', 'origin', 'big.bin')
  watching = false
  await watcher
  const puts = proxy.requests.filter((r) => r.includes('/put?'))
  assert.equal(puts.length, 2, puts.join('\n'))
  const resumedAt = Number(/[?&]offset=(\d+)/.exec(puts[1]!)?.[1])
  assert.ok(resumedAt > 0 && resumedAt <= partial, `second put resumed at ${resumedAt} (partial ${partial})`)
  assert.ok(seen.every((s) => s === content.length), `object sizes seen while uploading: ${[...new Set(seen)].join(',')}`)
  const stored = await filesUnder(objects)
  assert.equal(stored.length, 1)
  assert.equal(createHash('sha256').update(await readFile(stored[0]!)).digest('hex'), createHash('sha256').update(content).digest('hex'))
  await assert.rejects(stat(tmp), 'no tmp file left after the commit')
  await annex(server, 'fsck', '-q')
})

test('corrupt upload (bytes not matching the key) is refused and leaves nothing behind', async (t) => {
  const root = await tempDir(t)
  const server = await makeRepo(join(root, 'server'), 'server')
  const served = await startAnnexProxy(t, server)
  const U = await repoUuid(server)
  const good = Buffer.from('the right content\n')
  const bad = Buffer.from('the wrong content\n')
  assert.equal(good.length, bad.length)
  const key = `SHA256E-s${good.length}--${createHash('sha256').update(good).digest('hex')}.txt`
  const base = `http://127.0.0.1:${served.port}/git-annex/${U}/v4`
  const C = 'clientuuid=11111111-2222-3333-4444-555555555555'
  const put = async (body: Buffer, extra = '') => {
    const r = await request(`${base}/put?key=${key}&${C}${extra}`, {
      method: 'POST',
      headers: { 'x-git-annex-data-length': String(body.length), 'content-type': 'application/octet-stream' },
      body,
    })
    return JSON.parse(await r.body.text()) as Record<string, unknown>
  }
  assert.deepEqual(await put(bad), { plusuuids: [], stored: false })
  assert.deepEqual(await filesUnder(join(server, '.git', 'annex', 'objects')), [])
  assert.deepEqual(await filesUnder(join(server, '.git', 'annex', 'tmp')), [], 'bad bytes are not kept for resume')
  const off = await request(`${base}/putoffset?key=${key}&${C}`, { method: 'POST' })
  assert.deepEqual(JSON.parse(await off.body.text()), { offset: 0 })
  // A real client's corrupt file: git-annex's own key, other bytes.
  const client = await makeClient(server, join(root, 'client'), served.port)
  await writeFile(join(client, 'f.txt'), good)
  await annex(client, 'add', '-q', 'f.txt')
  await git(client, 'commit', '-q', '-m', 'add')
  assert.equal((await annex(client, 'lookupkey', 'f.txt')).stdout.trim(), key)
  assert.deepEqual(await put(good), { plusuuids: [], stored: true })
  await annex(server, 'fsck', '-q')
})
