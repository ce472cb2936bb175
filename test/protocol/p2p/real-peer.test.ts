// The codec, framer and client session against a real `git-annex-shell p2pstdio`
// (10.20250416): the observed transcript of spec §1.6 replayed line by line through our
// serializer and parser, then the typed client session on the same peer.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { PeerClosedError, ProtocolError, ReadOnlyError, VersionError } from '../../../src/errors.js'
import { parseKey, serializeKey } from '../../../src/keys/key.js'
import { ClientSession } from '../../../src/protocol/p2p/client-session.js'
import { encodeLine } from '../../../src/protocol/p2p/codec.js'
import { FrameReader } from '../../../src/protocol/p2p/framer.js'
import type { Message } from '../../../src/protocol/p2p/messages.js'
import { defer, makeRepo, repoUuid, sha256Key, tempDir } from '../../helpers/annex.js'

const CLIENT = '00000000-0000-4000-8000-0000000000c2'
const hello = Buffer.from('hello\n')
const helloKey = parseKey(sha256Key(hello, '.txt'))
const world = Buffer.from('world\n')
const worldKey = parseKey(sha256Key(world, '.txt'))

interface Peer {
  dir: string
  uuid: string
  child: ReturnType<typeof spawn>
  reader: FrameReader
  send(m: Message | string | Buffer): void
  next(): Promise<Message | undefined>
  stderr(): string
}

async function repo(t: TestContext): Promise<{ dir: string; uuid: string }> {
  const d = await tempDir(t)
  const dir = await makeRepo(join(d, 'peer'), 'peer')
  return { dir, uuid: await repoUuid(dir) }
}

function startShell(t: TestContext, dir: string, uuid: string, env: NodeJS.ProcessEnv = process.env): Peer {
  const child = spawn('git-annex-shell', ['p2pstdio', dir, CLIENT, '--uuid', uuid], { stdio: ['pipe', 'pipe', 'pipe'], env })
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
  child.stdin.on('error', () => undefined)
  const exited = once(child, 'exit')
  defer(t, async () => {
    child.stdin.end()
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
    child.stdout.destroy()
  })
  const reader = new FrameReader(child.stdout)
  return {
    dir,
    uuid,
    child,
    reader,
    send: (m) => void child.stdin.write(typeof m === 'string' || Buffer.isBuffer(m) ? m : encodeLine(m)),
    next: () => reader.readMessage(),
    stderr: () => err,
  }
}

async function session(t: TestContext, dir: string, uuid: string, opts: Parameters<typeof ClientSession.open>[1] = {}): Promise<{ s: ClientSession; peer: Peer }> {
  const peer = startShell(t, dir, uuid)
  const s = await ClientSession.open({ input: peer.child.stdout!, output: peer.child.stdin! }, { expectUuid: uuid, ...opts })
  return { s, peer }
}

/** Stores `bytes` under `key` with a fresh session. */
async function put(t: TestContext, dir: string, uuid: string, key: typeof helloKey, bytes: Buffer): Promise<void> {
  const { s } = await session(t, dir, uuid)
  const start = await s.put(key)
  assert.equal(start.kind, 'put-from')
  if (start.kind !== 'put-from') return
  assert.deepEqual(await start.sendData(Readable.from([bytes]), bytes.length, Promise.resolve(true)), { ok: true, plusUuids: [] })
  await s.close()
}

