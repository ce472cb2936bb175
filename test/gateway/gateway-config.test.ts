// The gateway snapshot against what real git-annex 10.20250416 reports for the same
// repository: info --json (cost, trust), group, wanted, required, groupwanted, maxsize,
// whereis --json --key (location logs with derived clusters, spec §3.6), and
// git-annex-shell's own proxy authorization check (spec §3.2) for servedUuids().
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseKey } from '../../src/keys/key.js'
import { locationLogPath, presentUuids } from '../../src/annex/branch-logs.js'
import { buildSnapshot, GatewayConfig } from '../../src/gateway/gateway-config.js'
import { parseGitConfigList } from '../../src/annex/git-config-file.js'
import { annex, defer, git, sh } from '../helpers/annex.js'
import { makeGateway, shellAccepts } from './fixture.js'

async function whereis(gw: string, key: string): Promise<string[]> {
  const out = await sh(gw, 'git', ['annex', 'whereis', '--json', '--key', key]).then(
    (r) => r.stdout,
    (e: unknown) => /(\{.*\})/.exec(String(e))![1]!,
  )
  const j = JSON.parse(out) as { whereis: { uuid: string }[]; untrusted: { uuid: string }[] }
  return [...j.whereis, ...j.untrusted].map((w) => w.uuid).sort()
}

