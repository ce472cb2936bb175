// Gateway: what it holds open. Node remotes and clusters a configuration change replaces
// are closed once their calls in flight are done; close() closes everything it opened.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { Gateway } from '../../src/gateway/gateway.js'
import type { Logger, Remote } from '../../src/remotes/remote.js'
import { defer, git } from '../helpers/annex.js'
import { bodyOf, content, eventually, op, stallingBody } from '../remotes/contract.js'
import { makeGateway } from './fixture.js'

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {} }

test('a node replaced by a configuration change finishes its calls, then is closed; close() closes the rest', { timeout: 120_000 }, async (t) => {
  const g = await makeGateway(t)
  const gw = await Gateway.open(g.gw, { hasher: 'auto', log: quiet, fanoutHighWaterMark: 64 * 1024, fanoutStallMs: 10_000 })
  defer(t, () => gw.close())
  const cluster = (await gw.lookup(g.cluster))!
  assert.ok(cluster)
  const nodeOf = async (uuid: string) => (await gw.held().nodes).find((r): r is Remote => r?.uuid === uuid)
  const oldN1 = (await nodeOf(g.nodes.n1))!
  assert.ok(oldN1 && !oldN1.closed)

  // An upload to the cluster is under way when n1's URL changes (same repository, new settings).
  const c = content(100_000)
  const { body, consumed, finish } = stallingBody(c.bytes.subarray(0, 30_000))
  const storing = cluster.store(c.key, body, 0, op())
  await consumed
  await git(g.gw, 'remote', 'set-url', 'n1', join(g.root, 'n1'))
  await eventually(async () => oldN1.closed && cluster.closed, 'the replaced node and the cluster built on it to be closed')
  await assert.rejects(oldN1.checkPresent(c.key, op()), { name: 'ClosedError' })

  // Closing lets the upload in flight finish on every node, the replaced one included.
  finish(c.bytes.subarray(30_000))
  const stored = await storing
  assert.deepEqual([...stored.plusUuids].sort(), [g.nodes.n1, g.nodes.n2, g.nodes.n3].sort())

  // The next lookup builds them anew, and they work.
  const again = (await gw.lookup(g.cluster))!
  assert.notEqual(again, cluster)
  const newN1 = (await nodeOf(g.nodes.n1))!
  assert.notEqual(newN1, oldN1)
  assert.equal(await newN1.checkPresent(c.key, op()), true)
  const d = content(1000)
  assert.equal((await again.store(d.key, bodyOf(d.bytes), 0, op())).stored, true)

  // close() closes what is held now.
  const held = [...(await gw.held().nodes), ...gw.held().clusters].filter((r): r is Remote => r !== undefined)
  assert.ok(held.length >= 4, `held: ${held.length}`)
  await gw.close()
  for (const r of held) assert.equal(r.closed, true, `${r.uuid} closed`)
})
