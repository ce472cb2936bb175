// S3 credentials found as git-annex finds them (Creds.hs getRemoteCredPair, in this
// order): AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment; the cache file
// `.git/annex/creds/<uuid>` of the gateway (two lines: key, secret); the `s3creds` field
// of remote.log (embedcreds=yes: base64 of the same two lines; encrypted creds belong to
// encrypted remotes, which are not served natively).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface S3Credentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string
  /** Where they came from, for logs (never the secret). */
  readonly source: 'environment' | 'creds file' | 'remote.log'
}

/** decodeCredPair: the first two lines. */
function decodePair(text: string): [string, string] | undefined {
  const lines = text.split('\n')
  const [k, s] = lines
  return k && s !== undefined && s !== '' ? [k, s] : undefined
}

export async function findS3Credentials(
  uuid: string,
  gitDir: string,
  config: ReadonlyMap<string, string>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<S3Credentials | undefined> {
  const id = env.AWS_ACCESS_KEY_ID
  const secret = env.AWS_SECRET_ACCESS_KEY
  if (id && secret) return { accessKeyId: id, secretAccessKey: secret, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}), source: 'environment' }
  const cached = await readFile(join(gitDir, 'annex', 'creds', uuid), 'utf8').catch(() => undefined)
  const fromFile = cached === undefined ? undefined : decodePair(cached)
  if (fromFile) return { accessKeyId: fromFile[0], secretAccessKey: fromFile[1], source: 'creds file' }
  const embedded = config.get('s3creds')
  const fromLog = embedded === undefined ? undefined : decodePair(Buffer.from(embedded, 'base64').toString('utf8'))
  if (fromLog) return { accessKeyId: fromLog[0], secretAccessKey: fromLog[1], source: 'remote.log' }
  return undefined
}
