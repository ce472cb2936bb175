// P2PHttpClient against a real `git annex p2phttp`: version fallback (404 and the
// reference's own `400 bad version`), basic auth after a 401, aborts mid-transfer.
import assert from 'node:assert/strict'
import { existsSync, statSync } from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { test, type TestContext } from 'node:test'
import { AbortedError, ConfigError, DiskFullError, HashMismatchError, NoVersionError, PermissionDeniedError, RemoteUnavailableError, TransferInProgressError } from '../../src/errors.js'
import { parseServeArgs } from '../../src/config/config.js'
import { buildServer } from '../../src/server.js'
import { P2PHttpClient, parseAnnexUrl, type HttpClientOptions } from '../../src/protocol/http/client.js'
import { defer, git, makeRepo, repoUuid, startReference as startRef, tempDir, unusedPort, type After } from '../helpers/annex.js'
import { content, stallingBody } from '../remotes/contract.js'
import { keyFile } from '../../src/keys/object-path.js'
import { waitUntil } from '../helpers/wait.js'

const CLIENT = '00000000-0000-4000-8000-0000000000c2'

/** `git annex p2phttp --jobs 8` (the helper's default is 4) on port 0. */
async function startReference(t: After, repo: string, flags: string[] = ['--wideopen'], env: NodeJS.ProcessEnv = {}): Promise<number> {
  return (await startRef(t, repo, flags, { ...process.env, ...env }, { jobs: 8 })).port
}

async function served(t: TestContext, flags?: string[], env?: NodeJS.ProcessEnv): Promise<{ port: number; uuid: string }> {
  const d = await tempDir(t)
  const dir = await makeRepo(join(d, 'up'), 'up')
  return { port: await startReference(t, dir, flags, env), uuid: await repoUuid(dir) }
}

function client(t: TestContext, port: number, opts: Partial<HttpClientOptions> = {}): P2PHttpClient {
  const c = new P2PHttpClient(`annex+http://127.0.0.1:${port}/git-annex/`, { clientUuid: CLIENT, ...opts })
  defer(t, () => c.close())
  return c
}

/** A reverse proxy that rewrites or answers requests by their version segment, logging the paths it saw. */
async function versionProxy(t: TestContext, upstream: number, rule: (v: number) => number | 'not-found'): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    const m = /^(\/git-annex\/[^/]+\/)v([0-9]+)(\/.*)$/.exec(req.url ?? '')
    seen.push(req.url ?? '')
    let url = req.url ?? ''
    if (m) {
      const to = rule(Number(m[2]))
      if (to === 'not-found') {
        req.resume()
        return res.writeHead(404).end()
      }
      url = `${m[1]}v${to}${m[3]}`
    }
    const up = http.request({ host: '127.0.0.1', port: upstream, method: req.method, path: url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers)
      ur.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise((r) => server.close(r)))
  defer(t, () => server.closeAllConnections())
  return { port: (server.address() as AddressInfo).port, seen }
}

const signal = () => new AbortController().signal

test('parseAnnexUrl: default port, /git-annex base path rule (spec §2.1)', () => {
  assert.deepEqual(parseAnnexUrl('annex+http://h/git-annex'), { origin: 'http://h:9417', basePath: '' })
  assert.deepEqual(parseAnnexUrl('annex+http://h:8080/git-annex/'), { origin: 'http://h:8080', basePath: '' })
  assert.deepEqual(parseAnnexUrl('annex+https://h/foo/git-annex'), { origin: 'https://h:9417', basePath: '/foo/git-annex' })
  assert.deepEqual(parseAnnexUrl('annex+http://h/prefix/'), { origin: 'http://h:9417', basePath: '/prefix' })
  assert.deepEqual(parseAnnexUrl('http://h:1/'), { origin: 'http://h:1', basePath: '' })
  assert.throws(() => parseAnnexUrl('ssh://h/x'), ConfigError)
})

