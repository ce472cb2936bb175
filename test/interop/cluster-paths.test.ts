// The tips/clusters recipe with every node transport annex-proxy has, driven by the real
// client: n1 by a local path (LocalRepo), n2 over annex+http served by the reference
// `git annex p2phttp` (HttpRepo), n3 over ssh, i.e. `git-annex-shell p2pstdio` through a
// stand-in ssh (StdioRepo). Then a client that vanishes mid-fanout: nothing may be
// committed anywhere, nothing left on the gateway, and a rerun completes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { findKeysHere, git, gitEnv, makeClient, makeRepo, repoUuid, sh, shStatus, startAnnexProxy, startReference, tempDir, type Served } from '../helpers/annex.js'
import { installFakeSsh } from '../helpers/fake-ssh.js'
import { holdsOpen, waitUntil } from '../helpers/wait.js'

const NODES = ['n1', 'n2', 'n3'] as const

interface Setup {
  root: string
  gw: string
  /** Environment in which `ssh` is the stand-in, for git, git-annex and the gateway. */
  sshEnv: NodeJS.ProcessEnv
  n2Server: Served
  gateway: Served
  client: string
  /** repository name (n1…, client, cluster) by UUID, for whereis. */
  names: Map<string, string>
}

async function mixedCluster(t: TestContext, gatewayFlags: string[] = []): Promise<Setup> {
  const root = await tempDir(t)
  // `ssh` logs each command line, so the test can tell n3 was reached through it.
  const sshEnv = await installFakeSsh(root, { log: join(root, 'ssh.log') })
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  const names = new Map<string, string>()
  for (const n of NODES) {
    await makeRepo(join(root, n), n)
    names.set(await repoUuid(join(root, n)), n)
  }
  // n2: the reference p2phttp; the gateway reaches it by its annexUrl.
  const n2Server = await startReference(t, join(root, 'n2'))
  await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await git(gw, 'remote', 'add', 'n1', '../n1')
  await git(gw, 'remote', 'add', 'n2', '../n2')
  await git(gw, 'config', 'remote.n2.annexUrl', `annex+http://127.0.0.1:${n2Server.port}/git-annex/`)
  await git(gw, 'remote', 'add', 'n3', `ssh://localhost${join(root, 'n3')}`)
  for (const n of NODES) await git(gw, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  // git-annex itself learns n3's UUID over the stand-in ssh.
  await sh(gw, 'git', ['annex', 'initcluster', 'mycluster'], { env: sshEnv })
  await sh(gw, 'git', ['annex', 'updatecluster'], { env: sshEnv })
  for (const n of NODES) assert.equal((await git(gw, 'config', `remote.${n}.annex-uuid`)).stdout.trim(), await repoUuid(join(root, n)), `gateway knows ${n}`)
  assert.match(await sshLog(root), /git-annex-shell 'configlist'/, 'git-annex asked n3 over ssh')
  const gateway = await startAnnexProxy(t, gw, ['--wideopen', ...gatewayFlags], sshEnv)
  const client = await makeClient(gw, join(root, 'client'), gateway.port)
  names.set(await repoUuid(client), 'client')
  names.set((await git(gw, 'config', 'annex.cluster.mycluster')).stdout.trim(), 'cluster')
  return { root, gw, sshEnv, n2Server, gateway, client, names }
}

const sshLog = (root: string) => readFile(join(root, 'ssh.log'), 'utf8').catch(() => '')

const run = async (dir: string, ...args: string[]) => (await sh(dir, 'git', args)).stdout

/** file → sorted names of the repositories `whereis` lists for it (every UUID must be known). */
async function whereis(s: Setup, files: string[]): Promise<Record<string, string[]>> {
  const stdout = await run(s.client, 'annex', 'whereis', '--json', ...files).catch((e: Error) => /(\{.*\}\n?)+/s.exec(e.message)?.[0] ?? '')
  const out: Record<string, string[]> = {}
  for (const line of stdout.split('\n').filter(Boolean)) {
    const j = JSON.parse(line) as { file: string; whereis: { uuid: string; description: string }[] }
    out[j.file] = j.whereis.map((w) => s.names.get(w.uuid) ?? `unknown ${w.uuid} ${w.description}`).sort()
  }
  return out
}

/** Every regular file beneath `dir` (none when it does not exist). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return []
    throw e
  })
  return entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name))
}

/**
 * `git annex fsck --all` in a node finds nothing wrong with what it holds. A node knows only
 * its own location log, so every key removed from it has "no known copies" as far as it can
 * tell, and fsck counts that as a failure: that, and only for keys the node does not hold,
 * is the one complaint allowed.
 */
async function fsckClean(dir: string): Promise<void> {
  const r = await shStatus(dir, 'git', ['annex', 'fsck', '-q', '--all'])
  const here = new Set(await findKeysHere(dir))
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean)
  const gone = lines.filter((l) => /^\*\* No known copies exist of (\S+)$/.exec(l) && !here.has(l.split(' ').pop()!))
  const expected = gone.length === 0 ? [] : [...gone, `fsck: ${gone.length} failed`]
  assert.deepEqual(lines, expected, `fsck --all in ${dir}`)
  assert.equal(r.code, gone.length === 0 ? 0 : 1, `fsck --all in ${dir}`)
}

