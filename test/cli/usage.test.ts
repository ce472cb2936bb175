// The command line's own text: usage generated from the option table, and modules that can
// be imported without running the command line.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { SERVE_OPTIONS, parseServeArgs } from '../../src/config/config.js'
import { PROJECT_ROOT, sh } from '../helpers/annex.js'

const MAIN = join(PROJECT_ROOT, 'dist/src/cli/main.js')

test('--help lists every flag serve accepts, from the option table', async () => {
  const { stdout } = await sh(PROJECT_ROOT, process.execPath, [MAIN, '--help'])
  // The nine the hand-written usage once left out, by name, and then the whole table.
  for (const f of ['lock-expiry', 'fanout-buffer', 'fanout-stall', 'shutdown-grace', 'max-queue', 'max-queue-wait', 'proxyconnections', 'clusterjobs', 'cpus'])
    assert.match(stdout, new RegExp(`--${f}\\b`), f)
  for (const [name, o] of Object.entries(SERVE_OPTIONS)) {
    assert.match(stdout, new RegExp(`^  .*--${name}\\b`, 'm'), name)
    // Every listed flag is one parseArgs knows (its value may still be refused).
    const argv = o.type === 'boolean' ? [`--${name}`] : [`--${name}`, '1']
    try {
      parseServeArgs(argv, '/')
    } catch (e) {
      assert.doesNotMatch((e as Error).message, /unknown option/i, name)
    }
  }
  assert.equal((await sh(PROJECT_ROOT, process.execPath, [MAIN, 'serve', '--help'])).stdout, stdout)
})

test('cli/demo and cli/main do not import each other: importing demo runs no command line', async () => {
  const demo = join(PROJECT_ROOT, 'dist/src/cli/demo.js')
  // Importing main would run the command line, which prints its usage when given no command.
  const r = await sh(PROJECT_ROOT, process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(demo)})`])
  assert.equal(r.stdout, '')
  assert.doesNotMatch(readFileSync(demo, 'utf8'), /from '\.\/main\.js'/)
})
