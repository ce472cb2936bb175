// `annex-proxy upload` end to end with real servers and real git-annex clones: a 300-file tree
// with awkward names into a cluster served by annex-proxy and into the reference p2phttp; keys
// equal to `git annex add`'s, presence checked by git-annex itself, content got back, --record.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { annex, git, makeClient, makeRepo, repoUuid, sh, startAnnexProxy, startReference, tempDir } from '../helpers/annex.js'
import { makeTree, upload } from './helpers.js'

const MiB = 1024 * 1024

async function makeCluster(root: string): Promise<string> {
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

/** file → key, as `git annex add` made them in `dir` under `sub`. */
async function addedKeys(dir: string, sub: string): Promise<Map<string, string>> {
  // annex.dotfiles: git annex add would put dotfiles in git by default; upload annexes every file.
  await sh(dir, 'git', ['-c', 'annex.dotfiles=true', 'annex', 'add', '-q', sub])
  const { stdout } = await annex(dir, 'find', '--format=${key}\\t${file}\\n', sub)
  return new Map(
    stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [key, file] = l.split('\t') as [string, string]
        return [file, key]
      }),
  )
}

/** How many of `keys` git-annex finds present in `remote` (checkpresentkey, batch). */
async function presentIn(dir: string, remote: string, keys: string[]): Promise<number> {
  const { stdout } = await sh(dir, 'git', ['annex', 'checkpresentkey', '--batch', remote], { input: keys.map((k) => `${k}\n`).join(''), timeoutMs: 300_000 })
  return stdout.split('\n').filter((l) => l === '1').length
}

