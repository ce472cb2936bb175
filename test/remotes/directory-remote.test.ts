// The directory special remote served natively: the Remote contract, chunked and not, on
// a real directory remote made by git-annex's own initremote; and git-annex's own
// directory remote reads, checks and drops what we stored, and the reverse.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { describe, test, type TestContext } from 'node:test'
import { parseKey, serializeKey } from '../../src/keys/key.js'
import { asUuid, type Remote } from '../../src/remotes/remote.js'
import { chunkConfigOf, chunkLogPath } from '../../src/remotes/special/chunks.js'
import { journalFileName } from '../../src/annex/branch-logs.js'
import { ChunkLog } from '../../src/remotes/special/chunk-log.js'
import { SpecialRemote } from '../../src/remotes/special/special-remote.js'
import { DirectoryStore } from '../../src/remotes/directory/directory-store.js'
import { annex, defer, git, makeRepo, sh, shStatus, tempDir } from '../helpers/annex.js'
import { bodyOf, content, op, remoteContract, storeAll } from './contract.js'

interface DirRemote {
  remote: SpecialRemote
  repo: string
  dir: string
  name: string
  /** Another SpecialRemote over the same directory and repository. */
  reopen(t: TestContext): Promise<SpecialRemote>
}

const made = new WeakMap<Remote, DirRemote>()

async function directoryRemote(t: TestContext, params: string[] = []): Promise<DirRemote> {
  let remote: SpecialRemote | undefined
  t.after(() => remote?.close())
  const d = await tempDir(t)
  const repo = await makeRepo(join(d, 'gw'), 'gateway')
  const dir = join(d, 'dsr')
  await sh(d, 'mkdir', [dir])
  await annex(repo, 'initremote', 'dsr', 'type=directory', `directory=${dir}`, 'encryption=none', ...params)
  const uuid = asUuid((await git(repo, 'config', 'remote.dsr.annex-uuid')).stdout.trim())
  const cfg = new Map(params.map((p) => p.split('=') as [string, string]))
  const open = async () => {
    const chunkLog = await ChunkLog.open(repo)
    return new SpecialRemote({ uuid, store: new DirectoryStore(dir), chunking: chunkConfigOf(cfg), chunkLog, onClose: () => chunkLog.close() })
  }
  remote = await open()
  const r: DirRemote = {
    remote,
    repo,
    dir,
    name: 'dsr',
    reopen: async (t2) => {
      const again = await open()
      defer(t2, () => again.close())
      return again
    },
  }
  made.set(remote, r)
  return r
}

const reopen = (t: TestContext, r: Remote) => made.get(r)!.reopen(t)

const DECLARED = ['retrieve-from-offset', 'remove-before', 'timestamp'] as const

remoteContract('directory special remote', { declared: [...DECLARED], make: async (t) => (await directoryRemote(t)).remote, reopen })
remoteContract('directory special remote, chunk=10KiB', { declared: [...DECLARED], make: async (t) => (await directoryRemote(t, ['chunk=10KiB'])).remote, reopen })

/** git-annex's own view of the remote in the gateway repository. */
async function annexHas(repo: string, key: string, remote: string): Promise<boolean> {
  const r = await shStatus(repo, 'git', ['annex', 'checkpresentkey', key, remote])
  return r.code === 0
}

describe('directory special remote and git-annex agree', () => {
  for (const params of [[], ['chunk=10KiB']]) {
    const label = params.join(' ') || 'unchunked'
    test(`what annex-proxy stores git-annex reads, fscks and drops (${label})`, async (t) => {
      const { remote, repo } = await directoryRemote(t, params)
      const c = content(35_000)
      await storeAll(remote, c)
      const k = serializeKey(c.key)
      assert.equal(await annexHas(repo, k, 'dsr'), true)
      // A file in the work tree pointing at the key, fetched from the remote by git-annex itself.
      await sh(repo, 'git', ['annex', 'fromkey', '--force', k, 'f.bin'])
      await annex(repo, 'get', '--from', 'dsr', 'f.bin')
      assert.deepEqual(await buffer((await import('node:fs')).createReadStream(join(repo, 'f.bin'))), c.bytes)
      await annex(repo, 'fsck', '--from', 'dsr', 'f.bin')
      await annex(repo, 'drop', '--from', 'dsr', '--force', 'f.bin')
      assert.equal(await remote.checkPresent(c.key, op()), false)
    })

    test(`what git-annex stores annex-proxy reads and drops (${label})`, async (t) => {
      const { remote, repo } = await directoryRemote(t, params)
      const bytes = randomBytes(33_333)
      await writeFile(join(repo, 'g.bin'), bytes)
      await annex(repo, 'add', 'g.bin')
      await annex(repo, 'copy', '--to', 'dsr', 'g.bin')
      const key = parseKey((await annex(repo, 'lookupkey', 'g.bin')).stdout.trim())
      assert.equal(await remote.checkPresent(key, op()), true)
      const r = await remote.retrieve(key, 1000, op())
      assert.equal(r.length, bytes.length - 1000)
      assert.deepEqual(await buffer(r.body), bytes.subarray(1000))
      assert.equal(await r.valid, true)
      assert.equal((await remote.remove(key, op())).removed, true)
      assert.equal(await annexHas(repo, serializeKey(key), 'dsr'), false)
    })
  }

  test('a chunked store writes git-annex chunk keys and the chunk log; a failed one leaves nothing', async (t) => {
    const { remote, repo, dir } = await directoryRemote(t, ['chunk=10KiB'])
    const c = content(25_000)
    await storeAll(remote, c)
    const k = serializeKey(c.key)
    const names = (await readdir(dir, { recursive: true })).filter((n) => n.endsWith('.bin') && !n.includes('/tmp/')).map((n) => n.split('/').pop()!)
    const chunkNames = [...new Set(names)].sort()
    const base = k.replace(/^SHA256E-s25000--/, '')
    assert.deepEqual(chunkNames, [1, 2, 3].map((n) => `SHA256E-s25000-S10240-C${n}--${base}`))
    const uuid = (await git(repo, 'config', 'remote.dsr.annex-uuid')).stdout.trim()
    const journal = await readFile(join(repo, '.git/annex/journal', journalFileName(chunkLogPath(c.key))), 'utf8')
    assert.match(journal, new RegExp(`^\\d+s ${uuid}:10240 3\n$`))
    // A bad upload: nothing of it stays.
    const bad = content(25_000)
    const bytes = Buffer.from(bad.bytes)
    bytes[24_000]! ^= 1
    await assert.rejects(remote.store(bad.key, bodyOf(bytes), 0, op()))
    const after = (await readdir(dir, { recursive: true })).filter((n) => n.includes(serializeKey(bad.key).slice(-20)))
    assert.deepEqual(after, [])
    assert.equal((await stat(join(dir, 'tmp')).catch(() => undefined))?.isDirectory() ? (await readdir(join(dir, 'tmp'))).length : 0, 0)
  })
})
