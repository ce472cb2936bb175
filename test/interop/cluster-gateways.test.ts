// A cluster with two gateways (tips/clusters "multiple gateways", extendcluster), both
// served by annex-proxy over annex+http and each a remote of the other. An upload to
// either gateway reaches the nodes behind both; the request relayed between them carries
// `bypass`, so neither routes it back (without it, A → B → A → … never ends).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, findKeysHere, unusedPort, git, makeClient, makeRepo, repoUuid, sh, sha256Key, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { waitUntil } from '../helpers/wait.js'

const NODES = { ga: ['n1', 'n2'], gb: ['n3', 'n4'] } as const

async function addNodes(root: string, gw: string, names: readonly string[]) {
  for (const n of names) {
    await makeRepo(join(root, n), n)
    await git(gw, 'remote', 'add', n, `../${n}`)
    await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  }
}

/** The recipe of tips/clusters, with each gateway reaching the other by its annexUrl. */
async function twoGateways(root: string, portA: number, portB: number) {
  const ga = await makeRepo(join(root, 'ga'), 'ga')
  await addNodes(root, ga, NODES.ga)
  await annex(ga, 'initcluster', 'mycluster')
  await annex(ga, 'updatecluster')

  const gb = join(root, 'gb')
  await git(root, 'clone', '-q', ga, gb)
  await annex(gb, 'init', '-q', 'gb')
  await git(gb, 'remote', 'rename', 'origin', 'ga')
  await git(gb, 'config', 'remote.ga.annexUrl', `annex+http://127.0.0.1:${portA}/git-annex/`)
  await annex(gb, 'sync', '-q', '--no-content', 'ga')
  await annex(gb, 'extendcluster', 'ga', 'mycluster')
  await addNodes(root, gb, NODES.gb)
  await annex(gb, 'updatecluster')

  await git(ga, 'remote', 'add', 'gb', '../gb')
  await git(ga, 'config', 'remote.gb.annexUrl', `annex+http://127.0.0.1:${portB}/git-annex/`)
  await annex(ga, 'sync', '-q', '--no-content', 'gb')
  await annex(ga, 'extendcluster', 'gb', 'mycluster')
  await annex(ga, 'updatecluster')
  // gb learns the names ga gave gb's nodes; each gateway's proxy.log now lists all four.
  await annex(gb, 'sync', '-q', '--no-content', 'ga')
  return { ga, gb }
}

const whereis = async (client: string, file: string) => {
  const j = JSON.parse((await annex(client, 'whereis', '--json', file)).stdout) as { whereis: { description: string }[] }
  return j.whereis.map((w) => w.description.replace(/ \[.*\]$/, '').replace(/^\[(.*)\]$/, '$1')).sort()
}

async function addFile(client: string, name: string, bytes: Buffer): Promise<string> {
  await writeFile(join(client, name), bytes)
  await annex(client, 'add', '-q', name)
  await git(client, 'commit', '-q', '-m', name)
  return (await annex(client, 'lookupkey', name)).stdout.trim()
}

const keysOn = async (root: string) =>
  Object.fromEntries(await Promise.all(['n1', 'n2', 'n3', 'n4'].map(async (n) => [n, await findKeysHere(join(root, n))] as const)))

/** Whether the gateway on `port` answers a checkpresent for the repository `uuid` (which it reaches through the other gateway). */
async function reaches(port: number, uuid: string): Promise<boolean> {
  const key = sha256Key(Buffer.from('reachability probe'))
  const r = await fetch(`http://127.0.0.1:${port}/git-annex/${uuid}/v4/checkpresent?key=${key}&clientuuid=00000000-0000-4000-8000-0000000000cc`, { method: 'POST' })
  return r.status === 200 && (await r.text()) === '{"present":false}'
}