test('snapshot of a real gateway agrees with git-annex', async (t) => {
  const g = await makeGateway(t)
  const { gw, nodes } = g
  await annex(gw, 'group', 'n1', 'g1')
  await annex(gw, 'group', 'n2', 'g1')
  await annex(gw, 'group', 'n2', 'archive')
  await annex(gw, 'wanted', 'n1', 'balanced=g1 or present')
  await annex(gw, 'required', 'n2', 'include=*')
  await annex(gw, 'groupwanted', 'g1', 'balanced=g1:2')
  await annex(gw, 'maxsize', 'n1', '1000')
  await annex(gw, 'maxsize', 'n3', '2500000')
  await annex(gw, 'untrust', 'dsr')
  await git(gw, 'config', 'remote.n2.annex-cost', '150.5')
  await git(gw, 'config', 'remote.n4.annex-trustlevel', 'trusted')
  // Remotes that are not on this machine (never contacted: info --fast): default cost 200.
  const far = { web: 'http://127.0.0.1:1/x', sshr: 'ssh://example.invalid/x', scp: 'host.invalid:x' }
  for (const [i, [name, url]] of Object.entries(far).entries()) {
    await git(gw, 'remote', 'add', name, url)
    await git(gw, 'config', `remote.${name}.annex-uuid`, `11111111-2222-4333-8444-55555555555${i}`)
  }
  await git(gw, 'config', 'remote.web.annexUrl', 'annex+http://127.0.0.1:1/git-annex/')
  await sh(g.root, 'mkdir', ['d2'])
  await annex(gw, 'initremote', 'dsr2', '--sameas=dsr', 'type=directory', `directory=${g.root}/d2`)
  const keys = ['SHA256E-s5--k1.txt', 'SHA256E-s6--k2.txt', 'WORM-s1-m1--k_3', 'SHA256E-s7--k4.txt']
  const set = async (k: string, u: string, v: '1' | '0') => annex(gw, 'setpresentkey', k, u, v)
  await set(keys[0]!, nodes.n1, '1')
  await set(keys[0]!, nodes.n2, '1')
  await set(keys[0]!, nodes.n2, '0')
  await set(keys[1]!, g.dsr, '1')
  await set(keys[2]!, nodes.n2, '1')
  await set(keys[2]!, nodes.n3, '1')
  await set(keys[3]!, nodes.n4, '1')

  const cfg = await GatewayConfig.open(gw)
  defer(t, () => cfg.close())
  const s = cfg.current

  assert.equal(s.uuid, g.uuid)
  assert.deepEqual([...s.clusters.keys()], ['mycluster'])
  const c = s.clusters.get('mycluster')!
  assert.equal(c.uuid, g.cluster)
  assert.deepEqual(c.nodes.map((n) => n.uuid).sort(), [nodes.n1, nodes.n2, nodes.n3].sort())
  assert.deepEqual(c.nodes.map((n) => n.remote), ['n1', 'n3', 'n2'], 'nodes sorted by cost (n2 costs 150.5)')
  assert.equal(s.descriptions.get(g.cluster as never), 'cluster mycluster')

  // Every configured remote: cost and trust as `git annex info --json <remote>` gives them.
  assert.deepEqual([...s.remotes.keys()].sort(), ['dsr', 'dsr2', 'n1', 'n2', 'n3', 'n4', 'scp', 'sshr', 'web'])
  assert.equal(s.remotes.get('web')!.annexUrl, 'annex+http://127.0.0.1:1/git-annex/')
  for (const r of s.remotes.values()) {
    const info = JSON.parse((await annex(gw, 'info', '--fast', '--json', r.name)).stdout) as { uuid: string; cost: string; trust: string; type: string; encryption?: string }
    assert.equal(r.uuid, info.uuid, r.name)
    assert.equal(r.cost, Number(info.cost), `${r.name} cost`)
    assert.equal(s.trust.get(r.uuid) ?? 'semitrusted', info.trust, `${r.name} trust`)
    assert.equal(r.special, info.type !== 'git', `${r.name} special`)
    if (r.special) assert.equal(r.remoteConfig.get('type'), info.type, `${r.name} type`)
    if (r.special) assert.equal(r.remoteConfig.get('encryption'), info.encryption, `${r.name} encryption`)
  }
  const dsr = s.remotes.get('dsr')!
  assert.equal(dsr.proxy, true)
  assert.equal(dsr.remoteConfig.get('type'), 'directory')
  const dsr2 = s.remotes.get('dsr2')!
  assert.equal(dsr2.uuid, g.dsr, 'a sameas remote shares the UUID')
  assert.notEqual(dsr2.configUuid, g.dsr)
  assert.equal(dsr2.remoteConfig.get('sameas-name'), 'dsr2')
  assert.equal(dsr2.remoteConfig.get('encryption'), 'none', 'inherited from dsr')
  assert.equal(s.remotes.get('n4')!.proxy, false)
  assert.equal(s.remotes.get('n1')!.url, '../n1')

  // Groups and preferred content, as the matching commands print them.
  for (const n of ['n1', 'n2', 'n3'] as const) {
    const groups = (await annex(gw, 'group', n)).stdout.trim()
    assert.equal([...(s.groups.get(nodes[n] as never) ?? [])].sort().join(' '), groups.split(/\s+/).filter(Boolean).sort().join(' '), `${n} groups`)
    assert.equal(s.preferredContent.get(nodes[n] as never) ?? '', (await annex(gw, 'wanted', n)).stdout.trim(), `${n} wanted`)
    assert.equal(s.requiredContent.get(nodes[n] as never) ?? '', (await annex(gw, 'required', n)).stdout.trim(), `${n} required`)
  }
  assert.equal(s.groupPreferredContent.get('g1'), (await annex(gw, 'groupwanted', 'g1')).stdout.trim())
  const sizes = new Map<string, number>()
  for (const line of (await annex(gw, 'maxsize', '--bytes')).stdout.split('\n')) {
    const m = /^\s*\d+\s+(\d+)\s+\d+%\s+(\S+)/.exec(line)
    if (m) sizes.set(m[2]!, Number(m[1]))
  }
  assert.deepEqual(new Map([...s.maxSize].sort()), new Map([...sizes].sort()))

  // Served: own UUID + proxy.log entries that pass §3.2, compared with git-annex-shell.
  const asked = new Set([...(s.proxyLog.get(g.uuid as never) ?? []).map((p) => p.uuid as string), g.uuid, nodes.n4, '7f983d91-6817-4ee2-82e8-1e00620d8920'])
  assert.equal(asked.size, 8)
  for (const u of asked) assert.equal(s.servedUuids().has(u as never), await shellAccepts(gw, u), `served ${u}`)
  assert.deepEqual([...s.servedUuids()].sort(), [g.uuid, g.cluster, nodes.n1, nodes.n2, nodes.n3, g.dsr].sort())
  assert.equal(s.served.get(g.cluster as never)?.kind, 'cluster')
  assert.equal(s.served.get(g.dsr as never)?.kind, 'remote')

  // Location logs (journal or branch) with derived cluster UUIDs, as whereis reports them.
  for (const k of keys) {
    const text = await cfg.reader.readText(locationLogPath(parseKey(k)))
    assert.deepEqual(presentUuids(text, s.clusterLog), await whereis(gw, k), k)
    assert.deepEqual(await cfg.locations(parseKey(k)), await whereis(gw, k), k)
  }

  // A dead node no longer makes the cluster a holder (spec §3.2, §3.6).
  await annex(gw, 'dead', 'n3')
  await cfg.refresh()
  const after = cfg.current
  assert.equal(after.trust.get(nodes.n3 as never), 'dead')
  assert.deepEqual([...after.clusterLog.get(g.cluster as never)!].sort(), [nodes.n1, nodes.n2].sort())
  const k5 = 'SHA256E-s8--k5.txt'
  await set(k5, nodes.n3, '1')
  for (const k of [...keys, k5]) {
    assert.deepEqual(await cfg.locations(parseKey(k)), await whereis(gw, k), `${k} after n3 died`)
  }
  assert.deepEqual(await cfg.locations(parseKey(k5), { includeDead: true }), [nodes.n3])
  assert.deepEqual(after.clusters.get('mycluster')!.nodes.map((n) => n.remote), ['n1', 'n2'])
})

