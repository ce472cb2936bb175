// A forge's estate under --directory (issue #14): 2000 bare repositories, copies of one
// template with fresh UUIDs. The server listens at once, finds them without a process per
// repository, opens one on its first request and keeps at most --max-open-repos open; an
// unknown UUID is answered from what is known (404) without a rescan unless the request is
// authorized, and then at most one rescan per --rescan-interval.
import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID, randomBytes, createHash } from 'node:crypto'
import { test } from 'node:test'
import { Pool } from 'undici'
import { parseServeArgs } from '../../src/config/config.js'
import { buildServer, type Server } from '../../src/server.js'
import { annex, defer, git, sh, tempDir, type After } from '../helpers/annex.js'
import { childPids, copyTemplate, makeEstate, makeTemplate } from '../helpers/estate.js'

const C = 'clientuuid=11111111-2222-3333-4444-555555555555'
const ALICE = { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` }
const KEY = 'SHA256E-s1--6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.txt'

interface Client {
  post(uuid: string, endpoint: string, opts?: { auth?: boolean; query?: string; body?: Buffer }): Promise<{ status: number; body: string }>
}

function client(t: After, port: number): Client {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 32 })
  defer(t, () => pool.close())
  return {
    async post(uuid, endpoint, opts = {}) {
      const r = await pool.request({
        path: `/git-annex/${uuid}/v4/${endpoint}?${C}${opts.query ? `&${opts.query}` : ''}`,
        method: 'POST',
        headers: { ...(opts.auth ? ALICE : {}), ...(opts.body ? { 'x-git-annex-data-length': String(opts.body.length) } : {}) },
        ...(opts.body ? { body: opts.body } : {}),
      })
      return { status: r.statusCode, body: await r.body.text() }
    },
  }
}

/** Polls `check` until it holds, up to `ms`, saying what it waited for if it never does. */
async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    if (await check()) return performance.now() - t0
    if (performance.now() - t0 > ms) throw new Error(`gave up after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Runs `fn` while sampling this process's child processes; resolves with its result and the most seen at once. */
async function sampled<T>(fn: () => Promise<T>): Promise<{ result: T; maxChildren: number; maxOpen: number; server?: Server }> {
  let maxChildren = 0
  const timer = setInterval(() => (maxChildren = Math.max(maxChildren, childPids().length)), 5)
  try {
    const result = await fn()
    return { result, maxChildren, maxOpen: 0 }
  } finally {
    clearInterval(timer)
  }
}

test('2000 repositories under --directory: served at once, at most --max-open-repos open, unknown UUIDs cost no rescan unless authorized', async (t) => {
  const root = await tempDir(t, 'annex-proxy-estate-')
  const template = await makeTemplate(join(root, 'template.git'))
  const forge = join(root, 'forge')
  const estate = await makeEstate(template, forge, 2000, { perFolder: 100 })
  // Beside them: a git repository without git-annex and a folder of other things.
  await sh(forge, 'git', ['init', '-q', '--bare', join(forge, 'plain.git')])
  await sh(forge, 'mkdir', ['-p', join(forge, 'docs', 'deep', 'er')])

  const MAX_OPEN = 8
  const t0 = performance.now()
  const server = await buildServer(
    parseServeArgs(['--directory', forge, '--authenv-http', '--max-open-repos', String(MAX_OPEN), '--rescan-interval', '1', '--log-level', 'warn'], root),
    { env: { GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'pw' } },
  )
  defer(t, () => server.close(0))
  await server.app.listen({ host: '127.0.0.1', port: 0 })
  const http = client(t, (server.app.server.address() as { port: number }).port)
  const listening = performance.now() - t0
  const registry = server.registry

  // The first request is answered once the walk has found its repository (no other repository opened for it).
  const some = estate.repos[1234]!
  const first = await http.post(some.uuid, 'gettimestamp', { auth: true })
  const answered = performance.now() - t0
  assert.equal(first.status, 200, first.body)
  const walking = registry.scanInFlight
  await registry.ready()
  t.diagnostic(`listening after ${Math.round(listening)} ms, first answer after ${Math.round(answered)} ms (the walk ${walking ? 'still under way' : 'over'}), ${registry.stats.repositories} repositories found`)
  assert.ok(answered < 60_000, `first answer after ${Math.round(answered)} ms`)
  assert.equal(registry.stats.repositories, 2000)
  assert.equal(registry.stats.opens, 1, 'only the repository asked for was opened')

  // Requests to 300 repositories, 32 at a time: never more than MAX_OPEN open, nor more git processes.
  const targets = estate.repos.filter((_, i) => i % 7 === 0).slice(0, 300)
  let maxOpen = 0
  const load = await sampled(async () => {
    let next = 0
    const answers: number[] = []
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < targets.length) {
          const r = targets[next++]!
          const a = await http.post(r.uuid, 'checkpresent', { auth: true, query: `key=${KEY}` })
          maxOpen = Math.max(maxOpen, registry.stats.open)
          answers.push(a.status)
          assert.equal(a.body, '{"present":false}')
        }
      }),
    )
    return answers
  })
  assert.deepEqual(new Set(load.result), new Set([200]))
  t.diagnostic(`300 repositories: at most ${load.maxChildren} child processes, ${maxOpen} open; ${registry.stats.opens} opens, ${registry.stats.closes} closes`)
  assert.ok(load.maxChildren <= MAX_OPEN, `${load.maxChildren} child processes`)
  assert.ok(maxOpen <= MAX_OPEN, `${maxOpen} open`)

  // Unknown UUIDs from anyone: 404 from what is known, no rescan at all.
  const before = registry.stats.requestedScans
  const anon = await Promise.all(Array.from({ length: 200 }, () => http.post(randomUUID(), 'checkpresent', { query: `key=${KEY}` })))
  assert.deepEqual(new Set(anon.map((a) => a.status)), new Set([404]))
  assert.equal(registry.stats.requestedScans, before, 'unauthorized requests caused rescans')
  // …and a known repository still answers 401 to the same anonymous client (404 comes first only for unknown ones).
  assert.equal((await http.post(some.uuid, 'checkpresent', { query: `key=${KEY}` })).status, 401)

  // Authorized requests for unknown UUIDs for 5 s, 8 at a time: at most one rescan per second.
  // Meanwhile requests for a known repository are answered while rescans are under way: an
  // unknown UUID makes nobody else wait.
  const floodStart = performance.now()
  const scansBefore = registry.stats.requestedScans
  let stop = false
  let unknownAnswered = 0
  const flood = Array.from({ length: 8 }, async () => {
    while (!stop) {
      const a = await http.post(randomUUID(), 'checkpresent', { auth: true, query: `key=${KEY}` })
      assert.equal(a.status, 404)
      unknownAnswered++
    }
  })
  let knownAnswered = 0
  let duringOneScan = 0
  while (performance.now() - floodStart < 5000) {
    const scanAtStart = registry.scanInFlight ? registry.stats.scans : -1
    const a = await http.post(some.uuid, 'checkpresent', { auth: true, query: `key=${KEY}` })
    assert.equal(a.status, 200, a.body)
    knownAnswered++
    if (scanAtStart >= 0 && registry.scanInFlight && registry.stats.scans === scanAtStart) duringOneScan++
  }
  stop = true
  await Promise.all(flood)
  const floodSeconds = (performance.now() - floodStart) / 1000
  const rescans = registry.stats.requestedScans - scansBefore
  t.diagnostic(`flood: ${unknownAnswered} unknown and ${knownAnswered} known answered in ${floodSeconds.toFixed(1)} s (${duringOneScan} of them begun and answered within one rescan), ${rescans} rescans`)
  assert.ok(rescans >= 1, 'an authorized request for an unknown UUID rescans')
  assert.ok(rescans <= Math.ceil(floodSeconds) + 1, `${rescans} rescans in ${floodSeconds.toFixed(1)} s`)
  // Known repositories keep being answered through the flood. Whether one is also begun and
  // answered inside a single rescan depends on how long a rescan takes on this machine (a
  // few milliseconds when it is quiet: CI saw none of 676), so that is reported, not asserted.
  assert.ok(knownAnswered >= 10, `only ${knownAnswered} requests for a known repository answered in ${floodSeconds.toFixed(1)} s of rescans`)

  // A repository made while serving is found without any request causing a rescan: an
  // anonymous client gets 401 (found) instead of 404 from then on.
  const scansNow = registry.stats.requestedScans
  const fresh = await copyTemplate(template, join(forge, 'f007', 'new.git'))
  const foundAfter = await until('the new repository to be served', 20_000, async () => (await http.post(fresh, 'checkpresent', { query: `key=${KEY}` })).status === 401)
  t.diagnostic(`new repository served ${Math.round(foundAfter)} ms after it appeared`)
  assert.equal(registry.stats.requestedScans, scansNow)

  // git-annex takes a copy for a repository of its own: content stored through the server is
  // where `git annex whereis` and fsck say it is.
  const body = randomBytes(1000)
  const key = `SHA256E-s${body.length}--${createHash('sha256').update(body).digest('hex')}.bin`
  const stored = await http.post(some.uuid, 'put', { auth: true, query: `key=${key}`, body })
  assert.equal(stored.body, '{"plusuuids":[],"stored":true}')
  await until('the location log to be committed', 20_000, async () => (await git(some.dir, 'log', '-1', '--format=%s', 'git-annex')).stdout.trim() !== '')
  await annex(some.dir, 'fsck', '-q', '--key', key)
  const whereis = JSON.parse((await annex(some.dir, 'whereis', '--json', '--key', key)).stdout) as { whereis: { uuid: string }[] }
  assert.deepEqual(whereis.whereis.map((w) => w.uuid), [some.uuid])

  // A repository removed while serving is dropped.
  const gone = estate.repos[42]!
  assert.equal((await http.post(gone.uuid, 'checkpresent', { auth: true, query: `key=${KEY}` })).status, 200)
  await rm(gone.dir, { recursive: true, force: true })
  await until('the removed repository to be dropped', 20_000, async () => (await http.post(gone.uuid, 'checkpresent', { query: `key=${KEY}` })).status === 404)
})
