// The real git-annex client over ssh (the stand-in of recipes.md) against `annex-proxy p2pstdio`
// reached through the git-annex-shell front (bin/git-annex-shell first on the ssh user's PATH),
// side by side with the reference git-annex-shell doing the same: a repository that is also a
// gateway (a proxied remote and a cluster of two nodes). Copy/get/drop/move/fsck on all three
// must leave what the reference leaves; testremote --fast passes on each; the server modes
// refuse what git-annex-shell refuses; an upload cut off mid-way resumes from the bytes kept;
// a client held to protocol v0 works.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { annex, findKeysHere, git, gitEnv, makeRepo, PROJECT_ROOT, repoUuid, sh, shStatus, tempDir } from '../helpers/annex.js'
import { installFakeSsh } from '../helpers/fake-ssh.js'

const FRONT = join(PROJECT_ROOT, 'bin/git-annex-shell')

/**
 * Stands between the ssh stand-in and the remote command on p2pstdio sessions:
 * P2P_FORCE_VERSION=n rewrites the client's first line `VERSION m` to `VERSION n` (so a real
 * client speaks that version); P2P_CUT_AFTER=n passes the first n bytes and drops the rest
 * (the upload stalls, as on a dead network, until the client is killed).
 */
const FILTER = `
import { spawn } from 'node:child_process'
const force = process.env.P2P_FORCE_VERSION
const cut = process.env.P2P_CUT_AFTER === undefined ? Infinity : Number(process.env.P2P_CUT_AFTER)
const child = spawn('sh', ['-c', process.argv[2]], { stdio: ['pipe', 'inherit', 'inherit'] })
child.stdin.on('error', () => {})
let first = force !== undefined
let passed = 0
process.stdin.on('data', (d) => {
  if (first) {
    const s = d.toString('latin1')
    d = Buffer.from(s.replace(/^VERSION [0-9]+\\n/, 'VERSION ' + force + '\\n'), 'latin1')
    first = false
  }
  const room = Math.max(0, cut - passed)
  if (room > 0) child.stdin.write(d.length > room ? d.subarray(0, room) : d)
  passed += d.length
})
process.stdin.on('end', () => child.stdin.end())
child.on('exit', (code) => process.exit(code ?? 1))
`

interface Side {
  readonly root: string
  readonly srv: string
  /** git and git-annex of the client side run in this environment (ssh is the stand-in). */
  readonly env: NodeJS.ProcessEnv
  readonly client: string
  run(...args: string[]): Promise<string>
  /** What the remote side wrote on stderr (annex-proxy's debug log for ours). */
  remoteLog(): Promise<string>
  names: Map<string, string>
}

/**
 * A repository `srv` that proxies remote `px` and is the gateway of cluster `mycluster`
 * (nodes n1, n2), all local; a client cloned from it over the ssh stand-in. `ours`: the ssh
 * user's PATH starts with the git-annex-shell front.
 */
