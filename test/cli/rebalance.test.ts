// `annex-proxy rebalance`'s command line: usage generated from its option table, and clear
// refusals (exit 2, one line, no stack trace) for bad flags and for a repository that is no
// cluster's gateway. What it does is tested in test/interop/rebalance.test.ts.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { REBALANCE_OPTIONS } from '../../src/cli/rebalance.js'
import { makeRepo, PROJECT_ROOT, sh, shStatus, tempDir } from '../helpers/annex.js'

const MAIN = join(PROJECT_ROOT, 'dist/src/cli/main.js')

test('rebalance --help lists every option of its table; main usage names the command', async () => {
  const { stdout } = await sh(PROJECT_ROOT, process.execPath, [MAIN, 'rebalance', '--help'])
  for (const name of Object.keys(REBALANCE_OPTIONS)) assert.match(stdout, new RegExp(`^  .*--${name}\\b`, 'm'), name)
  assert.match((await sh(PROJECT_ROOT, process.execPath, [MAIN, '--help'])).stdout, /annex-proxy rebalance/)
})

test('rebalance refuses an unknown flag and a repository that is no gateway, in one line', async (t) => {
  const bad = await shStatus(PROJECT_ROOT, process.execPath, [MAIN, 'rebalance', '--no-such-flag'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /no-such-flag/)
  const repo = await makeRepo(join(await tempDir(t), 'plain'), 'plain')
  const plain = await shStatus(repo, process.execPath, [MAIN, 'rebalance'])
  assert.equal(plain.code, 2)
  assert.match(plain.stderr, /gateway of no cluster/)
  assert.doesNotMatch(plain.stderr, /\n\s+at /, 'no stack trace')
  const named = await shStatus(repo, process.execPath, [MAIN, 'rebalance', '--cluster', 'nope', '--dry-run'])
  assert.equal(named.code, 2)
  assert.match(named.stderr, /no cluster named nope/)
})