test('two gateways of one cluster: an upload to either reaches the nodes behind both, with no loop; get and drop go through too', async (t) => {
  const root = await tempDir(t)
  // The tips/clusters recipe syncs the gateways before either serves: each names the other
  // by a URL where nothing listens until both serve on ports of their own choosing (port 0);
  // then each learns the other's real port, as an operator would edit .git/config.
  const refused = await unusedPort()
  const { ga, gb } = await twoGateways(root, refused, refused)
  const { port: portA } = await startAnnexProxy(t, ga, ['--wideopen'])
  const { port: portB } = await startAnnexProxy(t, gb, ['--wideopen'])
  await git(gb, 'config', 'remote.ga.annexUrl', `annex+http://127.0.0.1:${portA}/git-annex/`)
  await git(ga, 'config', 'remote.gb.annexUrl', `annex+http://127.0.0.1:${portB}/git-annex/`)
  const [n1, n3] = [await repoUuid(join(root, 'n1')), await repoUuid(join(root, 'n3'))]
  await waitUntil('gateway A to reach n3 through gateway B at its new annexUrl', 30_000, () => reaches(portA, n3), 100)
  await waitUntil('gateway B to reach n1 through gateway A at its new annexUrl', 30_000, () => reaches(portB, n1), 100)
  const clientA = await makeClient(ga, join(root, 'clientA'), portA)
  const clientB = await makeClient(gb, join(root, 'clientB'), portB)

  const a = randomBytes(1_500_007)
  const keyA = await addFile(clientA, 'a.bin', a)
  // A loop between the gateways would never answer: bound the wait instead of hanging.
  const bounded = (dir: string, ...args: string[]) => sh(dir, 'git', ['annex', ...args], { timeoutMs: 120_000 })
  await bounded(clientA, 'copy', '--to', 'origin-mycluster', 'a.bin')
  const keyB = await addFile(clientB, 'b.bin', randomBytes(700_001))
  await bounded(clientB, 'copy', '--to', 'origin-mycluster', 'b.bin')

  // Each node got each key once, verified, and its own log says so.
  for (const [n, keys] of Object.entries(await keysOn(root))) assert.deepEqual(keys, [keyA, keyB].sort(), n)
  for (const n of ['n1', 'n2', 'n3', 'n4']) await annex(join(root, n), 'fsck', '-q', '--all')
  // The client of each gateway knows every node by the path that reaches it.
  assert.deepEqual(await whereis(clientA, 'a.bin'), ['client', 'cluster mycluster', 'origin-gb-n3', 'origin-gb-n4', 'origin-n1', 'origin-n2'])
  assert.deepEqual(await whereis(clientB, 'b.bin'), ['client', 'cluster mycluster', 'origin-ga-n1', 'origin-ga-n2', 'origin-n3', 'origin-n4'])

  // Only the nodes behind gb keep a.bin: a get through ga comes from them, through gb.
  for (const n of NODES.ga) await annex(join(root, n), 'drop', '-q', '--force', '--key', keyA)
  await annex(clientA, 'drop', '-q', '--force', 'a.bin')
  await bounded(clientA, 'get', '-q', '--from', 'origin-mycluster', 'a.bin')
  assert.deepEqual(await readFile(join(clientA, 'a.bin')), a)

  // A drop through ga removes it behind gb as well.
  await bounded(clientA, 'drop', '-q', '--from', 'origin-mycluster', 'a.bin')
  for (const [n, keys] of Object.entries(await keysOn(root))) assert.deepEqual(keys, [keyB], n)

  // A node behind the other gateway, addressed on its own: only it gets the content.
  const keyC = await addFile(clientA, 'c.bin', randomBytes(300_003))
  await bounded(clientA, 'copy', '-q', '--to', 'origin-gb-n3', 'c.bin')
  const on = await keysOn(root)
  assert.deepEqual(on['n3'], [keyB, keyC].sort())
  for (const n of ['n1', 'n2', 'n4']) assert.deepEqual(on[n], [keyB], n)
  assert.deepEqual(await whereis(clientA, 'c.bin'), ['client', 'cluster mycluster', 'origin-gb-n3'])
})
