// The command line as a user runs it: npm start's demo, --directory noticing repositories
// come and go, and an orderly shutdown that never leaves a partial object.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { request } from 'undici'
import { PROJECT_ROOT, annex, defer, git, makeRepo, repoUuid, servingPort, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { waitUntil } from '../helpers/wait.js'

const C = 'clientuuid=11111111-2222-3333-4444-555555555555'

async function post(url: string): Promise<{ status: number; body: string }> {
  const r = await request(url, { method: 'POST' })
  return { status: r.statusCode, body: await r.body.text() }
}

test('npm start (demo): creates its repository, prints the client config, serves it', async (t) => {
  const data = await tempDir(t)
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli/main.js'), 'demo', '--port', '0'], {
    env: { ...process.env, ANNEX_PROXY_DATA: data },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  defer(t, () => child.kill('SIGKILL'))
  const port = await waitUntil('the demo to log where it serves', 60_000, () => {
    if (child.exitCode !== null) throw new Error(`the demo exited (${child.exitCode}): ${out}`)
    return servingPort(out, child.pid!)
  })
  const repo = join(data, 'demo-repo')
  const uuid = await repoUuid(repo)
  assert.match(out, new RegExp(`git config remote\\.origin\\.annexUrl annex\\+http://127\\.0\\.0\\.1:${port}/git-annex/`))
  assert.match(out, /annex\.security\.allowed-ip-addresses/)
  assert.equal((await post(`http://127.0.0.1:${port}/git-annex/${uuid}/v4/gettimestamp?${C}`)).status, 200)
  // The printed steps, as a user would run them: the upload lands on two of the three nodes.
  const client = join(data, 'myclone')
  const steps = out.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim().replace(/\s+# .*$/, ''))
  assert.ok(steps.length >= 8, out)
  await sh(data, 'bash', ['-ec', steps.join('\n').replace(/^git clone (\S+) myclone && cd myclone$/m, `git clone $1 ${client} && cd ${client}`)])
  const whereis = (await sh(client, 'git', ['annex', 'whereis', '--json', 'hello.txt'])).stdout
  const at = (JSON.parse(whereis) as { whereis: { description: string }[] }).whereis.map((w) => w.description)
  assert.equal(at.filter((d) => /^origin-node\d$/.test(d)).length, 2, whereis)
  // And in the directory special remote behind the gateway, in git-annex's layout.
  assert.ok(at.some((d) => /archive/.test(d)), whereis)
  assert.equal((await sh(repo, 'git', ['annex', 'checkpresentkey', (await sh(client, 'git', ['annex', 'lookupkey', 'hello.txt'])).stdout.trim(), 'archive'])).stdout, '')
  const closed = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  assert.equal(await closed, 0)
})

test('--directory: repositories added while serving are found, removed ones are dropped', async (t) => {
  const root = await tempDir(t)
  const served = join(root, 'served')
  const first = await makeRepo(join(root, 'first'), 'first')
  await git(root, 'clone', '-q', '--bare', first, join(served, 'a.git'))
  await annex(join(served, 'a.git'), 'init', '-q', 'bare a')
  const server = await startAnnexProxy(t, root, ['--wideopen', '--directory', served])
  const base = `http://127.0.0.1:${server.port}/git-annex`
  const a = await repoUuid(join(served, 'a.git'))
  assert.equal((await post(`${base}/${a}/v4/gettimestamp?${C}`)).status, 200)

  // A new repository is found by a watch or by a rescan a request for it causes, and such
  // rescans are rate-limited (--rescan-interval): one asked for right after the start-up
  // scan may be answered 404 first. Asked again until found, within a deadline.
  const b = await makeRepo(join(served, 'nested', 'b'), 'b')
  const bUuid = await repoUuid(b)
  const checkB = () => post(`${base}/${bUuid}/v4/checkpresent?key=WORM--x&${C}`)
  await waitUntil('the server to find the new repository b', 30_000, async () => (await checkB()).body === '{"present":false}', 100)

  await rm(b, { recursive: true, force: true })
  await waitUntil('the server to drop the removed repository b (404)', 30_000, async () => (await checkB()).status === 404, 100)
  assert.equal((await post(`${base}/${a}/v4/gettimestamp?${C}`)).status, 200)
})

test('SIGTERM during an upload: the server exits cleanly and no partial object is visible', async (t) => {
  const root = await tempDir(t)
  const repo = await makeRepo(join(root, 'server'), 'server')
  const server = await startAnnexProxy(t, repo, ['--wideopen', '--shutdown-grace', '1'])
  const U = await repoUuid(repo)
  const content = randomBytes(8 * 1024 * 1024)
  const key = `SHA256E-s${content.length}--${createHash('sha256').update(content).digest('hex')}.bin`
  // A client that sends half the body and then stalls.
  let pushed = false
  const body = new Readable({
    read() {
      if (!pushed) this.push(content.subarray(0, content.length / 2))
      pushed = true
    },
  })
  const put = request(`http://127.0.0.1:${server.port}/git-annex/${U}/v4/put?key=${key}&${C}`, {
    method: 'POST',
    headers: { 'x-git-annex-data-length': String(content.length) },
    body,
  }).then(
    (r) => r.statusCode,
    () => 'connection closed',
  )
  const tmp = join(repo, '.git', 'annex', 'tmp', key)
  await waitUntil('the server writing the first bytes of the upload to its temp file', 60_000, async () => (await stat(tmp).catch(() => ({ size: 0 }))).size > 0, 20)
  const exited = new Promise<number | null>((r) => server.child.once('exit', (code) => r(code)))
  server.child.kill('SIGTERM')
  assert.equal(await exited, 0)
  await put
  body.destroy()
  const objects = await readdir(join(repo, '.git', 'annex', 'objects')).catch(() => [])
  assert.deepEqual(objects, [], 'no object committed from an interrupted upload')
  await annex(repo, 'fsck', '-q')
})

test('keys that look like paths stay inside the object store', async (t) => {
  const root = await tempDir(t)
  const repo = await makeRepo(join(root, 'server'), 'server')
  const server = await startAnnexProxy(t, repo)
  const U = await repoUuid(repo)
  const body = Buffer.from('x')
  for (const name of ['../../../../escape', '..', 'a/b/../c', '%2F..%2F']) {
    const key = `WORM-s1--${name}`
    const r = await request(`http://127.0.0.1:${server.port}/git-annex/${U}/v4/put?key=${encodeURIComponent(key)}&${C}`, {
      method: 'POST',
      headers: { 'x-git-annex-data-length': '1' },
      body,
    })
    assert.equal(r.statusCode, 200, name)
    assert.equal(await r.body.text(), '{"plusuuids":[],"stored":true}', name)
    const where = (await annex(repo, 'contentlocation', key)).stdout.trim()
    assert.ok(where.startsWith('.git/annex/objects/'), where)
    const got = await request(`http://127.0.0.1:${server.port}/git-annex/${U}/v4/key/${encodeURIComponent(key)}?${C}`)
    assert.equal(await got.body.text(), 'x')
  }
  assert.deepEqual((await readdir(root)).sort(), ['server'])
  await annex(repo, 'fsck', '-q', '--all')
})