async function setup(t: TestContext, ours: boolean): Promise<Side> {
  const root = await tempDir(t)
  const log = join(root, 'remote-stderr.log')
  await writeFile(join(root, 'filter.mjs'), FILTER)
  const run = `
exec 2>>'${log}'
case "$*" in
  *p2pstdio*) if [ -n "$P2P_FORCE_VERSION$P2P_CUT_AFTER" ]; then exec '${process.execPath}' '${join(root, 'filter.mjs')}' "$*"; fi ;;
esac
exec sh -c "$*"`
  const sshEnv = await installFakeSsh(root, { run })
  let env: NodeJS.ProcessEnv = { ...sshEnv }
  if (ours) {
    const front = join(root, 'front')
    await mkdir(front)
    await symlink(FRONT, join(front, 'git-annex-shell'))
    env = { ...env, PATH: `${front}:${sshEnv.PATH}`, ANNEX_PROXY_NODE: process.execPath, ANNEX_PROXY_LOG_LEVEL: 'debug' }
  }
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const names = new Map<string, string>()
  for (const n of ['px', 'n1', 'n2']) {
    await makeRepo(join(root, n), n)
    names.set(await repoUuid(join(root, n)), n)
    await git(srv, 'remote', 'add', n, `../${n}`)
  }
  await git(srv, 'config', 'remote.px.annex-proxy', 'true')
  for (const n of ['n1', 'n2']) await git(srv, 'config', `remote.${n}.annex-cluster-node`, 'mycluster')
  await annex(srv, 'initcluster', 'mycluster')
  await annex(srv, 'updatecluster')
  await annex(srv, 'updateproxy')
  names.set(await repoUuid(srv), 'srv')
  names.set((await git(srv, 'config', 'annex.cluster.mycluster')).stdout.trim(), 'cluster')
  const client = join(root, 'client')
  await sh(root, 'git', ['clone', '-q', `ssh://localhost${srv}`, client], { env })
  const side: Side = {
    root,
    srv,
    env,
    client,
    run: async (...args) => (await sh(client, 'git', args, { env })).stdout,
    remoteLog: () => readFile(log, 'utf8').catch(() => ''),
    names,
  }
  await side.run('annex', 'init', '-q', 'client')
  await side.run('annex', 'sync', '-q', '--no-content', '--no-push')
  names.set(await repoUuid(client), 'client')
  return side
}

/** file → sorted names of the repositories `whereis` lists for it. */
async function whereis(s: Side, files: string[]): Promise<Record<string, string[]>> {
  const stdout = await s.run('annex', 'whereis', '--json', ...files).catch((e: Error) => /(\{.*\}\n?)+/s.exec(e.message)?.[0] ?? '')
  const out: Record<string, string[]> = {}
  for (const l of stdout.split('\n').filter(Boolean)) {
    const j = JSON.parse(l) as { file: string; whereis: { uuid: string }[] }
    out[j.file] = j.whereis.map((w) => s.names.get(w.uuid) ?? w.uuid).sort()
  }
  return out
}

