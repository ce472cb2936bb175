// /metrics with a real server and the real git-annex client: off by default, parses as
// Prometheus text, and its counters move with a transfer; --metrics-port serves it apart.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { request } from 'undici'
import { annex, git, makeClient, makeRepo, repoUuid, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { parseExposition } from './exposition.js'
import { waitUntil } from '../helpers/wait.js'

async function scrape(port: number): Promise<{ status: number; text: string; type: string | undefined }> {
  const r = await request(`http://127.0.0.1:${port}/metrics`, { headersTimeout: 30_000, bodyTimeout: 30_000 })
  const text = await r.body.text()
  return { status: r.statusCode, text, type: r.headers['content-type'] as string | undefined }
}

/** Waits for the server's log line naming its metrics port. */
function metricsPort(output: () => string, deadlineMs = 30_000): Promise<number> {
  return waitUntil('the "metricsPort" log line', deadlineMs, () => {
    const m = /"metricsPort":(\d+)/.exec(output())
    return m ? Number(m[1]) : undefined
  }, 50).catch((e: Error) => {
    throw new Error(`${e.message}: ${output()}`)
  })
}

const FAMILIES = [
  'annex_proxy_received_bytes_total',
  'annex_proxy_sent_bytes_total',
  'annex_proxy_transfers_in_flight',
  'annex_proxy_request_duration_seconds',
  'annex_proxy_puts_total',
  'annex_proxy_verification_failures_total',
  'annex_proxy_fanout_nodes_dropped_total',
  'annex_proxy_overloaded_total',
  'annex_proxy_queue_depth',
  'annex_proxy_workers_busy',
  'annex_proxy_locks_held',
]

test('/metrics is off unless asked for', async (t) => {
  const root = await tempDir(t)
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const served = await startAnnexProxy(t, srv)
  assert.equal((await scrape(served.port)).status, 404)
})

test('/metrics parses as Prometheus text and its counters move with real git-annex transfers', { timeout: 300_000 }, async (t) => {
  const root = await tempDir(t)
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const uuid = await repoUuid(srv)
  const served = await startAnnexProxy(t, srv, ['--wideopen', '--metrics'])
  const before = await scrape(served.port)
  assert.equal(before.status, 200)
  assert.match(before.type ?? '', /^text\/plain; version=0\.0\.4/)
  const b = parseExposition(before.text)
  for (const f of FAMILIES) {
    const base = f.replace(/_total$/, '')
    assert.ok(b.types.has(f) || b.types.has(base), `family ${f} declared`)
  }
  assert.equal(b.value('annex_proxy_puts_total'), 0)

  const client = await makeClient(srv, join(root, 'client'), served.port)
  const size = 3_000_017
  await writeFile(join(client, 'big.bin'), randomBytes(size))
  await writeFile(join(client, 'small.txt'), 'hello\n')
  await annex(client, 'add', '-q', 'big.bin', 'small.txt')
  await git(client, 'commit', '-q', '-m', 'add')
  await annex(client, 'copy', '-q', '--to', 'origin', 'big.bin', 'small.txt')
  await annex(client, 'drop', '-q', 'big.bin')
  await annex(client, 'get', '-q', '--from', 'origin', 'big.bin')

  const a = parseExposition((await scrape(served.port)).text)
  assert.equal(a.value('annex_proxy_puts_total', { repo: uuid, result: 'stored' }), 2)
  assert.ok(a.value('annex_proxy_received_bytes_total', { repo: uuid }) >= size, 'received bytes count the upload')
  assert.ok(a.value('annex_proxy_sent_bytes_total', { repo: uuid }) >= size, 'sent bytes count the download')
  assert.ok(a.value('annex_proxy_request_duration_seconds_count', { endpoint: 'put', status: '200' }) >= 2)
  assert.ok(a.value('annex_proxy_request_duration_seconds_count', { endpoint: 'key', status: '200' }) >= 1)
  assert.equal(a.value('annex_proxy_transfers_in_flight'), 0)
  assert.equal(a.value('annex_proxy_queue_depth'), 0)
})

test('--metrics-port serves /metrics on its own listener, not on the data port', async (t) => {
  const root = await tempDir(t)
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const served = await startAnnexProxy(t, srv, ['--wideopen', '--metrics-port', '0'])
  const port = await metricsPort(served.output)
  assert.notEqual(port, served.port)
  const r = await scrape(port)
  assert.equal(r.status, 200)
  assert.ok(parseExposition(r.text).types.has('annex_proxy_request_duration_seconds'))
  assert.equal((await scrape(served.port)).status, 404)
})
