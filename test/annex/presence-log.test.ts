// The location-log change we write ourselves (presence-log.ts) against the one real git-annex
// writes: random earlier contents of a key's journal file (fractional, signed and 's'-less
// clocks, ties, dead lines, lines git-annex cannot parse, \r\n, a partial last line), the same
// change applied by `git annex setpresentkey --batch` under a fixed GIT_ANNEX_VECTOR_CLOCK and
// by changePresenceLog: the journal files must be the same bytes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import fc from 'fast-check'
import { journalFileName, locationLogPath } from '../../src/annex/branch-logs.js'
import { advanceClock, changePresenceLog, discardIncompleteAppend, parsePosixTime, showPosixTime } from '../../src/annex/presence-log.js'
import { parseKey } from '../../src/keys/key.js'
import { gitEnv, makeRepo, sha256Key, stopChild, tempDir } from '../helpers/annex.js'

test('vector clocks parse and show as git-annex POSIXTimes', () => {
  assert.equal(parsePosixTime('1700000000s'), 1700000000n * 10n ** 12n)
  assert.equal(parsePosixTime('1700000000'), 1700000000n * 10n ** 12n)
  assert.equal(showPosixTime(parsePosixTime('1700000000.500s')!), '1700000000.5s')
  assert.equal(showPosixTime(parsePosixTime('-0.5s')!), '0.5s', 'a whole part of -0 is 0, so the fraction is added (mkPOSIXTime)')
  assert.equal(showPosixTime(parsePosixTime('-2.5s')!), '-2.5s')
  assert.equal(showPosixTime(parsePosixTime('1.1234567890129s')!), '1.123456789012s', 'floored to picoseconds')
  assert.equal(parsePosixTime('1.s'), undefined)
  assert.equal(parsePosixTime('1x'), undefined)
  assert.equal(advanceClock(5n, []), 5n)
  assert.equal(advanceClock(5n * 10n ** 12n, [5n * 10n ** 12n]), 6n * 10n ** 12n)
  assert.equal(discardIncompleteAppend('a\nb'), 'a\n')
  assert.equal(discardIncompleteAppend('b'), '')
})

test("changePresenceLog writes the bytes `git annex setpresentkey` writes, for random earlier contents", { timeout: 240_000 }, async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const journalDir = join(repo, '.git/annex/journal')
  await mkdir(journalDir, { recursive: true })
  const CLOCK = '1700000005s'
  const child = spawn('git', ['annex', 'setpresentkey', '--batch'], { cwd: repo, env: { ...process.env, ...gitEnv, GIT_ANNEX_VECTOR_CLOCK: CLOCK }, stdio: ['pipe', 'pipe', 'inherit'] })
  t.after(() => stopChild(child))
  const answers = createInterface({ input: child.stdout })
  const waiting: Array<(l: string) => void> = []
  answers.on('line', (l) => waiting.shift()?.(l))
  const ask = (line: string) => new Promise<string>((resolve) => {
    waiting.push(resolve)
    child.stdin.write(line + '\n')
  })

  const uuids = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000003']
  const clocks = ['1700000004s', '1700000005s', '1700000005', '1700000006.25s', '1700000005.000000000001s', '+1700000003s', '-0.5s', '17000000x', '1.s', '1700000005.1234567890125s']
  const line = fc.tuple(fc.constantFrom(...clocks), fc.constantFrom('1', '0', 'X', '2'), fc.constantFrom(...uuids, '', 'x y')).map(([c, s, u]) => `${c} ${s} ${u}`)
  const content = fc.tuple(fc.array(fc.tuple(line, fc.constantFrom('\n', '\r\n', '\n\n')), { maxLength: 6 }), fc.boolean()).map(([ls, partial]) =>
    ls.map(([l, sep]) => l + sep).join('') + (partial ? `1700000009s 1 ${uuids[0]}` : ''),
  )
  let n = 0
  await fc.assert(
    fc.asyncProperty(content, fc.constantFrom(...uuids), fc.constantFrom<'1' | '0'>('1', '0'), async (old, uuid, status) => {
      const key = sha256Key(Buffer.from(`case ${n++}\n`))
      const file = join(journalDir, journalFileName(locationLogPath(parseKey(key))))
      await writeFile(file, old, 'latin1')
      assert.equal(await ask(`${key} ${uuid} ${status}`), `setpresentkey ${key} ok`)
      const theirs = await readFile(file, 'latin1')
      const ours = changePresenceLog(discardIncompleteAppend(old), uuid, status, parsePosixTime(CLOCK)!) ?? old
      assert.equal(ours, theirs, `from ${JSON.stringify(old)}: ${uuid} ${status}`)
    }),
    { numRuns: 150 },
  )
})
