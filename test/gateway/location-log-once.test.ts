// A gateway repository writes its location log through one writer, whether the record is its
// own content (the LocalRepo) or a cluster node's (the gateway): two writers on the same
// journal were two processes doing one job. The writer is this process under one journal-lock
// holder (location-journal.ts), and no `git annex setpresentkey` runs for it.
import assert from 'node:assert/strict'
import { readFileSync, readlinkSync } from 'node:fs'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { Gateway } from '../../src/gateway/gateway.js'
import { parseKey } from '../../src/keys/key.js'
import { defer, sha256Key, whereisHere } from '../helpers/annex.js'
import { childPids } from '../helpers/estate.js'
import { makeGateway } from './fixture.js'

const silent = { info() {}, warn() {}, error() {}, debug() {} }

/** Children of this process in `dir`: `git annex setpresentkey`s, and holders of its journal lock. */
function writers(dir: string): { setpresentkey: number; lockHolders: number } {
  const n = { setpresentkey: 0, lockHolders: 0 }
  for (const pid of childPids()) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      // `git annex …` runs git-annex as a child of git: look at both.
      if (cmd.includes('setpresentkey') && readlinkSync(`/proc/${pid}/cwd`) === dir) n.setpresentkey++
      if (cmd[0] === 'perl' && cmd.includes(`${dir}/.git/annex/journal.lck`)) n.lockHolders++
    } catch {
      // Gone meanwhile.
    }
  }
  return n
}

test('one location-log writer per gateway repository: its own uploads and its nodes\' share one process', async (t) => {
  const g = await makeGateway(t)
  const gw = await Gateway.open(g.gw, { hasher: 'wasm', log: silent, fanoutHighWaterMark: 64 * 1024, fanoutStallMs: 60_000 })
  defer(t, () => gw.close())
  let most = 0
  let setpresentkeys = 0
  const sampler = setInterval(() => {
    const w = writers(g.gw)
    most = Math.max(most, w.lockHolders)
    setpresentkeys = Math.max(setpresentkeys, w.setpresentkey)
  }, 5)
  defer(t, () => clearInterval(sampler))
  const op = { signal: new AbortController().signal, log: silent }
  const put = async (uuid: string, text: string) => {
    const bytes = Buffer.from(text)
    const key = parseKey(sha256Key(bytes))
    const r = (await gw.lookup(uuid))!
    const s = await r.startStore(key, op)
    assert.equal(s.kind, 'offset')
    return { key, stored: await r.store(key, Readable.from([bytes]), 0, op) }
  }
  // Content of the gateway itself and content for the cluster, recorded at about the same time.
  const [own, clustered] = await Promise.all([put(g.uuid, 'own content\n'), put(g.cluster, 'cluster content\n')])
  assert.equal(own.stored.stored, true)
  assert.equal(clustered.stored.stored, true)
  // Both records landed: the gateway's log says where each key is.
  await gw.close()
  clearInterval(sampler)
  assert.equal(await whereisHere(g.gw, sha256Key(Buffer.from('own content\n'))), true)
  assert.ok(most >= 1, 'the sampler saw the writer')
  assert.equal(most, 1, `${most} journal-lock holders at once in the gateway repository`)
  assert.equal(setpresentkeys, 0, 'no git annex setpresentkey')
})
