// maxsize holds however content arrives through one annex-proxy gateway, with the real client:
// - issue #12's end to end: `git annex copy -J8 --to origin-mycluster` of 200 files into 3
//   nodes with tight maxsize and `sizebalanced=g:1`: no node over its maxsize, every file
//   placed, on exactly the one node it wants (the reference gateway doing the same is
//   measured side by side in bench/, `--scenarios placement`);
// - uploads addressed to one node (`--to origin-n1`) are counted like cluster uploads: -J8
//   into a node with room for a third of them fills it to its maxsize and no further, the
//   rest refused with the reason;
// - cluster uploads and single-node uploads at once never overfill.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { annex, findKeysHere, git, makeClient, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'

const NODES = ['n1', 'n2', 'n3'] as const
type NodeName = (typeof NODES)[number]

async function gateway(t: TestContext, maxsize: Record<NodeName, number>) {
  const root = await tempDir(t)
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  for (const [i, n] of NODES.entries()) {
    await sh(root, 'git', ['init', '-q', '-b', 'main', n])
    await git(join(root, n), 'config', 'annex.uuid', `33333333-3333-4333-8333-00000000000${i + 1}`)
    await annex(join(root, n), 'init', '-q', n)
    await git(join(root, n), 'commit', '-q', '--allow-empty', '-m', 'init')
    await git(gw, 'remote', 'add', n, `../${n}`)
    await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  }
  await annex(gw, 'initcluster', 'mycluster')
  await annex(gw, 'updatecluster')
  for (const n of NODES) {
    await annex(gw, 'group', n, 'g')
    await annex(gw, 'wanted', n, 'sizebalanced=g:1')
    await annex(gw, 'maxsize', n, String(maxsize[n]))
  }
  const served = await startAnnexProxy(t, gw)
  const client = await makeClient(gw, join(root, 'client'), served.port)
  return { root, gw, served, client }
}

const sizeOf = (key: string) => Number(/-s(\d+)-/.exec(key)![1])

/** What each node holds by its own location log, and its bytes. */
async function held(root: string): Promise<Record<NodeName, { keys: string[]; bytes: number }>> {
  const out = {} as Record<NodeName, { keys: string[]; bytes: number }>
  for (const n of NODES) {
    const keys = await findKeysHere(join(root, n))
    out[n] = { keys, bytes: keys.reduce((s, k) => s + sizeOf(k), 0) }
  }
  return out
}

/** Files `<prefix><i>.bin` of the given sizes, added and committed; their keys. */
async function addFiles(client: string, prefix: string, sizes: readonly number[]): Promise<string[]> {
  for (const [i, s] of sizes.entries()) await writeFile(join(client, `${prefix}${i}.bin`), randomBytes(s))
  await annex(client, 'add', '-q', '.')
  await git(client, 'commit', '-q', '-m', prefix)
  const keys: string[] = []
  for (let i = 0; i < sizes.length; i++) keys.push((await annex(client, 'lookupkey', `${prefix}${i}.bin`)).stdout.trim())
  return keys
}

/** Deterministic sizes between lo and hi. */
const spread = (n: number, lo: number, hi: number, seed: number) => Array.from({ length: n }, (_, i) => lo + ((i * 7919 + seed * 104_729) % (hi - lo)))

test('copy -J8 of 200 files to a cluster of 3 nodes with tight maxsize and sizebalanced=g:1: no node over its maxsize, every file placed once', async (t) => {
  const sizes = spread(200, 4_000, 16_000, 1)
  const total = sizes.reduce((a, b) => a + b, 0)
  // 6% more room than the files need, spread over the three nodes.
  const max = Math.ceil((total * 1.06) / 3)
  const g = await gateway(t, { n1: max, n2: max, n3: max })
  const keys = await addFiles(g.client, 'f', sizes)
  await sh(g.client, 'git', ['annex', 'copy', '-J8', '--to', 'origin-mycluster', '.'], { timeoutMs: 600_000 })
  const on = await held(g.root)
  for (const n of NODES) {
    t.diagnostic(`${n}: ${on[n].keys.length} files, ${on[n].bytes} of ${max} bytes`)
    assert.ok(on[n].bytes <= max, `${n} holds ${on[n].bytes} bytes, over its maxsize ${max}`)
  }
  const copies = new Map<string, number>()
  for (const n of NODES) for (const k of on[n].keys) copies.set(k, (copies.get(k) ?? 0) + 1)
  assert.deepEqual(keys.filter((k) => !copies.has(k)), [], 'files placed nowhere')
  assert.deepEqual([...copies].filter(([, c]) => c !== 1), [], 'sizebalanced=g:1 wants one copy of each file')
  // The gateway's own accounting agrees with the nodes, and the content is intact.
  for (const n of NODES) {
    const logged = (await annex(g.gw, 'findkeys', '--in', n)).stdout.split('\n').filter(Boolean).sort()
    assert.deepEqual(logged, on[n].keys, `the gateway's location log for ${n}`)
  }
  for (const n of NODES) await annex(join(g.root, n), 'fsck', '-q', '--all')
})

