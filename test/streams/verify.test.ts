// The verifier on keys made by the real git-annex: content passes through untouched (the very
// same Buffers), and wrong, short or long content fails, for every algorithm and hasher kind.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, test } from 'node:test'
import { HashMismatchError, LengthMismatchError } from '../../src/errors.js'
import { HASH_ALGORITHMS } from '../../src/keys/backend.js'
import { parseKey, serializeKey, type Key } from '../../src/keys/key.js'
import { createVerifier, hashedBytes, verifiedTee, Vouched, type HasherKind } from '../../src/streams/verify.js'
import { sh, tempDir } from '../helpers/annex.js'

const KINDS: Array<HasherKind | undefined> = [undefined, 'auto', 'native', 'wasm']
const CONTENT = randomBytes(100_003)

/** Irregular pieces, so hashers see partial blocks and several blocks at once. */
function pieces(data: Buffer): Buffer[] {
  const out: Buffer[] = []
  const sizes = [1, 64, 1000, 17, 65536, 129]
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length]!
    out.push(data.subarray(off, off + n))
    off += n
  }
  return out
}

/** Runs `chunks` through a verifier; resolves with what came out, chunk by chunk. */
async function run(key: Key, chunks: Buffer[], opts: Parameters<typeof createVerifier>[1] = {}): Promise<Buffer[]> {
  const out: Buffer[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk)
      cb()
    },
  })
  await pipeline(Readable.from(chunks), await createVerifier(key, opts), sink)
  return out
}

