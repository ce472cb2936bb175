// --socket PATH: the endpoints over a unix socket (curl --unix-socket: git-annex's client
// cannot use one), mode 0660, a stale socket file replaced, a live one or a non-socket left
// alone, the file removed on shutdown, and a SIGHUP hand-over that keeps the same socket.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { lstat, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, defer, git, gitEnv, makeRepo, PROJECT_ROOT, repoUuid, sh, sha256Key, tempDir } from '../helpers/annex.js'
import { type ServeProcess, startServe } from '../helpers/serve-process.js'

const CU = '00000000-0000-4000-8000-00000000c0de'

async function curl(sock: string, args: string[]): Promise<{ status: number; body: Buffer }> {
  const r = await sh('/', 'curl', ['-sS', '--max-time', '60', '--unix-socket', sock, '-o', '-', '-w', '\n%{http_code}', ...args])
  const out = Buffer.from(r.stdout, 'latin1')
  const nl = out.lastIndexOf('\n')
  return { status: Number(out.subarray(nl + 1).toString()), body: out.subarray(0, nl) }
}

test('--socket: endpoints over a unix socket, 0660, stale socket replaced, live one refused, removed on shutdown, kept across a SIGHUP hand-over', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'repo'), 'served')
  await writeFile(join(repo, 'f'), 'hello over a socket\n')
  await annex(repo, 'add', '-q', 'f')
  await git(repo, 'commit', '-qm', 'f')
  const key = (await annex(repo, 'lookupkey', 'f')).stdout.trim()
  const uuid = await repoUuid(repo)
  const sock = join(dir, 'annex-proxy.sock')
  const base = `http://localhost/git-annex/${uuid}`

  const check = async (s: ServeProcess, what: string) => {
    assert.equal(s.address, sock, what)
    const st = await lstat(sock)
    assert.ok(st.isSocket(), what)
    assert.equal(st.mode & 0o777, 0o660, `${what}: mode`)
    const got = await curl(sock, [`${base}/key/${key}`])
    assert.equal(got.status, 200, what)
    assert.equal(got.body.toString(), 'hello over a socket\n', what)
  }

  const first = await startServe(t, repo, ['--wideopen', '--socket', sock])
  await check(first, 'first server')
  // Every kind of endpoint answers over the socket.
  // Text, since the helper reads curl's output as a string.
  const data = Buffer.from(randomBytes(50_000).toString('hex'))
  const file = join(dir, 'upload.bin')
  await writeFile(file, data)
  const k2 = sha256Key(data)
  const put = await curl(sock, ['-X', 'POST', '-H', `X-git-annex-data-length: ${data.length}`, '-H', 'Content-Type: application/octet-stream', '--data-binary', `@${file}`, `${base}/v4/put?key=${k2}&clientuuid=${CU}`])
  assert.equal(put.status, 200, put.body.toString())
  assert.equal((JSON.parse(put.body.toString()) as { stored: boolean }).stored, true)
  const present = await curl(sock, ['-X', 'POST', `${base}/v4/checkpresent?key=${k2}&clientuuid=${CU}`])
  assert.equal(JSON.parse(present.body.toString()).present, true)
  const range = await curl(sock, ['-H', 'Range: bytes=10-19', `${base}/v4/key/${k2}?clientuuid=${CU}`])
  assert.equal(range.status, 206)
  assert.ok(range.body.equals(data.subarray(10, 20)))
  const lock = await curl(sock, ['-X', 'POST', `${base}/v4/lockcontent?key=${k2}&clientuuid=${CU}`])
  assert.equal(JSON.parse(lock.body.toString()).locked, true)

  // A second server on a live socket is refused and leaves it serving.
  await assert.rejects(startServe(t, repo, ['--wideopen', '--socket', sock]), /another server is listening there/)
  await check(first, 'after a refused second server')

  // Killed without cleaning up: the stale file is replaced by the next server.
  first.child.kill('SIGKILL')
  await first.exited
  assert.ok((await lstat(sock)).isSocket(), 'a killed server leaves its socket file')
  const second = await startServe(t, repo, ['--wideopen', '--socket', sock])
  await check(second, 'server over a stale socket')

  // Hand-over: a new process serves the same socket file; the old one exits without removing it.
  const inoBefore = (await stat(sock)).ino
  const successorServes = second.waitFor((l) => l.msg === 'annex-proxy serving' && l.listener === 'handover', 'the successor to serve')
  second.child.kill('SIGHUP')
  const successor = await successorServes
  assert.equal(successor.address, sock)
  assert.equal(await second.exited, 0)
  assert.equal((await stat(sock)).ino, inoBefore, 'the same socket')
  const got = await curl(sock, [`${base}/key/${key}`])
  assert.equal(got.body.toString(), 'hello over a socket\n')
  const successorPid = Number(successor.pid)
  assert.notEqual(successorPid, second.pid)
  let successorGone = false
  defer(t, () => {
    if (!successorGone) process.kill(successorPid, 'SIGKILL')
  })
  const stopped = second.waitFor((l) => l.pid === successorPid && l.msg === 'shutting down: finishing in-flight requests', 'the successor to stop')
  process.kill(successorPid, 'SIGTERM')
  await stopped
  // Removed on shutdown (the successor's exit is seen as the file going away).
  const deadline = Date.now() + 30_000
  while (await lstat(sock).then(() => true, () => false)) {
    assert.ok(Date.now() < deadline, 'waited 30 s for the socket file to be removed on shutdown')
    await new Promise((r) => setTimeout(r, 50))
  }
  successorGone = true

  // Anything but a socket at the path is left alone.
  await writeFile(sock, 'not a socket')
  await assert.rejects(startServe(t, repo, ['--wideopen', '--socket', sock]), /exists and is not a socket/)
  assert.equal(await readFile(sock, 'utf8'), 'not a socket')
})

test('socket activation as systemd does it (systemd-socket-activate): a connection made before the server started is served; the socket stays with systemd', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t)
  const repo = await makeRepo(join(dir, 'repo'), 'served')
  await writeFile(join(repo, 'f'), 'activated\n')
  await annex(repo, 'add', '-q', 'f')
  await git(repo, 'commit', '-qm', 'f')
  const key = (await annex(repo, 'lookupkey', 'f')).stdout.trim()
  const uuid = await repoUuid(repo)
  const sock = join(dir, 'activated.sock')
  // It passes a bare environment: what git and git-annex need is named.
  const envArgs = Object.entries(gitEnv)
    .filter(([k, v]) => v !== undefined && (k === 'PATH' || k === 'HOME' || k.startsWith('GIT_')))
    .flatMap(([k, v]) => ['-E', `${k}=${v}`])
  const child = spawn('systemd-socket-activate', ['-l', sock, ...envArgs, process.execPath, join(PROJECT_ROOT, 'dist/src/cli/main.js'), 'serve', '--wideopen'], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise((r) => child.once('exit', r))
  defer(t, async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const deadline = Date.now() + 60_000
  while (!/Listening on .* as 3/.test(out)) {
    assert.ok(Date.now() < deadline, `waited 60 s for systemd-socket-activate to listen: ${out}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  // The first connection starts annex-proxy (exec, same pid); it waits in the backlog meanwhile.
  const got = await curl(sock, [`http://localhost/git-annex/${uuid}/key/${key}`])
  assert.equal(got.status, 200, out)
  assert.equal(got.body.toString(), 'activated\n')
  assert.match(out, /"listener":"systemd"/)
  child.kill('SIGTERM')
  await exited
  assert.ok((await lstat(sock)).isSocket(), 'a socket systemd passed is not removed by annex-proxy')
})
