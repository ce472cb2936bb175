// A real S3 server for tests: OpenStack Swift's s3api, started by the project's own
// scripts/test-s3/start on 127.0.0.1 with ports the kernel chose (nothing picked and bound
// later), stopped by scripts/test-s3/stop, which ends exactly its processes. One server per
// test file (useTestS3), each test in its own bucket (bucket()).
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { promisify } from 'node:util'
import { CreateBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { PROJECT_ROOT } from './annex.js'

const run = promisify(execFile)

export interface TestS3 {
  readonly dir: string
  readonly port: number
  readonly endpoint: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly region: string
  /** Credentials as git-annex and the SDK read them from the environment. */
  readonly env: NodeJS.ProcessEnv
  /** An SDK client for checks made beside the code under test. */
  client(): S3Client
  /** A fresh, empty bucket with a unique name. */
  bucket(prefix?: string): Promise<string>
  /** Every object name in the bucket. */
  list(bucket: string): Promise<string[]>
  /** Multipart uploads started and neither completed nor aborted. */
  pendingUploads(bucket: string): Promise<string[]>
  stop(): Promise<void>
}

const START_TIMEOUT_MS = 180_000

export async function startTestS3(): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), 'annex-proxy-s3-'))
  let out: string
  try {
    out = (await run('bash', [join(PROJECT_ROOT, 'scripts/test-s3/start'), dir], { timeout: START_TIMEOUT_MS, maxBuffer: 1 << 20 })).stdout
  } catch (e) {
    await run('bash', [join(PROJECT_ROOT, 'scripts/test-s3/stop'), dir]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
    const err = e as { stderr?: string; message: string }
    throw new Error(`the test S3 server did not start: ${err.stderr?.trim() || err.message}`)
  }
  const vars = new Map<string, string>()
  for (const line of out.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line)
    if (m) vars.set(m[1]!, m[2]!.replace(/^"|"$/g, ''))
  }
  const need = (k: string) => {
    const v = vars.get(k)
    if (v === undefined) throw new Error(`scripts/test-s3/start did not report ${k}`)
    return v
  }
  const port = Number(need('S3_PORT'))
  const endpoint = need('S3_ENDPOINT')
  const accessKeyId = need('AWS_ACCESS_KEY_ID')
  const secretAccessKey = need('AWS_SECRET_ACCESS_KEY')
  const region = need('AWS_REGION')
  const clients: S3Client[] = []
  const client = () => {
    const c = new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } })
    clients.push(c)
    return c
  }
  const admin = client()
  let stopped: Promise<void> | undefined
  // A test process ended from outside (a runner's timeout) runs no after-hooks: its server's
  // processes (the pids this start reported) are ended on the way out all the same.
  const pids = need('S3_PIDS').split(/\s+/).filter(Boolean).map(Number)
  const onExit = () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  process.once('exit', onExit)
  return {
    dir,
    port,
    endpoint,
    accessKeyId,
    secretAccessKey,
    region,
    env: { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey },
    client,
    async bucket(prefix = 'b') {
      const name = `${prefix}-${randomBytes(6).toString('hex')}`.toLowerCase()
      await admin.send(new CreateBucketCommand({ Bucket: name }))
      return name
    },
    async list(bucket) {
      const names: string[] = []
      let token: string | undefined
      do {
        const r = await admin.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }))
        for (const o of r.Contents ?? []) names.push(o.Key!)
        token = r.IsTruncated ? r.NextContinuationToken : undefined
      } while (token)
      return names.sort()
    },
    async pendingUploads(bucket) {
      const r = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
      return (r.Uploads ?? []).map((u) => `${u.Key} ${u.UploadId}`)
    },
    stop() {
      stopped ??= (async () => {
        process.off('exit', onExit)
        for (const c of clients) c.destroy()
        await run('bash', [join(PROJECT_ROOT, 'scripts/test-s3/stop'), dir], { timeout: 60_000 })
        await rm(dir, { recursive: true, force: true, maxRetries: 5 })
      })()
      return stopped
    },
  }
}

/**
 * One test S3 server for the whole test file: started before its first test, stopped
 * after its last. The returned getter throws if called before the server is up.
 */
export function useTestS3(): () => TestS3 {
  let s3: TestS3 | undefined
  before(async () => {
    s3 = await startTestS3()
  }, { timeout: START_TIMEOUT_MS + 10_000 })
  after(async () => {
    await s3?.stop()
  })
  return () => {
    if (!s3) throw new Error('the test S3 server is not running (useTestS3 must be called at the top level of the test file)')
    return s3
  }
}