test('mixed node transports (local path, reference p2phttp, git-annex-shell over ssh): copy/get/drop/move via the cluster and single nodes, testremote', async (t) => {
  const s = await mixedCluster(t)
  const c = s.client
  assert.match(await run(c, 'annex', 'info', 'origin'), /gateway to cluster: origin-mycluster/)
  const data = {
    'a.txt': Buffer.from('hello\n'),
    'b.bin': randomBytes(2_000_003),
    'c.bin': randomBytes(300_000),
    'd.bin': randomBytes(1_000_001),
  }
  for (const [f, b] of Object.entries(data)) await writeFile(join(c, f), b)
  await run(c, 'annex', 'add', '-q', ...Object.keys(data))
  await run(c, 'commit', '-q', '-m', 'add')
  const key = async (f: string) => (await run(c, 'annex', 'lookupkey', f)).trim()

  // To the cluster: every node gets it, each over its own transport.
  await run(c, 'annex', 'copy', '--to', 'origin-mycluster', 'a.txt', 'b.bin')
  // To single nodes behind the gateway: the p2phttp one and the ssh one.
  await run(c, 'annex', 'copy', '--to', 'origin-n2', 'c.bin')
  await run(c, 'annex', 'copy', '--to', 'origin-n3', 'd.bin')
  for (const n of NODES) await fsckClean(join(s.root, n))
  assert.deepEqual(await findKeysHere(join(s.root, 'n2')), [await key('a.txt'), await key('b.bin'), await key('c.bin')].sort())
  assert.deepEqual(await findKeysHere(join(s.root, 'n3')), [await key('a.txt'), await key('b.bin'), await key('d.bin')].sort())

  // Gets: through the cluster, and from each remote node alone.
  await run(c, 'annex', 'drop', 'b.bin', 'c.bin', 'd.bin')
  await run(c, 'annex', 'get', '--from', 'origin-mycluster', 'b.bin')
  await run(c, 'annex', 'get', '--from', 'origin-n2', 'c.bin')
  await run(c, 'annex', 'get', '--from', 'origin-n3', 'd.bin')
  for (const f of ['b.bin', 'c.bin', 'd.bin'] as const) assert.deepEqual(await readFile(join(c, f)), data[f], f)

  // Drop from the cluster (all three nodes), move to the cluster (the client drops its copy).
  await run(c, 'annex', 'drop', '--from', 'origin-mycluster', 'a.txt')
  await run(c, 'annex', 'move', '--to', 'origin-mycluster', 'b.bin')
  // Move to the ssh node, then drop from the p2phttp node: numcopies is checked by
  // locking the copy on n3 through the gateway (LOCKCONTENT over p2pstdio).
  await run(c, 'annex', 'move', '--to', 'origin-n3', 'c.bin')
  await run(c, 'annex', 'drop', '--from', 'origin-n2', 'c.bin')
  // And back from the ssh node to the client.
  await run(c, 'annex', 'copy', '--to', 'origin-n2', 'd.bin')
  await run(c, 'annex', 'drop', 'd.bin')
  await run(c, 'annex', 'move', '--from', 'origin-n2', 'd.bin')
  assert.deepEqual(await readFile(join(c, 'd.bin')), data['d.bin'])

  const out = join(s.root, 'testremote.out')
  await sh(c, 'bash', ['-c', `timeout 600 git annex testremote origin-mycluster --fast > ${out} 2>&1`]).catch(async (e: Error) => {
    throw new Error(`${e.message}\n${(await readFile(out, 'utf8')).slice(-4000)}\n--- gateway:\n${s.gateway.output().slice(-4000)}`)
  })
  assert.match(await readFile(out, 'utf8'), /All \d+ tests passed/)

  // What the steps did, and nothing else (testremote removed what it stored).
  const keys = { a: await key('a.txt'), b: await key('b.bin'), c: await key('c.bin'), d: await key('d.bin') }
  assert.deepEqual(await findKeysHere(join(s.root, 'n1')), [keys.b])
  assert.deepEqual(await findKeysHere(join(s.root, 'n2')), [keys.b])
  assert.deepEqual(await findKeysHere(join(s.root, 'n3')), [keys.b, keys.c, keys.d].sort())
  for (const n of NODES) await fsckClean(join(s.root, n))
  await run(c, 'annex', 'sync', '-q', '--no-content', '--no-push')
  assert.deepEqual(await whereis(s, ['a.txt', 'b.bin', 'c.bin', 'd.bin']), {
    'a.txt': ['client'],
    'b.bin': ['cluster', 'n1', 'n2', 'n3'],
    'c.bin': ['cluster', 'n3'],
    'd.bin': ['client', 'cluster', 'n3'],
  })
  // The routes were the ones meant: n3 through ssh, n2 only through its p2phttp server.
  assert.match(await sshLog(s.root), new RegExp(`git-annex-shell 'p2pstdio' '${join(s.root, 'n3')}'`))
  await s.n2Server.stop()
  await assert.rejects(run(c, 'annex', 'copy', '--to', 'origin-n2', 'a.txt'))
  assert.deepEqual(await findKeysHere(join(s.root, 'n2')), [keys.b])
})

