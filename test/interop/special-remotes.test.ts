// Special remotes behind annex-proxy, driven by the real git-annex client over annex+http:
// an S3 remote (a real S3 server) and a directory remote served natively, an rsync remote
// through the gateway's own git-annex; each proxied (annex-proxy=true) and as nodes of a
// cluster beside local nodes. copy/get/drop/move/fsck --from and testremote --fast.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { annex, findKeysHere, git, makeClient, makeRepo, sh, shStatus, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { useTestS3 } from '../helpers/s3-server.js'

const s3 = useTestS3()

interface Setup {
  root: string
  gw: string
  client: string
  /** Environment with the S3 credentials, for git-annex run in the gateway. */
  env: NodeJS.ProcessEnv
  run(...args: string[]): Promise<string>
}

const s3Params = (bucket: string, extra: string[] = []) => [
  'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${s3().port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4', ...extra,
]

/**
 * A gateway with special remotes `s3` (chunk=…), `dsr` (directory) and `rs` (rsync to a
 * local path), each proxied; with `cluster`, also local nodes n1, n2 and the S3 remote
 * `s3c` and directory `dsc` as nodes of cluster `mycluster`. annex-proxy serves it with no
 * AWS variables in its environment: it reads the credentials git-annex cached.
 */
async function gateway(t: TestContext, opts: { cluster?: boolean; s3Extra?: string[] } = {}): Promise<Setup> {
  const root = await tempDir(t)
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  const env = { ...process.env, ...s3().env }
  await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await sh(gw, 'git', ['annex', 'initremote', 's3', ...s3Params(await s3().bucket(), opts.s3Extra)], { env })
  await mkdir(join(root, 'dsr'))
  await annex(gw, 'initremote', 'dsr', 'type=directory', `directory=${join(root, 'dsr')}`, 'encryption=none')
  await mkdir(join(root, 'rs'))
  await annex(gw, 'initremote', 'rs', 'type=rsync', `rsyncurl=${join(root, 'rs')}`, 'encryption=none')
  for (const r of ['s3', 'dsr', 'rs']) await git(gw, 'config', `remote.${r}.annex-proxy`, 'true')
  if (opts.cluster) {
    for (const n of ['n1', 'n2']) {
      await makeRepo(join(root, n), n)
      await git(gw, 'remote', 'add', n, `../${n}`)
      await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
    }
    await sh(gw, 'git', ['annex', 'initremote', 's3c', ...s3Params(await s3().bucket(), ['chunk=1MiB'])], { env })
    await git(gw, 'config', 'remote.s3c.annex-cluster-node', 'mycluster')
    await mkdir(join(root, 'dsc'))
    await annex(gw, 'initremote', 'dsc', 'type=directory', `directory=${join(root, 'dsc')}`, 'encryption=none')
    await git(gw, 'config', 'remote.dsc.annex-cluster-node', 'mycluster')
    await annex(gw, 'initcluster', 'mycluster')
    await annex(gw, 'updatecluster')
  }
  await annex(gw, 'updateproxy')
  const noAws = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')))
  const served = await startAnnexProxy(t, gw, ['--wideopen'], { ...noAws, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' })
  const client = await makeClient(gw, join(root, 'client'), served.port)
  return { root, gw, client, env, run: async (...args) => (await sh(client, 'git', args)).stdout }
}

/** What the gateway's own git-annex finds on its remote `remote` (it asks the remote itself). */
async function gatewayHas(s: Setup, key: string, remote: string): Promise<boolean> {
  return (await shStatus(s.gw, 'git', ['annex', 'checkpresentkey', key, remote])).code === 0
}

async function keyOf(s: Setup, file: string): Promise<string> {
  return (await s.run('annex', 'lookupkey', file)).trim()
}

async function testremote(s: Setup, remote: string): Promise<void> {
  const out = join(s.root, `testremote-${remote}.out`)
  await sh(s.client, 'bash', ['-c', `timeout 900 git annex testremote ${remote} --fast </dev/null > ${out} 2>&1`], { timeoutMs: 960_000 }).catch(async (e: Error) => {
    const text = await readFile(out, 'utf8')
    const lines = text.split('\n')
    const failed = lines.flatMap((l, i) => (/FAIL/.test(l) ? lines.slice(Math.max(0, i - 2), i + 8) : []))
    throw new Error(`${e.message}\n${failed.join('\n')}\n…\n${text.slice(-1500)}`)
  })
  assert.match(await readFile(out, 'utf8'), /All \d+ tests passed/)
}

/** copy / get / fsck / drop / move through `remote` (the client's name for it). */
async function roundTrip(s: Setup, remote: string, gatewayName: string | undefined): Promise<void> {
  const big = randomBytes(3_000_017)
  const tag = remote.replace(/\W/g, '_')
  await writeFile(join(s.client, `${tag}-a.txt`), `hello ${remote}\n`)
  await writeFile(join(s.client, `${tag}-b.bin`), big)
  await writeFile(join(s.client, `${tag}-c.bin`), randomBytes(70_000))
  const files = [`${tag}-a.txt`, `${tag}-b.bin`, `${tag}-c.bin`]
  await s.run('annex', 'add', '-q', ...files)
  await s.run('commit', '-q', '-m', `add for ${remote}`)
  await s.run('annex', 'copy', '--to', remote, `${tag}-a.txt`, `${tag}-b.bin`)
  if (gatewayName) {
    const env = s.env
    for (const f of [`${tag}-a.txt`, `${tag}-b.bin`]) {
      assert.equal((await shStatus(s.gw, 'bash', ['-c', `AWS_ACCESS_KEY_ID=${env.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${env.AWS_SECRET_ACCESS_KEY} git annex checkpresentkey ${await keyOf(s, f)} ${gatewayName}`])).code, 0, `${f} on ${gatewayName}`)
    }
  }
  await s.run('annex', 'drop', `${tag}-b.bin`)
  await s.run('annex', 'get', '--from', remote, `${tag}-b.bin`)
  assert.deepEqual(await readFile(join(s.client, `${tag}-b.bin`)), big)
  await s.run('annex', 'fsck', '--from', remote, `${tag}-a.txt`, `${tag}-b.bin`)
  await s.run('annex', 'drop', '--from', remote, `${tag}-a.txt`)
  await s.run('annex', 'move', '--to', remote, `${tag}-c.bin`)
  const whereis = await s.run('annex', 'whereis', ...files)
  assert.match(whereis, new RegExp(`${tag}-a.txt \\(1 copy\\)`))
  // Moved: no longer here.
  assert.doesNotMatch(whereis.split(`whereis ${tag}-c.bin`)[1]!.split('ok')[0]!, /\[here\]/)
  if (gatewayName) {
    assert.equal(await gatewayHas(s, await keyOf(s, `${tag}-a.txt`), gatewayName).catch(() => true), false)
  }
  // The absent key: GET, checkpresent and a drop with a lock proof elsewhere answer at once.
  await s.run('annex', 'get', '--from', remote, `${tag}-c.bin`)
  await s.run('annex', 'drop', '--from', remote, `${tag}-c.bin`)
}

describe('proxied special remotes', () => {
  for (const [remote, label] of [['origin-s3', 'S3, natively'], ['origin-dsr', 'directory, natively'], ['origin-rs', 'rsync, through git-annex']] as const) {
    test(`${label}: copy/get/fsck/drop/move with the real client, then testremote --fast`, async (t) => {
      const s = await gateway(t, remote === 'origin-s3' ? { s3Extra: ['chunk=1MiB'] } : {})
      await roundTrip(s, remote, remote.slice('origin-'.length))
      await testremote(s, remote)
    })
  }
})

describe('special remotes as cluster nodes', () => {
  test('S3 (chunk=1MiB) and directory nodes beside local nodes: copy/get/fsck/drop/move via the cluster, testremote --fast', async (t) => {
    const s = await gateway(t, { cluster: true })
    await roundTrip(s, 'origin-mycluster', undefined)
    // The cluster upload reached every node: the local ones, the S3 bucket and the directory.
    await writeFile(join(s.client, 'all.bin'), randomBytes(2_500_000))
    await s.run('annex', 'add', '-q', 'all.bin')
    await s.run('commit', '-q', '-m', 'all')
    await s.run('annex', 'copy', '--to', 'origin-mycluster', 'all.bin')
    const key = await keyOf(s, 'all.bin')
    for (const n of ['n1', 'n2']) assert.deepEqual(await findKeysHere(join(s.root, n)).then((ks) => ks.includes(key)), true, n)
    for (const r of ['s3c', 'dsc']) assert.equal(await gatewayHas(s, key, r), true, r)
    await s.run('annex', 'drop', '--from', 'origin-mycluster', 'all.bin')
    for (const r of ['s3c', 'dsc']) assert.equal(await gatewayHas(s, key, r), false, r)
    await testremote(s, 'origin-mycluster')
  })
})