/** `git annex p2phttp --jobs N` on `repo` (the helper's has --jobs 4). */
async function startReferenceJobs(t: TestContext, repo: string, jobs: number): Promise<{ port: number }> {
  return { port: (await startReference(t, repo, ['--wideopen'], {}, { jobs })).port }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function uploadTree(t: TestContext, root: string, client: string, target: string[], clone: string, jobs: number) {
  const names = await makeTree(join(root, 'tree'), 300, [48 * MiB, 16 * MiB, 5 * MiB + 3, MiB + 1])
  const r = await upload(client, [...target, `-J${jobs}`, '../tree'])
  assert.equal(r.code, 0, `upload failed: ${r.stderr}`)
  assert.equal(r.results.length, 300)
  assert.deepEqual(
    r.results.filter((x) => x.result !== 'stored').map((x) => `${x.file}: ${x.error}`),
    [],
  )
  const uploaded = new Map(r.results.map((x) => [x.file, x.key!]))

  // A real clone adding the same files computes the same keys.
  await sh(root, 'cp', ['-r', join(root, 'tree'), join(clone, 'tree')])
  const added = await addedKeys(clone, 'tree')
  assert.equal(added.size, 300)
  for (const n of names) assert.equal(uploaded.get(`tree/${n}`), added.get(`tree/${n}`), `key of ${n}`)
  t.diagnostic(`sample keys: ${[...added.values()].slice(0, 3).join(' ')}`)
  return { names, uploaded, results: r.results }
}

test('upload -J8 of a 300-file tree (1 B to 48 MiB, spaces and unicode) into a cluster served by annex-proxy: keys as git annex add, present on every node, --record, got back', { timeout: 900_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-upload-')
  const gw = await makeCluster(root)
  const served = await startAnnexProxy(t, gw, ['--wideopen'])
  const client = await makeClient(gw, join(root, 'client'), served.port)
  const clone = await makeClient(gw, join(root, 'clone'), served.port)
  assert.match((await annex(client, 'info', 'origin')).stdout, /gateway to cluster: origin-mycluster/)

  const { names, uploaded, results } = await uploadTree(t, root, client, ['--to', 'origin-mycluster'], clone, 8)
  const keys = [...new Set(uploaded.values())]
  // The cluster's nodes each report the node UUIDs that took it.
  const nodeUuids = await Promise.all(['n1', 'n2', 'n3'].map((n) => repoUuid(join(root, n))))
  for (const r of results) assert.deepEqual([...r.plusuuids].sort(), [...nodeUuids].sort(), `plusuuids of ${r.file}`)
  assert.equal(await presentIn(clone, 'origin-mycluster', keys), keys.length, 'checkpresentkey on the cluster')
  for (const n of ['n1', 'n2', 'n3']) {
    const { stdout } = await annex(join(root, n), 'findkeys', '--in', 'here')
    assert.equal(new Set(stdout.split('\n').filter(Boolean)).size, keys.length, `keys on ${n}`)
  }

  // A rerun sends nothing: every key is already there.
  const again = await upload(client, ['--to', 'origin-mycluster', '-J8', '../tree'])
  assert.equal(again.code, 0, again.stderr)
  assert.ok(again.results.every((x) => x.result === 'present' && x.bytes === 0))

  // --record: the files become annexed files of the clone, located on the nodes (and so in the cluster).
  const clusterUuid = (await git(gw, 'config', 'annex.cluster.mycluster')).stdout.trim()
  const rec = await upload(client, ['--to', 'origin-mycluster', '-J8', '--record', '.', '../tree'])
  assert.equal(rec.code, 0, rec.stderr)
  const { stdout: found } = await annex(client, 'find', '--format=${key}\\t${file}\\n', '--not', '--in', 'here', 'tree')
  assert.equal(found.split('\n').filter(Boolean).length, 300, 'annexed files recorded, content not here')
  const where = await annex(client, 'whereis', '--json', 'tree')
  for (const line of where.stdout.split('\n').filter(Boolean)) {
    const j = JSON.parse(line) as { file: string; key: string; whereis: { uuid: string }[] }
    assert.equal(j.key, uploaded.get(j.file))
    assert.deepEqual(
      j.whereis.map((w) => w.uuid).sort(),
      [...nodeUuids, clusterUuid].sort(),
      `whereis ${j.file}`,
    )
  }
  // … and git annex get works there at once: every byte comes back.
  await sh(client, 'git', ['annex', 'get', '-q', '-J4', 'tree'], { timeoutMs: 600_000 })
  for (const n of names) {
    assert.equal(sha(await readFile(join(client, 'tree', n))), sha(await readFile(join(root, 'tree', n))), `content of ${n}`)
  }
})

test('upload -J4 of the same tree into the reference git annex p2phttp: keys as git annex add, present, content verified where it was stored', { timeout: 900_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-upload-ref-')
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  // The reference serves --jobs/2 requests at once (transcripts/README item 1). With 8 uploads
  // in flight it stopped answering for good in some runs here (--jobs 4 and 16 alike, under
  // load; spec §9.19), so it gets -J4 and room for it.
  const served = await startReferenceJobs(t, srv, 8)
  const clone = await makeClient(srv, join(root, 'clone'), served.port)
  const uuid = await repoUuid(srv)
  const { names, uploaded } = await uploadTree(t, root, clone, ['--url', `annex+http://127.0.0.1:${served.port}/git-annex/`, '--uuid', uuid], clone, 4)
  const keys = [...new Set(uploaded.values())]
  const { stdout } = await annex(srv, 'findkeys', '--in', 'here')
  assert.equal(new Set(stdout.split('\n').filter(Boolean)).size, keys.length, 'the reference holds every key')
  assert.equal(await presentIn(clone, 'origin', keys), keys.length, 'checkpresentkey on the reference')
  // A clone that never had them finds every file present on the reference.
  const other = await makeClient(srv, join(root, 'other'), served.port)
  const rec = await upload(other, ['--to', 'origin', '-J4', '--record', '.', '../tree'])
  assert.equal(rec.code, 0, rec.stderr)
  assert.ok(rec.results.every((x) => x.result === 'present'))
  // The content is checked where the reference stored it, not by getting it back through the
  // reference: its GET stalls for good a few KiB before the end of a file in some loaded runs
  // (a 16 MiB key stopped 12 312 bytes short in a CI run; spec §9.19), which is its defect,
  // not the upload client's. fsck re-hashes every stored key.
  await annex(srv, 'fsck', '--all', '--quiet')
  for (const n of names.slice(0, 40)) {
    const at = (await annex(srv, 'contentlocation', uploaded.get(`tree/${n}`)!)).stdout.trim()
    assert.equal(sha(await readFile(join(srv, at))), sha(await readFile(join(root, 'tree', n))), `content of ${n}`)
  }
})
