// Indirect uploads (--indirect-upload) to a proxied S3 remote on a real S3 server (Swift
// s3api, which accepts x-amz-checksum-* but does not check it): a presigned PUT of the right
// bytes is verified and recorded, and the real client then gets and fscks the content
// through the gateway, git-annex's own S3 remote fscks it in the bucket; wrong bytes are
// refused and nothing is recorded or left behind; an expired URL, a read-only user and a
// forged ticket are refused.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { request } from 'undici'
import { annex, git, gitEnv, makeClient, makeRepo, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { useTestS3 } from '../helpers/s3-server.js'

const s3 = useTestS3()

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`
const WRITER = basic('writer', 'w-secret')
const READER = basic('reader', 'r-secret')
const CLIENT_UUID = '00000000-0000-4000-8000-0000000000aa'

interface Presigned {
  url: string
  method: string
  headers: Record<string, string>
  expires: number
  ticket: string
}

test('indirect upload to a proxied S3 remote: verified before recorded; wrong bytes, expired URLs, read-only users and forged tickets refused', async (t) => {
  const server = s3()
  const root = await tempDir(t)
  const bucket = await server.bucket()
  const env = { ...gitEnv, ...server.env }
  const gw = await makeRepo(join(root, 'gw'), 'gw')
  await git(gw, 'config', 'annex.security.allowed-ip-addresses', 'all')
  await sh(gw, 'git', ['annex', 'initremote', 's3', 'type=S3', 'encryption=none', 'host=127.0.0.1', `port=${server.port}`, 'protocol=http', 'requeststyle=path', `bucket=${bucket}`, 'signature=v4'], { env })
  await git(gw, 'config', 'remote.s3.annex-proxy', 'true')
  await annex(gw, 'updateproxy')
  const s3uuid = (await git(gw, 'config', 'remote.s3.annex-uuid')).stdout.trim()
  const gateway = await startAnnexProxy(t, gw, ['--authenv-http', '--unauth-readonly', '--indirect-upload'], {
    GIT_ANNEX_P2PHTTP_PASSWORD_writer: 'w-secret',
    GIT_ANNEX_P2PHTTP_PASSWORD_reader: 'r-secret',
    GIT_ANNEX_P2PHTTP_PERMISSIONS_reader: 'readonly',
  })
  const base = `http://127.0.0.1:${gateway.port}/git-annex/${s3uuid}/annex-proxy/indirect`
  const call = async (what: 'put' | 'done', key: string, auth: string | undefined, extra = '') => {
    const r = await request(`${base}/${what}?key=${encodeURIComponent(key)}&clientuuid=${CLIENT_UUID}${extra}`, { method: 'POST', headers: auth ? { authorization: auth } : {} })
    const text = await r.body.text()
    return { status: r.statusCode, text, json: () => JSON.parse(text) as Record<string, unknown> }
  }
  const presign = async (key: string, extra = '') => {
    const r = await call('put', key, WRITER, extra)
    assert.equal(r.status, 200, r.text)
    return r.json() as unknown as Presigned
  }
  const upload = async (p: Presigned, bytes: Buffer) => {
    const r = await request(p.url, { method: 'PUT', headers: p.headers, body: bytes })
    return { status: r.statusCode, text: await r.body.text() }
  }
  const staged = async () => (await server.list(bucket)).filter((o) => o.startsWith('annex-proxy-incoming/'))
  const gatewayKnows = async (key: string) => (await annex(gw, 'whereis', '--key', key).catch((e: Error) => ({ stdout: e.message }))).stdout.includes(s3uuid)

  // The right bytes: uploaded straight to S3, verified, moved to the key's name, recorded.
  const client = await makeClient(gw, join(root, 'client'), gateway.port)
  const content = randomBytes(3_000_000)
  await writeFile(join(client, 'a.bin'), content)
  await annex(client, 'add', '-q', 'a.bin')
  await git(client, 'commit', '-q', '-m', 'a')
  const key = (await annex(client, 'lookupkey', 'a.bin')).stdout.trim()
  const p = await presign(key)
  assert.equal(p.method, 'PUT')
  assert.equal(p.headers['x-amz-checksum-sha256'], createHash('sha256').update(content).digest('base64'))
  assert.equal(p.headers['content-length'], String(content.length))
  assert.equal((await upload(p, content)).status, 200)
  assert.equal(await gatewayKnows(key), false, 'nothing is recorded before the client reports the upload')
  assert.deepEqual((await call('done', key, WRITER, `&ticket=${encodeURIComponent(p.ticket)}`)).json(), { stored: true })
  assert.ok((await server.list(bucket)).includes(key), 'the object has the name git-annex gives it')
  assert.deepEqual(await staged(), [])
  assert.equal(await gatewayKnows(key), true)
  // git-annex's own S3 remote finds and verifies it; the real client gets it through the gateway.
  await sh(gw, 'git', ['annex', 'fsck', '-q', '--from', 's3', '--key', key], { env })
  await annex(client, 'sync', '-q', '--no-content')
  await annex(client, 'drop', '-q', '--force', 'a.bin')
  await annex(client, 'get', '-q', '--from', 'origin-s3', 'a.bin')
  assert.deepEqual(await readFile(join(client, 'a.bin')), content)
  await annex(client, 'fsck', '-q', 'a.bin')
  // Present now: no URL is issued for it.
  assert.deepEqual((await call('put', key, WRITER)).json(), { alreadyhave: true })

  // Wrong bytes of the right length: this S3 server stores them, the gateway reads them back,
  // refuses them and deletes them; nothing is recorded.
  const other = randomBytes(500_000)
  const otherKey = `SHA256E-s${other.length}--${createHash('sha256').update(other).digest('hex')}.bin`
  const p2 = await presign(otherKey)
  const wrong = Buffer.from(other)
  wrong[123_456]! ^= 0x01
  assert.equal((await upload(p2, wrong)).status, 200, 'the test server does not check x-amz-checksum-sha256')
  const refused = (await call('done', otherKey, WRITER, `&ticket=${encodeURIComponent(p2.ticket)}`)).json()
  assert.equal(refused.stored, false)
  assert.match(String(refused.reason), /does not match/)
  assert.ok(!(await server.list(bucket)).includes(otherKey))
  assert.deepEqual(await staged(), [])
  assert.equal(await gatewayKnows(otherKey), false)
  // A length the URL was not signed for is refused by S3 itself.
  assert.equal((await upload({ ...p2, headers: { ...p2.headers, 'content-length': String(other.length - 1) } }, other.subarray(1))).status, 403)

  // An expired URL: S3 refuses the PUT, and there is nothing to confirm.
  const p3 = await presign(otherKey, '&expires=1')
  const deadline = (p3.expires + 1) * 1000
  while (Date.now() <= deadline) await new Promise((r) => setTimeout(r, Math.max(10, deadline - Date.now() + 10)))
  const late = await upload(p3, other)
  assert.equal(late.status, 403, late.text)
  assert.match(late.text, /expired/i)
  const nothing = (await call('done', otherKey, WRITER, `&ticket=${encodeURIComponent(p3.ticket)}`)).json()
  assert.equal(nothing.stored, false)
  assert.equal(await gatewayKnows(otherKey), false)

  // Read-only users and anonymous clients get no URL; a forged or foreign ticket is refused.
  assert.equal((await call('put', otherKey, READER)).status, 403)
  assert.equal((await call('put', otherKey, undefined)).status, 401)
  assert.equal((await call('done', otherKey, READER, `&ticket=${encodeURIComponent(p2.ticket)}`)).status, 403)
  const [body, mac] = p2.ticket.split('.')
  const forged = `${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body!, 'base64url').toString()), e: 2 ** 40 })).toString('base64url')}.${mac}`
  assert.equal((await call('done', otherKey, WRITER, `&ticket=${encodeURIComponent(forged)}`)).status, 403)
  assert.equal((await call('done', key, WRITER, `&ticket=${encodeURIComponent(p2.ticket)}`)).status, 403, 'a ticket for another key')
  // Only S3 remotes take indirect uploads: the gateway's own repository does not.
  const own = await request(`http://127.0.0.1:${gateway.port}/git-annex/${(await git(gw, 'config', 'annex.uuid')).stdout.trim()}/annex-proxy/indirect/put?key=${otherKey}&clientuuid=${CLIENT_UUID}`, { method: 'POST', headers: { authorization: WRITER } })
  assert.equal(own.statusCode, 400)
  assert.match(await own.body.text(), /only an S3 special remote/)
})
