// The fanout under stress, with real processes: a large upload keeps the gateway's
// memory bounded and its disk untouched; a node dying mid-upload fails only itself.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { annex, findKeysHere, git, makeClient, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'

const run = promisify(execFile)

async function gateway(root: string): Promise<string> {
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  for (const n of ['n1', 'n2', 'n3']) {
    await makeRepo(join(root, n), n)
    await git(gw, 'remote', 'add', n, `../${n}`)
    await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  }
  await annex(gw, 'initcluster', 'mycluster')
  await annex(gw, 'updatecluster')
  return gw
}

const duBytes = async (dir: string) => Number((await run('du', ['-sb', dir])).stdout.split('\t')[0])

test('a 2 GiB upload fanned out to 3 nodes: gateway RSS stays bounded, its disk does not grow', async (t) => {
  const root = await tempDir(t)
  const gw = await gateway(root)
  const served = await startAnnexProxy(t, gw, ['--wideopen', '--fanout-buffer', String(1024 * 1024)])
  const client = await makeClient(gw, join(root, 'client'), served.port)
  await sh(client, 'bash', ['-c', 'head -c 2147483648 /dev/urandom > huge.bin'])
  await annex(client, 'add', '-q', 'huge.bin')
  await git(client, 'commit', '-q', '-m', 'huge')
  const gwAnnexBefore = await duBytes(join(gw, '.git', 'annex'))
  await annex(client, 'copy', '--to', 'origin-mycluster', 'huge.bin')
  const status = await readFile(`/proc/${served.child.pid}/status`, 'utf8')
  const peak = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024
  assert.ok(peak < 256 * 1024 * 1024, `gateway peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB for a 2 GiB upload to 3 nodes`)
  // Only location logs may have been added on the gateway: no content, no temp file.
  const grown = (await duBytes(join(gw, '.git', 'annex'))) - gwAnnexBefore
  assert.ok(grown < 4 * 1024 * 1024, `gateway .git/annex grew by ${grown} bytes`)
  const key = (await annex(client, 'lookupkey', 'huge.bin')).stdout.trim()
  for (const n of ['n1', 'n2', 'n3']) assert.deepEqual(await findKeysHere(join(root, n)), [key], n)
  await annex(join(root, 'n2'), 'fsck', '-q', '--key', key)
})

test('a node whose server dies mid-fanout: the upload succeeds on the others, only they are listed, a rerun completes it', async (t) => {
  const root = await tempDir(t)
  const gw = await gateway(root)
  const n3 = await startAnnexProxy(t, join(root, 'n3'))
  const n3Port = n3.port
  await git(gw, 'config', 'remote.n3.annexUrl', `annex+http://127.0.0.1:${n3Port}/git-annex/`)
  const served = await startAnnexProxy(t, gw, ['--wideopen', '--fanout-stall', '5'])
  const client = await makeClient(gw, join(root, 'client'), served.port)
  await sh(client, 'bash', ['-c', 'head -c 268435456 /dev/urandom > big.bin'])
  await annex(client, 'add', '-q', 'big.bin')
  await git(client, 'commit', '-q', '-m', 'big')
  const key = (await annex(client, 'lookupkey', 'big.bin')).stdout.trim()
  const n3tmp = join(root, 'n3', '.git', 'annex', 'tmp', key)
  let copied = false
  const copy = annex(client, 'copy', '--to', 'origin-mycluster', 'big.bin').finally(() => (copied = true))
  for (;;) {
    assert.equal(copied, false, 'the upload finished before the node could be killed')
    if ((await stat(n3tmp).catch(() => ({ size: 0 }))).size > 16 * 1024 * 1024) break
    await new Promise((r) => setTimeout(r, 5))
  }
  n3.child.kill('SIGKILL')
  await copy
  const where = (await annex(client, 'whereis', 'big.bin')).stdout
  assert.match(where, /origin-n1/)
  assert.match(where, /origin-n2/)
  assert.doesNotMatch(where, /origin-n3/, 'the dead node is not reported as holding the content')
  assert.deepEqual(await findKeysHere(join(root, 'n3')), [], 'no object on the dead node')
  for (const n of ['n1', 'n2']) await annex(join(root, n), 'fsck', '-q', '--key', key)
  // The node comes back on the same port; a copy to it resumes from what it kept.
  await startAnnexProxy(t, join(root, 'n3'), ['--wideopen'], {}, { port: n3Port })
  await annex(client, 'copy', '--to', 'origin-n3', 'big.bin')
  assert.deepEqual(await findKeysHere(join(root, 'n3')), [key])
  await annex(join(root, 'n3'), 'fsck', '-q', '--key', key)
})