const duBytes = async (dir: string) => Number((await sh(dir, 'du', ['-sb', dir])).stdout.split('\t')[0])

const sizeOf = async (f: string) => (await stat(f).catch(() => ({ size: 0 }))).size

test('a client killed mid-fanout: no node commits anything, the gateway keeps nothing, a rerun completes', async (t) => {
  const s = await mixedCluster(t)
  const c = s.client
  await sh(c, 'bash', ['-c', 'head -c 268435456 /dev/urandom > big.bin'])
  await run(c, 'annex', 'add', '-q', 'big.bin')
  await run(c, 'commit', '-q', '-m', 'big')
  const key = (await run(c, 'annex', 'lookupkey', 'big.bin')).trim()
  const tmp = (n: string) => join(s.root, n, '.git', 'annex', 'tmp', key)

  const gwAnnexBefore = await duBytes(join(s.gw, '.git', 'annex'))
  // The client in its own process group, so the whole of it can be killed at once.
  const copy = spawn('git', ['annex', 'copy', '--to', 'origin-mycluster', 'big.bin'], { cwd: c, env: gitEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let copyOut = ''
  copy.stdout.setEncoding('utf8').on('data', (d: string) => (copyOut += d))
  copy.stderr.setEncoding('utf8').on('data', (d: string) => (copyOut += d))
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => copy.once('close', (code, sig) => r([code, sig])))
  let done = false
  void exited.then(() => (done = true))
  // Every node is receiving (the tee runs at the slowest node's pace).
  await waitUntil('every node receiving more than 16 MiB of the upload', 120_000, async () => {
    assert.equal(done, false, `the upload finished before the client could be killed: ${copyOut}`)
    return (await Promise.all(NODES.map((n) => sizeOf(tmp(n))))).every((z) => z > 16 * 1024 * 1024)
  }, 5)
  process.kill(-copy.pid!, 'SIGKILL')
  assert.deepEqual(await exited, [null, 'SIGKILL'])
  const killedAt = await Promise.all(NODES.map((n) => sizeOf(tmp(n))))

  // Settled: nobody writes a node's temp file any more — not the gateway (n1), nor its
  // git-annex-shell sessions (n3), nor n2's p2phttp.
  await waitUntil('every node to close its temp file after the client was killed', 60_000, () => {
    assert.ok(s.gateway.child.exitCode === null, 'the gateway is still running')
    return NODES.every((n) => !holdsOpen(s.gateway.child.pid!, tmp(n)) && !holdsOpen(s.n2Server.child.pid!, tmp(n)))
  }, 100)
  for (const n of NODES) {
    const dir = join(s.root, n)
    assert.deepEqual(await findKeysHere(dir), [], `${n} logs no copy`)
    assert.deepEqual(await filesUnder(join(dir, '.git', 'annex', 'objects')), [], `${n} holds no object`)
    const kept = await sizeOf(tmp(n))
    assert.ok(kept >= killedAt[NODES.indexOf(n)]! && kept < 256 * 1024 * 1024, `${n} keeps a prefix for resume (${kept} bytes)`)
    await fsckClean(dir)
  }
  assert.deepEqual(await filesUnder(join(s.gw, '.git', 'annex', 'objects')), [], 'the gateway holds no object')
  assert.deepEqual(await filesUnder(join(s.gw, '.git', 'annex', 'tmp')), [], 'the gateway holds no temp file')
  const grown = (await duBytes(join(s.gw, '.git', 'annex'))) - gwAnnexBefore
  assert.ok(grown < 4 * 1024 * 1024, `gateway .git/annex grew by ${grown} bytes`)

  // The rerun resumes each node from what it kept and completes everywhere.
  await run(c, 'annex', 'copy', '--to', 'origin-mycluster', 'big.bin')
  for (const n of NODES) {
    assert.deepEqual(await findKeysHere(join(s.root, n)), [key], n)
    await fsckClean(join(s.root, n))
  }
  assert.deepEqual(await filesUnder(join(s.gw, '.git', 'annex', 'objects')), [], 'the gateway holds no object')
  assert.deepEqual(await filesUnder(join(s.gw, '.git', 'annex', 'tmp')), [], 'the gateway holds no temp file')
  assert.deepEqual((await whereis(s, ['big.bin']))['big.bin'], ['client', 'cluster', 'n1', 'n2', 'n3'])
})

test('testremote passes on single nodes behind the gateway: one over annex+http (reference p2phttp), one over ssh (git-annex-shell)', async (t) => {
  const s = await mixedCluster(t)
  for (const r of ['origin-n2', 'origin-n3']) {
    const out = join(s.root, `testremote-${r}.out`)
    await sh(s.client, 'bash', ['-c', `timeout 600 git annex testremote ${r} --fast > ${out} 2>&1`]).catch(async (e: Error) => {
      throw new Error(`${r}: ${e.message}\n${(await readFile(out, 'utf8')).slice(-4000)}\n--- gateway:\n${s.gateway.output().slice(-3000)}`)
    })
    assert.match(await readFile(out, 'utf8'), /All \d+ tests passed/, r)
  }
  // testremote removed what it stored.
  for (const n of ['n2', 'n3']) assert.deepEqual(await findKeysHere(join(s.root, n)), [], n)
})

/** The pids of the gateway's live `git-annex-shell p2pstdio` sessions. */
async function shellSessions(gatewayPid: number): Promise<number[]> {
  const { stdout } = await sh('/', 'ps', ['-e', '-o', 'pid=,ppid=,args='])
  const procs = stdout.split('\n').filter(Boolean).map((l) => {
    const [, pid, ppid, args] = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)!
    return { pid: Number(pid), ppid: Number(ppid), args: args! }
  })
  const below = new Set([gatewayPid])
  for (let grew = true; grew; ) {
    grew = false
    for (const p of procs) if (below.has(p.ppid) && !below.has(p.pid)) below.add(p.pid), (grew = true)
  }
  return procs.filter((p) => below.has(p.pid) && /^git-annex-shell p2pstdio /.test(p.args)).map((p) => p.pid)
}

