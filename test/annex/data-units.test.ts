// One data-size parser for every size text (annex.diskreserve, largerthan=, maxsize.log),
// judged by real git-annex: what `git annex info` says it reserves for annex.diskreserve,
// and what `git annex maxsize` reads from maxsize.log.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { readishInteger, readSize, readsNumber, roughSize } from '../../src/annex/data-units.js'
import { parseMaxSizeLog } from '../../src/annex/branch-logs.js'
import { makeRepo, repoUuid, sh, tempDir } from '../helpers/annex.js'

// Texts on which the two parsers the code had before (annex.diskreserve's and largerthan='s)
// disagreed with git-annex or with each other.
const SIZES = [
  '100 megabytes', '1GB', '1 GiB', '512', '0.5tb', '10 kilobytes', '2MiB', '2.5', '3.5', '1.5', '0x10', '0X1f', '0o17',
  '1e', '1e3', '5!', '(5)mb', '( 5 ) mb', '((2)) kB', ' 7 kb', '1k', '1Ki', '1mbit', '4.mb', '1234567', '0.5 GiB', '12 Bytes',
]
const BAD_SIZES = ['10zz', 'nonsense', '', '.5', 'mb', '-(5)', '(5']

test('readSize agrees with the reserve real git-annex reports for annex.diskreserve', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const reserved = async (v: string) => {
    const { stdout } = await sh(repo, 'git', ['-c', `annex.diskreserve=${v}`, 'annex', 'info', '--fast', '--json'])
    const m = /\(\+(.*) reserved\)/.exec((JSON.parse(stdout) as Record<string, string>)['available local disk space']!)
    assert.ok(m, stdout)
    return m[1]!
  }
  const fallback = await reserved('')
  assert.equal(fallback, '100 megabytes')
  for (const v of SIZES) {
    const ours = readSize(v)
    assert.notEqual(ours, undefined, v)
    assert.equal(roughSize(ours!, { short: false }), await reserved(v), v)
  }
  // What git-annex cannot read, it replaces by its default: we refuse it, and callers use the default.
  for (const v of BAD_SIZES) {
    assert.equal(readSize(v), undefined, v)
    assert.equal(await reserved(v), fallback, v)
  }
  assert.equal(readSize('- 5'), -5)
  assert.equal(await reserved('- 5'), '-5 bytes')
})

test('maxsize.log values are read as git-annex reads them (readish), checked with git annex maxsize', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'r'), 'r')
  const uuid = await repoUuid(repo)
  const values = ['1000', '0x10', ' 12abc', '-5', '1e3', '12.5', '+7', '007', ' 42', '4 2', '(5)', '- 5', '12.', '0x', '1_000', '12e+', '0o17', '']
  let clock = Math.floor(Date.now() / 1000) + 10
  for (const v of values) {
    // A newer clock each time, so this line wins whatever git-annex has cached.
    const log = `${clock++}s ${uuid} ${v}\n`
    await writeFile(join(repo, '.git', 'annex', 'journal', 'maxsize.log'), log)
    const { stdout } = await sh(repo, 'git', ['annex', 'maxsize', '--json'])
    const theirs = (JSON.parse(stdout) as { repositories: { uuid: string; size: { maxsize: number | null } }[] }).repositories.find((r) => r.uuid === uuid)!.size.maxsize
    assert.equal(parseMaxSizeLog(log).get(uuid as never) ?? null, theirs, JSON.stringify(v))
  }
})

test('readsNumber: parentheses, a spaced minus, and a lexeme read whole', () => {
  assert.deepEqual(readsNumber(' ( -  3 )x', 'integer'), { value: -3, rest: 'x' })
  assert.equal(readsNumber('1.5', 'integer'), undefined)
  assert.deepEqual(readsNumber('1.5e1 kB', 'double'), { value: 15, rest: ' kB' })
  assert.equal(readishInteger('Infinity'), undefined)
  assert.equal(readSize('Infinity'), Infinity)
})

test('readSize inverts roughSize within its rounding, for every size', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 52 }), (n) => {
      const back = readSize(roughSize(n))!
      // Two decimals of the unit: within half a hundredth of it, relatively at most 0.5%.
      assert.ok(Math.abs(back - n) <= Math.max(0.005 * n, 1), `${n} → ${roughSize(n)} → ${back}`)
    }),
  )
})