describe('createVerifier', () => {
  const keys = new Map<string, Key>() // backend → key of CONTENT made by git-annex
  const cleanup: Array<() => unknown> = []
  before(async () => {
    const dir = await tempDir({ after: (fn) => cleanup.push(fn) })
    writeFileSync(join(dir, 'content.bin'), CONTENT)
    await sh(dir, 'git', ['init', '-q'])
    await sh(dir, 'git', ['annex', 'init', '-q', 'verify'])
    await Promise.all(
      HASH_ALGORITHMS.flatMap((a) => [a, `${a}E`]).map(async (b) => {
        const { stdout } = await sh(dir, 'git', ['annex', 'calckey', `--backend=${b}`, 'content.bin'])
        keys.set(b, parseKey(stdout.trim()))
      }),
    )
  })
  after(async () => {
    for (const fn of cleanup) await fn()
  })

  for (const algo of HASH_ALGORITHMS) {
    for (const kind of KINDS) {
      const label = `${algo} (${kind ?? 'default'})`
      test(`${label}: correct content passes through as the same Buffers`, async () => {
        for (const backend of [algo, `${algo}E`]) {
          const chunks = pieces(CONTENT)
          const out = await run(keys.get(backend)!, chunks, { hasher: kind })
          assert.equal(out.length, chunks.length)
          out.forEach((c, i) => assert.equal(c, chunks[i], 'a chunk was copied or split'))
        }
      })

      test(`${label}: wrong, short and long content are rejected`, async () => {
        const key = keys.get(`${algo}E`)!
        const flipped = Buffer.from(CONTENT)
        flipped[50_000] = flipped[50_000]! ^ 1
        await assert.rejects(run(key, pieces(flipped), { hasher: kind }), HashMismatchError)
        await assert.rejects(run(key, pieces(CONTENT.subarray(0, CONTENT.length - 1)), { hasher: kind }), LengthMismatchError)
        await assert.rejects(run(key, [...pieces(CONTENT), Buffer.from('x')], { hasher: kind }), LengthMismatchError)
        // Right length and right bytes, but the key names another digest.
        const other = parseKey(serializeKey(key).replace(/--(.)/, (_m, c: string) => `--${c === '0' ? '1' : '0'}`))
        await assert.rejects(run(other, pieces(CONTENT), { hasher: kind }), HashMismatchError)
      })

      test(`${label}: a resumed upload hashes the prefix first`, async () => {
        const key = keys.get(algo)!
        for (const at of [0, 1, 64, 4097, CONTENT.length - 1, CONTENT.length]) {
          const prefix = Readable.from(pieces(CONTENT.subarray(0, at)))
          const out = await run(key, pieces(CONTENT.subarray(at)), { hasher: kind, prefix })
          assert.equal(Buffer.concat(out).length, CONTENT.length - at)
        }
        const badPrefix = Buffer.from(CONTENT.subarray(0, 10))
        badPrefix[0] = badPrefix[0]! ^ 1
        await assert.rejects(run(key, [CONTENT.subarray(10)], { hasher: kind, prefix: Readable.from([badPrefix]) }), HashMismatchError)
      })
    }
  }

  test('too many bytes fail at once, not at the end of the stream', { timeout: 10_000 }, async () => {
    const key = keys.get('SHA256E')!
    // A source that never ends: only an error raised in transform() can settle the pipeline.
    const source = new Readable({ read() {} })
    source.push(CONTENT)
    source.push(Buffer.from('extra'))
    const sink = new Writable({ write: (_c, _e, cb) => cb() })
    await assert.rejects(pipeline(source, await createVerifier(key), sink), LengthMismatchError)
  })

  test('a prefix longer than the key rejects createVerifier itself', async () => {
    const key = keys.get('SHA256')!
    await assert.rejects(createVerifier(key, { prefix: Readable.from([CONTENT, Buffer.from('x')]) }), LengthMismatchError)
  })

  test('a prefix of decoded strings is refused', async () => {
    const prefix = Readable.from(['text'])
    await assert.rejects(createVerifier(keys.get('SHA256')!, { prefix }), TypeError)
  })

  test('the legacy backslash-prefixed digest still verifies; an upper-case one does not', async () => {
    const key = keys.get('SHA256E')!
    const legacy = parseKey(serializeKey(key).replace('--', '--\\'))
    await run(legacy, [CONTENT])
    const upper = parseKey(`${key.backend}-s${key.size}--${key.name.split('.')[0]!.toUpperCase()}.bin`)
    await assert.rejects(run(upper, [CONTENT]), HashMismatchError)
  })

  test('WORM, URL and external keys: length only when they have a size, nothing otherwise', async () => {
    for (const k of ['WORM-s100003-m1700000000--content.bin', 'URL-s100003--http&c%%example.com%x', 'XFOO-s100003--abc']) {
      const key = parseKey(k)
      for (const kind of KINDS) {
        await run(key, pieces(randomBytes(CONTENT.length)), { hasher: kind })
        await assert.rejects(run(key, [CONTENT.subarray(1)], { hasher: kind }), LengthMismatchError)
        await assert.rejects(run(key, [CONTENT, Buffer.from('x')], { hasher: kind }), LengthMismatchError)
      }
    }
    for (const k of ['WORM-m1700000000--content.bin', 'URL--http&c%%example.com%x', 'XFOOE--abc.bin']) {
      await run(parseKey(k), [])
      await run(parseKey(k), pieces(CONTENT))
    }
  })

  test('a hash key without a size is checked by digest alone', async () => {
    const key = keys.get('SHA256E')!
    const sizeless = parseKey(`SHA256E--${key.name}`)
    await run(sizeless, pieces(CONTENT))
    await assert.rejects(run(sizeless, [CONTENT.subarray(1)]), HashMismatchError)
  })

  test('a chunk key verifies as git-annex verifies it: as its whole object (one chunk\'s bytes never do)', async () => {
    const parent = keys.get('SHA256E')!
    const chunk = (n: number) => parseKey(`SHA256E-s${parent.size}-S40000-C${n}--${parent.name}`)
    await assert.rejects(run(chunk(1), [CONTENT.subarray(0, 40_000)]), LengthMismatchError)
    await assert.rejects(run(chunk(3), [CONTENT.subarray(80_000)]), LengthMismatchError)
    await run(chunk(2), pieces(CONTENT))
    const bad = Buffer.from(CONTENT)
    bad[5]! ^= 1
    await assert.rejects(run(chunk(2), [bad]), HashMismatchError)
  })

  test('a GITBUNDLE key is verified by the SHA256 after its UUID', async () => {
    const sha = createHash('sha256').update(CONTENT).digest('hex')
    const key = parseKey(`GITBUNDLE-s${CONTENT.length}--d44d9a17-9b97-4198-9dfc-1279feb2e88b-${sha}`)
    await run(key, pieces(CONTENT))
    const bad = Buffer.from(CONTENT)
    bad[5]! ^= 1
    await assert.rejects(run(key, [bad]), HashMismatchError)
  })

  test('empty content of an empty key', async () => {
    const empty = parseKey('SHA256E-s0--e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.txt')
    for (const kind of KINDS) {
      await run(empty, [], { hasher: kind })
      await assert.rejects(run(empty, [Buffer.from('x')], { hasher: kind }), LengthMismatchError)
    }
  })
})