test('gets killed mid-stream from each kind of node: the gateway goes on serving, holds a bounded set of sessions, and the next get verifies', async (t) => {
  const s = await mixedCluster(t)
  const c = s.client
  await sh(c, 'bash', ['-c', 'head -c 100000000 /dev/urandom > big.bin'])
  const data = await readFile(join(c, 'big.bin'))
  await run(c, 'annex', 'add', '-q', 'big.bin')
  await run(c, 'commit', '-q', '-m', 'big')
  await run(c, 'annex', 'copy', '--to', 'origin-n2', 'big.bin')
  await run(c, 'annex', 'copy', '--to', 'origin-n3', 'big.bin')
  const key = (await run(c, 'annex', 'lookupkey', 'big.bin')).trim()
  const tmpf = join(c, '.git', 'annex', 'tmp', key)
  await run(c, 'annex', 'drop', 'big.bin')
  for (const r of ['origin-n3', 'origin-n2', 'origin-mycluster']) {
    for (let i = 0; i < 3; i++) {
      const g = spawn('git', ['annex', 'get', '--from', r, 'big.bin'], { cwd: c, env: gitEnv, detached: true, stdio: 'ignore' })
      const exited = new Promise((res) => g.once('close', res))
      // Killed at a different point each time, always mid-stream.
      const at = (8 + 4 * i) * 1024 * 1024
      await waitUntil(`${r}: the get to pass ${at} bytes`, 60_000, async () => (await sizeOf(tmpf)) >= at, 5)
      process.kill(-g.pid!, 'SIGKILL')
      await exited
      // Start over each time, so every get streams the object from the start.
      await sh(c, 'rm', ['-f', tmpf])
    }
    await run(c, 'annex', 'get', '--from', r, 'big.bin')
    assert.ok((await readFile(join(c, 'big.bin'))).equals(data), `${r}: content after the get`)
    await run(c, 'annex', 'drop', 'big.bin')
  }
  assert.ok(s.gateway.child.exitCode === null, 'the gateway is still running')
  // Abandoned ssh sessions were ended, not piled up: at most the pool's bound remain.
  const sessions = await shellSessions(s.gateway.child.pid!)
  assert.ok(sessions.length <= 4, `gateway keeps ${sessions.length} git-annex-shell sessions`)
  // And n3 answers through them still.
  await run(c, 'annex', 'get', '--from', 'origin-n3', 'big.bin')
  assert.ok((await readFile(join(c, 'big.bin'))).equals(data))
})
