// Chunk keys and GITBUNDLE keys arriving over P2P-over-HTTP are verified as git-annex
// verifies them, with real keys made by git-annex itself: chunk keys by a directory special
// remote with chunk=1KiB, a GITBUNDLE key by git-remote-annex pushing to one. git-annex
// verifies a chunk key by its backend like any key (Annex/Verify.hs): only the whole
// object verifies, so one chunk's bytes are refused; a git bundle by the SHA256 after its
// UUID. Before, annex-proxy stored chunk bytes and garbage bundles (stored:true, which
// `git annex fsck` then failed) and refused the whole object under a chunk key.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { parseKey, type Key } from '../../src/keys/key.js'
import { P2PHttpClient } from '../../src/protocol/http/client.js'
import { annex, defer, git, makeRepo, repoUuid, sh, shStatus, startAnnexProxy, startReference, tempDir, type After } from '../helpers/annex.js'

const CLIENT = '00000000-0000-4000-8000-0000000000c1'

interface Case {
  readonly what: string
  readonly key: Key
  readonly bytes: Buffer
  /** What git annex p2phttp answers (checked against it below). */
  readonly stored: boolean
}

const scope: { fns: Array<() => unknown> } & After = { fns: [], after: (fn) => scope.fns.push(fn) }

/** The files of a directory special remote: key name → bytes. */
async function remoteFiles(dir: string): Promise<Map<string, Buffer>> {
  const { stdout } = await sh(dir, 'find', ['.', '-type', 'f'])
  const out = new Map<string, Buffer>()
  for (const f of stdout.trim().split('\n')) out.set(f.slice(f.lastIndexOf('/') + 1), await readFile(join(dir, f)))
  return out
}

async function realKeys(): Promise<Case[]> {
  const d = await tempDir(scope)
  // Chunk keys: a 2500-byte file copied to a directory remote with chunk=1KiB.
  const repo = await makeRepo(join(d, 'src'), 'src')
  await sh(d, 'mkdir', ['chunked'])
  await annex(repo, 'initremote', 'd', 'type=directory', `directory=${join(d, 'chunked')}`, 'encryption=none', 'chunk=1KiB')
  const whole = randomBytes(2500)
  await writeFile(join(repo, 'f.bin'), whole)
  await annex(repo, 'add', 'f.bin')
  await annex(repo, 'copy', '--to', 'd', 'f.bin')
  const chunks = await remoteFiles(join(d, 'chunked'))
  const c3 = [...chunks.keys()].find((k) => /-S1024-C3--/.test(k))!
  const c1 = [...chunks.keys()].find((k) => /-S1024-C1--/.test(k))!
  assert.ok(c1 && c3, [...chunks.keys()].join(' '))
  // A GITBUNDLE key: git-remote-annex pushing a branch to a directory remote.
  const g = await makeRepo(join(d, 'bundled'), 'bundled')
  await git(g, 'commit', '-q', '--allow-empty', '-m', 'bundle me')
  await sh(d, 'mkdir', ['bundles'])
  const remoteUuid = (await readFile('/proc/sys/kernel/random/uuid', 'utf8')).trim()
  const branch = (await git(g, 'rev-parse', '--abbrev-ref', 'HEAD')).stdout.trim()
  await git(g, 'push', '-q', `annex::${remoteUuid}?type=directory&encryption=none&directory=${join(d, 'bundles')}`, branch)
  const bundles = [...(await remoteFiles(join(d, 'bundles')))].filter(([k]) => k.startsWith('GITBUNDLE-'))
  assert.equal(bundles.length, 1, 'one bundle pushed')
  const [bundleKey, bundle] = bundles[0]!
  const garbage = Buffer.from(bundle)
  garbage[garbage.length - 1]! ^= 0xff
  return [
    { what: "one chunk's bytes under its chunk key", key: parseKey(c3), bytes: chunks.get(c3)!, stored: false },
    { what: 'the whole object under a chunk key', key: parseKey(c1), bytes: Buffer.from(whole), stored: true },
    { what: 'a git bundle under its GITBUNDLE key', key: parseKey(bundleKey), bytes: bundle, stored: true },
    { what: 'garbage of the same length under a GITBUNDLE key', key: parseKey(bundleKey), bytes: garbage, stored: false },
  ]
}

describe('chunk and GITBUNDLE keys are verified on receipt as git-annex verifies them', { timeout: 300_000 }, () => {
  let cases: Case[] = []
  before(async () => {
    cases = await realKeys()
  })
  after(async () => {
    for (const fn of scope.fns.reverse()) await fn()
  })

  for (const server of ['git annex p2phttp', 'annex-proxy'] as const) {
    test(`${server}: each case stored or refused as git-annex decides, and git annex fsck passes`, async (t) => {
      for (const c of cases) {
        // A fresh repository each time: the garbage bundle must not meet the stored one.
        const d = await tempDir(t)
        const dir = await makeRepo(join(d, 'served'), 'served')
        const uuid = await repoUuid(dir)
        const served = server === 'annex-proxy' ? await startAnnexProxy(t, dir) : await startReference(t, dir)
        const client = new P2PHttpClient(`http://127.0.0.1:${served.port}`, { clientUuid: CLIENT })
        defer(t, () => client.close())
        const op = { signal: new AbortController().signal, log: { info() {}, warn() {}, error() {}, debug() {} } }
        await client.putOffset(uuid, c.key, op)
        const r = await client.put(uuid, c.key, Readable.from([c.bytes]), { signal: op.signal, length: c.bytes.length })
        assert.equal(r.stored, c.stored, c.what)
        assert.equal(await client.checkPresent(uuid, c.key, op), c.stored, c.what)
        const fsck = await shStatus(dir, 'git', ['annex', 'fsck', '--all', '--quiet'])
        assert.equal(fsck.code, 0, `${c.what}: ${fsck.stdout}${fsck.stderr}`)
        await served.stop()
      }
    })
  }
})
