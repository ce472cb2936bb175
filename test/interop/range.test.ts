// HEAD, Range and conditional GETs on the key endpoint, through every kind of store a
// gateway serves: its own repository, a cluster, a proxied node, a directory special
// remote and an S3 special remote (a real S3 server), read through the chunk cache and
// without it. Every body is compared with the slice of the content it claims to be.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { request } from 'undici'
import { annex, git, sh, sha256Key, startAnnexProxy } from '../helpers/annex.js'
import { startCountingProxy } from '../helpers/counting-proxy.js'
import { useTestS3 } from '../helpers/s3-server.js'
import { makeGateway } from '../gateway/fixture.js'

const s3 = useTestS3()
const CU = '00000000-0000-4000-8000-00000000c0de'
const SIZE = 300_001
const CHUNK = 64 * 1024
const BIG = 32 * 1024 * 1024

async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

async function put(base: string, key: string, content: Buffer) {
  const res = await request(`${base}/v4/put?key=${encodeURIComponent(key)}&clientuuid=${CU}`, {
    method: 'POST',
    headers: { 'x-git-annex-data-length': String(content.length), 'content-type': 'application/octet-stream' },
    body: content,
  })
  const text = await res.body.text()
  assert.equal(res.statusCode, 200, text)
  assert.equal((JSON.parse(text) as { stored: boolean }).stored, true, text)
}

/** The parts of a multipart/byteranges body, with their Content-Range. */
function parts(body: Buffer, contentType: string): { range: string; data: Buffer }[] {
  const boundary = /boundary=([^;]+)/.exec(contentType)![1]!
  const out: { range: string; data: Buffer }[] = []
  const delim = Buffer.from(`--${boundary}`)
  let at = body.indexOf(delim)
  for (;;) {
    const next = at + delim.length
    if (body.subarray(next, next + 2).toString() === '--') break
    const headEnd = body.indexOf('\r\n\r\n', next)
    const head = body.subarray(next, headEnd).toString('latin1')
    const end = body.indexOf(Buffer.from(`\r\n--${boundary}`), headEnd + 4)
    out.push({ range: /Content-Range: (.*)/i.exec(head)![1]!.trim(), data: body.subarray(headEnd + 4, end) })
    at = end + 2
  }
  return out
}

