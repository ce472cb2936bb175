// A real cluster gateway built as recipes.md says: gw + nodes n1..n3 in cluster
// `mycluster`, a directory special remote `dsr` proxied with annex-proxy=true, and `n4`
// listed in proxy.log but no longer allowed (annex-proxy set back to false).
import { join } from 'node:path'
import { annex, git, makeRepo, repoUuid, sh, tempDir, type After } from '../helpers/annex.js'

const CLIENT = '00000000-0000-4000-8000-000000000001'

/** Whether git-annex-shell at `gw` accepts a session for `uuid`: git-annex's own §3.2 check. */
export async function shellAccepts(gw: string, uuid: string): Promise<boolean> {
  try {
    const { stdout } = await sh(gw, 'git-annex-shell', ['p2pstdio', gw, CLIENT, '--uuid', uuid])
    return stdout.startsWith(`AUTH-SUCCESS ${uuid}`)
  } catch {
    return false
  }
}

export interface Gateway {
  root: string
  gw: string
  uuid: string
  cluster: string
  nodes: Record<'n1' | 'n2' | 'n3' | 'n4', string>
  dsr: string
}

export async function makeGateway(t: After): Promise<Gateway> {
  const root = await tempDir(t, 'annex-proxy-gw-')
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  const nodes = {} as Record<'n1' | 'n2' | 'n3' | 'n4', string>
  for (const n of ['n1', 'n2', 'n3', 'n4'] as const) {
    nodes[n] = await repoUuid(await makeRepo(join(root, n), n))
    await git(gw, 'remote', 'add', n, `../${n}`)
    if (n !== 'n4') await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  }
  await annex(gw, 'initcluster', 'mycluster')
  await annex(gw, 'updatecluster')
  await sh(root, 'mkdir', ['dsrdir'])
  await annex(gw, 'initremote', 'dsr', 'type=directory', `directory=${join(root, 'dsrdir')}`, 'encryption=none')
  await git(gw, 'config', 'remote.dsr.annex-proxy', 'true')
  await git(gw, 'config', 'remote.n4.annex-proxy', 'true')
  await annex(gw, 'updateproxy')
  await git(gw, 'config', 'remote.n4.annex-proxy', 'false')
  return {
    root,
    gw,
    uuid: await repoUuid(gw),
    cluster: (await git(gw, 'config', 'annex.cluster.mycluster')).stdout.trim(),
    nodes,
    dsr: (await git(gw, 'config', 'remote.dsr.annex-uuid')).stdout.trim(),
  }
}