test('buildSnapshot: proxy.log authorization paths (spec §3.2)', () => {
  const own = '11111111-1111-4111-8111-111111111111'
  const other = '22222222-2222-4222-8222-222222222222'
  const cu = 'ac000000-0000-8000-8000-000000000000'
  const behind = '33333333-3333-4333-8333-333333333333'
  const stranger = '44444444-4444-4444-8444-444444444444'
  const configZ = [
    `annex.uuid\n${own}`,
    `annex.cluster.c\n${cu}`,
    `remote.gw2.url\nhttp://example.invalid/gw2`,
    `remote.gw2.annex-uuid\n${other}`,
    `remote.gw2.annex-cluster-gateway\n${cu}`,
    `remote.x.url\n../x`,
    `remote.x.annex-uuid\n${stranger}`,
    '',
  ].join('\0')
  const empty = { uuid: '', remote: '', trust: '', group: '', preferredContent: '', requiredContent: '', groupPreferredContent: '', maxSize: '' }
  const s = buildSnapshot(configZ, {
    ...empty,
    cluster: `1s ${cu} \n`,
    // gw2 proxies the cluster and `behind`; we list gw2's as ours under gw2-<name>.
    proxy: `1s ${other} ${cu}:c ${behind}:b\n1s ${own} ${cu}:c ${behind}:gw2-b ${stranger}:x ${other}:gw2\n`,
  })
  assert.deepEqual([...s.servedUuids()].sort(), [own, cu, behind].sort())
  // §3.3 (b): the cluster behind gw2 is a node of ours.
  assert.deepEqual(s.clusters.get('c')!.nodes, [{ uuid: cu, remote: 'gw2', via: 'gateway', cost: 200 }])
  assert.equal(s.remotes.get('gw2')!.cost, 200)
  assert.equal(s.remotes.get('x')!.cost, 100)
  assert.deepEqual(parseGitConfigList('a.b\ntrue\0a.c\0a.b\nx\0').get('a.b'), ['true', 'x'])
})

test('a cluster in proxy.log and cluster.log is served even without annex.cluster.* (as git-annex-shell does)', async (t) => {
  const g = await makeGateway(t)
  await git(g.gw, 'config', '--unset', 'annex.cluster.mycluster')
  const cfg = await GatewayConfig.open(g.gw, { fsWatch: false })
  defer(t, () => cfg.close())
  const s = cfg.current
  assert.equal(s.clusters.size, 0)
  assert.equal(await shellAccepts(g.gw, g.cluster), true)
  const c = s.served.get(g.cluster as never)
  assert.equal(c?.kind, 'cluster')
  assert.deepEqual(c?.kind === 'cluster' ? c.cluster : undefined, { name: 'mycluster', uuid: g.cluster, nodes: [] })
  // The nodes were authorised as nodes of one of our clusters; with none configured they are not.
  for (const n of ['n1', 'n2', 'n3'] as const) {
    assert.equal(await shellAccepts(g.gw, g.nodes[n]), false, n)
    assert.equal(s.servedUuids().has(g.nodes[n] as never), false, n)
  }
})
