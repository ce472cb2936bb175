// Sixteen real clients upload different files at once: every object verifies and the
// server's memory stays bounded by its stream buffers, not by the bytes in flight.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, git, makeClient, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'

const CLIENTS = 16
const FILE_BYTES = 24 * 1024 * 1024
// 16 × 24 MiB = 384 MiB goes through the server at once; a server buffering whole
// files would exceed this bound several times over.
const RSS_BOUND_BYTES = 256 * 1024 * 1024

async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1])
  return kb * 1024
}

test('16 concurrent clients copying different files: all verify, memory stays bounded', async (t) => {
  const root = await tempDir(t)
  const server = await makeRepo(join(root, 'server'), 'server')
  const served = await startAnnexProxy(t, server, ['--wideopen', '--jobs', '8'])
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const dir = await makeClient(server, join(root, `client${i}`), served.port)
      await writeFile(join(dir, `f${i}.bin`), randomBytes(FILE_BYTES))
      await annex(dir, 'add', '-q', `f${i}.bin`)
      await git(dir, 'commit', '-q', '-m', `f${i}`)
      return dir
    }),
  )
  await Promise.all(clients.map((dir, i) => annex(dir, 'copy', '--to', 'origin', `f${i}.bin`)))
  const rss = await peakRss(served.child.pid!)
  assert.ok(rss < RSS_BOUND_BYTES, `server peak RSS ${(rss / 2 ** 20).toFixed(0)} MiB`)
  // Every object verifies in the served repository, and each client sees it there.
  const { stdout } = await sh(server, 'git', ['annex', 'fsck', '--all'])
  assert.equal((stdout.match(/ ok$/gm) ?? []).length, CLIENTS, stdout)
  await Promise.all(clients.map((dir, i) => annex(dir, 'fsck', '--from', 'origin', '--fast', `f${i}.bin`)))
})
