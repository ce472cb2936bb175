// annex-proxy upload over HTTPS with credentials: the server's certificate is trusted through the
// CA store the client assembles (here NODE_EXTRA_CA_CERTS, which Node adds to it), an untrusted
// one is refused, and user:password from the URL or the environment is sent.
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { annex, makeRepo, repoUuid, sh, startAnnexProxy, tempDir } from '../helpers/annex.js'
import { upload } from './helpers.js'

test('upload over HTTPS with credentials from the URL or the environment; an untrusted certificate is refused', { timeout: 300_000 }, async (t) => {
  const root = await tempDir(t, 'annex-proxy-upload-tls-')
  const cert = join(root, 'cert.pem')
  const key = join(root, 'key.pem')
  await sh(root, 'openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
  const srv = await makeRepo(join(root, 'srv'), 'srv')
  const uuid = await repoUuid(srv)
  const served = await startAnnexProxy(t, srv, ['--authenv', '--certfile', cert, '--privatekeyfile', key], { GIT_ANNEX_P2PHTTP_PASSWORD_alice: 's3cret' })
  await mkdir(join(root, 'data'))
  await writeFile(join(root, 'data', 'a.txt'), 'over TLS\n')
  await writeFile(join(root, 'data', 'b.txt'), 'also over TLS\n')
  const url = `annex+https://127.0.0.1:${served.port}/git-annex/`

  const untrusted = await upload(root, ['--url', url.replace('https://', 'https://alice:s3cret@'), '--uuid', uuid, 'data/a.txt'])
  assert.equal(untrusted.code, 1)
  assert.match(untrusted.results[0]?.error ?? '', /certificate/i)

  const trusted = { NODE_EXTRA_CA_CERTS: cert }
  const noAuth = await upload(root, ['--url', url, '--uuid', uuid, 'data/a.txt'], 60_000, trusted)
  assert.equal(noAuth.code, 1, 'no credentials: refused')
  const fromUrl = await upload(root, ['--url', url.replace('https://', 'https://alice:s3cret@'), '--uuid', uuid, 'data/a.txt'], 60_000, trusted)
  assert.equal(fromUrl.code, 0, fromUrl.stderr)
  const fromEnv = await upload(root, ['--url', url, '--uuid', uuid, 'data/b.txt'], 60_000, { ...trusted, GIT_ANNEX_P2PHTTP_USERNAME: 'alice', GIT_ANNEX_P2PHTTP_PASSWORD: 's3cret' })
  assert.equal(fromEnv.code, 0, fromEnv.stderr)
  const { stdout } = await annex(srv, 'findkeys', '--in', 'here')
  assert.equal(stdout.split('\n').filter(Boolean).length, 2)
})
