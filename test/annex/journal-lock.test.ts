// git-annex's journal lock (.git/annex/journal.lck), taken the way git-annex takes it:
// while we hold it a real git-annex changing the branch waits for us, and a chunk-log write
// waits for whoever else holds it, so a line written meanwhile is kept, not overwritten.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { journalFileName } from '../../src/annex/branch-logs.js'
import { withJournalLock } from '../../src/annex/journal-lock.js'
import { parseKey } from '../../src/keys/key.js'
import { asUuid } from '../../src/remotes/remote.js'
import { ChunkLog } from '../../src/remotes/special/chunk-log.js'
import { chunkLogPath } from '../../src/remotes/special/chunks.js'
import { gitEnv, makeRepo, repoUuid, tempDir } from '../helpers/annex.js'

const KEY = 'SHA256E-s3000000--' + 'e'.repeat(64) + '.bin'

/** Pids waiting (F_SETLKW) for a POSIX (fcntl) lock on `file`, from /proc/locks. */
async function waitersOn(file: string): Promise<number[]> {
  const ino = (await stat(file)).ino
  const out: number[] = []
  for (const line of (await readFile('/proc/locks', 'utf8')).split('\n')) {
    const m = /->\s+POSIX\s+ADVISORY\s+WRITE\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line)
    if (m && Number(m[2]) === ino) out.push(Number(m[1]))
  }
  return out
}

async function until(what: string, probe: () => Promise<boolean>, deadlineMs = 60_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await probe())) {
    assert.ok(Date.now() < deadline, `waited ${deadlineMs / 1000} s for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

test('while annex-proxy holds the journal lock, a real git-annex changing the branch waits for it', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const lock = join(repo, '.git', 'annex', 'journal.lck')
  let annexExit: number | null | undefined
  const holding = withJournalLock(join(repo, '.git'), async () => {
    const annex = spawn('git-annex', ['setpresentkey', KEY, await repoUuid(repo), '1'], { cwd: repo, env: gitEnv, stdio: 'ignore' })
    t.after(() => annex.kill('SIGKILL'))
    const exited = new Promise<number | null>((r) => annex.once('exit', (code) => r(code)))
    void exited.then((c) => (annexExit = c))
    await until('git-annex to wait for the journal lock', async () => (await waitersOn(lock)).includes(annex.pid!) || annexExit !== undefined)
    assert.equal(annexExit, undefined, 'git-annex changed the branch while we held its journal lock')
    return { exited }
  })
  const { exited } = await holding
  assert.equal(await exited, 0, 'git-annex went on once the lock was free')
})

test('a chunk-log write waits for the journal lock, so a line another process writes meanwhile is kept', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const gitDir = join(repo, '.git')
  const lock = join(gitDir, 'annex', 'journal.lck')
  const chunkLog = await ChunkLog.open(repo)
  t.after(() => chunkLog.close())
  // Another process holds the lock, as a git-annex command would.
  const holder = spawn('perl', ['-e', `use Fcntl; $|=1; sysopen(my $f, $ARGV[0], O_RDWR|O_CREAT, 0666) or die; my $l = pack('s s x4 q q i x4', F_WRLCK, 0, 0, 0, 0); fcntl($f, F_SETLKW, $l) or die; print "locked\\n"; while (<STDIN>) {}`, lock], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.after(() => holder.kill('SIGKILL'))
  const holderGone = new Promise((r) => holder.once('close', r))
  await new Promise<void>((resolve) => createInterface({ input: holder.stdout }).once('line', () => resolve()))

  const key = parseKey(KEY)
  const ours = asUuid('22222222-2222-4222-8222-222222222222')
  let done = false
  const recorded = chunkLog.record(key, ours, 1_000_000, 3).then(() => (done = true))
  await until('the chunk-log write to wait for the lock', async () => (await waitersOn(lock)).length > 0)
  assert.equal(done, false)
  // Meanwhile the holder changes the same chunk log, as git-annex does: under the lock.
  const theirs = '1700000000s 11111111-1111-4111-8111-111111111111:1000000 3\n'
  const journalFile = join(gitDir, 'annex', 'journal', journalFileName(chunkLogPath(key)))
  await writeFile(journalFile, theirs)
  holder.stdin.end()
  await holderGone
  await recorded
  const text = await readFile(journalFile, 'utf8')
  assert.ok(text.includes(theirs.trim()), `the other process's line is kept:\n${text}`)
  assert.deepEqual(await chunkLog.logged(key, ours), [{ size: 1_000_000, count: 3 }])
})