test('uploads addressed to one node count against its maxsize: -J8 fills it to its maxsize, no further, the rest refused with the reason', async (t) => {
  const max = 100_000
  const g = await gateway(t, { n1: max, n2: 10_000_000, n3: 10_000_000 })
  // About 300 kB of files for a node of 100 kB.
  const sizes = spread(40, 5_000, 10_000, 2)
  const keys = await addFiles(g.client, 's', sizes)
  const copy = await sh(g.client, 'git', ['annex', 'copy', '-J8', '--to', 'origin-n1', '.'], { timeoutMs: 600_000 }).then(
    () => ({ ok: true, message: '' }),
    (e: Error) => ({ ok: false, message: e.message }),
  )
  assert.equal(copy.ok, false, 'some copies must be refused: the files need three times the room')
  // 507, with the reason where the client shows one (the reason phrase).
  assert.match(copy.message, /maxsize|507 Insufficient Storage/, 'the client shows why')
  const on = await held(g.root)
  t.diagnostic(`n1: ${on.n1.keys.length} files, ${on.n1.bytes} of ${max} bytes`)
  assert.ok(on.n1.bytes <= max, `n1 holds ${on.n1.bytes} bytes, over its maxsize ${max}`)
  // Refused only for want of room: none of the files left out would fit now.
  for (const k of keys.filter((k) => !on.n1.keys.includes(k))) assert.ok(on.n1.bytes + sizeOf(k) > max, `${k} refused though n1 had room for it`)
  assert.deepEqual([...on.n2.keys, ...on.n3.keys], [], 'nothing went anywhere else')
  await annex(join(g.root, 'n1'), 'fsck', '-q', '--all')
})

test('cluster uploads and uploads to single nodes at once never overfill a node', async (t) => {
  const max = 150_000
  const g = await gateway(t, { n1: max, n2: max, n3: max })
  // A second client sends straight to n1 and n2 while the first fills the cluster.
  const other = await makeClient(g.gw, join(g.root, 'other'), g.served.port)
  const cKeys = await addFiles(g.client, 'c', spread(40, 5_000, 10_000, 3))
  const dKeys = await addFiles(other, 'd', spread(40, 5_000, 10_000, 4))
  const run = (dir: string, to: string, files: string[]) =>
    sh(dir, 'git', ['annex', 'copy', '-J8', '--to', to, ...files], { timeoutMs: 600_000 }).then(
      () => true,
      () => false,
    )
  const twenty = (p: string, from: number) => Array.from({ length: 20 }, (_, i) => `${p}${from + i}.bin`)
  // About 600 kB offered to 450 kB of room.
  await Promise.all([run(g.client, 'origin-mycluster', ['.']), run(other, 'origin-n1', twenty('d', 0)), run(other, 'origin-n2', twenty('d', 20))])
  const on = await held(g.root)
  for (const n of NODES) {
    t.diagnostic(`${n}: ${on[n].keys.length} files, ${on[n].bytes} of ${max} bytes`)
    assert.ok(on[n].bytes <= max, `${n} holds ${on[n].bytes} bytes, over its maxsize ${max}`)
  }
  // Refused only for want of room: a file left out would not fit where it was sent, now.
  const fits = (n: NodeName, k: string) => on[n].bytes + sizeOf(k) <= max
  for (const k of cKeys) if (!NODES.some((n) => on[n].keys.includes(k))) assert.ok(!NODES.some((n) => fits(n, k)), `${k} refused by the cluster though a node had room`)
  for (const [i, k] of dKeys.entries()) {
    const n: NodeName = i < 20 ? 'n1' : 'n2'
    if (!on[n].keys.includes(k)) assert.ok(!fits(n, k), `${k} refused by ${n} though it had room`)
  }
  assert.ok(NODES.every((n) => on[n].keys.length > 0) && NODES.reduce((s, n) => s + on[n].keys.length, 0) < 80, 'the nodes filled up')
})
