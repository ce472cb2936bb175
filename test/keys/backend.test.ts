// Every hash git-annex offers, computed by every implementation we have, against the digests
// the real git-annex (`calckey`) computes for the same files.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  AUTO,
  createHasher,
  digestMatches,
  expectedDigest,
  HASH_ALGORITHMS,
  hashAlgorithm,
  implementationFor,
  implementationsOf,
  resumeHasher,
  digestOf,
  type HashAlgorithm,
  type Hasher,
} from '../../src/keys/backend.js'
import { parseKey } from '../../src/keys/key.js'
import { blake2bSequential, blake2sSequential } from '../../src/streams/hashers/blake2.js'
import { createImplementation } from '../../src/streams/hashers/index.js'
import type { StatefulHasher } from '../../src/streams/hashers/types.js'
import { generate, UNROLLED_SOURCE } from '../../src/streams/hashers/generate.js'
import { sh, tempDir } from '../helpers/annex.js'

// Sizes around every block size in play (32, 64, 128 bytes; 4 and 8 BLAKE2 tree leaves), and
// one that is not a multiple of any of them.
const FILES: Array<[string, Buffer]> = [
  ['empty', Buffer.alloc(0)],
  ['one-byte', Buffer.from([0x61])],
  ['one-mib', randomBytes(1 << 20)],
  ['odd', randomBytes(1_000_003)],
  ['tree-edge', randomBytes(8 * 64 + 1)],
]

/** Feeds `data` in irregular pieces (0, 1, and block-straddling sizes) to exercise buffering. */
function feed(h: Hasher, data: Buffer): void {
  const steps = [0, 1, 63, 64, 65, 127, 128, 129, 7, 4096, 65536 + 3]
  let off = 0
  for (let i = 0; off < data.length; i++) {
    const n = steps[i % steps.length]!
    h.update(data.subarray(off, off + n))
    off += n
  }
}

describe('backends map to the hash git-annex uses', () => {
  let dir = ''
  const reference = new Map<string, string>() // `${algo} ${file}` → hex digest
  const cleanup: Array<() => unknown> = []
  let listed: string[] = []

  before(async () => {
    dir = await tempDir({ after: (fn) => cleanup.push(fn) })
    for (const [name, data] of FILES) writeFileSync(join(dir, name), data)
    await sh(dir, 'git', ['init', '-q'])
    await sh(dir, 'git', ['annex', 'init', '-q', 'hashes'])
    const version = (await sh(dir, 'git', ['annex', 'version'])).stdout
    listed = /^key\/value backends: (.*)$/m.exec(version)![1]!.split(' ')
    await Promise.all(
      HASH_ALGORITHMS.map(async (algo) => {
        const { stdout } = await sh(dir, 'git', ['annex', 'calckey', `--backend=${algo}`, ...FILES.map(([n]) => n)])
        stdout.trim().split('\n').forEach((line, i) => {
          const key = parseKey(line)
          assert.equal(key.size, FILES[i]![1].length)
          reference.set(`${algo} ${FILES[i]![0]}`, key.name)
        })
      }),
    )
  })
  after(async () => {
    for (const fn of cleanup) await fn()
  })

  test('every backend `git annex version` lists is classified', () => {
    const nonHash = new Set(['WORM', 'URL', 'VURL', 'GITBUNDLE', 'GITMANIFEST', 'X*'])
    for (const b of listed) {
      if (nonHash.has(b)) assert.equal(hashAlgorithm(b), undefined, b)
      else assert.equal(hashAlgorithm(b), b.endsWith('E') ? b.slice(0, -1) : b, b)
    }
    // Every algorithm we know is one git-annex lists, with and without E.
    for (const a of HASH_ALGORITHMS) {
      assert.ok(listed.includes(a), a)
      assert.ok(listed.includes(`${a}E`), a)
    }
    for (const b of ['sha256', 'SHA256EE', 'XSHA256', 'SHA3-256', 'BLAKE2B', 'E', 'SKEIN1024']) assert.equal(hashAlgorithm(b), undefined, b)
  })

  for (const algo of HASH_ALGORITHMS) {
    for (const impl of implementationsOf(algo)) {
      test(`${algo} by ${impl} equals git-annex calckey`, async () => {
        for (const [name, data] of FILES) {
          const h = await createImplementation(algo, impl)
          assert.equal(h.implementation, impl)
          feed(h, data)
          assert.equal(h.digest(), reference.get(`${algo} ${name}`), `${algo}/${impl} of ${name}`)
        }
      })
    }
  }

  test('the TypeScript BLAKE2b/BLAKE2s cores under the tree modes match git-annex sequentially too', () => {
    const cores: Array<[HashAlgorithm, () => StatefulHasher]> = [
      ['BLAKE2B160', () => blake2bSequential(160)],
      ['BLAKE2B224', () => blake2bSequential(224)],
      ['BLAKE2B256', () => blake2bSequential(256)],
      ['BLAKE2B384', () => blake2bSequential(384)],
      ['BLAKE2B512', () => blake2bSequential(512)],
      ['BLAKE2S160', () => blake2sSequential(160)],
      ['BLAKE2S224', () => blake2sSequential(224)],
      ['BLAKE2S256', () => blake2sSequential(256)],
    ]
    for (const [algo, make] of cores) {
      for (const [name, data] of FILES) {
        const h = make()
        h.update(data)
        assert.equal(h.digest(), reference.get(`${algo} ${name}`), `${algo} of ${name}`)
      }
    }
  })

  test('saved state resumes to the same digest (wasm and ts)', async () => {
    const data = FILES[3]![1]
    for (const algo of HASH_ALGORITHMS) {
      for (const impl of implementationsOf(algo)) {
        if (impl === 'native') continue
        const h = await createImplementation(algo, impl)
        h.update(data.subarray(0, 300_001))
        const state = h.save!()
        const r = await resumeHasher(algo, impl, state)
        r.update(data.subarray(300_001))
        assert.equal(r.digest(), reference.get(`${algo} odd`), `${algo}/${impl}`)
      }
    }
  })

  test('pooled wasm hashers start clean after reuse', async () => {
    for (let i = 0; i < 3; i++) {
      const h = await createImplementation('SHA256', 'wasm')
      h.update(FILES[1]![1])
      assert.equal(h.digest(), reference.get('SHA256 one-byte'))
      assert.throws(() => h.update(FILES[1]![1]))
    }
  })

  test('hasher kinds: auto follows the measured table, others fall back when absent', async () => {
    for (const algo of HASH_ALGORITHMS) {
      const have = implementationsOf(algo)
      assert.ok(have.includes(AUTO[algo]), algo)
      assert.equal(implementationFor(algo, 'auto'), AUTO[algo])
      assert.equal(implementationFor(algo, 'native'), have.includes('native') ? 'native' : have.includes('wasm') ? 'wasm' : 'ts')
      assert.equal(implementationFor(algo, 'wasm'), have.includes('wasm') ? 'wasm' : have.includes('ts') ? 'ts' : 'native')
      for (const kind of ['auto', 'native', 'wasm'] as const) {
        const h = await createHasher(algo, kind)
        assert.equal(h.implementation, implementationFor(algo, kind))
        h.update(FILES[1]![1])
        assert.equal(h.digest(), reference.get(`${algo} one-byte`))
      }
    }
  })
})

