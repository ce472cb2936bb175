// Whether a repository's journal is ours to write is decided from `git config --list -z` as
// git itself prints it: the case git keeps in subsection names, and the last of a key's
// values winning, as for git-annex (Git/Config.hs keeps the last value of a key).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseGitConfigList } from '../../src/annex/git-config-file.js'
import { journalWritable } from '../../src/annex/location-journal.js'
import { git, tempDir } from '../helpers/annex.js'

test('journalWritable reads the configuration git prints: the last value of a key decides, any case of a remote name', async (t) => {
  const repo = await tempDir(t)
  await git(repo, 'init', '-q')
  const check = async () => journalWritable(parseGitConfigList((await git(repo, 'config', '--list', '-z')).stdout))
  assert.equal(await check(), true, 'a plain repository')

  await git(repo, 'config', 'annex.private', 'true')
  assert.match(String(await check()), /annex\.private is set/)
  await git(repo, 'config', '--add', 'annex.private', 'false')
  assert.equal(await check(), true, 'annex.private set true, then false: false is what git-annex reads')

  await git(repo, 'config', 'remote.MyRemote.annex-private', 'yes')
  assert.match(String(await check()), /^remote\.MyRemote\.annex-private is set/)
  await git(repo, 'config', 'remote.MyRemote.annex-private', 'off')
  assert.equal(await check(), true)

  await git(repo, 'config', 'core.sharedRepository', 'umask')
  assert.equal(await check(), true, 'core.sharedRepository=umask is the unshared default')
  await git(repo, 'config', 'core.sharedRepository', 'group')
  assert.match(String(await check()), /core\.sharedRepository is set/)
  await git(repo, 'config', 'core.sharedRepository', 'false')

  await git(repo, 'config', 'annex.tune.objecthash1', 'true')
  assert.match(String(await check()), /annex\.tune\.objecthash1 is set/)
})
