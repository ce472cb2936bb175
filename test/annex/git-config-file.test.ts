// Reading a git config file without git, as a --directory scan does: what it reads must be
// what `git config --list` reads from the same file (and refused where git refuses it).
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { parseGitConfigFile, parseGitConfigList } from '../../src/annex/git-config-file.js'
import { shStatus, tempDir } from '../helpers/annex.js'

async function gitReads(dir: string, text: string, i: number): Promise<Map<string, string[]> | undefined> {
  const f = join(dir, `c${i}`)
  await writeFile(f, text)
  const r = await shStatus(dir, 'git', ['config', '--file', f, '--list', '-z'])
  return r.code === 0 ? parseGitConfigList(r.stdout) : undefined
}

const FIXTURES = [
  '[core]\n\tbare = true\n[annex]\n\tuuid = 2b7d9952-0811-4972-91a2-b25bf7e46285\n\tversion = 10\n',
  '# comment\n; comment\n[Annex]\n\tUUID = abc ; trailing\n',
  '[remote "Ori gin"]\n\turl = "a b" c  \n\tannex-proxy\n\tx = a\\\n b\n\ty = "q\\"t\\\\"\n[section.Sub]\n\tKey=v\n',
  '[annex]\n\tuuid = first\n\tuuid = second\n',
  '[remote "n1"]\n\tannex-uuid = u1\n\tannex-cluster-node = c1 c2\n[annex "cluster"]\n\tc1 = ac000000-0000-8000-0000-000000000000\n',
  '\ufeff[a]\r\n\tb = c\r\n',
  '[a]\nb = "unterminated\n',
  '[a]\n b = x\\y\n',
  'b = no section\n',
  '[a "sub\\"q"]\n\tk = "tab\\there" # c\n\tempty =\n\tempty2 = ""\n',
  '[a]\n\tk = v # c "q"\n\tj = "#not" ;c\n',
]

test('git config files read as git reads them: fixtures', async (t) => {
  const dir = await tempDir(t)
  for (const [i, text] of FIXTURES.entries()) assert.deepEqual(parseGitConfigFile(text), await gitReads(dir, text, i), JSON.stringify(text))
})

test('git config files read as git reads them: generated', async (t) => {
  const dir = await tempDir(t)
  const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,6}$/)
  const value = fc.stringMatching(/^[ a-z0-9#;"\\=.-]{0,12}$/)
  const line = fc.oneof(
    fc.tuple(word, value).map(([k, v]) => `\t${k} = ${v}\n`),
    fc.tuple(word, value).map(([k, v]) => `${k}=${JSON.stringify(v)}\n`),
    word.map((k) => `  ${k}\n`),
    fc.constant('# a comment\n'),
    fc.constant('\n'),
  )
  const section = fc.tuple(word, fc.option(fc.stringMatching(/^[ a-zA-Z0-9."\\]{0,8}$/)), fc.array(line, { maxLength: 5 })).map(
    ([name, sub, lines]) => `[${name}${sub === null ? '' : ` "${sub.replace(/["\\]/g, (c) => `\\${c}`)}"`}]\n${lines.join('')}`,
  )
  const files = fc.sample(fc.array(section, { minLength: 1, maxLength: 4 }).map((s) => s.join('')), { numRuns: 60, seed: 14 })
  for (const [i, text] of files.entries()) assert.deepEqual(parseGitConfigFile(text), await gitReads(dir, text, 100 + i), JSON.stringify(text))
})
