// The --directory registry with real repositories: what a walk of config files finds
// (gateways' clusters and proxied remotes included), repositories that change while
// served, idle ones closed with their processes, and a held lock keeping its repository open.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { Pool } from 'undici'
import { parseServeArgs } from '../../src/config/config.js'
import { buildServer, type Server } from '../../src/server.js'
import { annex, defer, git, makeRepo, repoUuid, sh, tempDir } from '../helpers/annex.js'
import { randomUUID } from 'node:crypto'
import { Registry } from '../../src/gateway/registry.js'
import { openPlainRepo } from '../../src/gateway/plain-repo.js'
import type { Logger } from '../../src/remotes/remote.js'
import { childPids, makeEstate, makeTemplate } from '../helpers/estate.js'
import { makeGateway } from './fixture.js'

const C = 'clientuuid=11111111-2222-3333-4444-555555555555'
const KEY = 'SHA256E-s1--6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.txt'

async function serve(t: TestContext, root: string, flags: string[]): Promise<{ server: Server; post: (uuid: string, endpoint: string, query?: string) => Promise<{ status: number; body: string }> }> {
  const server = await buildServer(parseServeArgs(['--directory', root, '--wideopen', '--log-level', 'warn', ...flags], root))
  defer(t, () => server.close(0))
  await server.app.listen({ host: '127.0.0.1', port: 0 })
  const pool = new Pool(`http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`, { connections: 8 })
  defer(t, () => pool.close())
  const post = async (uuid: string, endpoint: string, query = '') => {
    const r = await pool.request({ path: `/git-annex/${uuid}/v4/${endpoint}?${C}${query ? `&${query}` : ''}`, method: 'POST' })
    return { status: r.statusCode, body: await r.body.text() }
  }
  return { server, post }
}

