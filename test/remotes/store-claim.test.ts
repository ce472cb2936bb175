// Claims on a key's temp file across processes: one live claim at a time, a dead owner's
// claim taken over, nothing left behind.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { claimStore } from '../../src/remotes/local/store-claim.js'
import { tempDir } from '../helpers/annex.js'

const boot = async () => (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()

test('one live claim per key; released claims and other keys are free', async (t) => {
  const dir = join(await tempDir(t), 'claims')
  const a = await claimStore(dir, 'K1')
  assert.ok(a)
  assert.equal(await claimStore(dir, 'K1'), undefined, 'held by a live process (this one)')
  const b = await claimStore(dir, 'K2')
  assert.ok(b)
  await a.release()
  const c = await claimStore(dir, 'K1')
  assert.ok(c)
  await c.release()
  await b.release()
  await a.release()
  assert.deepEqual(await readdir(dir), [], 'no claim or draft left behind')
})

test('a claim whose owner died, or that survived a reboot, is taken over', async (t) => {
  const dir = join(await tempDir(t), 'claims')
  const child = spawn(process.execPath, ['-e', ''])
  await once(child, 'exit')
  await claimStore(dir, 'K').then((c) => c?.release())
  await writeFile(join(dir, 'K'), `${child.pid}\n${await boot()}\nx\n`)
  const c = await claimStore(dir, 'K')
  assert.ok(c, 'dead owner')
  await c.release()
  await writeFile(join(dir, 'K'), `${process.pid}\nanother-boot\nx\n`)
  const d = await claimStore(dir, 'K')
  assert.ok(d, 'owner from before a reboot')
  await d.release()
  await writeFile(join(dir, 'K'), `${process.ppid}\n${await boot()}\nx\n`)
  assert.equal(await claimStore(dir, 'K'), undefined, 'a live owner keeps it')
  assert.deepEqual((await readdir(dir)).sort(), ['K'])
})