describe('verifiedTee: hashed once, vouched for per branch', () => {
  const data = randomBytes(200_000)
  const key = parseKey(`SHA256E-s${data.length}--${createHash('sha256').update(data).digest('hex')}.bin`)

  test('branches carry the bytes, hashed once; a verifier given its own branch and voucher does not hash again', async () => {
    const before = hashedBytes()
    const fan = await verifiedTee(key, 2, { highWaterMark: 16 * 1024 })
    const downstream = await Promise.all(fan.branches.map((b, i) => createVerifier(key, { upstream: { vouched: fan.vouchers[i], body: b, offset: 0 } })))
    const collect = async (src: AsyncIterable<Buffer>) => {
      const parts: Buffer[] = []
      for await (const c of src) parts.push(c)
      return Buffer.concat(parts)
    }
    const got = fan.branches.map((b, i) => pipeline(b, downstream[i]!, collect))
    await pipeline(Readable.from(pieces(data)), fan.input)
    for (const g of await Promise.all(got)) assert.deepEqual(g, data)
    assert.equal(hashedBytes() - before, data.length)
    assert.deepEqual(await fan.vouchers[0]!.verdict, { ok: true })
  })

  test('a voucher covers only its own branch, whole, of its own key: anything else is hashed', async () => {
    const fan = await verifiedTee(key, 2, { highWaterMark: 16 * 1024 })
    const v = fan.vouchers[0]!
    assert.ok(v.covers(key, fan.branches[0]!, 0))
    assert.ok(!v.covers(key, fan.branches[1]!, 0), 'another branch')
    assert.ok(!v.covers(key, fan.branches[0]!, 10), 'from an offset')
    assert.ok(!v.covers(parseKey(`SHA256E-s${data.length}--${'0'.repeat(64)}.bin`), fan.branches[0]!, 0), 'another key')
    // Given with a body it does not cover, the verifier hashes: bad bytes are refused.
    const bad = Buffer.from(data)
    bad[0]! ^= 1
    const before = hashedBytes()
    await assert.rejects(pipeline(Readable.from([bad]), await createVerifier(key, { upstream: { vouched: v, body: Readable.from([]), offset: 0 } }), new Writable({ write: (_c, _e, cb) => cb() })), HashMismatchError)
    assert.equal(hashedBytes() - before, data.length)
    // And nobody else makes one.
    assert.throws(() => new (Vouched as unknown as new (...a: unknown[]) => Vouched)(Symbol('verifiedTee'), key, Readable.from([]), Promise.resolve({ ok: true }), {}), TypeError)
    fan.input.destroy()
  })

  test('bad content reaches every branch whole, and every verifier downstream refuses it with the verdict', async () => {
    const fan = await verifiedTee(key, 3, { highWaterMark: 16 * 1024 })
    const results = fan.branches.map(async (b, i) => {
      const v = await createVerifier(key, { upstream: { vouched: fan.vouchers[i], body: b, offset: 0 } })
      return pipeline(b, v, new Writable({ write: (_c, _e, cb) => cb() })).then(
        () => 'committed',
        (e: Error) => e,
      )
    })
    const bad = Buffer.from(data)
    bad[data.length - 1]! ^= 1
    await pipeline(Readable.from(pieces(bad)), fan.input)
    for (const r of await Promise.all(results)) assert.ok(r instanceof HashMismatchError, String(r))
    const v = fan.vouchers[0]!.decided
    assert.ok(v && !v.ok && v.bad)
  })
})
