// The framer: lines and DATA payloads out of arbitrarily chunked bytes, the line cap,
// and backpressure (a payload is pulled from the input only as it is read).
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { test } from 'node:test'
import fc from 'fast-check'
import { encodeLine } from '../../../src/protocol/p2p/codec.js'
import { PeerClosedError, ProtocolError } from '../../../src/errors.js'
import { FrameReader, MAX_LINE_CHARS } from '../../../src/protocol/p2p/framer.js'
import type { Message } from '../../../src/protocol/p2p/messages.js'

/** `bytes` cut at the given points, as an async iterable of chunks. */
async function* chunked(bytes: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let at = 0
  for (const c of [...new Set(cuts.map((x) => x % (bytes.length + 1)))].sort((a, b) => a - b)) {
    if (c > at) yield bytes.subarray(at, c)
    at = Math.max(at, c)
  }
  if (at < bytes.length) yield bytes.subarray(at)
}

type Item = { message: Message } | { data: Buffer }

const itemArb: fc.Arbitrary<Item> = fc.oneof(
  fc.constantFrom<Message>({ type: 'SUCCESS' }, { type: 'VALID' }, { type: 'INVALID' }, { type: 'FAILURE' }).map((message) => ({ message })),
  fc.nat().map((offset) => ({ message: { type: 'PUT-FROM', offset } as Message })),
  fc.stringMatching(/^[^\r\n]{0,50}$/).map((text) => ({ message: { type: 'ERROR', text } as Message })),
  // Payload bytes full of newlines and protocol words: they must never be read as lines.
  fc.uint8Array({ maxLength: 300 }).map((a) => ({ data: Buffer.concat([Buffer.from(a), Buffer.from('\nSUCCESS\n')]) })),
  fc.constant({ data: Buffer.alloc(0) }),
)

function wire(items: Item[]): Buffer {
  return Buffer.concat(items.map((i) => ('message' in i ? Buffer.from(encodeLine(i.message)) : Buffer.concat([Buffer.from(encodeLine({ type: 'DATA', length: i.data.length })), i.data]))))
}

test('messages and payloads come out whole, however the bytes are chunked', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(itemArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 30 }), async (items, cuts) => {
      const bytes = wire(items)
      const reader = new FrameReader(chunked(bytes, cuts))
      const got: Item[] = []
      for await (const f of reader.frames()) {
        if (f.payload) got.push({ data: await buffer(f.payload) })
        else got.push({ message: f.message })
      }
      assert.deepEqual(
        got.map((g) => ('data' in g ? { data: g.data.toString('hex') } : g)),
        items.map((i) => ('data' in i ? { data: i.data.toString('hex') } : i)),
      )
    }),
    { numRuns: 300 },
  )
})

test(`a line may have ${MAX_LINE_CHARS - 1} characters; ${MAX_LINE_CHARS} without a newline is a protocol error`, async () => {
  const longest = `ERROR ${'x'.repeat(MAX_LINE_CHARS - 1 - 6)}`
  const ok = new FrameReader(chunked(Buffer.from(`${longest}\nSUCCESS\n`), [1000, 20000]))
  assert.equal(await ok.readLine(), longest)
  assert.equal(await ok.readLine(), 'SUCCESS')
  assert.equal(await ok.readLine(), undefined)

  const tooLong = new FrameReader(chunked(Buffer.from(`${longest}x\n`), [5000]))
  await assert.rejects(tooLong.readLine(), ProtocolError)
  // The reader stays failed.
  await assert.rejects(tooLong.readLine(), ProtocolError)

  // Characters, not bytes: a line of 20000 two-byte characters is fine.
  const wide = `ERROR ${'é'.repeat(20000)}`
  const r = new FrameReader(chunked(Buffer.from(`${wide}\n`), [7, 30001]))
  assert.equal(await r.readLine(), wide)

  // An endless line without a newline fails once the cap is reached, without reading on.
  let pulled = 0
  async function* endless(): AsyncGenerator<Buffer> {
    for (;;) {
      pulled++
      yield Buffer.alloc(4096, 0x61)
    }
  }
  await assert.rejects(new FrameReader(endless()).readLine(), ProtocolError)
  assert.ok(pulled <= MAX_LINE_CHARS / 4096 + 1, `pulled ${pulled} chunks`)
})

test('a payload is pulled from the input only as it is read (backpressure)', async () => {
  const total = 64 << 20
  let produced = 0
  const source = Readable.from(
    (async function* () {
      yield Buffer.from(`DATA ${total}\n`)
      while (produced < total) {
        const n = Math.min(64 << 10, total - produced)
        produced += n
        yield Buffer.alloc(n, 1)
      }
      yield Buffer.from('VALID\n')
    })(),
    { objectMode: false, highWaterMark: 64 << 10 },
  )
  const reader = new FrameReader(source)
  const m = await reader.readMessage()
  assert.deepEqual(m, { type: 'DATA', length: total })
  const payload = reader.payload(total)
  // Read a little, then stop: the producer must not have run ahead to the end.
  let got = 0
  for await (const chunk of payload) {
    got += (chunk as Buffer).length
    if (got >= 1 << 20) break
  }
  // The producer is in-process and runs on event-loop turns, not on time: a thousand
  // turns give any read-ahead every chance to happen however loaded the machine is.
  for (let i = 0; i < 1000; i++) await new Promise((r) => setImmediate(r))
  assert.ok(produced < 4 << 20, `produced ${produced} bytes while ${got} were read`)
  // The payload was abandoned half-way: the stream can no longer be framed.
  await assert.rejects(reader.readLine(), PeerClosedError)
})

test('the next line waits until the payload has been read', async () => {
  const reader = new FrameReader(chunked(Buffer.from('DATA 3\nabcSUCCESS\n'), [2, 9]))
  assert.deepEqual(await reader.readMessage(), { type: 'DATA', length: 3 })
  const payload = reader.payload(3)
  const next = reader.readMessage()
  assert.equal((await buffer(payload)).toString(), 'abc')
  assert.deepEqual(await next, { type: 'SUCCESS' })
})

test('end of input: clean between messages, an error inside a line or a payload', async () => {
  assert.equal(await new FrameReader(chunked(Buffer.from('SUCCESS\n'), [])).readLine().then(() => undefined), undefined)
  const clean = new FrameReader(chunked(Buffer.from('SUCCESS\n'), []))
  await clean.readLine()
  assert.equal(await clean.readMessage(), undefined)
  await assert.rejects(new FrameReader(chunked(Buffer.from('SUCC'), [])).readLine(), PeerClosedError)
  const r = new FrameReader(chunked(Buffer.from('DATA 10\nabc'), []))
  await r.readMessage()
  await assert.rejects(buffer(r.payload(10)), PeerClosedError)
  await assert.rejects(r.readLine(), PeerClosedError)
})

test('an unparseable line is a protocol error; a trailing \\r is accepted', async () => {
  const r = new FrameReader(chunked(Buffer.from('VERSION 4\r\nWHAT\n'), []))
  assert.deepEqual(await r.readMessage(), { type: 'VERSION', version: 4 })
  await assert.rejects(r.readMessage(), ProtocolError)
})
