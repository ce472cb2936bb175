// `annex-proxy rebalance` with real git-annex repositories as nodes, content uploaded by the
// real client through annex-proxy:
// - a fourth node added to a cluster whose nodes want sizebalanced=g:1: one run fills it to
//   the level of the others, every file still exactly once, nothing over maxsize, the
//   gateway's location log agreeing with the nodes and `git annex fsck` clean; a second run
//   moves nothing; --dry-run printed the plan and changed nothing;
// - the new node (served over annex+http, behind a throttling relay so moves take a while)
//   SIGKILLed in the middle of a move: no file ever has fewer than numcopies (2) copies on
//   the nodes (sampled from their object stores all along), the moves that could not finish
//   are reported and the run exits 1; once the node is back, one run finishes the job and
//   the next moves nothing.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { annex, findKeysHere, git, gitEnv, makeClient, makeRepo, PROJECT_ROOT, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { startThrottleProxy } from '../helpers/throttle-proxy.js'

async function node(root: string, gw: string, name: string, i: number, expression: string, maxsize: number): Promise<string> {
  const dir = join(root, name)
  await sh(root, 'git', ['init', '-q', '-b', 'main', name])
  await git(dir, 'config', 'annex.uuid', `66666666-6666-4666-8666-00000000000${i}`)
  await annex(dir, 'init', '-q', name)
  await git(dir, 'commit', '-q', '--allow-empty', '-m', 'init')
  await git(gw, 'remote', 'add', name, `../${name}`)
  await git(gw, 'config', `remote.${name}.annex-cluster-node`, 'mycluster')
  await annex(gw, 'group', name, 'g')
  await annex(gw, 'wanted', name, expression)
  await annex(gw, 'maxsize', name, String(maxsize))
  return dir
}

async function cluster(t: TestContext, expression: string, maxsize: number) {
  const root = await tempDir(t)
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  for (const [i, n] of ['n1', 'n2', 'n3'].entries()) await node(root, gw, n, i + 1, expression, maxsize)
  await annex(gw, 'initcluster', 'mycluster')
  await annex(gw, 'updatecluster')
  const served = await startAnnexProxy(t, gw)
  const client = await makeClient(gw, join(root, 'client'), served.port)
  return { root, gw, client }
}

async function addFiles(client: string, sizes: readonly number[]): Promise<void> {
  for (const [i, s] of sizes.entries()) await writeFile(join(client, `f${i}.bin`), randomBytes(s))
  await annex(client, 'add', '-q', '.')
  await git(client, 'commit', '-q', '-m', 'files')
}

interface Run {
  readonly code: number
  readonly out: string
}

function rebalanceCli(gw: string, args: string[] = []): { done: Promise<Run>; kill(): void } {
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli/main.js'), 'rebalance', ...args], { cwd: gw, env: gitEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const done = new Promise<Run>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, out }))
  })
  return { done, kill: () => child.kill('SIGKILL') }
}

async function rebalance(gw: string, args: string[] = []): Promise<Run> {
  return rebalanceCli(gw, args).done
}

const sizeOf = (key: string) => Number(/-s(\d+)-/.exec(key)![1])

async function holdings(root: string, nodes: readonly string[]): Promise<Map<string, string[]>> {
  return new Map(await Promise.all(nodes.map(async (n) => [n, await findKeysHere(join(root, n))] as const)))
}

/** Keys whose object files are in the repository right now (what is really there). */
async function objectsIn(repo: string): Promise<Set<string>> {
  const out = new Set<string>()
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name))
      else if (dir.endsWith(`/${e.name}`)) out.add(e.name)
    }
  }
  await walk(join(repo, '.git', 'annex', 'objects'))
  return out
}

test('rebalance after adding a fourth node: one run reaches the balanced placement, a second moves nothing', async (t) => {
  const max = 300_000
  const c = await cluster(t, 'sizebalanced=g:1', max)
  const sizes = Array.from({ length: 60 }, (_, i) => 4_000 + ((i * 7919) % 12_000))
  await addFiles(c.client, sizes)
  await sh(c.client, 'git', ['annex', 'copy', '-J4', '--to', 'origin-mycluster', '.'], { timeoutMs: 600_000 })
  const nodes = ['n1', 'n2', 'n3', 'n4']
  await node(c.root, c.gw, 'n4', 4, 'sizebalanced=g:1', max)
  await annex(c.gw, 'updatecluster')
  const before = await holdings(c.root, nodes)
  assert.deepEqual(before.get('n4'), [])

  const dry = await rebalance(c.gw, ['--dry-run'])
  assert.equal(dry.code, 0, dry.out)
  const planned = dry.out.split('\n').filter((l) => / copy to n4, drop from n[123]$/.test(l))
  assert.ok(planned.length > 5, `the plan moves files to n4:\n${dry.out}`)
  assert.deepEqual(await holdings(c.root, nodes), before, 'a dry run changes nothing')

  const run = await rebalance(c.gw)
  t.diagnostic(run.out.split('\n').filter((l) => !l.startsWith('    ')).join('\n'))
  assert.equal(run.code, 0, run.out)
  const after = await holdings(c.root, nodes)
  const bytes = nodes.map((n) => after.get(n)!.reduce((s, k) => s + sizeOf(k), 0))
  t.diagnostic(`bytes per node: ${bytes.join(' ')}`)
  for (const b of bytes) assert.ok(b <= max)
  // Filled to the same level, within one file.
  assert.ok(Math.max(...bytes) - Math.min(...bytes) <= 16_000, `uneven: ${bytes.join(' ')}`)
  const copies = new Map<string, number>()
  for (const n of nodes) for (const k of after.get(n)!) copies.set(k, (copies.get(k) ?? 0) + 1)
  assert.equal(copies.size, 60)
  assert.deepEqual([...copies.values()].filter((v) => v !== 1), [], 'each file exactly once')
  assert.equal(planned.length, after.get('n4')!.length, 'the dry run planned what the run did')
  for (const n of nodes) {
    assert.deepEqual((await annex(c.gw, 'findkeys', '--in', n)).stdout.split('\n').filter(Boolean).sort(), after.get(n), `the gateway's location log for ${n}`)
    await annex(join(c.root, n), 'fsck', '-q', '--all', '--in', 'here')
  }
  // The client gets a moved file back through the cluster.
  await annex(c.client, 'drop', '--force', '.')
  await sh(c.client, 'git', ['annex', 'get', '-J4', '--from', 'origin-mycluster', '.'], { timeoutMs: 600_000 })
  await annex(c.client, 'fsck', '-q')

  const again = await rebalance(c.gw)
  assert.equal(again.code, 0, again.out)
  assert.match(again.out, /moved 0 of 0 keys/, 'a second run moves nothing')
  assert.deepEqual(await holdings(c.root, nodes), after)
})

