// git-annex-shell's command line as the reference reads it (CmdLine/GitAnnexShell.hs,
// Utility/ShellEscape.hs, Checks.hs): pure functions, with the reference's own properties.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  directoryRefusal,
  parseP2pStdioArgs,
  repoAbsPath,
  routeShellArgs,
  serverModeFromEnv,
  shellEscape,
  shellUnEscape,
} from '../../src/cli/shell-args.js'

test('shellUnEscape undoes shellEscape, one word or many (prop_isomorphic_shellEscape[_multiword])', () => {
  fc.assert(fc.property(fc.string(), (s) => assert.deepEqual(shellUnEscape(shellEscape(s)), [s])))
  fc.assert(fc.property(fc.array(fc.string(), { minLength: 1 }), (l) => assert.deepEqual(shellUnEscape(l.map(shellEscape).join(' ')), l)))
})

test('shellUnEscape splits what git-annex sends over ssh', () => {
  const u = '8d2257a8-0d70-476f-8e2c-4ee794abc728'
  assert.deepEqual(shellUnEscape(`git-annex-shell 'p2pstdio' '/~/annex' '${u}' --uuid ${u}`), ['git-annex-shell', 'p2pstdio', '/~/annex', u, '--uuid', u])
  assert.deepEqual(shellUnEscape(`a'b c'"d e"f`), ['ab cd ef'])
  assert.deepEqual(shellUnEscape(`'it'"'"'s'`), ["it's"])
})

test('routeShellArgs: p2pstdio to annex-proxy in every form git-annex-shell accepts, the rest to the real one', () => {
  const u = '8d2257a8-0d70-476f-8e2c-4ee794abc728'
  const args = ['/srv/a b', u, '--uuid', u]
  assert.deepEqual(routeShellArgs(['p2pstdio', ...args]), { kind: 'p2pstdio', args })
  assert.deepEqual(routeShellArgs(['-c', 'p2pstdio', ...args]), { kind: 'p2pstdio', args })
  assert.deepEqual(routeShellArgs(['-c', `git-annex-shell 'p2pstdio' '/srv/a b' '${u}' --uuid ${u}`]), { kind: 'p2pstdio', args })
  assert.deepEqual(routeShellArgs(['-c', '-c', `git-annex-shell 'p2pstdio' '/srv/a b' '${u}' --uuid ${u}`]), { kind: 'p2pstdio', args })
  for (const other of [
    ['configlist', '/srv/a'],
    ['-c', "git-annex-shell 'configlist' '/srv/a'"],
    ['-c', "git-upload-pack '/srv/a'"],
    ['-c', 'p2pstdio'],
    ['p2pstdio'],
    [],
    ['-c', "git-annex-shell 'inannex' '/srv/a' 'KEY'"],
  ]) {
    assert.deepEqual(routeShellArgs(other), { kind: 'real' }, JSON.stringify(other))
  }
})

test('parseP2pStdioArgs: the arguments Remote/Helper/Ssh.hs sends, in its order', () => {
  const u = '8d2257a8-0d70-476f-8e2c-4ee794abc728'
  assert.deepEqual(parseP2pStdioArgs(['/d', u, '--uuid', u]), { dir: '/d', clientUuid: u, uuid: u, debug: false })
  assert.deepEqual(parseP2pStdioArgs(['/d', '--debug', u, '--uuid', u, '--', 'remoteuuid=x', '--']), { dir: '/d', clientUuid: u, uuid: u, debug: true })
  assert.deepEqual(parseP2pStdioArgs(['/d', u]), { dir: '/d', clientUuid: u, uuid: undefined, debug: false })
  assert.throws(() => parseP2pStdioArgs(['/d']), /missing UUID parameter/)
  assert.throws(() => parseP2pStdioArgs(['/d', u, '--uuid']), /--uuid needs a value/)
  assert.throws(() => parseP2pStdioArgs(['/d', u, '--bogus']), /unknown option --bogus/)
})

test('server mode from the environment: read-only wins, empty means unset', () => {
  assert.equal(serverModeFromEnv({}), 'read-write')
  assert.equal(serverModeFromEnv({ GIT_ANNEX_SHELL_READONLY: '' }), 'read-write')
  assert.equal(serverModeFromEnv({ GIT_ANNEX_SHELL_APPENDONLY: '1' }), 'append-only')
  assert.equal(serverModeFromEnv({ GIT_ANNEX_SHELL_READONLY: 'true', GIT_ANNEX_SHELL_APPENDONLY: '1' }), 'read-only')
})

test('repoAbsPath: /~/ and ~/ are home, ~user/ is theirs, relative is under home', () => {
  const homeOf = (u: string) => (u === 'alice' ? '/home/alice' : undefined)
  assert.equal(repoAbsPath('/~/annex', '/home/me', homeOf), '/home/me/annex')
  assert.equal(repoAbsPath('~/annex', '/home/me', homeOf), '/home/me/annex')
  assert.equal(repoAbsPath('/~', '/home/me', homeOf), '/home/me')
  assert.equal(repoAbsPath('/~alice/annex', '/home/me', homeOf), '/home/alice/annex')
  assert.equal(repoAbsPath('~nobody/annex', '/home/me', homeOf), '/home/me/~nobody/annex')
  assert.equal(repoAbsPath('annex', '/home/me', homeOf), '/home/me/annex')
  assert.equal(repoAbsPath('/srv/annex/', '/home/me', homeOf), '/srv/annex/')
})

test('GIT_ANNEX_SHELL_DIRECTORY: only that directory, however it is written', () => {
  assert.equal(directoryRefusal({}, '/anything', '/home/me'), undefined)
  const env = { GIT_ANNEX_SHELL_DIRECTORY: '/srv/annex' }
  assert.equal(directoryRefusal(env, '/srv/annex', '/home/me'), undefined)
  assert.equal(directoryRefusal(env, '/srv/annex/', '/home/me'), undefined)
  assert.equal(directoryRefusal(env, '/srv/other', '/home/me'), 'Only allowed to access /srv/annex not /srv/other')
  assert.equal(directoryRefusal({ GIT_ANNEX_SHELL_DIRECTORY: 'annex' }, '/home/me/annex', '/home/me'), undefined)
  assert.equal(directoryRefusal({ GIT_ANNEX_SHELL_DIRECTORY: '/~/annex' }, '~/annex', '/home/me'), undefined)
})
