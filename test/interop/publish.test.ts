// Publishing workflows that fetch and push the git-annex branch right after their uploads.
//
// DataLad's publish, as a research group runs it (issue #13 item 7): Debian's datalad, a dataset
// with a subdataset, each published to a bare repository that annex-proxy serves with
// --directory and its default options (annexed content over annex+http, git over the ssh
// stand-in). `datalad push --to origin` copies the content, fetches the server's git-annex branch, merges it and pushes
// git-annex back: the server must not move its git-annex branch inside that window (the push
// would be rejected) nor overwrite the publisher's lines after it. 20 pushes in a row with new
// content each: every push exits 0, the served branch lists the publisher's and the server's
// copy of every key, and a fresh clone gets everything.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, git, makeClient, makeRepo, repoUuid, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { installFakeSsh } from '../helpers/fake-ssh.js'

const PUSHES = 20

test('datalad push --to origin through annex-proxy works every time: 20 pushes of a dataset with a subdataset', { timeout: 1_800_000 }, async (t) => {
  const root = await tempDir(t)
  const env = { ...(await installFakeSsh(root)), HOME: root, DATALAD_LOG_LEVEL: 'warning' }
  const srv = join(root, 'srv')
  const superRepo = await makeRepo(join(srv, 'super.git'), 'server super', { bare: true })
  const subRepo = await makeRepo(join(srv, 'sub.git'), 'server sub', { bare: true })
  const server = await startAnnexProxy(t, root, ['--directory', srv, '--wideopen'])
  const annexUrl = `annex+http://127.0.0.1:${server.port}/git-annex/`
  const run = (cwd: string, cmd: string, ...args: string[]) => sh(cwd, cmd, args, { env, timeoutMs: 600_000 })

  const pub = join(root, 'pub')
  await run(root, 'datalad', 'create', pub)
  await run(pub, 'datalad', 'create', '-d', '.', 'sub')
  for (const [ds, repo] of [
    [pub, superRepo],
    [join(pub, 'sub'), subRepo],
  ] as const) {
    await git(ds, 'remote', 'add', 'origin', `ssh://localhost${repo}`)
    await git(ds, 'config', 'remote.origin.annexUrl', annexUrl)
    await git(ds, 'config', 'annex.security.allowed-ip-addresses', 'all')
  }
  // The served repositories' HEAD names the branch DataLad publishes.
  const branch = (await git(pub, 'symbolic-ref', '--short', 'HEAD')).stdout.trim()
  for (const repo of [superRepo, subRepo]) await git(repo, 'symbolic-ref', 'HEAD', `refs/heads/${branch}`)
  // The superdataset records where its subdataset is published, as `datalad clone` will want it.
  await git(pub, 'config', '-f', '.gitmodules', 'submodule.sub.url', `ssh://localhost${subRepo}`)

  const files: string[] = []
  for (let i = 0; i < PUSHES; i++) {
    // New annexed content in both datasets each time (random bytes: never stored in git).
    for (const [dir, name] of [
      [pub, `data/p${i}.bin`],
      [join(pub, 'sub'), `s${i}-a.bin`],
      [join(pub, 'sub'), `s${i}-b.bin`],
    ] as const) {
      await mkdir(join(dir, name, '..'), { recursive: true })
      await writeFile(join(dir, name), randomBytes(1000 + i * 37))
      files.push(join(dir, name))
    }
    await run(pub, 'datalad', 'save', '-r', '-m', `round ${i}`)
    const pushed = await sh(pub, 'datalad', ['push', '-r', '--to', 'origin'], { env, timeoutMs: 600_000 }).catch((e: Error) => e)
    assert.ok(!(pushed instanceof Error), `push ${i + 1} of ${PUSHES} failed:\n${pushed instanceof Error ? pushed.message : ''}`)
  }

  // The served git-annex branches (not a journal) list both copies of every key.
  for (const [ds, repo] of [
    [pub, superRepo],
    [join(pub, 'sub'), subRepo],
  ] as const) {
    const publisher = await repoUuid(ds)
    const served = await repoUuid(repo)
    const keys = (await annex(ds, 'find', '--format=${key}\\n', '--include=*')).stdout.split('\n').filter(Boolean)
    assert.ok(keys.length >= PUSHES, `${ds} has its keys`)
    for (const key of keys) {
      const path = (await annex(ds, 'examinekey', '--format=${hashdirlower}${key}.log', key)).stdout
      const log = (await git(repo, 'show', `git-annex:${path}`)).stdout
      assert.match(log, new RegExp(` 1 ${served}$`, 'm'), `the server's copy of ${key} is in its branch:\n${log}`)
      assert.match(log, new RegExp(` 1 ${publisher}$`, 'm'), `the publisher's copy of ${key} is in the server's branch:\n${log}`)
    }
  }

  // A fresh clone of what was published gets everything.
  const clone = join(root, 'clone')
  await run(root, 'datalad', 'clone', `ssh://localhost${superRepo}`, clone)
  for (const ds of [clone, join(clone, 'sub')]) {
    // annex+http is a per-clone setting; the server's UUIDs come with the cloned branches.
    await git(ds, 'config', 'annex.security.allowed-ip-addresses', 'all')
    await git(ds, 'config', 'remote.origin.annexUrl', annexUrl)
  }
  await run(clone, 'datalad', 'get', '-n', 'sub')
  await git(join(clone, 'sub'), 'config', 'annex.security.allowed-ip-addresses', 'all')
  await git(join(clone, 'sub'), 'config', 'remote.origin.annexUrl', annexUrl)
  await run(clone, 'datalad', 'get', '-r', '.')
  for (const f of files) {
    const rel = f.slice(pub.length + 1)
    assert.deepEqual(await readFile(join(clone, rel)), await readFile(f), rel)
  }
  assert.match(server.output(), /annex-proxy serving/)
})

for (const when of ['idle', 'answer'] as const) test(`git annex sync --content through annex-proxy (--location-log-commit ${when}): 5 rounds with new content, each exits 0 and both sides know both copies`, { timeout: 900_000 }, async (t) => {
  const root = await tempDir(t)
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const server = await startAnnexProxy(t, srv, ['--wideopen', '--location-log-commit', when])
  const client = await makeClient(srv, join(root, 'client'), server.port)
  const files: string[] = []
  for (let i = 0; i < 5; i++) {
    for (const f of [`r${i}-a.bin`, `r${i}-b.bin`]) {
      await writeFile(join(client, f), randomBytes(5000 + i))
      files.push(f)
    }
    await annex(client, 'add', '-q', ...files.slice(-2))
    await annex(client, 'sync', '-q', '--content', '--message', `round ${i}`)
  }
  const [c, s] = [await repoUuid(client), await repoUuid(srv)]
  for (const repo of [client, srv]) {
    const out = (await annex(repo, 'whereis', '--json', '--all')).stdout
    const seen = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; whereis: { uuid: string }[] })
    assert.equal(seen.length, files.length, `${repo} knows every key`)
    for (const w of seen) assert.deepEqual(w.whereis.map((x) => x.uuid).sort(), [c, s].sort(), `${repo}: ${w.key}`)
  }
})
