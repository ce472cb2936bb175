// The sweep of multipart uploads nobody will complete (src/remotes/s3/orphaned-uploads.ts),
// against a real S3 server (Swift s3api): uploads written down by a gateway process that is
// gone are aborted, those of a live one are not; uploads under an annex object's name older
// than the bound are aborted, other names and young uploads are left alone.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { CreateMultipartUploadCommand } from '@aws-sdk/client-s3'
import { isAnnexObjectName, MultipartJournal, sweepOrphanedUploads } from '../../src/remotes/s3/orphaned-uploads.js'
import { tempDir } from '../helpers/annex.js'
import { useTestS3 } from '../helpers/s3-server.js'

const s3 = useTestS3()

const KEY_A = 'SHA256E-s1048576--' + 'a'.repeat(64) + '.bin'
const KEY_B = 'SHA256E-s2048--' + 'b'.repeat(64)
const KEY_C = 'SHA256E-s4096--' + 'c'.repeat(64) + '.dat'

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((r) => child.once('exit', r))
  return child.pid!
}

test('annex object names: keys under the fileprefix, or the annexobjects area of an export remote', () => {
  assert.equal(isAnnexObjectName(`p/${KEY_A}`, 'p/', false), true)
  assert.equal(isAnnexObjectName(KEY_A, '', false), true)
  assert.equal(isAnnexObjectName('p/annex-uuid', 'p/', false), false)
  assert.equal(isAnnexObjectName('q/' + KEY_A, 'p/', false), false)
  assert.equal(isAnnexObjectName('p/some/dir/' + KEY_A, 'p/', false), false)
  assert.equal(isAnnexObjectName(`.git/annex/objects/abc/def/${KEY_A}/${KEY_A}`, '', true), true)
  assert.equal(isAnnexObjectName('data/file.csv', '', true), false)
})

test('sweep: uploads of a dead gateway process are aborted, a live one\'s are not; abandoned annex uploads go, other names stay', async (t) => {
  const server = s3()
  const client = server.client()
  const Bucket = await server.bucket()
  const prefix = 'pre/'
  const start = async (Key: string) => (await client.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId!
  const root = await tempDir(t)
  const journal = new MultipartJournal(join(root, 'multipart', 'uuid'))

  const orphan = await start(prefix + KEY_A)
  const mine = await start(prefix + KEY_B)
  const foreign = await start(prefix + 'notes.txt')
  const young = await start(prefix + KEY_C)
  await mkdir(journal.dir, { recursive: true })
  await writeFile(join(journal.dir, 'dead-entry'), JSON.stringify({ bucket: Bucket, key: prefix + KEY_A, uploadId: orphan, pid: await deadPid(), started: Date.now() }))
  await journal.begin(Bucket, prefix + KEY_B, mine)
  const pending = async () => (await server.pendingUploads(Bucket)).sort()
  assert.equal((await pending()).length, 4)

  // Default bound: only the dead process's upload goes.
  const first = await sweepOrphanedUploads({ client, bucket: Bucket, fileprefix: prefix, annexObjects: false, journal })
  assert.deepEqual(first, { orphans: 1, abandoned: 0 })
  assert.deepEqual(await pending(), [`${prefix}${KEY_B} ${mine}`, `${prefix}${KEY_C} ${young}`, `${prefix}notes.txt ${foreign}`].sort())
  assert.equal((await readdir(journal.dir)).length, 1, 'the live upload stays written down')

  // An hour on with no bound: every upload under an annex object's name is abandoned;
  // what is not an annex object is not ours to abort.
  const later = await sweepOrphanedUploads({ client, bucket: Bucket, fileprefix: prefix, annexObjects: false, journal }, { now: Date.now() + 3_600_000, abandonedAfterMs: 0 })
  assert.deepEqual(later, { orphans: 0, abandoned: 2 })
  assert.deepEqual(await pending(), [`${prefix}notes.txt ${foreign}`])
})
