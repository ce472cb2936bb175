// annex.diskreserve with the real client: an upload that would take a repository on the
// gateway's filesystem below its reserve is refused before a byte is written, with
// git-annex's own message; in a cluster the other nodes take it.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, findKeysHere, git, makeClient, makeRepo, shStatus, startAnnexProxy, tempDir } from '../helpers/annex.js'

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name))
}

/** A reserve no change in free space during the test can bring within reach: 1 TiB more than is free. */
async function unreachableReserve(dir: string): Promise<string> {
  const s = await statfs(dir)
  return String(Number(s.bavail) * Number(s.bsize) + 2 ** 40)
}

test('annex.diskreserve: uploads that would cross it are refused up front with git-annex\'s message; nothing is written', async (t) => {
  const root = await tempDir(t)
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  for (const n of ['n1', 'n2']) {
    await makeRepo(join(root, n), n)
    await git(gw, 'remote', 'add', n, `../${n}`)
    await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  }
  await annex(gw, 'initcluster', 'mycluster')
  await annex(gw, 'updatecluster')
  // n1 and the gateway itself are full as far as their reserve is concerned; n2 is not.
  await git(join(root, 'n1'), 'config', 'annex.diskreserve', await unreachableReserve(root))
  await git(gw, 'config', 'annex.diskreserve', await unreachableReserve(root))
  const gateway = await startAnnexProxy(t, gw)
  const client = await makeClient(gw, join(root, 'client'), gateway.port)
  await writeFile(join(client, 'a.bin'), randomBytes(3_000_000))
  await annex(client, 'add', '-q', 'a.bin')
  await git(client, 'commit', '-q', '-m', 'a')
  const key = (await annex(client, 'lookupkey', 'a.bin')).stdout.trim()

  // To the gateway's own repository: refused, the client says why.
  const own = await shStatus(client, 'git', ['annex', 'copy', '--to', 'origin', 'a.bin'])
  assert.notEqual(own.code, 0)
  assert.match(own.stdout + own.stderr, /not enough free space, need .* more \(use --force to override this check or adjust annex\.diskreserve\)/)
  // To n1 alone: the same.
  const n1 = await shStatus(client, 'git', ['annex', 'copy', '--to', 'origin-n1', 'a.bin'])
  assert.notEqual(n1.code, 0)
  assert.match(n1.stdout + n1.stderr, /not enough free space/)
  for (const dir of [gw, join(root, 'n1')]) {
    assert.deepEqual(await filesUnder(join(dir, '.git', 'annex', 'objects')), [], `${dir} holds no object`)
    assert.deepEqual(await filesUnder(join(dir, '.git', 'annex', 'tmp')), [], `${dir} holds no partial upload`)
  }

  // To the cluster: n2 takes it, n1 is left alone.
  await annex(client, 'copy', '-q', '--to', 'origin-mycluster', 'a.bin')
  assert.deepEqual(await findKeysHere(join(root, 'n2')), [key])
  assert.deepEqual(await findKeysHere(join(root, 'n1')), [])
  assert.deepEqual(await filesUnder(join(root, 'n1', '.git', 'annex', 'tmp')), [])
})

test('annex.diskreserve guards a proxied directory special remote\'s directory as git-annex does', async (t) => {
  const root = await tempDir(t)
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  const dsr = join(root, 'dsrdir')
  await mkdir(dsr)
  await annex(gw, 'initremote', 'dsr', 'type=directory', `directory=${dsr}`, 'encryption=none')
  await git(gw, 'config', 'remote.dsr.annex-proxy', 'true')
  await annex(gw, 'updateproxy')
  await git(gw, 'config', 'annex.diskreserve', await unreachableReserve(root))
  const gateway = await startAnnexProxy(t, gw)
  const client = await makeClient(gw, join(root, 'client'), gateway.port)
  await writeFile(join(client, 'b.bin'), randomBytes(200_000))
  await annex(client, 'add', '-q', 'b.bin')
  await git(client, 'commit', '-q', '-m', 'b')
  const r = await shStatus(client, 'git', ['annex', 'copy', '--to', 'origin-dsr', 'b.bin'])
  assert.notEqual(r.code, 0)
  assert.match(r.stdout + r.stderr, /not enough free space/)
  assert.deepEqual(await filesUnder(dsr), [])
})
