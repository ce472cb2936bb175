// A restart under load: the real client's `git annex get -J4` of 300 files runs while
// annex-proxy is replaced by a new process (SIGHUP: the listening socket is handed over, the
// old process drains). The get must succeed with nothing failed and nothing retried, and
// both processes must have served part of it.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, defer, git, gitEnv, makeClient, makeRepo, tempDir } from '../helpers/annex.js'
import { startServe } from '../helpers/serve-process.js'

const FILES = 300
const FILE_BYTES = 32 * 1024
const DEADLINE_MS = 150_000
const PAUSE_AT = 250

test('git annex get -J4 of 300 files while annex-proxy is replaced by a new process: exit 0, nothing failed or retried', { timeout: 480_000 }, async (t) => {
  const dir = await tempDir(t)
  const server = await makeRepo(join(dir, 'server'), 'served')
  await mkdir(join(server, 'd'))
  for (let i = 0; i < FILES; i++) await writeFile(join(server, 'd', `f${i}.bin`), randomBytes(FILE_BYTES))
  await annex(server, 'add', '-q', 'd')
  await git(server, 'commit', '-qm', 'files')

  const t0 = Date.now()
  const step = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what} (${got} files)`)
  const old = await startServe(t, server, ['--wideopen', '--bind', '127.0.0.1', '--port', '0', '--jobs', '4', '--client-timeout', '600'])
  assert.ok(old.port, old.address)
  const client = await makeClient(server, join(dir, 'client'), old.port!)

  // Its own process group: it can be paused and ended with every process it starts.
  const get = spawn('git', ['annex', 'get', '-J4', 'd'], { cwd: client, env: gitEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const signalGet = (sig: NodeJS.Signals) => {
    try {
      process.kill(-get.pid!, sig)
    } catch {
      // already gone
    }
  }
  let successorUp = false
  let paused = false
  let out = ''
  let got = 0
  let onProgress: (() => void) | undefined
  const keep = (d: Buffer) => {
    const s = d.toString('utf8')
    out += s
    got += (s.match(/ ok$/gm) ?? []).length
    // On a slow machine the new process may take longer to start than the get takes to
    // finish: the get waits (paused) before its last files until the new process serves,
    // so the hand-over always happens with files left to get.
    if (got >= PAUSE_AT && !successorUp && !paused) {
      paused = true
      signalGet('SIGSTOP')
    }
    onProgress?.()
  }
  get.stdout.on('data', keep)
  get.stderr.on('data', keep)
  // 'close': all its output read.
  const finished = new Promise<number | string>((resolve) => get.once('close', (code, signal) => resolve(signal ?? code ?? -1)))
  const exited = new Promise((resolve) => get.once('exit', resolve))
  defer(t, async () => {
    if (get.exitCode === null && get.signalCode === null) {
      signalGet('SIGKILL')
      await exited
    }
  })
  const within = <T>(p: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`waited ${DEADLINE_MS} ms for ${what}; get said: ${out.slice(-3000)}`)), DEADLINE_MS)
      }),
    ]).finally(() => clearTimeout(timer))
  }

  // The restart starts once the get is well under way.
  await within(
    new Promise<void>((resolve) => {
      onProgress = () => {
        if (got >= 5) resolve()
      }
      onProgress()
    }),
    'the get to fetch 5 files',
  )
  const successorServes = old.waitFor((l) => l.msg === 'annex-proxy serving' && l.listener === 'handover', 'the new process to serve', DEADLINE_MS)
  step('SIGHUP')
  old.child.kill('SIGHUP')
  const successor = await successorServes
  successorUp = true
  step(`the new process serves${paused ? '; the get resumes' : ''}`)
  if (paused) signalGet('SIGCONT')
  const successorPid = Number(successor.pid)
  let successorGone = false
  defer(t, () => {
    if (!successorGone) process.kill(successorPid, 'SIGKILL')
  })
  const gotAtHandOver = got
  // The successor must serve a part of the get, so it cannot have finished yet.
  const successorServed = old.waitFor((l) => l.pid === successorPid && l.msg === 'request' && /\/key\//.test(String(l.url)), 'a key GET served by the new process', DEADLINE_MS)
  assert.equal(await within(old.exited, 'the old process to drain and exit'), 0, 'the old process drained and exited cleanly')

  step('the old process exited')
  const code = await within(finished, 'the get to finish')
  step('the get finished')
  t.diagnostic(`${gotAtHandOver} files when the new process served${paused ? ' (the get waited for it)' : ''}, ${got} in all`)
  assert.equal(code, 0, `git annex get exits 0: ${out.slice(-3000)}`)
  assert.equal(got, FILES, `every file got: ${out.slice(-3000)}`)
  assert.doesNotMatch(out, /failed|retry|retrying|unable/i, 'nothing failed or was retried')
  await successorServed
  step('the new process served a key')
  const oldErrors = old.output().split('\n').filter((l) => /"status":5\d\d/.test(l))
  assert.deepEqual(oldErrors, [], 'no request was answered 5xx')
  const fsck = await annex(client, 'fsck', '-q', '--fast', 'd')
  assert.equal(fsck.stdout.trim(), '', 'fsck clean')

  step('fsck done')
  const stopped = old.waitFor((l) => l.pid === successorPid && l.msg === 'shutting down: finishing in-flight requests', 'the new process to stop')
  process.kill(successorPid, 'SIGTERM')
  await stopped
  step('the new process stops')
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      process.kill(successorPid, 0)
    } catch {
      break
    }
    assert.ok(Date.now() < deadline, 'waited 60 s for the new process to exit after SIGTERM')
    await new Promise((r) => setTimeout(r, 50))
  }
  successorGone = true
})