test('every endpoint at v4 against the reference', async (t) => {
  const up = await served(t)
  const c = client(t, up.port)
  const k = content(5000)
  assert.deepEqual(await c.putOffset(up.uuid, k.key, { signal: signal() }), { kind: 'offset', offset: 0 })
  assert.deepEqual(await c.put(up.uuid, k.key, Readable.from([k.bytes]), { signal: signal(), length: k.bytes.length }), { stored: true, plusUuids: [] })
  assert.equal(await c.checkPresent(up.uuid, k.key, { signal: signal() }), true)
  const g = await c.get(up.uuid, k.key, { signal: signal(), offset: 1000 })
  assert.equal(g.length, 4000)
  assert.deepEqual(await buffer(g.body), k.bytes.subarray(1000))
  assert.equal(await g.complete, true)
  const l = await c.lockContent(up.uuid, k.key, { signal: signal() })
  assert.equal(l.locked, true)
  const held = c.keepLocked(up.uuid, l.lockId!, { signal: signal() })
  await held.release()
  // remove-before takes a key no lock or GET has touched: the reference (10.20250416) answers
  // keeplocked as soon as it has sent UNLOCKCONTENT to its own P2P server, before the lock is
  // dropped, and a REMOVE of locked content gets no answer there at all (§9.7; see the lock
  // test in http-repo.test.ts). The CI run of 2026-12-07 waited 300 s for headers here.
  const r = content(3000)
  assert.deepEqual(await c.put(up.uuid, r.key, Readable.from([r.bytes]), { signal: signal(), length: r.bytes.length }), { stored: true, plusUuids: [] })
  const ts = await c.getTimestamp(up.uuid, { signal: signal() })
  assert.deepEqual(await c.removeBefore(up.uuid, r.key, ts + 60, { signal: signal() }), { removed: true, plusUuids: [] })
  assert.equal(await c.checkPresent(up.uuid, r.key, { signal: signal() }), false)
  assert.equal(c.version, 4)
})

test('404 for v4 and v3 (an older server): calls fall back to v2, remove-before and gettimestamp have no version left', async (t) => {
  const up = await served(t)
  const proxy = await versionProxy(t, up.port, (v) => (v >= 3 ? 'not-found' : v))
  const c = client(t, proxy.port)
  const k = content(3000)
  assert.equal(await c.checkPresent(up.uuid, k.key, { signal: signal() }), false)
  assert.equal(c.version, 2)
  assert.deepEqual(
    proxy.seen.map((u) => u.split('/')[3]),
    ['v4', 'v3', 'v2'],
  )
  // put streams once, at the version learned.
  assert.deepEqual(await c.putOffset(up.uuid, k.key, { signal: signal() }), { kind: 'offset', offset: 0 })
  assert.equal((await c.put(up.uuid, k.key, Readable.from([k.bytes]), { signal: signal(), length: k.bytes.length })).stored, true)
  await assert.rejects(c.getTimestamp(up.uuid, { signal: signal() }), NoVersionError)
  await assert.rejects(c.removeBefore(up.uuid, k.key, 1e9, { signal: signal() }), NoVersionError)
  assert.deepEqual(await c.remove(up.uuid, k.key, { signal: signal() }), { removed: true, plusUuids: [] })
})

test("the reference's own `400 bad version` counts as try-lower (its v2 and v1 gettimestamp)", async (t) => {
  const up = await served(t)
  // Every request goes to the reference two versions lower: its real answers for v1/v0
  // remove-before and gettimestamp, v0 putoffset, are `400 bad version`.
  const proxy = await versionProxy(t, up.port, (v) => Math.max(0, v - 2))
  const c = client(t, proxy.port)
  const k = content(3000)
  // gettimestamp: v4→v2 and v3→v1 both `bad version`.
  await assert.rejects(c.getTimestamp(up.uuid, { signal: signal() }), NoVersionError)
  assert.deepEqual(
    proxy.seen.map((u) => u.split('/')[3]),
    ['v4', 'v3'],
  )
  // putoffset v4→v2 works (the offset shape is the same).
  assert.deepEqual(await c.putOffset(up.uuid, k.key, { signal: signal() }), { kind: 'offset', offset: 0 })
  assert.equal(c.version, 4)
})

test('putoffset at a v0-only server answers offset 0 (git-annex skips it at v0)', async (t) => {
  const up = await served(t)
  const proxy = await versionProxy(t, up.port, (v) => (v >= 1 ? 'not-found' : v))
  const c = client(t, proxy.port)
  const k = content(2000)
  assert.deepEqual(await c.putOffset(up.uuid, k.key, { signal: signal() }), { kind: 'offset', offset: 0 })
  assert.equal(await c.checkPresent(up.uuid, k.key, { signal: signal() }), false)
  assert.equal(c.version, 0)
  assert.deepEqual(await c.put(up.uuid, k.key, Readable.from([k.bytes]), { signal: signal(), length: k.bytes.length }), { stored: true, plusUuids: [] })
})

