// An interrupted upload loses nothing and resends no finished file; a file changed while being
// sent is refused by the server's verification and reported, and the run goes on. The server's
// own metrics are the witness of what it received.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises'
import * as net from 'node:net'
import { Transform } from 'node:stream'
import { join } from 'node:path'
import { test } from 'node:test'
import { request } from 'undici'
import { annex, makeRepo, repoUuid, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { defer, type After } from '../helpers/annex.js'
import { parseExposition, type Exposition } from '../metrics/exposition.js'
import { startUpload, upload } from './helpers.js'
import { waitUntil } from '../helpers/wait.js'

const MiB = 1024 * 1024

async function metrics(port: number): Promise<Exposition> {
  const r = await request(`http://127.0.0.1:${port}/metrics`, { headersTimeout: 30_000, bodyTimeout: 30_000 })
  return parseExposition(await r.body.text())
}

/**
 * A relay to 127.0.0.1:`target` that sends client bytes on at most `rate` bytes/s per
 * connection, with no credit for idle time (a kept-alive connection stays slow). With
 * `holdAfter`, each connection sends on only its first `holdAfter` bytes until `release()`.
 */
async function slowRelay(t: After, target: number, rate: number, opts: { holdAfter?: number } = {}): Promise<{ port: number; release(): void }> {
  const sockets = new Set<net.Socket>()
  let held: Array<() => void> | undefined = opts.holdAfter === undefined ? undefined : []
  const release = () => {
    const go = held ?? []
    held = undefined
    for (const f of go) f()
  }
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1')
    sockets.add(client).add(upstream)
    let relayed = 0
    const pace = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        const send = () => setTimeout(() => cb(null, chunk), (chunk.length / rate) * 1000)
        relayed += chunk.length
        if (held !== undefined && relayed > opts.holdAfter!) held.push(send)
        else send()
      },
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      pace.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    client.pipe(pace).pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  defer(t, () => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((r) => server.close(() => r()))
  })
  return { port: (server.address() as net.AddressInfo).port, release }
}

