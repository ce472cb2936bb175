// The --directory walk against what a shared estate may hold. A FIFO named `config` where
// a repository's config would be blocked the whole process in open() (nothing writes to
// it): the walk runs in a child here, so a hang is a failure with a reason, not a stuck suite.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { tempDir } from '../helpers/annex.js'
import { copyTemplate, makeTemplate } from '../helpers/estate.js'

const run = promisify(execFile)

test('a FIFO named config (work tree or bare) does not block the walk: the repositories beside it are found', { timeout: 120_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-scan-')
  const forge = join(root, 'forge')
  await mkdir(join(forge, 'worktree', '.git'), { recursive: true })
  await mkdir(join(forge, 'bare.git'), { recursive: true })
  await run('mkfifo', [join(forge, 'worktree', '.git', 'config'), join(forge, 'bare.git', 'config')])
  await writeFile(join(forge, 'bare.git', 'HEAD'), 'ref: refs/heads/main\n')
  const uuid = await copyTemplate(await makeTemplate(join(root, 'template.git')), join(forge, 'zz', 'real.git'))
  const scan = new URL('../../src/gateway/repo-scan.js', import.meta.url).href
  const code = `const { scanTree } = await import(${JSON.stringify(scan)}); const r = await scanTree(${JSON.stringify(forge)}); console.log(JSON.stringify(r.repos.map((i) => i.uuid)))`
  let out: string
  try {
    out = (await run(process.execPath, ['--input-type=module', '-e', code], { timeout: 60_000 })).stdout
  } catch (err) {
    assert.fail(`the walk did not finish within 60 s (blocked on a FIFO?): ${(err as Error).message}`)
  }
  assert.deepEqual(JSON.parse(out), [uuid])
})
