// Repository UUIDs and trust levels in one module, with git-annex's rules.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { isClusterUuid, parseTrustValue, readTrustLevel, TRUST_ORDER } from '../../src/annex/uuid.js'
import { annex, git, makeRepo, PROJECT_ROOT, tempDir } from '../helpers/annex.js'

test('cluster UUIDs: what git annex initcluster makes is one; regular UUIDs never are', async (t) => {
  const repo = await makeRepo(join(await tempDir(t), 'gw'), 'gw')
  await annex(repo, 'initcluster', 'c')
  const cu = (await git(repo, 'config', 'annex.cluster.c')).stdout.trim()
  assert.equal(isClusterUuid(cu), true, cu)
  assert.equal(isClusterUuid((await git(repo, 'config', 'annex.uuid')).stdout.trim()), false)
  // A version 4 UUID has 4 at index 14, so it can never pass for a cluster.
  fc.assert(fc.property(fc.uuid({ version: 4 }), (u) => assert.equal(isClusterUuid(u), false)))
  assert.equal(isClusterUuid('ac'), false)
})

test('trust levels: config words, trust.log characters and their order', () => {
  assert.deepEqual(['trusted', 'untrusted', 'semitrusted', 'dead', 'Trusted', ''].map(readTrustLevel), ['trusted', 'untrusted', 'semitrusted', 'dead', undefined, undefined])
  assert.deepEqual(['1', '0', 'X', '?', '', 'xx'].map(parseTrustValue), ['trusted', 'untrusted', 'dead', 'semitrusted', 'trusted', undefined])
  assert.ok(TRUST_ORDER.dead < TRUST_ORDER.untrusted && TRUST_ORDER.untrusted < TRUST_ORDER.semitrusted && TRUST_ORDER.semitrusted < TRUST_ORDER.trusted)
})

test('UUID and trust rules are declared once, in src/annex/uuid.ts', () => {
  const src = join(PROJECT_ROOT, 'src')
  const files: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name))
      else if (e.name.endsWith('.ts')) files.push(join(d, e.name))
    }
  }
  walk(src)
  const decl = /^export (?:const|function|type) (isClusterUuid|TrustLevel|Uuid|asUuid|TRUST_ORDER|parseTrustValue|readTrustLevel)\b|^const (TRUST_ORDER|isTrustLevel)\b/gm
  const found = files.flatMap((f) => [...readFileSync(f, 'utf8').matchAll(decl)].map((m) => `${relative(src, f)}: ${m[1] ?? m[2]}`))
  assert.deepEqual(found.filter((f) => !f.startsWith('annex/uuid.ts:')), [])
})