/** Deterministic file contents, so both sides have the same keys. */
function content(name: string, size: number): Buffer {
  const out = Buffer.alloc(size)
  let block = createHash('sha256').update(name).digest()
  for (let i = 0; i < size; i += block.length) {
    block.copy(out, i)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

const FILES = { 'a.txt': 6, 'b.bin': 2_000_003, 'c.bin': 300_000, 'd.bin': 1_000_001, 'e.bin': 70_000 } as const

async function addFiles(s: Side): Promise<void> {
  for (const [f, n] of Object.entries(FILES)) await writeFile(join(s.client, f), content(f, n))
  await s.run('annex', 'add', '-q', ...Object.keys(FILES))
  await s.run('commit', '-q', '-m', 'add')
}

/** The same steps on the repository itself, its proxied remote and its cluster. */
async function steps(s: Side): Promise<Record<string, string[]>> {
  assert.match(await s.run('annex', 'info', 'origin'), /gateway to cluster: origin-mycluster/)
  await addFiles(s)
  await s.run('annex', 'copy', '--to', 'origin', 'a.txt', 'b.bin', 'e.bin')
  await s.run('annex', 'copy', '--to', 'origin-px', 'c.bin', 'e.bin')
  await s.run('annex', 'copy', '--to', 'origin-mycluster', 'd.bin', 'a.txt')
  // Without --fast, fsck reads every byte back over the session (GET) and checks it.
  for (const r of ['origin', 'origin-px', 'origin-mycluster']) await s.run('annex', 'fsck', '-q', '--from', r)
  await s.run('annex', 'drop', 'b.bin', 'c.bin', 'd.bin')
  await s.run('annex', 'get', '-q', '--from', 'origin', 'b.bin')
  await s.run('annex', 'get', '-q', '--from', 'origin-px', 'c.bin')
  await s.run('annex', 'get', '-q', '--from', 'origin-mycluster', 'd.bin')
  for (const f of ['b.bin', 'c.bin', 'd.bin'] as const) assert.deepEqual(await readFile(join(s.client, f)), content(f, FILES[f]), f)
  await s.run('annex', 'drop', '--from', 'origin', 'a.txt')
  await s.run('annex', 'move', '--to', 'origin-px', 'b.bin')
  await s.run('annex', 'move', '--from', 'origin-mycluster', 'd.bin')
  await s.run('annex', 'drop', '--from', 'origin-mycluster', 'a.txt')
  // The drop proof for e.bin here is a lock on another copy (LOCKCONTENT over a session).
  await s.run('annex', 'drop', 'e.bin')
  await s.run('annex', 'drop', '--from', 'origin', 'e.bin')
  await s.run('annex', 'move', '--from', 'origin-px', 'e.bin')
  for (const n of ['srv', 'px', 'n1', 'n2']) await annex(n === 'srv' ? s.srv : join(s.root, n), 'fsck', '-q')
  return whereis(s, Object.keys(FILES))
}

test('copy/get/drop/move/fsck on the repository, its proxied remote and its cluster leave what git-annex-shell leaves', { timeout: 900_000 }, async (t) => {
  const ours = await setup(t, true)
  const oursWhere = await steps(ours)
  assert.match(await ours.remoteLog(), /annex-proxy: P2P < PUT /, 'the sessions were served by annex-proxy')
  const ref = await setup(t, false)
  assert.deepEqual(oursWhere, await steps(ref))
  assert.deepEqual(oursWhere['b.bin'], ['px', 'srv'])
  assert.deepEqual(oursWhere['d.bin'], ['client'])
  assert.deepEqual(oursWhere['a.txt'], ['client'])
  // What the server recorded is committed to its git-annex branch when a session ends.
  const key = (await ours.run('annex', 'lookupkey', 'b.bin')).trim()
  const branchLog = (await git(ours.srv, 'show', `git-annex:${(await annex(ours.srv, 'examinekey', '--format=${hashdirlower}${key}.log', key)).stdout}`)).stdout
  assert.match(branchLog, new RegExp(` 1 ${await repoUuid(ours.srv)}$`, 'm'))
})

test('git annex testremote --fast passes on the repository, its proxied remote and its cluster over p2pstdio', { timeout: 1_800_000 }, async (t) => {
  const s = await setup(t, true)
  for (const r of ['origin', 'origin-px', 'origin-mycluster']) {
    const out = join(s.root, `testremote-${r}.out`)
    await sh(s.client, 'bash', ['-c', `timeout 900 git annex testremote ${r} --fast > ${out} 2>&1`], { env: s.env, timeoutMs: 960_000 }).catch(async (e: Error) => {
      const o = await readFile(out, 'utf8')
      const lines = o.split('\n')
      const around = lines.flatMap((l, i) => (/FAIL/.test(l) ? lines.slice(i, i + 8) : []))
      throw new Error(`${e.message}\n${around.join('\n')}\n${o.slice(-1500)}`)
    })
    assert.match(await readFile(out, 'utf8'), /All \d+ tests passed/, r)
  }
  // testremote removes what it stored.
  for (const n of ['px', 'n1', 'n2']) assert.deepEqual(await findKeysHere(join(s.root, n)), [], n)
  assert.deepEqual(await findKeysHere(s.srv), [])
})

test('GIT_ANNEX_SHELL_READONLY and _APPENDONLY refuse what git-annex-shell refuses, through the gateway too', { timeout: 900_000 }, async (t) => {
  const outcome = async (s: Side, mode: NodeJS.ProcessEnv) => {
    const status = async (...args: string[]) => (await shStatus(s.client, 'env', [...Object.entries({ ...s.env, ...mode }).map(([k, v]) => `${k}=${v}`), 'git', ...args])).code
    const r: Record<string, number> = {}
    for (const remote of ['origin', 'origin-px', 'origin-mycluster']) {
      r[`copy --to ${remote}`] = await status('annex', 'copy', '--to', remote, 'c.bin')
      await s.run('annex', 'drop', 'b.bin')
      r[`get --from ${remote}`] = await status('annex', 'get', '--from', remote, 'b.bin')
      r[`drop --from ${remote}`] = await status('annex', 'drop', '--from', remote, 'a.txt')
    }
    return r
  }
  const prepare = async (ours: boolean) => {
    const s = await setup(t, ours)
    await addFiles(s)
    for (const remote of ['origin', 'origin-px', 'origin-mycluster']) await s.run('annex', 'copy', '--to', remote, 'a.txt', 'b.bin')
    return s
  }
  const ours = await prepare(true)
  const ref = await prepare(false)
  for (const mode of [{ GIT_ANNEX_SHELL_READONLY: '1' }, { GIT_ANNEX_SHELL_APPENDONLY: '1' }]) {
    const o = await outcome(ours, mode)
    assert.deepEqual(o, await outcome(ref, mode), JSON.stringify(mode))
    const ro = 'GIT_ANNEX_SHELL_READONLY' in mode
    for (const remote of ['origin', 'origin-px', 'origin-mycluster']) {
      assert.equal(o[`copy --to ${remote}`] === 0, !ro, `copy --to ${remote} in ${JSON.stringify(mode)}`)
      assert.equal(o[`drop --from ${remote}`], 1, `drop --from ${remote} refused`)
      assert.equal(o[`get --from ${remote}`], 0, `get --from ${remote} allowed`)
    }
  }
  assert.match(await ours.remoteLog(), /P2P > ERROR this repository is read-only; write access denied/)
  assert.match(await ours.remoteLog(), /P2P > ERROR this repository is append-only; removal denied/)
})

test('an upload cut off mid-way resumes from the bytes the server kept', { timeout: 900_000 }, async (t) => {
  const s = await setup(t, true)
  const big = randomBytes(8_000_000)
  await writeFile(join(s.client, 'big.bin'), big)
  await s.run('annex', 'add', '-q', 'big.bin')
  await s.run('commit', '-q', '-m', 'big')
  const key = (await s.run('annex', 'lookupkey', 'big.bin')).trim()
  const tmp = join(s.srv, '.git/annex/tmp', key)
  const cut = 3_000_000
  // git-annex itself, not the git wrapper: killing the wrapper would leave it running.
  const copy = spawn('git-annex', ['copy', '--to', 'origin', 'big.bin'], { cwd: s.client, env: { ...gitEnv, ...s.env, P2P_CUT_AFTER: String(cut) }, stdio: 'ignore' })
  const exited = once(copy, 'exit')
  const deadline = Date.now() + 120_000
  // Everything but the protocol lines before the DATA payload reaches the temp file.
  while (((await stat(tmp).catch(() => undefined))?.size ?? 0) < cut - 4096) {
    assert.ok(Date.now() < deadline, `the server's temp file did not reach ${cut - 4096} bytes within 120 s`)
    assert.equal(copy.exitCode, null, 'the copy is still running')
    await new Promise((r) => setTimeout(r, 50))
  }
  copy.kill('SIGKILL')
  await exited
  // The server sees its input end mid-DATA, keeps what arrived and ends its session.
  while (!/session ended/.test(await s.remoteLog())) {
    assert.ok(Date.now() < deadline, 'the server session did not end within 120 s of the client going away')
    await new Promise((r) => setTimeout(r, 50))
  }
  const kept = (await stat(tmp)).size
  assert.ok(kept >= cut - 4096 && kept < big.length, `kept ${kept} bytes`)
  await s.run('annex', 'copy', '--to', 'origin', 'big.bin')
  assert.match(await s.remoteLog(), new RegExp(`P2P > PUT-FROM ${kept}\\n`), 'the second upload started where the first stopped')
  await annex(s.srv, 'fsck', '-q', '--key', key)
  assert.deepEqual(await findKeysHere(s.srv), [key])
})

test('a real client held to protocol v0 (and v1) copies, gets, fscks and drops, as with git-annex-shell', { timeout: 900_000 }, async (t) => {
  const steps = async (s: Side, v: string) => {
    const run = async (...args: string[]) => (await sh(s.client, 'git', args, { env: { ...s.env, P2P_FORCE_VERSION: v } })).stdout
    await addFiles(s)
    for (const r of ['origin', 'origin-px', 'origin-mycluster']) {
      await run('annex', 'copy', '--to', r, 'a.txt', 'b.bin')
      await run('annex', 'fsck', '-q', '--from', r, 'a.txt', 'b.bin')
    }
    await run('annex', 'drop', 'b.bin')
    await run('annex', 'get', '--from', 'origin', 'b.bin')
    assert.deepEqual(await readFile(join(s.client, 'b.bin')), content('b.bin', FILES['b.bin']))
    await run('annex', 'drop', '--from', 'origin', 'a.txt')
    await run('annex', 'drop', '--from', 'origin-mycluster', 'a.txt')
    for (const n of ['n1', 'n2']) await annex(join(s.root, n), 'fsck', '-q')
    return whereis(s, ['a.txt', 'b.bin'])
  }
  for (const v of ['0', '1']) {
    const ours = await setup(t, true)
    const where = await steps(ours, v)
    assert.deepEqual(where, await steps(await setup(t, false), v), `v${v}`)
    // Below v2 there are no -PLUS replies: the client cannot learn which nodes of the cluster hold a copy.
    assert.deepEqual(where, { 'a.txt': ['client', 'px'], 'b.bin': ['client', 'px', 'srv'] })
    for (const n of ['n1', 'n2']) assert.deepEqual(await findKeysHere(join(ours.root, n)), [(await ours.run('annex', 'lookupkey', 'b.bin')).trim()], n)
    const log = await ours.remoteLog()
    assert.match(log, new RegExp(`P2P > VERSION ${v}\\n`), `sessions at v${v}`)
    assert.doesNotMatch(log, /P2P > VERSION [2-4]\n/, `no session above v${v}`)
    if (v === '0') assert.doesNotMatch(log, /P2P [<>] VALID/, 'no VALID at v0')
    else assert.match(log, /P2P [<>] VALID/)
  }
})

test('a client can pick the front per remote (remote.origin.annex-shell), with no change to the server’s PATH', { timeout: 900_000 }, async (t) => {
  const s = await setup(t, false)
  await s.run('config', 'remote.origin.annex-shell', FRONT)
  const env = { ...s.env, ANNEX_PROXY_NODE: process.execPath, ANNEX_PROXY_LOG_LEVEL: 'debug' }
  const run = async (...args: string[]) => (await sh(s.client, 'git', args, { env })).stdout
  await addFiles(s)
  await run('annex', 'copy', '--to', 'origin', 'a.txt')
  await run('annex', 'copy', '--to', 'origin-px', 'b.bin')
  await run('annex', 'copy', '--to', 'origin-mycluster', 'c.bin')
  const log = await s.remoteLog()
  for (const f of ['a.txt', 'b.bin', 'c.bin']) {
    const key = (await s.run('annex', 'lookupkey', f)).trim()
    assert.match(log, new RegExp(`P2P < PUT ${f} ${key}`), `${f} went through annex-proxy`)
  }
  assert.deepEqual(await whereis(s, ['a.txt', 'b.bin', 'c.bin']), { 'a.txt': ['client', 'srv'], 'b.bin': ['client', 'px'], 'c.bin': ['client', 'cluster', 'n1', 'n2'] })
})
