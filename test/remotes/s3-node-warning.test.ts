// The AWS SDK's NodeVersionSupportWarning (printed on Node < 22 when a client is made) does
// not reach an operator: annex-proxy supports Node 20 with the SDK it pins. On Node 20 the
// control (a bare S3Client) shows the warning is really there to be silenced.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'

const STORE = new URL('../../src/remotes/s3/s3-store.js', import.meta.url).href

async function stderrOf(script: string): Promise<string> {
  const env = { ...process.env }
  delete env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: new URL('../../../', import.meta.url).pathname, env, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')))
  const [code] = (await Promise.race([
    new Promise((r) => child.once('close', (...a) => r(a))),
    new Promise((_, reject) => setTimeout(() => reject(new Error('the script did not end within 60 s')), 60_000).unref()),
  ])) as [number]
  assert.equal(code, 0, err)
  return err
}

const settings = `{ bucket: 'b', endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true, fileprefix: '', annexObjects: false, chunking: { kind: 'none' }, partSize: undefined, storageClass: 'STANDARD', metadata: {}, publicRead: false }`

test('opening an S3 store prints no NodeVersionSupportWarning', async () => {
  const err = await stderrOf(`const { S3Store } = await import(${JSON.stringify(STORE)}); const s = new S3Store(${settings}, { accessKeyId: 'a', secretAccessKey: 'b', source: 'environment' }); await s.close()`)
  assert.doesNotMatch(err, /NodeVersionSupportWarning/)
  assert.equal(err, '')
})

test('control: a bare S3Client on this Node prints it exactly when Node is older than 22', async () => {
  const err = await stderrOf(`const { S3Client } = await import('@aws-sdk/client-s3'); new S3Client({ region: 'us-east-1' }).destroy()`)
  const old = Number(process.versions.node.split('.')[0]) < 22
  assert.equal(/NodeVersionSupportWarning/.test(err), old, err)
})