describe('the §1.6 transcript, replayed through our codec against git-annex-shell', { timeout: 120_000 }, () => {
  test('greeting, version, checkpresent, get, timestamp, unknown command, put, resume, remove-before, remove', async (t) => {
    const { dir, uuid } = await repo(t)
    await put(t, dir, uuid, helloKey, hello)
    const p = startShell(t, dir, uuid)
    assert.deepEqual(await p.next(), { type: 'AUTH-SUCCESS', uuid })
    p.send({ type: 'VERSION', version: 4 })
    assert.deepEqual(await p.next(), { type: 'VERSION', version: 4 })
    p.send({ type: 'CHECKPRESENT', key: helloKey })
    assert.deepEqual(await p.next(), { type: 'SUCCESS' })
    // `a%b.txt` on the wire; the peer only displays it.
    p.send({ type: 'GET', offset: 0, af: 'a b.txt', key: helloKey })
    assert.deepEqual(await p.next(), { type: 'DATA', length: 6 })
    assert.deepEqual(await buffer(p.reader.payload(6)), hello)
    assert.deepEqual(await p.next(), { type: 'VALID' })
    p.send({ type: 'SUCCESS' })
    p.send({ type: 'GETTIMESTAMP' })
    const ts = await p.next()
    assert.equal(ts?.type, 'TIMESTAMP')
    p.send('FOO\n')
    assert.deepEqual(await p.next(), { type: 'ERROR', text: 'unknown command' })
    // Parseable but not a request: "unexpected", and the session goes on.
    p.send({ type: 'SUCCESS' })
    assert.deepEqual(await p.next(), { type: 'ERROR', text: 'unexpected command' })
    p.send({ type: 'PUT', af: 'a.txt', key: helloKey })
    assert.deepEqual(await p.next(), { type: 'ALREADY-HAVE' })
    p.send({ type: 'PUT', af: undefined, key: worldKey })
    assert.deepEqual(await p.next(), { type: 'PUT-FROM', offset: 0 })
    // The connection drops after 3 of 6 bytes: the peer keeps them in its temp file.
    p.send(encodeLine({ type: 'DATA', length: 6 }))
    p.send(world.subarray(0, 3))
    p.child.stdin!.end()
    await once(p.child, 'exit')
    const tmp = join(dir, '.git/annex/tmp', serializeKey(worldKey))
    assert.equal((await stat(tmp)).size, 3)

    const q = startShell(t, dir, uuid)
    assert.deepEqual(await q.next(), { type: 'AUTH-SUCCESS', uuid })
    q.send({ type: 'VERSION', version: 9 })
    assert.deepEqual(await q.next(), { type: 'VERSION', version: 4 })
    q.send({ type: 'PUT', af: undefined, key: worldKey })
    assert.deepEqual(await q.next(), { type: 'PUT-FROM', offset: 3 })
    q.send(encodeLine({ type: 'DATA', length: 3 }))
    q.send(world.subarray(3))
    q.send({ type: 'VALID' })
    assert.deepEqual(await q.next(), { type: 'SUCCESS' })
    q.send({ type: 'REMOVE-BEFORE', timestamp: 1, key: worldKey })
    assert.deepEqual(await q.next(), { type: 'FAILURE' })
    q.send({ type: 'REMOVE', key: worldKey })
    assert.deepEqual(await q.next(), { type: 'SUCCESS' })
    q.send({ type: 'REMOVE', key: worldKey })
    assert.deepEqual(await q.next(), { type: 'SUCCESS' })
    // An absent key: DATA 0 then INVALID.
    q.send({ type: 'GET', offset: 0, af: undefined, key: worldKey })
    assert.deepEqual(await q.next(), { type: 'DATA', length: 0 })
    assert.deepEqual(await q.next(), { type: 'INVALID' })
    q.send({ type: 'FAILURE' })
    // A line ending in \r\n is accepted by the peer too.
    q.send('GETTIMESTAMP\r\n')
    assert.equal((await q.next())?.type, 'TIMESTAMP')
  })

  test('findings beyond §1.6: INVALID alone does not stop a commit; a flipped byte does and clears the temp file', async (t) => {
    const { dir, uuid } = await repo(t)
    const p = startShell(t, dir, uuid)
    await p.next()
    p.send({ type: 'VERSION', version: 4 })
    await p.next()
    p.send({ type: 'PUT', af: undefined, key: helloKey })
    assert.deepEqual(await p.next(), { type: 'PUT-FROM', offset: 0 })
    p.send(encodeLine({ type: 'DATA', length: 6 }))
    p.send(hello)
    p.send({ type: 'INVALID' })
    // Forced re-verification of right bytes passes: committed.
    assert.deepEqual(await p.next(), { type: 'SUCCESS' })
    p.send({ type: 'PUT', af: undefined, key: worldKey })
    assert.deepEqual(await p.next(), { type: 'PUT-FROM', offset: 0 })
    const bad = Buffer.from(world)
    bad[5]! ^= 0xff
    p.send(encodeLine({ type: 'DATA', length: 6 }))
    p.send(bad)
    p.send({ type: 'INVALID' })
    assert.deepEqual(await p.next(), { type: 'FAILURE' })
    assert.deepEqual(await readdir(join(dir, '.git/annex/tmp')), [])
    // `SUCCESS ` (one trailing space) parses on the peer: it is "unexpected", not "unknown".
    p.send('SUCCESS \n')
    assert.deepEqual(await p.next(), { type: 'ERROR', text: 'unexpected command' })
    p.send('SUCCESS  \n')
    assert.deepEqual(await p.next(), { type: 'ERROR', text: 'unknown command' })
    // UNLOCKCONTENT with a key (the design doc's form) is unparseable.
    p.send(`UNLOCKCONTENT ${serializeKey(helloKey)}\n`)
    assert.deepEqual(await p.next(), { type: 'ERROR', text: 'unknown command' })
  })

  test('removing locked content ends the session on the peer ("content is locked")', async (t) => {
    const { dir, uuid } = await repo(t)
    await put(t, dir, uuid, helloKey, hello)
    const a = startShell(t, dir, uuid)
    const b = startShell(t, dir, uuid)
    for (const p of [a, b]) {
      await p.next()
      p.send({ type: 'VERSION', version: 4 })
      await p.next()
    }
    a.send({ type: 'LOCKCONTENT', key: helloKey })
    assert.deepEqual(await a.next(), { type: 'SUCCESS' })
    b.send({ type: 'REMOVE', key: helloKey })
    assert.equal(await b.next(), undefined)
    await once(b.child, 'exit')
    assert.match(b.stderr(), /content is locked/)
    a.send({ type: 'UNLOCKCONTENT' })
    a.send({ type: 'CHECKPRESENT', key: helloKey })
    assert.deepEqual(await a.next(), { type: 'SUCCESS' })
  })
})