test('rebalance: the new node killed mid-move loses no copy, numcopies 2 held throughout; rerun once it is back finishes', async (t) => {
  const max = 40_000_000
  const c = await cluster(t, 'sizebalanced=g:2', max)
  await annex(c.gw, 'numcopies', '2')
  const files = 8
  await addFiles(c.client, Array.from({ length: files }, (_, i) => 1_000_000 + i * 1000))
  await sh(c.client, 'git', ['annex', 'copy', '-J4', '--to', 'origin-mycluster', '.'], { timeoutMs: 600_000 })
  const keys = (await annex(c.client, 'find', '--format=${key}\\n')).stdout.split('\n').filter(Boolean)
  assert.equal(keys.length, files)
  const nodes = ['n1', 'n2', 'n3', 'n4']
  // n4 is served by its own annex-proxy over annex+http, reached through a relay of 1 MB/s.
  const n4 = await node(c.root, c.gw, 'n4', 4, 'sizebalanced=g:2', max)
  let n4Server = await startAnnexProxy(t, n4)
  let relay = await startThrottleProxy(t, n4Server.port, 1_000_000)
  await git(c.gw, 'config', 'remote.n4.annexUrl', `annex+http://127.0.0.1:${relay.port}/git-annex/`)
  await annex(c.gw, 'updatecluster')

  // Copies on the nodes' disks, sampled all along: never fewer than 2 of any file.
  let sampling = true
  let fewest = Infinity
  let samples = 0
  const sampler = (async () => {
    while (sampling) {
      const on = await Promise.all(nodes.map((n) => objectsIn(join(c.root, n))))
      for (const k of keys) fewest = Math.min(fewest, on.filter((s) => s.has(k)).length)
      samples++
      await new Promise((r) => setTimeout(r, 20))
    }
  })()

  const run = rebalanceCli(c.gw)
  // One move done (n4 holds a file) and the next under way (n4 receiving one): then n4 dies.
  const tmp = join(n4, '.git', 'annex', 'tmp')
  for (const deadline = Date.now() + 120_000; ; ) {
    if ((await objectsIn(n4)).size > 0 && (await readdir(tmp).catch(() => [])).length > 0) break
    assert.ok(Date.now() < deadline, 'n4 never got to its second move')
    await new Promise((r) => setTimeout(r, 20))
  }
  n4Server.child.kill('SIGKILL')
  const first = await run.done
  t.diagnostic(first.out)
  assert.equal(first.code, 1, `moves that could not finish make the run fail:\n${first.out}`)
  assert.match(first.out, /: ok$/m, 'a move finished before the kill')
  assert.match(first.out, /not done: /)
  for (const n of nodes) await annex(join(c.root, n), 'fsck', '-q', '--all', '--in', 'here')

  // n4 back (a new server, a new relay): one run finishes, the next moves nothing.
  await relay.close()
  n4Server = await startAnnexProxy(t, n4)
  relay = await startThrottleProxy(t, n4Server.port, 50_000_000)
  await git(c.gw, 'config', 'remote.n4.annexUrl', `annex+http://127.0.0.1:${relay.port}/git-annex/`)
  const second = await rebalance(c.gw)
  assert.equal(second.code, 0, second.out)
  sampling = false
  await sampler
  t.diagnostic(`${samples} samples of the nodes' object stores; fewest copies of a file: ${fewest}`)
  assert.ok(samples > 10)
  assert.equal(fewest, 2, 'numcopies 2 held throughout')
  const third = await rebalance(c.gw)
  assert.match(third.out, /moved 0 of 0 keys/, 'the run after moves nothing')

  const after = await holdings(c.root, nodes)
  assert.ok(after.get('n4')!.length > 0, 'n4 got its share')
  for (const k of keys) assert.equal(nodes.filter((n) => after.get(n)!.includes(k)).length, 2, `${k}: 2 copies (sizebalanced=g:2)`)
  for (const n of nodes) await annex(join(c.root, n), 'fsck', '-q', '--all', '--in', 'here')
  // The gateway's own view: numcopies satisfied for every key (fsck checks copies it cannot see as well).
  const fsck = await annex(c.gw, 'fsck', '--all', '--fast')
  assert.doesNotMatch(fsck.stdout + fsck.stderr, /Only \d+ of \d+ trustworthy copies/)
})
