// The index of --directory repositories kept between runs (--state-dir): after a restart a
// request for a repository the last run knew is served before the first walk gets to it,
// and an index that no longer holds (repository moved, removed, replaced, reached through a
// symlink now) never serves the wrong repository: it is checked against the config, and the
// walk decides. The walk is held back by the test (not timed), so "before the walk" is exact.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { parseServeArgs } from '../../src/config/config.js'
import { decodeIndex, encodeIndex, indexPath } from '../../src/gateway/estate-index.js'
import { openPlainRepo } from '../../src/gateway/plain-repo.js'
import { Registry } from '../../src/gateway/registry.js'
import { type RepoInfo, scanTree } from '../../src/gateway/repo-scan.js'
import type { Logger } from '../../src/remotes/remote.js'
import { buildServer } from '../../src/server.js'
import { defer, sh, tempDir } from '../helpers/annex.js'
import { copyTemplate, makeEstate, makeTemplate } from '../helpers/estate.js'

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {} }

/** Polls `check` until it holds, up to `ms`, saying what it waited for if it never does. */
async function until(what: string, ms: number, check: () => boolean): Promise<void> {
  const t0 = performance.now()
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`gave up after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A registry over `forge` whose first walk starts only when `release()` is called; records the dirs it opens. */
function heldBack(forge: string, stateDir: string, log: Logger = quiet) {
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  const state = { walkBegun: false, opened: [] as string[] }
  const registry = new Registry({
    repos: [],
    directories: [forge],
    log,
    watch: false,
    periodicMs: 0,
    rescanMs: 600_000,
    stateDir,
    walk: async (...args: Parameters<typeof scanTree>) => {
      await gate
      state.walkBegun = true
      return scanTree(...args)
    },
    open: (dir) => {
      state.opened.push(dir)
      return openPlainRepo(dir, { log: quiet, logSettle: 'journal' })
    },
  })
  return { registry, release, state }
}

test('after a restart with --state-dir, a repository deep in the tree is served from the last run\'s index before the first walk has looked at one folder', { timeout: 180_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-index-')
  const forge = join(root, 'forge')
  const template = await makeTemplate(join(root, 'template.git'))
  const estate = await makeEstate(template, forge, 300, { perFolder: 100 })
  const deep = join(forge, 'a', 'b', 'c', 'd', 'e', 'deep.git')
  await mkdir(join(deep, '..'), { recursive: true })
  const deepUuid = await copyTemplate(template, deep)
  const state = join(root, 'state')

  // The first run: the real server with --state-dir, which writes the index once its walk is over.
  const first = await buildServer(parseServeArgs(['--directory', forge, '--wideopen', '--log-level', 'warn', '--state-dir', state], root))
  try {
    await first.registry.ready()
    assert.equal(first.registry.stats.repositories, 301)
  } finally {
    await first.close(0)
  }
  const file = indexPath(state, [resolve(forge)])
  assert.ok(existsSync(file), `the index was written at ${file}`)

  const { registry, release, state: seen } = heldBack(forge, state)
  defer(t, () => registry.close())
  await registry.start()
  const remote = await registry.lookup(deepUuid, [], { authorized: true })
  assert.equal(remote?.uuid, deepUuid)
  assert.equal(seen.walkBegun, false, 'served before the walk began')
  assert.deepEqual(seen.opened, [deep])
  assert.equal(registry.stats.indexHits, 1)
  // Another known one, and one the index never had (it waits for the walk, then 404 without a rescan).
  const other = registry.lookup(estate.repos[123]!.uuid)
  const unknown = registry.lookup(randomUUID(), [], { authorized: true })
  assert.equal((await other)?.uuid, estate.repos[123]!.uuid)
  assert.equal(seen.walkBegun, false)
  release()
  assert.equal(await unknown, undefined)
  assert.equal(registry.stats.repositories, 301)
  assert.equal(registry.stats.requestedScans, 0)
  assert.equal(registry.stats.indexStale, 0)
})

test('an index that no longer holds serves nothing wrong: moved, removed, replaced and symlinked repositories are checked, and the walk decides', { timeout: 180_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-index-')
  const forge = join(root, 'forge')
  const template = await makeTemplate(join(root, 'template.git'))
  const estate = await makeEstate(template, forge, 50, { perFolder: 10 })
  const [moved, removed, replaced, linked, kept] = [estate.repos[3]!, estate.repos[14]!, estate.repos[25]!, estate.repos[36]!, estate.repos[47]!]
  const state = join(root, 'state')

  const before = heldBack(forge, state)
  await before.registry.start()
  before.release()
  await before.registry.ready()
  await before.registry.close()
  assert.equal(decodeIndex(await readFile(indexPath(state, [resolve(forge)]), 'utf8'), [resolve(forge)])?.size, 50)

  // While no server ran: one repository moved within the estate, one removed, one replaced by
  // another repository (another UUID) at the same path, one moved outside the estate with a
  // symlink left in its place (the walk follows no symlinks).
  const movedTo = join(forge, 'elsewhere', 'moved.git')
  await mkdir(join(movedTo, '..'))
  await rename(moved.dir, movedTo)
  await sh(root, 'chmod', ['-R', 'u+w', removed.dir])
  await rm(removed.dir, { recursive: true })
  await sh(root, 'chmod', ['-R', 'u+w', replaced.dir])
  await rm(replaced.dir, { recursive: true })
  const newcomer = await copyTemplate(template, replaced.dir)
  const outside = join(root, 'outside.git')
  await rename(linked.dir, outside)
  await symlink(outside, linked.dir)

  const warned: string[] = []
  const { registry, release, state: seen } = heldBack(forge, state, { ...quiet, warn: (_o: unknown, msg?: string) => void warned.push(String(msg)) })
  defer(t, () => registry.close())
  await registry.start()
  assert.equal((await registry.lookup(kept.uuid))?.uuid, kept.uuid, 'an entry that holds is served before the walk')
  let settled = 0
  const asked = [moved, removed, replaced, linked].map((r) => registry.lookup(r.uuid, [], { authorized: true }))
  const fresh = registry.lookup(newcomer, [], { authorized: true })
  for (const p of [...asked, fresh]) void p.finally(() => settled++)
  await until('the four stale entries to be checked and dropped', 20_000, () => registry.stats.indexStale === 4)
  assert.equal(settled, 0, 'nothing answered from a stale entry before the walk')
  assert.equal(seen.walkBegun, false)
  assert.deepEqual(seen.opened, [kept.dir], 'no repository opened for a stale entry')

  release()
  const [m, r, p, l] = await Promise.all(asked)
  assert.equal(m?.uuid, moved.uuid, 'the moved repository is served from where the walk found it')
  assert.equal(r, undefined)
  assert.equal(p, undefined, 'the replaced UUID is no longer served')
  assert.equal(l, undefined, 'a repository reached only through a symlink is not served')
  assert.equal((await fresh)?.uuid, newcomer, 'the repository now at the replaced path is served as itself')
  assert.ok(seen.opened.includes(movedTo))
  assert.ok(!seen.opened.includes(moved.dir) && !seen.opened.includes(linked.dir))
  assert.equal(registry.stats.indexHits, 1)
  assert.deepEqual(warned, [])
})

test('an index of other folders, of another version or not JSON is not used: requests wait for the walk as without one', { timeout: 180_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-index-')
  const forge = join(root, 'forge')
  const estate = await makeEstate(await makeTemplate(join(root, 'template.git')), forge, 20, { perFolder: 10 })
  const state = join(root, 'state')
  await mkdir(state)
  await writeFile(indexPath(state, [resolve(forge)]), '{"version":1,"roots":["/elsewhere"],"repos":[]}')
  const warned: string[] = []
  const { registry, release, state: seen } = heldBack(forge, state, { ...quiet, warn: (_o: unknown, msg?: string) => void warned.push(String(msg)) })
  defer(t, () => registry.close())
  await registry.start()
  const asked = registry.lookup(estate.repos[5]!.uuid)
  await until('the index to be read and refused', 20_000, () => warned.length > 0)
  assert.match(warned[0]!, /not using the last run's index/)
  release()
  assert.equal((await asked)?.uuid, estate.repos[5]!.uuid)
  assert.equal(seen.walkBegun, true)
  assert.equal(registry.stats.indexHits, 0)
  // The walk's result replaced it for the next run (written at the latest when the registry closes).
  await registry.close()
  assert.equal(decodeIndex(await readFile(indexPath(state, [resolve(forge)]), 'utf8'), [resolve(forge)])?.size, 20)
})

test('the index format: what is encoded decodes for the same folders; rows outside them, malformed rows and other versions are dropped', () => {
  const info = (dir: string, uuid: string, claims: string[] = []): RepoInfo => ({ dir, gitDir: dir, uuid, claims, gateway: claims.length > 0, viaGateways: false, stamp: '1:2:3' })
  const roots = ['/srv/b', '/srv/a']
  const text = encodeIndex(roots, [info('/srv/a/x.git', 'u1'), info('/srv/b/y/z.git', 'u2', ['c1']), info('/srv/c/w.git', 'u3'), info('/srv/ab/v.git', 'u4')])
  const idx = decodeIndex(text, ['/srv/a', '/srv/b'])!
  assert.deepEqual([...idx.keys()].sort(), ['c1', 'u1', 'u2'])
  assert.deepEqual(idx.get('c1'), [{ dir: '/srv/b/y/z.git', gitDir: '/srv/b/y/z.git' }])
  assert.equal(decodeIndex(text, ['/srv/a']), undefined, 'another set of folders')
  assert.equal(decodeIndex(text.replace('"version":1', '"version":2'), roots), undefined)
  assert.equal(decodeIndex('not json', roots), undefined)
  const odd = decodeIndex(JSON.stringify({ version: 1, roots: ['/srv/a'], repos: [['/srv/a/x'], ['/srv/a/../etc', '/srv/a/../etc', 'u'], [1, 2, 3], 'x', ['/srv/a/ok', '/srv/a/ok', 'u5']] }), ['/srv/a'])!
  assert.deepEqual([...odd.keys()], ['u5'])
  assert.notEqual(indexPath('/s', ['/a']), indexPath('/s', ['/b']))
  assert.equal(indexPath('/s', ['/a', '/b']), indexPath('/s', ['/b', '/a']))
})
