// Change detection: a GatewayConfig left open notices `git annex updatecluster`,
// `git annex wanted`, `git annex updateproxy` and .git/config edits made by real
// git-annex, through fs.watch and through polling alone, without reopening its reader.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { GatewayConfig, type GatewaySnapshot } from '../../src/gateway/gateway-config.js'
import { annex, defer, git, makeRepo, repoUuid } from '../helpers/annex.js'
import { makeGateway, shellAccepts } from './fixture.js'
import { waitUntil } from '../helpers/wait.js'

/** Resolves with the first snapshot satisfying `pred` (the current one or a later 'change'). */
function waitFor(cfg: GatewayConfig, pred: (s: GatewaySnapshot) => boolean, what: string, timeoutMs = 20_000): Promise<GatewaySnapshot> {
  if (pred(cfg.current)) return Promise.resolve(cfg.current)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cfg.off('change', on)
      reject(new Error(`no change with ${what} within ${timeoutMs} ms`))
    }, timeoutMs)
    const on = (s: GatewaySnapshot) => {
      if (!pred(s)) return
      clearTimeout(timer)
      cfg.off('change', on)
      resolve(s)
    }
    cfg.on('change', on)
  })
}

for (const mode of ['fs.watch', 'polling'] as const) {
  test(`changes made by git-annex are noticed (${mode})`, async (t) => {
    const g = await makeGateway(t)
    const cfg = await GatewayConfig.open(g.gw, mode === 'fs.watch' ? { pollMs: 600_000, debounceMs: 50 } : { fsWatch: false, pollMs: 200, debounceMs: 10 })
    defer(t, () => cfg.close())
    const reader = cfg.reader
    const nodesOf = (s: GatewaySnapshot) => s.clusters.get('mycluster')!.nodes.map((n) => n.remote).sort().join(',')
    assert.equal(nodesOf(cfg.current), 'n1,n2,n3')

    // A new node: config alone does not make it one (cluster.log must list it), updatecluster does.
    const n5 = await makeRepo(join(g.root, 'n5'), 'n5')
    const n5uuid = await repoUuid(n5)
    await git(g.gw, 'remote', 'add', 'n5', '../n5')
    await git(g.gw, 'config', 'remote.n5.annex-cluster-node', 'mycluster')
    // (n5 has no annex-uuid until git-annex first talks to it: updatecluster does.)
    await git(g.gw, 'config', 'remote.n1.annex-cost', '42')
    await waitFor(cfg, (s) => s.remotes.get('n1')?.cost === 42, '.git/config edit')
    assert.equal(nodesOf(cfg.current), 'n1,n2,n3')
    await annex(g.gw, 'updatecluster')
    const s1 = await waitFor(cfg, (s) => nodesOf(s) === 'n1,n2,n3,n5', 'n5 in the cluster')
    assert.ok(s1.clusterLog.get(g.cluster as never)?.has(n5uuid as never))

    // wanted, and maxsize (new-style log) while the reader stays open.
    await annex(g.gw, 'wanted', 'n1', 'include=*.txt')
    await waitFor(cfg, (s) => s.preferredContent.get(g.nodes.n1 as never) === 'include=*.txt', 'wanted n1')
    // With annex.alwayscommit=false git-annex leaves the change in the journal only.
    await git(g.gw, '-c', 'annex.alwayscommit=false', 'annex', 'wanted', 'n3', 'include=*.jpg')
    await waitFor(cfg, (s) => s.preferredContent.get(g.nodes.n3 as never) === 'include=*.jpg', 'wanted n3 (journal only)')
    assert.ok((await reader.readBranch('preferred-content.log'))?.toString().includes('include=*.jpg') !== true, 'not in the branch yet')
    // A second journal-only change replaces the same journal file (rename over it).
    await git(g.gw, '-c', 'annex.alwayscommit=false', 'annex', 'wanted', 'n3', 'include=*.png')
    await waitFor(cfg, (s) => s.preferredContent.get(g.nodes.n3 as never) === 'include=*.png', 'wanted n3 again (journal only)')
    await annex(g.gw, 'maxsize', 'n2', '4096')
    await waitFor(cfg, (s) => s.maxSize.get(g.nodes.n2 as never) === 4096, 'maxsize n2')

    // updatecluster rewrote proxy.log without n4 (annex-proxy=false then). Allowing it
    // again in .git/config is not enough (§3.2 needs proxy.log too); updateproxy is.
    const listed = (s: GatewaySnapshot, name: string) => (s.proxyLog.get(g.uuid as never) ?? []).some((p) => p.name === name)
    assert.ok(!listed(cfg.current, 'n4') && listed(cfg.current, 'n5'))
    await git(g.gw, 'config', 'remote.n4.annex-proxy', 'true')
    await waitFor(cfg, (s) => s.remotes.get('n4')?.proxy === true, 'n4 annex-proxy=true')
    assert.ok(!cfg.current.servedUuids().has(g.nodes.n4 as never))
    await annex(g.gw, 'updateproxy')
    const s2 = await waitFor(cfg, (s) => s.servedUuids().has(g.nodes.n4 as never), 'n4 served after updateproxy')
    for (const p of s2.proxyLog.get(g.uuid as never) ?? []) assert.equal(s2.servedUuids().has(p.uuid), await shellAccepts(g.gw, p.uuid), p.name)

    assert.equal(cfg.reader, reader, 'the same reader throughout')
  })
}

test('refresh() without changes keeps the snapshot; close() stops watching', async (t) => {
  const g = await makeGateway(t)
  const cfg = await GatewayConfig.open(g.gw, { pollMs: 50, debounceMs: 5 })
  // A second config on the same repository, left open: the positive control that shows
  // the change below is seen by anyone still watching.
  const control = await GatewayConfig.open(g.gw, { pollMs: 50, debounceMs: 5 })
  defer(t, () => control.close())
  const before = cfg.current
  let changes = 0
  cfg.on('change', () => changes++)
  // Polls that find nothing changed must not emit: count completed polls rather than
  // guessing how many a fixed sleep would allow on a busy machine.
  const checks = checksOf(cfg)
  await cfg.refresh()
  await waitUntil('three polls of an unchanged repository', 20_000, () => checks() >= 4)
  assert.equal(cfg.current, before)
  assert.equal(changes, 0)
  await cfg.close()
  await annex(g.gw, 'wanted', 'n1', 'include=*.bin')
  await waitFor(control, (s) => s.preferredContent.get(g.nodes.n1 as never) === 'include=*.bin', 'wanted n1 (seen by the open control)')
  // The control re-read after the change; one more of its polls passes before looking at the closed one.
  const seen = checksOf(control)
  await waitUntil('another poll of the control', 20_000, () => seen() >= 2)
  assert.equal(changes, 0)
  assert.equal(cfg.current, before)
})

/** Counts the refreshes `cfg` completes from now on. */
function checksOf(cfg: GatewayConfig): () => number {
  let n = 0
  const refresh = cfg.refresh.bind(cfg)
  cfg.refresh = () => refresh().finally(() => n++)
  return () => n
}
