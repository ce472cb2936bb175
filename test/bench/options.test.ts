import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseOptions, type Options } from '../../bench/lib/options.js'

const parse = (...argv: string[]) => parseOptions(argv, '/nonexistent') as Options

test('--ref-newest adds its server to the default servers and to an explicit --servers list', () => {
  assert.deepEqual(parse('--ref-newest', '/opt/x git-annex').servers, ['ours', 'ref', 'ref-shell', 'ref-newest'])
  assert.deepEqual(parse('--servers', 'ours,ref', '--ref-newest', '/opt/x git-annex').servers, ['ours', 'ref', 'ref-newest'])
  assert.deepEqual(parse('--ref-newest', '/opt/x git-annex', '--servers', 'ours').servers, ['ours', 'ref-newest'])
  assert.deepEqual(parse('--ref-newest', '/opt/x git-annex').refNewest, ['/opt/x', 'git-annex'])
})

test('--servers ref-newest without --ref-newest is refused', () => {
  assert.throws(() => parse('--servers', 'ours,ref-newest'), /needs --ref-newest/)
})