describe('ClientSession on git-annex-shell', { timeout: 120_000 }, () => {
  test('typed requests: get from an offset, put with resume, remove-before with a real timestamp', async (t) => {
    const { dir, uuid } = await repo(t)
    const { s } = await session(t, dir, uuid)
    assert.equal(s.version, 4)
    assert.equal(s.peerUuid, uuid)
    assert.equal(await s.checkPresent(helloKey), false)
    const start = await s.put(helloKey, 'dir/hello.txt')
    assert.ok(start.kind === 'put-from' && start.offset === 0)
    assert.deepEqual(await start.sendData(Readable.from([hello.subarray(0, 2), hello.subarray(2)]), 6, Promise.resolve(true)), { ok: true, plusUuids: [] })
    assert.deepEqual(await s.put(helloKey), { kind: 'already-have', plusUuids: [] })
    const got = await s.get(helloKey, 2)
    assert.equal(got.length, 4)
    assert.equal((await buffer(got.body)).toString(), 'llo\n')
    assert.equal(await got.valid, true)
    const absent = await s.get(worldKey, 0)
    assert.equal(absent.length, 0)
    assert.equal((await buffer(absent.body)).length, 0)
    assert.equal(await absent.valid, false)
    const now = await s.getTimestamp()
    assert.deepEqual(await s.removeBefore(now, helloKey), { ok: false, plusUuids: [] })
    assert.deepEqual(await s.removeBefore(now + 60, helloKey), { ok: true, plusUuids: [] })
    const pres = await s.put(worldKey)
    assert.ok(pres.kind === 'put-from')
    assert.deepEqual(await pres.dataPresent(), { ok: false, plusUuids: [] })
  })

  test('requests queue: issued together, answered in order on one session', async (t) => {
    const { dir, uuid } = await repo(t)
    await put(t, dir, uuid, helloKey, hello)
    const { s } = await session(t, dir, uuid)
    const lock = s.lockContent(helloKey)
    const checks = [s.checkPresent(helloKey), s.checkPresent(worldKey), s.getTimestamp()]
    const held = await lock
    assert.ok(held)
    // The checks wait behind the lock; release it and they run.
    await held.unlock()
    await held.unlock()
    const [a, b, ts] = await Promise.all(checks)
    assert.equal(a, true)
    assert.equal(b, false)
    assert.equal(typeof ts, 'number')
  })

  test('a broken session errors the call in flight and every queued one with a typed error', async (t) => {
    const { dir, uuid } = await repo(t)
    await put(t, dir, uuid, helloKey, hello)
    const { s } = await session(t, dir, uuid)
    const { s: other } = await session(t, dir, uuid)
    const held = await other.lockContent(helloKey)
    assert.ok(held)
    // The peer aborts the session when asked to remove locked content.
    const calls = [s.remove(helloKey), s.checkPresent(helloKey), s.getTimestamp()]
    for (const c of calls) await assert.rejects(c, PeerClosedError)
    await assert.rejects(s.checkPresent(helloKey), PeerClosedError)
    assert.ok(s.error instanceof PeerClosedError)
    await held.unlock()
  })

  test('version negotiation: an offered maximum is honoured, newer requests refuse locally', async (t) => {
    const { dir, uuid } = await repo(t)
    const { s } = await session(t, dir, uuid, { maxVersion: 2, bypass: ['99999999-9999-4999-8999-999999999999'] })
    assert.equal(s.version, 2)
    await assert.rejects(s.getTimestamp(), VersionError)
    // The refusal happened before anything was sent: the session still works.
    assert.equal(await s.checkPresent(helloKey), false)
  })

  test('the greeting must name the expected repository', async (t) => {
    const { dir, uuid } = await repo(t)
    await assert.rejects(session(t, dir, uuid, { expectUuid: '11111111-2222-4333-8444-555555555555' }), ProtocolError)
  })

  test('ERROR replies keep the session: a read-only peer refuses PUT', async (t) => {
    const { dir, uuid } = await repo(t)
    const peer = startShell(t, dir, uuid, { ...process.env, GIT_ANNEX_SHELL_READONLY: '1' })
    const s = await ClientSession.open({ input: peer.child.stdout!, output: peer.child.stdin! }, { expectUuid: uuid })
    await assert.rejects(s.put(helloKey), ReadOnlyError)
    assert.equal(s.error, undefined)
    assert.equal(await s.checkPresent(helloKey), false)
  })
})