/** Every range form against one store; `c` is its content, `base` its /git-annex/<uuid>. */
async function checkRanges(label: string, base: string, key: string, c: Buffer) {
  const url = `${base}/key/${encodeURIComponent(key)}`
  const v4 = `${base}/v4/key/${encodeURIComponent(key)}?clientuuid=${CU}`
  const etag = `"${key}"`

  const head = await get(url, {}, 'HEAD')
  assert.equal(head.status, 200, label)
  assert.equal(head.headers['content-length'], String(SIZE), `${label}: HEAD Content-Length`)
  assert.equal(head.headers['x-git-annex-data-length'], String(SIZE), label)
  assert.equal(head.headers['accept-ranges'], 'bytes', label)
  assert.equal(head.headers.etag, etag, label)
  assert.equal(head.body.length, 0, `${label}: HEAD has no body`)
  const headV4 = await get(v4, { range: 'bytes=0-1' }, 'HEAD')
  assert.equal(headV4.status, 200, `${label}: HEAD ignores Range`)
  assert.equal(headV4.headers['content-length'], String(SIZE), label)

  const full = await get(url)
  assert.equal(full.status, 200)
  assert.equal(full.headers['content-length'], String(SIZE), `${label}: unversioned GET has a Content-Length`)
  assert.ok(full.body.equals(c), `${label}: whole content`)
  // v1+ clients get the reference's framing: no Content-Length, the count is the signal.
  const fullV4 = await get(v4)
  assert.equal(fullV4.headers['content-length'], undefined, `${label}: v4 GET is chunked as the reference's`)
  assert.equal(fullV4.headers['transfer-encoding'], 'chunked', label)
  assert.equal(fullV4.headers['x-git-annex-data-length'], String(SIZE), label)
  assert.ok(fullV4.body.equals(c), label)
  const offset = await get(`${v4}&offset=1000`)
  assert.equal(offset.headers['x-git-annex-data-length'], String(SIZE - 1000), `${label}: offset= keeps working`)
  assert.ok(offset.body.equals(c.subarray(1000)), label)
  assert.equal(offset.headers.etag, undefined, `${label}: offset= is another representation, not tagged as the key`)

  const cases: [string, number, number][] = [
    ['bytes=0-0', 0, 0],
    ['bytes=100-70000', 100, 70000], // across cache chunks
    ['bytes=131072-196607', 131072, 196607], // exactly one chunk
    [`bytes=${SIZE - 10}-${SIZE + 1000}`, SIZE - 10, SIZE - 1], // clamped at the end
    ['bytes=200000-', 200000, SIZE - 1],
    ['bytes=-777', SIZE - 777, SIZE - 1],
    [`bytes=-${SIZE * 2}`, 0, SIZE - 1],
    ['bytes=0-', 0, SIZE - 1],
  ]
  for (const [h, s, e] of cases) {
    for (const u of [url, v4]) {
      const r = await get(u, { range: h })
      assert.equal(r.status, 206, `${label} ${h}`)
      assert.equal(r.headers['content-range'], `bytes ${s}-${e}/${SIZE}`, `${label} ${h}`)
      assert.equal(r.headers['content-length'], String(e - s + 1), `${label} ${h}`)
      assert.equal(r.headers['x-git-annex-data-length'], undefined, `${label} ${h}: a part carries no data-length`)
      assert.equal(r.headers.etag, etag, label)
      assert.ok(r.body.equals(c.subarray(s, e + 1)), `${label} ${h}: the body is the slice`)
    }
  }
  const offRange = await get(`${v4}&offset=1000`, { range: 'bytes=10-19' })
  assert.equal(offRange.headers['content-range'], `bytes 10-19/${SIZE - 1000}`, `${label}: Range applies to the offset= representation`)
  assert.ok(offRange.body.equals(c.subarray(1010, 1020)), label)

  for (const h of [`bytes=${SIZE}-`, `bytes=${SIZE}-${SIZE + 5}`, 'bytes=-0']) {
    const r = await get(url, { range: h })
    assert.equal(r.status, 416, `${label} ${h}`)
    assert.equal(r.headers['content-range'], `bytes */${SIZE}`, `${label} ${h}`)
  }

  const multi = await get(v4, { range: 'bytes=250000-250099, 0-9, -5' })
  assert.equal(multi.status, 206, label)
  const ct = String(multi.headers['content-type'])
  assert.match(ct, /^multipart\/byteranges; boundary=/, label)
  assert.equal(Number(multi.headers['content-length']), multi.body.length, `${label}: multipart Content-Length`)
  assert.deepEqual(
    parts(multi.body, ct).map((p) => p.range),
    [`bytes 250000-250099/${SIZE}`, `bytes 0-9/${SIZE}`, `bytes ${SIZE - 5}-${SIZE - 1}/${SIZE}`],
  )
  for (const p of parts(multi.body, ct)) {
    const [s, e] = /bytes (\d+)-(\d+)/.exec(p.range)!.slice(1).map(Number) as [number, number]
    assert.ok(p.data.equals(c.subarray(s, e + 1)), `${label}: part ${p.range}`)
  }
  const merged = await get(url, { range: 'bytes=10-20,15-30,31-40' })
  assert.equal(merged.status, 206, label)
  assert.equal(merged.headers['content-range'], `bytes 10-40/${SIZE}`, `${label}: touching ranges are one part`)
  assert.ok(merged.body.equals(c.subarray(10, 41)), label)

  // Conditionals.
  const inm = await get(url, { 'if-none-match': etag })
  assert.equal(inm.status, 304, `${label}: If-None-Match`)
  assert.equal(inm.body.length, 0, label)
  assert.equal((await get(url, { 'if-none-match': '"something-else"' })).status, 200, label)
  const stale = await get(url, { range: 'bytes=0-9', 'if-range': '"something-else"' })
  assert.equal(stale.status, 200, `${label}: If-Range that does not match: the whole content`)
  assert.ok(stale.body.equals(c), label)
  const fresh = await get(url, { range: 'bytes=0-9', 'if-range': etag })
  assert.equal(fresh.status, 206, `${label}: If-Range that matches`)
  // Ignored Range headers get the whole content.
  const ignored = await get(url, { range: 'lines=1-2' })
  assert.equal(ignored.status, 200, label)
  assert.ok(ignored.body.equals(c), label)
}