/** Bytes of partial uploads the served repository keeps. */
async function partialBytes(repo: string): Promise<number> {
  const dir = join(repo, '.git/annex/tmp')
  let n = 0
  for (const f of await readdir(dir).catch(() => [] as string[])) n += (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size
  return n
}

const waitFor = (what: string, deadlineMs: number, check: () => Promise<boolean>) => waitUntil(what, deadlineMs, check, 20)

test('upload killed at about half way: the rerun completes, resends no finished file and resumes partial ones at their offset', { timeout: 600_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-upload-resume-')
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const uuid = await repoUuid(srv)
  const served = await startAnnexProxy(t, srv, ['--wideopen', '--metrics'])
  // 12 MB/s per connection: each 6 MiB file takes about half a second, so a kill lands mid-file.
  const slow = await slowRelay(t, served.port, 12_000_000)
  const data = join(root, 'data')
  await mkdir(data)
  const sizes = new Map<string, number>()
  for (let i = 0; i < 8; i++) {
    const size = 6 * MiB + i * 1000
    await writeFile(join(data, `f${i}.bin`), randomBytes(size))
    sizes.set(`data/f${i}.bin`, size)
  }
  const args = ['--url', `annex+http://127.0.0.1:${slow.port}/git-annex/`, '--uuid', uuid, '-J2', 'data']

  const first = startUpload(root, args)
  await first.until(4, 120_000)
  await waitFor('a partial upload on the server', 60_000, async () => (await partialBytes(srv)) > 0)
  first.child.kill('SIGKILL')
  await first.done
  await waitFor('the server to see the killed uploads end', 60_000, async () => (await metrics(served.port)).value('annex_proxy_transfers_in_flight', { direction: 'in' }) === 0)
  const finished = first.results.filter((r) => r.result === 'stored').map((r) => r.file)
  assert.ok(finished.length >= 4 && finished.length < 8, `finished before the kill: ${finished.length}`)
  const m1 = await metrics(served.port)
  const storedBefore = m1.value('annex_proxy_puts_total', { repo: uuid, result: 'stored' })
  assert.equal(storedBefore, finished.length)
  const receivedBefore = m1.value('annex_proxy_received_bytes_total', { repo: uuid })

  const second = await upload(root, args, 300_000)
  assert.equal(second.code, 0, second.stderr)
  assert.equal(second.results.length, 8)
  for (const r of second.results) {
    if (finished.includes(r.file)) assert.deepEqual([r.result, r.bytes], ['present', 0], `${r.file} finished in the first run: not sent again`)
    else assert.equal(r.result, 'stored', `${r.file}: ${r.error}`)
  }
  const resumed = second.results.filter((r) => r.offset > 0)
  assert.ok(resumed.length >= 1, `a partial upload resumed at its offset: ${JSON.stringify(second.results.map((r) => [r.file, r.offset]))}`)
  for (const r of resumed) assert.equal(r.bytes, sizes.get(r.file)! - r.offset, `${r.file} sent from ${r.offset} only`)

  // The server's view: exactly the unfinished files were put, and it received no more than their missing bytes.
  const m2 = await metrics(served.port)
  assert.equal(m2.value('annex_proxy_puts_total', { repo: uuid, result: 'stored' }) - storedBefore, 8 - finished.length)
  const missing = second.results.filter((r) => r.result === 'stored').reduce((a, r) => a + sizes.get(r.file)! - r.offset, 0)
  const received = m2.value('annex_proxy_received_bytes_total', { repo: uuid }) - receivedBefore
  assert.ok(received >= missing && received < missing + 64 * 1024, `received ${received} bytes for ${missing} missing`)
  const { stdout } = await annex(srv, 'findkeys', '--in', 'here')
  assert.equal(stdout.split('\n').filter(Boolean).length, 8)
})

test('a file changed while being uploaded is refused by the server and reported; the rest of the run goes on', { timeout: 300_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-upload-changed-')
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const uuid = await repoUuid(srv)
  const served = await startAnnexProxy(t, srv, ['--wideopen', '--metrics'])
  // The uploader reads the file as it sends, a few MiB (socket buffers) ahead of what the
  // server has. The tail must change before it is read: at 4 MB/s that was a race of about
  // 3 s against this test seeing the put arrive, which under load could be lost (the tail
  // read unchanged, stored, and only the mtime check failing it). So the relay passes the
  // put's first 64 KiB and holds the rest until the tail has changed.
  const slow = await slowRelay(t, served.port, 4_000_000, { holdAfter: 64 * 1024 })
  const data = join(root, 'data')
  await mkdir(data)
  const big = join(data, 'a-big.bin')
  await writeFile(big, randomBytes(16 * MiB))
  for (let i = 0; i < 5; i++) await writeFile(join(data, `small ${i}.txt`), randomBytes(1000 + i))

  const run = startUpload(root, ['--url', `annex+http://127.0.0.1:${slow.port}/git-annex/`, '--uuid', uuid, '-J1', 'data'])
  // Once the big file's put reached the server, its tail changes under the uploader's feet.
  await waitFor('the put of a-big.bin to reach the server', 60_000, async () => (await metrics(served.port)).value('annex_proxy_transfers_in_flight', { direction: 'in' }) >= 1)
  const fh = await open(big, 'r+')
  await fh.write(randomBytes(4096), 0, 4096, 16 * MiB - 4096)
  await fh.close()
  slow.release()
  const done = await run.done
  assert.equal(done.code, 1, 'a failed file makes the exit code nonzero')
  const byFile = new Map(run.results.map((r) => [r.file, r]))
  assert.equal(byFile.get('data/a-big.bin')?.result, 'failed')
  assert.match(byFile.get('data/a-big.bin')?.error ?? '', /changed while being uploaded/)
  assert.match(done.stderr, /failed: data\/a-big\.bin: changed while being uploaded/)
  for (let i = 0; i < 5; i++) assert.equal(byFile.get(`data/small ${i}.txt`)?.result, 'stored')
  const m = await metrics(served.port)
  assert.equal(m.value('annex_proxy_verification_failures_total', { repo: uuid, reason: 'hash' }), 1, 'the server refused it on its checksum')
  const { stdout } = await annex(srv, 'findkeys', '--in', 'here')
  assert.equal(stdout.split('\n').filter(Boolean).length, 5, 'nothing of the changed file was committed')
})
