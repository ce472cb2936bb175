// Pure parts of the special remotes: chunk keys, the chunk log format, S3 settings from
// remote.log, and which way the gateway serves each type.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { parseKey, serializeKey } from '../../src/keys/key.js'
import { asUuid } from '../../src/remotes/remote.js'
import { candidateLayouts, changeChunkLog, chunkCount, chunkKeys, chunkLogPath, loggedChunks } from '../../src/remotes/special/chunks.js'
import { servingPath } from '../../src/remotes/special/serving-path.js'
import { nativeS3Refusal, parseS3Settings } from '../../src/remotes/s3/settings.js'

const KEY = parseKey('SHA256E-s25000--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt')
const U = asUuid('3ff7e1c4-8d2b-4c4e-9a57-0d3f1d2e3f3e')

test('chunk keys keep the whole size; counts cover the content, at least one', () => {
  assert.deepEqual(chunkKeys(KEY, 10240, 3).map(serializeKey), [1, 2, 3].map((n) => `SHA256E-s25000-S10240-C${n}--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt`))
  assert.equal(chunkCount(0, 1024), 1)
  fc.assert(fc.property(fc.nat(1e9), fc.integer({ min: 1, max: 1e8 }), (size, S) => {
    const n = chunkCount(size, S)
    return n >= 1 && (n - 1) * S < Math.max(size, 1) && n * S >= size
  }))
  // Chunk keys share their parent's log and hash directories.
  assert.equal(chunkLogPath(chunkKeys(KEY, 10240, 1)[0]!), chunkLogPath(KEY))
  assert.match(chunkLogPath(KEY), /^[0-9a-f]{3}\/[0-9a-f]{3}\/SHA256E-s25000--.*\.txt\.log\.cnk$/)
})

test('chunk log: written as git-annex writes it, newest clock wins, count 0 removes, clocks never go back', () => {
  const a = changeChunkLog('', U, 10240, 3, 1795548827)
  assert.equal(a, `1795548827s ${U}:10240 3\n`)
  assert.deepEqual(loggedChunks(a, U), [{ size: 10240, count: 3 }])
  // Same second again: the clock moves past the old one so the change wins.
  const b = changeChunkLog(a, U, 10240, 0, 1795548827)
  assert.equal(b, `1795548828s ${U}:10240 0\n`)
  assert.deepEqual(loggedChunks(b, U), [])
  const other = asUuid('00000000-0000-4000-8000-000000000001')
  const c = changeChunkLog(changeChunkLog(a, other, 5, 7, 1795548900), U, 1024, 25, 1795548901)
  assert.deepEqual(c.split('\n').filter(Boolean).map((l) => l.split(' ')[1]), [`${other}:5`, `${U}:1024`, `${U}:10240`])
  assert.deepEqual(loggedChunks(c, U), [{ size: 1024, count: 25 }, { size: 10240, count: 3 }])
  assert.deepEqual(loggedChunks('garbage\n1795548827s nocolon 3\n', U), [])
})

test('lookup order is git-annex\'s: unchunked first without chunk=, logged lists first with it, then a guess', () => {
  assert.deepEqual(candidateLayouts(KEY, { kind: 'none' }, [{ size: 1000, count: 25 }]), [
    { kind: 'whole' },
    { kind: 'chunks', size: 1000, count: 25, logged: true },
  ])
  assert.deepEqual(candidateLayouts(KEY, { kind: 'chunks', size: 10240 }, []), [{ kind: 'whole' }, { kind: 'chunks', size: 10240, count: 3, logged: false }])
  assert.deepEqual(candidateLayouts(KEY, { kind: 'chunks', size: 10240 }, [{ size: 10240, count: 3 }]), [
    { kind: 'chunks', size: 10240, count: 3, logged: true },
    { kind: 'whole' },
  ])
})

test('S3 settings as git-annex reads remote.log', () => {
  const s = parseS3Settings(new Map([['type', 'S3'], ['bucket', 'MyBucket'], ['host', '127.0.0.1'], ['port', '9000'], ['protocol', 'http'], ['requeststyle', 'path'], ['fileprefix', 'p/'], ['chunk', '1MiB'], ['chunksize', '5MB'], ['partsize', '64MiB'], ['x-amz-meta-owner', 'me'], ['public', 'yes']]))
  assert.equal(s.bucket, 'mybucket')
  assert.equal(s.endpoint, 'http://127.0.0.1:9000')
  assert.equal(s.forcePathStyle, true)
  assert.deepEqual(s.chunking, { kind: 'chunks', size: 1048576 })
  assert.equal(s.partSize, 64 * 1048576)
  assert.deepEqual(s.metadata, { owner: 'me' })
  assert.equal(s.publicRead, true)
  const aws = parseS3Settings(new Map([['bucket', 'b'], ['datacenter', 'EU']]))
  assert.equal(aws.endpoint, undefined)
  assert.equal(aws.region, 'eu-west-1')
  assert.equal(parseS3Settings(new Map([['bucket', 'b'], ['host', 'h'], ['protocol', 'https'], ['port', '80']])).endpoint, 'https://h:443')
  assert.throws(() => parseS3Settings(new Map([['host', 'h']])), /bucket not configured/)
  assert.throws(() => parseS3Settings(new Map([['bucket', 'b'], ['requeststyle', 'dns']])), /requeststyle/)
})

test('which way each special remote is served', () => {
  const m = (o: Record<string, string>) => new Map(Object.entries(o))
  assert.deepEqual(servingPath(m({ type: 'S3', encryption: 'none', bucket: 'b' }), m({})), { kind: 'S3' })
  assert.equal(servingPath(m({ type: 'S3', encryption: 'shared', bucket: 'b' }), m({})).kind, 'git-annex')
  assert.equal(nativeS3Refusal(m({ type: 'S3', exporttree: 'yes', annexobjects: 'yes' })), 'exporttree=yes')
  assert.deepEqual(servingPath(m({ type: 'directory', encryption: 'none' }), m({ directory: '/srv/d' })), { kind: 'directory', dir: '/srv/d' })
  assert.equal(servingPath(m({ type: 'directory', encryption: 'none', chunksize: '1MB' }), m({ directory: '/srv/d' })).kind, 'git-annex')
  for (const type of ['rsync', 'webdav', 'external', 'gcrypt', 'bup']) assert.equal(servingPath(m({ type }), m({})).kind, 'git-annex', type)
})
