// parseServeArgs: p2phttp's flags with their meanings, ours with their bounds, and a clear
// ConfigError (never a stack trace) for a value a person mistyped.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseServeArgs } from '../../src/config/config.js'
import { ConfigError } from '../../src/errors.js'

test('defaults: the working directory, 127.0.0.1:9417, 4 jobs, idle proxy sessions bounded by jobs', () => {
  const c = parseServeArgs([], '/srv/r')
  assert.deepEqual(c.repos, ['/srv/r'])
  assert.equal(c.bind, '127.0.0.1')
  assert.equal(c.port, 9417)
  assert.equal(c.jobs, 4)
  assert.equal(c.proxyConnections, undefined)
  assert.equal(c.maxQueue, 256)
  assert.equal(c.locationLogCommit, 'answer')
  assert.equal(parseServeArgs(['--location-log-commit', 'idle'], '/').locationLogCommit, 'idle')
})

test('--proxyconnections and --clusterjobs are taken as p2phttp takes them', () => {
  assert.equal(parseServeArgs(['--proxyconnections', '2'], '/').proxyConnections, 2)
  assert.equal(parseServeArgs(['--proxyconnections=0'], '/').proxyConnections, 0)
  // Every node of a cluster upload is reached at once, so --clusterjobs changes nothing, but is accepted.
  assert.doesNotThrow(() => parseServeArgs(['--clusterjobs', '4', '-J', '8'], '/'))
})

test('bad values are refused with a message naming the flag', () => {
  const bad: [string[], RegExp][] = [
    [['--proxyconnections', 'x'], /--proxyconnections needs a whole number, got 'x'/],
    [['--proxyconnections', '5000'], /--proxyconnections must be between 0 and 1024/],
    [['--jobs', '0'], /--jobs must be between 1 and 1024/],
    [['--port', '70000'], /--port must be between 0 and 65535/],
    [['--hasher', 'md5'], /--hasher must be wasm, native or auto/],
    [['--location-log-commit', 'never'], /--location-log-commit must be answer or idle, got 'never'/],
    [['--certfile', 'c.pem'], /--certfile and --privatekeyfile go together/],
    [['--no-such-flag'], /no-such-flag/],
  ]
  for (const [argv, msg] of bad) assert.throws(() => parseServeArgs(argv, '/'), (e: unknown) => e instanceof ConfigError && msg.test(e.message), argv.join(' '))
})

test('--cache-size and --cache-chunk take git-annex sizes; a cache size of 0 turns the cache off', () => {
  const d = parseServeArgs([], '/')
  assert.equal(d.cacheSize, 1024 ** 3)
  assert.equal(d.cacheChunk, 4 * 1024 ** 2)
  const c = parseServeArgs(['--cache-size', '20GiB', '--cache-chunk', '1 MiB'], '/')
  assert.equal(c.cacheSize, 20 * 1024 ** 3)
  assert.equal(c.cacheChunk, 1024 ** 2)
  assert.equal(parseServeArgs(['--cache-size=0'], '/').cacheSize, 0)
  const bad: [string[], RegExp][] = [
    [['--cache-size', 'lots'], /--cache-size needs a size such as 1GiB or 500MB, got 'lots'/],
    [['--cache-size', '100kB'], /--cache-size must be 0 \(off\) or between/],
    [['--cache-chunk', '0'], /--cache-chunk must be between 65536 and 268435456 bytes/],
    [['--cache-chunk', '1GiB'], /--cache-chunk must be between/],
  ]
  for (const [argv, msg] of bad) assert.throws(() => parseServeArgs(argv, '/'), (e: unknown) => e instanceof ConfigError && msg.test(e.message), argv.join(' '))
})

test('--s3-parts: parts of an S3 multipart upload in flight, 4 unless set, 1 to 16', () => {
  assert.equal(parseServeArgs([], '/').s3PartsInFlight, 4)
  assert.equal(parseServeArgs(['--s3-parts', '1'], '/').s3PartsInFlight, 1)
  assert.equal(parseServeArgs(['--s3-parts=16'], '/').s3PartsInFlight, 16)
  const bad: [string[], RegExp][] = [
    [['--s3-parts', '0'], /--s3-parts must be between 1 and 16, got 0/],
    [['--s3-parts', '17'], /--s3-parts must be between 1 and 16, got 17/],
    [['--s3-parts', 'many'], /--s3-parts needs a whole number, got 'many'/],
  ]
  for (const [argv, msg] of bad) assert.throws(() => parseServeArgs(argv, '/'), (e: unknown) => e instanceof ConfigError && msg.test(e.message), argv.join(' '))
})

test("--young-generation: MiB per semi-space of V8's young generation, 8 unless set, 0 for V8's own limit", () => {
  assert.equal(parseServeArgs([], '/').youngGenerationMiB, 8)
  assert.equal(parseServeArgs(['--young-generation', '0'], '/').youngGenerationMiB, 0)
  assert.equal(parseServeArgs(['--young-generation=32'], '/').youngGenerationMiB, 32)
  assert.throws(() => parseServeArgs(['--young-generation', 'big'], '/'), /--young-generation needs a whole number, got 'big'/)
})

test('--indirect-upload is off unless asked for; its expiry and verification are checked', () => {
  assert.equal(parseServeArgs([], '/').indirectUpload, undefined)
  assert.deepEqual(parseServeArgs(['--indirect-upload'], '/').indirectUpload, { expirySeconds: 900, verify: 'readback' })
  assert.deepEqual(parseServeArgs(['--indirect-upload', '--indirect-upload-expiry', '60', '--indirect-upload-verify', 'store'], '/').indirectUpload, { expirySeconds: 60, verify: 'store' })
  const bad: [string[], RegExp][] = [
    [['--indirect-upload-expiry', '60'], /need --indirect-upload/],
    [['--indirect-upload', '--indirect-upload-verify', 'trust'], /must be readback or store/],
    [['--indirect-upload', '--indirect-upload-expiry', '0'], /--indirect-upload-expiry must be between 1 and/],
  ]
  for (const [argv, msg] of bad) assert.throws(() => parseServeArgs(argv, '/'), (e: unknown) => e instanceof ConfigError && msg.test(e.message), argv.join(' '))
})

test('--cors-origin is off unless asked for, repeatable, and takes origins only', () => {
  assert.deepEqual(parseServeArgs([], '/r').corsOrigins, [])
  assert.deepEqual(parseServeArgs(['--cors-origin', 'https://data.example.org', '--cors-origin', 'http://127.0.0.1:8080/'], '/r').corsOrigins, ['https://data.example.org', 'http://127.0.0.1:8080'])
  for (const bad of ['*', 'data.example.org', 'https://data.example.org/upload', 'ftp://x.org', 'https://data.example.org:443'])
    assert.throws(() => parseServeArgs(['--cors-origin', bad], '/r'), /--cors-origin needs an origin/, bad)
})

test('--socket replaces --port/--bind and needs a path a unix socket can hold', () => {
  assert.equal(parseServeArgs([], '/r').socket, undefined)
  assert.equal(parseServeArgs(['--socket', '/run/annex-proxy/s.sock'], '/r').socket, '/run/annex-proxy/s.sock')
  assert.throws(() => parseServeArgs(['--socket', '/s.sock', '--port', '1'], '/r'), /--socket listens instead of --port/)
  assert.throws(() => parseServeArgs(['--socket', `/${'x'.repeat(200)}`], '/r'), /longer than a unix socket address allows/)
})