describe('the digest a key promises', () => {
  test('name up to the first dot, for hash backends only', () => {
    assert.equal(expectedDigest(parseKey('SHA256E-s3--abc.tar.gz')), 'abc')
    assert.equal(expectedDigest(parseKey('SHA256-s3--abc')), 'abc')
    assert.equal(expectedDigest(parseKey('SHA256-s3--abc.x')), 'abc')
    assert.equal(expectedDigest(parseKey('MD5E--\\abc.x')), '\\abc')
    for (const k of ['WORM-s3-m1--f.txt', 'URL--http&c%%x', 'XFOOE-s1--abc.x', 'GITMANIFEST--x', 'sha256-s1--abc']) {
      assert.equal(expectedDigest(parseKey(k)), undefined, k)
    }
    // A chunk key's name is the whole object's digest: git-annex verifies it as that.
    assert.deepEqual(digestOf(parseKey('SHA256-s10-S4-C1--abc')), { algorithm: 'SHA256', expected: 'abc' })
    // A git bundle's SHA256 comes after the UUID of its remote.
    assert.deepEqual(digestOf(parseKey('GITBUNDLE-s324--d44d9a17-9b97-4198-9dfc-1279feb2e88b-28b02f')), { algorithm: 'SHA256', expected: '28b02f' })
  })

  test('exact and case-sensitive, with the legacy backslash prefix accepted', () => {
    assert.ok(digestMatches('abc0', 'abc0'))
    assert.ok(digestMatches('\\abc0', 'abc0'))
    assert.ok(!digestMatches('ABC0', 'abc0'))
    assert.ok(!digestMatches('abc', 'abc0'))
    assert.ok(!digestMatches('\\\\abc0', 'abc0'))
  })
})

test('unrolled.ts is what generate.ts produces', () => {
  assert.equal(readFileSync(UNROLLED_SOURCE, 'utf8'), generate())
})

test('each algorithm has at least one implementation', () => {
  for (const algo of HASH_ALGORITHMS as readonly HashAlgorithm[]) assert.ok(implementationsOf(algo).length > 0)
})