test('basic auth: 401 without credentials; with them a retry succeeds; a wrong password stays 401', async (t) => {
  const up = await served(t, ['--authenv-http'], { GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'pa:ss' })
  const k = content(100)
  const anon = client(t, up.port)
  await assert.rejects(anon.checkPresent(up.uuid, k.key, { signal: signal() }), (e) => e instanceof PermissionDeniedError && e.status === 401)
  const alice = client(t, up.port, { credentials: { user: 'alice', password: 'pa:ss' } })
  assert.equal(await alice.checkPresent(up.uuid, k.key, { signal: signal() }), false)
  // Credentials are sent from then on: a streamed put (which cannot be retried) works.
  assert.equal((await alice.put(up.uuid, k.key, Readable.from([k.bytes]), { signal: signal(), length: 100 })).stored, true)
  const wrong = client(t, up.port, { credentials: { user: 'alice', password: 'nope' } })
  await assert.rejects(wrong.checkPresent(up.uuid, k.key, { signal: signal() }), (e) => e instanceof PermissionDeniedError && e.status === 401)
})

test('abort mid-put: AbortedError and no object upstream', async (t) => {
  const up = await served(t)
  const c = client(t, up.port)
  const k = content(200_000)
  const ac = new AbortController()
  const { body, consumed } = stallingBody(k.bytes.subarray(0, 50_000))
  const p = c.put(up.uuid, k.key, body, { signal: ac.signal, length: k.bytes.length })
  await consumed
  ac.abort()
  await assert.rejects(p, AbortedError)
  assert.equal(await c.checkPresent(up.uuid, k.key, { signal: signal() }), false)
})

test('abort mid-get: the body fails with AbortedError', async (t) => {
  const up = await served(t)
  const c = client(t, up.port)
  const k = content(4 * 1024 * 1024)
  assert.equal((await c.put(up.uuid, k.key, Readable.from([k.bytes]), { signal: signal(), length: k.bytes.length })).stored, true)
  const ac = new AbortController()
  const g = await c.get(up.uuid, k.key, { signal: ac.signal })
  assert.equal(g.length, k.bytes.length)
  ac.abort()
  await assert.rejects(buffer(g.body), AbortedError)
  assert.equal(await g.complete, false)
})

test('connection refused is RemoteUnavailableError', async (t) => {
  const port = await unusedPort()
  const c = client(t, port)
  await assert.rejects(c.checkPresent('00000000-0000-4000-8000-000000000000', content(1).key, { signal: signal() }), RemoteUnavailableError)
})

