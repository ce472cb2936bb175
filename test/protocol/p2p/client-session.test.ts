// ClientSession against a scripted peer, for what git-annex-shell on a plain repository
// never says: AUTH, an old server's ERROR to VERSION, -PLUS replies (gateways), v0 GETs,
// protocol violations, and a peer that hangs up mid-request.
import assert from 'node:assert/strict'
import { PassThrough, Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { test } from 'node:test'
import { AppendOnlyError, PeerClosedError, PeerError, ProtocolError } from '../../../src/errors.js'
import { parseKey } from '../../../src/keys/key.js'
import { ClientSession } from '../../../src/protocol/p2p/client-session.js'
import { encodeLine } from '../../../src/protocol/p2p/codec.js'
import { FrameReader } from '../../../src/protocol/p2p/framer.js'
import type { Message } from '../../../src/protocol/p2p/messages.js'

const K = parseKey('SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt')
const U = 'ac09ac21-6bb7-8ee3-959e-35f17b3d2701'
const N1 = '5ed1e7d2-0000-4000-8000-000000000001'
const N2 = 'ef37ee08-0000-4000-8000-000000000002'

/** A peer whose side of the conversation the test writes. */
function scripted() {
  const toClient = new PassThrough()
  const toPeer = new PassThrough()
  const reader = new FrameReader(toPeer)
  return {
    io: { input: toClient, output: toPeer },
    say: (...ms: (Message | Buffer)[]) => {
      for (const m of ms) toClient.write(Buffer.isBuffer(m) ? m : encodeLine(m))
    },
    heard: () => reader.readMessage(),
    reader,
    hangUp: () => toClient.end(),
  }
}

test('AUTH first, then the greeting; BYPASS after VERSION ≥ 2', async () => {
  const p = scripted()
  const opening = ClientSession.open(p.io, { auth: { uuid: 'me', token: 'Secret1' }, bypass: [N1, N2] })
  assert.deepEqual(await p.heard(), { type: 'AUTH', uuid: 'me', token: 'Secret1' })
  p.say({ type: 'AUTH-SUCCESS', uuid: U })
  assert.deepEqual(await p.heard(), { type: 'VERSION', version: 4 })
  p.say({ type: 'VERSION', version: 2 })
  const s = await opening
  assert.deepEqual(await p.heard(), { type: 'BYPASS', uuids: [N1, N2] })
  assert.equal(s.version, 2)
  assert.equal(s.peerUuid, U)
})

test('AUTH-FAILURE is a PeerError', async () => {
  const p = scripted()
  const opening = ClientSession.open(p.io, { auth: { uuid: 'me', token: 'x' } })
  p.say({ type: 'AUTH-FAILURE' })
  await assert.rejects(opening, PeerError)
})

test('an old server answering ERROR to VERSION speaks v0: no VALID after GET, no BYPASS', async () => {
  const p = scripted()
  const opening = ClientSession.open(p.io, { bypass: [N1] })
  p.say({ type: 'AUTH-SUCCESS', uuid: U })
  await p.heard()
  p.say({ type: 'ERROR', text: 'unknown command' })
  const s = await opening
  assert.equal(s.version, 0)
  const getting = s.get(K, 0)
  // The next thing the peer hears is the GET: no BYPASS at v0.
  assert.equal((await p.heard())?.type, 'GET')
  p.say({ type: 'DATA', length: 6 }, Buffer.from('hello\n'))
  const g = await getting
  assert.equal((await buffer(g.body)).toString(), 'hello\n')
  assert.equal(await g.valid, true)
  // At v0 the client does not answer SUCCESS/FAILURE either: the next line is the next request.
  const checking = s.checkPresent(K)
  assert.equal((await p.heard())?.type, 'CHECKPRESENT')
  p.say({ type: 'SUCCESS' })
  assert.equal(await checking, true)
})

test('the -PLUS replies of a gateway (spec §1.6 cluster transcript)', async () => {
  const p = scripted()
  const opening = ClientSession.open(p.io, { expectUuid: U })
  p.say({ type: 'AUTH-SUCCESS', uuid: U })
  await p.heard()
  p.say({ type: 'VERSION', version: 4 })
  const s = await opening
  const putting = s.put(K)
  await p.heard()
  p.say({ type: 'PUT-FROM', offset: 0 })
  const start = await putting
  assert.ok(start.kind === 'put-from')
  const sent = start.sendData(Readable.from([Buffer.from('clust\n')]), 6, Promise.resolve(true))
  assert.deepEqual(await p.heard(), { type: 'DATA', length: 6 })
  assert.equal((await buffer(p.reader.payload(6))).toString(), 'clust\n')
  assert.deepEqual(await p.heard(), { type: 'VALID' })
  p.say({ type: 'SUCCESS-PLUS', uuids: [N1, N2] })
  assert.deepEqual(await sent, { ok: true, plusUuids: [N1, N2] })
  const again = s.put(K)
  await p.heard()
  p.say(Buffer.from(`ALREADY-HAVE-PLUS ${N1} ${N2}\n`))
  assert.deepEqual(await again, { kind: 'already-have', plusUuids: [N1, N2] })
  const removing = s.remove(K)
  await p.heard()
  // The reference's unwords leaves a trailing space after an empty list.
  p.say(Buffer.from('FAILURE-PLUS \n'))
  assert.deepEqual(await removing, { ok: false, plusUuids: [] })
  const ro = s.remove(K)
  await p.heard()
  p.say({ type: 'ERROR', text: 'this repository is append-only; removal denied' })
  await assert.rejects(ro, AppendOnlyError)
  assert.equal(s.error, undefined)
})

test('a protocol violation or a hang-up breaks the session for every call', async () => {
  const p = scripted()
  const opening = ClientSession.open(p.io)
  p.say({ type: 'AUTH-SUCCESS', uuid: U }, { type: 'VERSION', version: 4 })
  const s = await opening
  const a = s.checkPresent(K)
  const b = s.getTimestamp()
  await p.heard()
  p.say({ type: 'PUT-FROM', offset: 3 })
  await assert.rejects(a, ProtocolError)
  await assert.rejects(b, ProtocolError)
  await assert.rejects(s.remove(K), ProtocolError)

  const q = scripted()
  const opening2 = ClientSession.open(q.io)
  q.say({ type: 'AUTH-SUCCESS', uuid: U }, { type: 'VERSION', version: 4 })
  const t = await opening2
  const getting = t.get(K, 0)
  await q.heard()
  q.say({ type: 'DATA', length: 100 }, Buffer.from('only some'))
  const g = await getting
  const queued = t.checkPresent(K)
  q.hangUp()
  await assert.rejects(buffer(g.body), PeerClosedError)
  assert.equal(await g.valid.catch(() => 'rejected'), 'rejected')
  await assert.rejects(queued, PeerClosedError)
})

test('a body that ends short of its DATA length closes the connection', async () => {
  const p = scripted()
  const opening = ClientSession.open(p.io)
  p.say({ type: 'AUTH-SUCCESS', uuid: U }, { type: 'VERSION', version: 4 })
  const s = await opening
  assert.deepEqual(await p.heard(), { type: 'VERSION', version: 4 })
  const putting = s.put(K)
  assert.equal((await p.heard())?.type, 'PUT')
  p.say({ type: 'PUT-FROM', offset: 0 })
  const start = await putting
  assert.ok(start.kind === 'put-from')
  await assert.rejects(start.sendData(Readable.from([Buffer.from('abc')]), 6, Promise.resolve(true)), PeerClosedError)
  assert.deepEqual(await p.heard(), { type: 'DATA', length: 6 })
  // The bytes that were sent arrive, then the end of the connection.
  const got: Buffer[] = []
  await assert.rejects(
    (async () => {
      for await (const c of p.reader.payload(6)) got.push(c as Buffer)
    })(),
    PeerClosedError,
  )
  assert.equal(Buffer.concat(got).toString(), 'abc')
  await assert.rejects(s.checkPresent(K), PeerClosedError)
})