test('Range, HEAD and conditionals on the gateway, a cluster, a node, a directory and an S3 special remote (chunk cache on and off)', { timeout: 600_000 }, async (t) => {
  const server = s3()
  const g = await makeGateway(t)
  const counted = await startCountingProxy(t, server.port)
  const env = { ...process.env, ...server.env }
  await git(g.gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  const bucket = await server.bucket()
  await sh(g.gw, 'git', ['annex', 'initremote', 's3', 'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${counted.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4'], { env })
  await git(g.gw, 'config', 'remote.s3.annex-proxy', 'true')
  await annex(g.gw, 'updateproxy')
  const s3uuid = (await git(g.gw, 'config', 'remote.s3.annex-uuid')).stdout.trim()
  const proxy = await startAnnexProxy(t, g.gw, ['--wideopen', '--cache-chunk', String(CHUNK)], server.env)
  const at = (uuid: string, port = proxy.port) => `http://127.0.0.1:${port}/git-annex/${uuid}`

  const targets: [string, string][] = [
    ['gateway repository', g.uuid],
    ['cluster', g.cluster],
    ['proxied node n2', g.nodes.n2],
    ['directory special remote', g.dsr],
    ['S3 special remote (chunk cache)', s3uuid],
  ]
  const contents = new Map<string, { key: string; c: Buffer }>()
  for (const [label, uuid] of targets) {
    const c = randomBytes(SIZE)
    const key = sha256Key(c)
    await put(at(uuid), key, c)
    contents.set(label, { key, c })
  }

  // A range inside a large S3 object not yet read: S3 is read from the range's start, and
  // the read stops soon after its end (what is in flight when the body is dropped), not at
  // the object's end.
  const big = randomBytes(BIG)
  const bigKey = sha256Key(big)
  await put(at(s3uuid), bigKey, big)
  const sparse = async (port: number, from: number) => {
    const before = counted.downBytes
    const closed = counted.closedConnections
    const r = await get(`${at(s3uuid, port)}/key/${bigKey}`, { range: `bytes=${from}-${from + 99}` })
    assert.equal(r.status, 206, JSON.stringify(r.headers))
    assert.ok(r.body.equals(big.subarray(from, from + 100)))
    // What S3 sent is known once the gateway dropped the connection of the unfinished read.
    const deadline = Date.now() + 20_000
    while (counted.closedConnections === closed) {
      assert.ok(Date.now() < deadline, 'waited 20 s for the gateway to drop its S3 connection after the range was sent')
      await new Promise((res) => setTimeout(res, 20))
    }
    return counted.downBytes - before
  }
  const fetched = await sparse(proxy.port, BIG / 2)
  t.diagnostic(`a 100-byte range in the middle of ${BIG} bytes on S3, through the chunk cache, fetched ${fetched} bytes`)
  assert.ok(fetched < BIG / 4, `fetched ${fetched} bytes from S3 for 100`)

  for (const [label, uuid] of targets) {
    const { key, c } = contents.get(label)!
    await checkRanges(label, at(uuid), key, c)
  }

  // Without the cache: ranged GETs to S3 itself.
  const direct = await startAnnexProxy(t, g.gw, ['--wideopen', '--cache-size', '0'], server.env)
  const fetched2 = await sparse(direct.port, Math.floor(BIG / 3))
  t.diagnostic(`the same without the cache fetched ${fetched2} bytes`)
  assert.ok(fetched2 < BIG / 4, `fetched ${fetched2} bytes from S3 for 100`)
  const { key: s3key, c: s3c } = contents.get('S3 special remote (chunk cache)')!
  await checkRanges('S3 special remote (no cache)', at(s3uuid, direct.port), s3key, s3c)

  // Absent content: the reference's answer, with or without Range.
  const absent = sha256Key(randomBytes(10))
  for (const h of [{}, { range: 'bytes=0-3' }, { range: 'bytes=50-' }] as Record<string, string>[]) {
    const r = await get(`${at(g.uuid)}/key/${absent}`, h)
    assert.equal(r.status, 200, `${JSON.stringify(h)}: ${r.body.toString()} ${proxy.output().slice(-3000)}`)
    assert.equal(r.headers['x-git-annex-data-length'], '0')
    assert.equal(r.headers.etag, undefined)
    assert.equal(r.body.length, 0)
  }
  assert.equal((await get(`${at(g.uuid)}/key/${absent}`, { 'if-none-match': `"${absent}"` })).status, 200, 'no 304 for content the server does not have')
})