test('a GET whose server never ends the response (the reference, §9.19): every byte, complete, the connection let go', async (t) => {
  const k = content(100_000)
  let closed!: () => void
  const socketClosed = new Promise<void>((r) => (closed = r))
  // Sends the announced bytes, chunked, and never the terminating chunk.
  const server = http.createServer((req, res) => {
    req.socket.once('close', () => closed())
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-git-annex-data-length': String(k.bytes.length) })
    res.write(k.bytes.subarray(0, 60_000))
    setTimeout(() => res.write(k.bytes.subarray(60_000)), 20)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise<void>((r) => server.close(() => r())))
  defer(t, () => server.closeAllConnections())
  const c = client(t, (server.address() as AddressInfo).port)
  const g = await c.get('00000000-0000-4000-8000-0000000000aa', k.key, { signal: signal() })
  assert.deepEqual(await buffer(g.body), k.bytes)
  assert.equal(await g.complete, true)
  const t0 = Date.now()
  await socketClosed
  assert.ok(Date.now() - t0 < 8000, 'the stuck connection was dropped')
})

test('a GET that sends more than it announced fails, and fewer is incomplete', async (t) => {
  const k = content(1000)
  const server = http.createServer((req, res) => {
    const extra = req.url!.includes('more')
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-git-annex-data-length': String(k.bytes.length) })
    res.end(extra ? Buffer.concat([k.bytes, Buffer.from('x')]) : k.bytes.subarray(1))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as AddressInfo).port
  const more = await client(t, port).get('00000000-0000-4000-8000-0000000000aa', k.key, { signal: signal(), associatedFile: 'more' })
  await assert.rejects(buffer(more.body), /more than the 1000 bytes it announced/)
  assert.equal(await more.complete, false)
  const fewer = await client(t, port).get('00000000-0000-4000-8000-0000000000aa', k.key, { signal: signal() })
  assert.equal((await buffer(fewer.body)).length, 999)
  assert.equal(await fewer.complete, false)
})

test('a GET that stalls mid-body (as the reference does, §9.19) is resumed with a ranged GET from the byte reached', async (t) => {
  const k = content(100_000)
  const offsets: string[] = []
  const server = http.createServer((req, res) => {
    const offset = Number(new URL(req.url!, 'http://x').searchParams.get('offset') ?? 0)
    offsets.push(String(offset))
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-git-annex-data-length': String(k.bytes.length - offset) })
    // The first answer stops at 60 000 bytes and never goes on; the second sends the rest.
    if (offset === 0) res.write(k.bytes.subarray(0, 60_000))
    else res.end(k.bytes.subarray(offset))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise<void>((r) => server.close(() => r())))
  defer(t, () => server.closeAllConnections())
  const c = client(t, (server.address() as AddressInfo).port, { getStallMs: 300 })
  const g = await c.get('00000000-0000-4000-8000-0000000000aa', k.key, { signal: signal() })
  assert.equal(g.length, k.bytes.length)
  assert.deepEqual(await buffer(g.body), k.bytes)
  assert.equal(await g.complete, true)
  assert.deepEqual(offsets, ['0', '60000'])
})

test('a GET that keeps stalling fails after its resumes, with the bytes so far and complete=false', async (t) => {
  const k = content(100_000)
  let requests = 0
  const server = http.createServer((req, res) => {
    requests++
    const offset = Number(new URL(req.url!, 'http://x').searchParams.get('offset') ?? 0)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-git-annex-data-length': String(k.bytes.length - offset) })
    res.write(k.bytes.subarray(offset, offset + 1000))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise<void>((r) => server.close(() => r())))
  defer(t, () => server.closeAllConnections())
  const c = client(t, (server.address() as AddressInfo).port, { getStallMs: 200 })
  const g = await c.get('00000000-0000-4000-8000-0000000000aa', k.key, { signal: signal() })
  await assert.rejects(buffer(g.body))
  assert.equal(await g.complete, false)
  assert.equal(requests, 4, 'the first request and 3 resumes')
})

/** annex-proxy itself serving a fresh repository, in this process, on a port the system chose. */
async function annexProxy(t: TestContext, setup: (repo: string) => Promise<void> = async () => {}): Promise<{ port: number; uuid: string; repo: string }> {
  const d = await tempDir(t)
  const repo = await makeRepo(join(d, 'node'), 'node')
  await setup(repo)
  const server = await buildServer(parseServeArgs(['--repo', repo, '--wideopen', '--log-level', 'warn'], d))
  defer(t, () => server.close(0))
  await server.app.listen({ host: '127.0.0.1', port: 0 })
  return { port: (server.app.server.address() as AddressInfo).port, uuid: await repoUuid(repo), repo }
}

test('a downstream annex-proxy that is full (507) or busy with the key (409) gives its own errors, not 502', async (t) => {
  const full = await annexProxy(t, (repo) => git(repo, 'config', 'annex.diskreserve', '1000 PB').then(() => undefined))
  const k = content(10_000)
  await assert.rejects(
    client(t, full.port).put(full.uuid, k.key, Readable.from([k.bytes]), { signal: signal(), length: k.bytes.length }),
    (e) => e instanceof DiskFullError,
  )
  const busy = await annexProxy(t)
  const c = client(t, busy.port)
  const big = content(200_000)
  const { body, consumed, finish } = stallingBody(big.bytes.subarray(0, 50_000))
  const first = c.put(busy.uuid, big.key, body, { signal: signal(), length: big.bytes.length })
  await consumed
  // The client having sent the first bytes does not mean the server has taken the key: under
  // load the second put, on its own connection, could get there first. The tmp file is
  // opened only once the first put holds the key.
  const tmp = join(busy.repo, '.git', 'annex', 'tmp', keyFile(big.key))
  await waitUntil('the first put to begin writing its tmp file', 60_000, () => existsSync(tmp) && statSync(tmp).size > 0)
  await assert.rejects(c.put(busy.uuid, big.key, Readable.from([big.bytes]), { signal: signal(), length: big.bytes.length }), (e) => e instanceof TransferInProgressError)
  finish(big.bytes.subarray(50_000))
  assert.equal((await first).stored, true)
})

test('error statuses of a server that names no code (the reference, a proxy) map by status: 422 is a hash mismatch', async (t) => {
  const server = http.createServer((req, res) => {
    req.resume()
    res.writeHead(Number(/\/git-annex\/s(\d+)\//.exec(req.url!)![1])).end('because')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  defer(t, () => new Promise<void>((r) => server.close(() => r())))
  const c = client(t, (server.address() as AddressInfo).port)
  const ask = (status: number) => c.checkPresent(`s${status}`, content(1).key, { signal: signal() })
  await assert.rejects(ask(422), (e) => e instanceof HashMismatchError && /HTTP 422: because/.test(e.message))
  await assert.rejects(ask(507), (e) => e instanceof DiskFullError)
  await assert.rejects(ask(409), (e) => e instanceof TransferInProgressError)
  await assert.rejects(ask(500), (e) => e instanceof RemoteUnavailableError)
})