/** Polls `check` until it holds, up to `ms`, saying what it waited for if it never does. */
async function until(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const t0 = performance.now()
  while (!(await check())) {
    if (performance.now() - t0 > ms) throw new Error(`gave up after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('a gateway found by the walk serves its cluster and its proxied special remote, opened on their first request', async (t) => {
  const g = await makeGateway(t)
  const { server, post } = await serve(t, g.root, [])
  assert.equal((await post(g.cluster, 'checkpresent', `key=${KEY}`)).body, '{"present":false}')
  assert.equal((await post(g.dsr, 'checkpresent', `key=${KEY}`)).body, '{"present":false}')
  assert.equal((await post(g.uuid, 'checkpresent', `key=${KEY}`)).body, '{"present":false}')
  // The nodes are repositories beneath the folder too, served as themselves.
  assert.equal((await post(g.nodes.n1, 'checkpresent', `key=${KEY}`)).status, 200)
  assert.equal(server.registry.stats.requestedScans, 0, 'found without rescans')
})

test('a repository that becomes a gateway while served (initcluster, updatecluster) serves its cluster without a restart', async (t) => {
  const root = await tempDir(t)
  const repo = await makeRepo(join(root, 'r'), 'r')
  await makeRepo(join(root, 'node'), 'node')
  const { post } = await serve(t, root, [])
  assert.equal((await post(await repoUuid(repo), 'gettimestamp')).status, 200)
  await git(repo, 'remote', 'add', 'node', '../node')
  await git(repo, 'config', 'remote.node.annex-cluster-node', 'c')
  await annex(repo, 'initcluster', 'c')
  await annex(repo, 'updatecluster')
  const cu = (await git(repo, 'config', 'annex.cluster.c')).stdout.trim()
  // Anonymous requests here are authorized (--wideopen); without rescans it is found by the config watch.
  await until('the new cluster to be served', 20_000, async () => (await post(cu, 'checkpresent', `key=${KEY}`)).status === 200)
})

test('git annex init in a git repository beneath --directory: served soon after, without a request asking for it first', async (t) => {
  const root = await tempDir(t)
  await sh(root, 'git', ['init', '-q', '--bare', join(root, 'later.git')])
  const { server } = await serve(t, root, [])
  await server.registry.ready()
  assert.deepEqual(server.registry.uuids, [])
  await annex(join(root, 'later.git'), 'init', '-q', 'later')
  const uuid = await repoUuid(join(root, 'later.git'))
  await until('the initialized repository to be known', 20_000, () => server.registry.uuids.includes(uuid))
})

test('a folder watched before git init wrote into it is served once it is initialized (a repository made inside an empty folder, not seen as one when walked)', async (t) => {
  const root = await tempDir(t)
  const { server } = await serve(t, root, [])
  await server.registry.ready()
  // An empty folder appears: the walk of it sets a watch on it as a folder. Under load a
  // walk also lands between `git init` making a repository's folder and writing its HEAD.
  const watched = server.registry.stats.watches
  const dir = join(root, 'pending.git')
  await sh(root, 'mkdir', [dir])
  await until('the new folder to be walked and watched', 20_000, () => server.registry.stats.watches === watched + 1)
  await sh(root, 'git', ['init', '-q', '--bare', dir])
  await annex(dir, 'init', '-q', 'pending')
  const uuid = await repoUuid(dir)
  // Before: its HEAD and config were walked as entries of a folder, and it was never found.
  await until('the repository initialized in the watched folder to be known', 20_000, () => server.registry.uuids.includes(uuid))
  assert.equal(server.registry.stats.scans, 1, 'found by the watch, not by another walk of the whole folder')
  assert.equal(server.registry.stats.requestedScans, 0)
})

test('idle repositories are closed with their git processes', async (t) => {
  const root = await tempDir(t)
  // Gateways (a cluster each) keep a git cat-file while open; plain repositories keep nothing.
  const gws: string[] = []
  for (const name of ['g1', 'g2', 'g3']) {
    const dir = await makeRepo(join(root, name), name)
    await annex(dir, 'initcluster', 'c')
    gws.push(await repoUuid(dir))
  }
  const { server, post } = await serve(t, root, ['--repo-idle', '1', '--max-open-repos', '2'])
  let most = 0
  for (const u of gws) {
    assert.equal((await post(u, 'gettimestamp')).status, 200)
    most = Math.max(most, server.registry.stats.open)
  }
  assert.equal(most, 2)
  assert.ok(childPids().length > 0, 'an open gateway holds a git process')
  await until('idle gateways to be closed with their processes', 30_000, () => server.registry.stats.open === 0 && childPids().length === 0)
})

test('a held lock keeps its repository open: with room for one, another repository waits and gets 503 until the lock ends', async (t) => {
  const root = await tempDir(t)
  const plain = await makeRepo(join(root, 'plain'), 'plain')
  await writeFile(join(plain, 'f.txt'), 'locked\n')
  await annex(plain, 'add', '-q', 'f.txt')
  await git(plain, 'commit', '-q', '-m', 'f')
  const key = (await annex(plain, 'lookupkey', 'f.txt')).stdout.trim()
  const other = await repoUuid(await makeRepo(join(root, 'other'), 'other'))
  const { post } = await serve(t, root, ['--max-open-repos', '1', '--max-queue-wait', '1'])
  const locked = JSON.parse((await post(await repoUuid(plain), 'lockcontent', `key=${key}`)).body) as { locked: boolean; lockid: string }
  assert.equal(locked.locked, true)
  const busy = await post(other, 'gettimestamp')
  assert.equal(busy.status, 503, busy.body)
  assert.match(busy.body, /open repositories are busy/)
  // The lock ends (a keeplocked whose body ends at once): the other repository gets its place.
  const unlocked = await post(await repoUuid(plain), 'keeplocked', `lockid=${locked.lockid}`)
  assert.equal(unlocked.body, '{"locked":false}')
  assert.equal((await post(other, 'gettimestamp')).status, 200)
})

test('during the first walk, a repository it has not reached yet is served as soon as the walk finds it; an unknown UUID waits for the walk, then 404 without a rescan', async (t) => {
  const root = await tempDir(t, 'annex-proxy-walk-')
  const estate = await makeEstate(await makeTemplate(join(root, 'template.git')), join(root, 'forge'), 1000, { perFolder: 100 })
  const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {} }
  // For each repository opened: was the first walk still under way?
  const openedDuringWalk: boolean[] = []
  const registry: Registry = new Registry({
    repos: [],
    directories: [join(root, 'forge')],
    log: quiet,
    watch: false,
    periodicMs: 0,
    // An authorized unknown UUID may rescan once the walk is over, if its start is longer ago than this: never here.
    rescanMs: 600_000,
    open: (dir) => {
      openedDuringWalk.push(registry.scanInFlight)
      return openPlainRepo(dir, { log: quiet, logSettle: 'journal' })
    },
  })
  defer(t, () => registry.close())
  await registry.start()
  assert.ok(registry.scanInFlight, 'the walk goes on after start() returns')
  // Asked for before the walk has found any of them, anonymous and authorized alike.
  const targets = estate.repos.filter((_, i) => i % 20 === 0)
  const [remotes, unknownAnon, unknownAuth] = await Promise.all([
    Promise.all(targets.map((r, i) => registry.lookup(r.uuid, [], { authorized: i % 2 === 0 }))),
    registry.lookup(randomUUID()),
    registry.lookup(randomUUID(), [], { authorized: true }),
  ])
  assert.deepEqual(
    remotes.map((r) => r?.uuid),
    targets.map((r) => r.uuid),
    'every repository asked for during the walk is served, none 404',
  )
  assert.equal(unknownAnon, undefined)
  assert.equal(unknownAuth, undefined)
  assert.equal(registry.stats.repositories, 1000)
  assert.equal(registry.stats.opens, targets.length, 'only the repositories asked for were opened')
  // Served once found, not after the whole walk: the walk yields every few ms, and those found
  // before its last stretch were opened while it went on.
  const during = openedDuringWalk.filter(Boolean).length
  t.diagnostic(`${during} of ${targets.length} opened while the first walk went on`)
  assert.ok(during > 0, 'no repository was opened before the walk was over')
  // The unknown UUIDs were answered from the first walk, with no walk of their own.
  assert.equal(registry.stats.requestedScans, 0)
})
