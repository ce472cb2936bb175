// Where an upload goes: an annex+http(s) URL and the UUID of the repository served there
// (plain repo, proxied node or cluster), given directly or as a remote of the git-annex clone
// in the working directory; credentials from the URL or the environment; the system's CAs for
// HTTPS.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import * as tls from 'node:tls'
import { promisify } from 'node:util'
import { ConfigError } from '../errors.js'
import type { Credentials } from '../protocol/http/client.js'

const run = promisify(execFile)

export interface Target {
  /** annex+http(s)://host:port/… without credentials. */
  readonly url: string
  readonly uuid: string
  readonly credentials: Credentials | undefined
}

const UUID_RE = /^[0-9a-fA-F-]{8,64}$/

async function gitConfig(cwd: string, key: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', ['config', '--get', key], { cwd })
    return stdout.trim() || undefined
  } catch {
    return undefined
  }
}

/** Every remote whose annex-uuid is `uuid`. */
async function remotesWithUuid(cwd: string, uuid: string): Promise<string[]> {
  try {
    const { stdout } = await run('git', ['config', '--get-regexp', '^remote\\..*\\.annex-uuid$'], { cwd })
    return stdout
      .split('\n')
      .filter(Boolean)
      .filter((l) => l.slice(l.indexOf(' ') + 1).trim() === uuid)
      .map((l) => l.slice('remote.'.length, l.indexOf(' ') - '.annex-uuid'.length))
  } catch {
    return []
  }
}

/** The UUID git-annex gives `remote`: proxied remotes (origin-mycluster) exist only in its view, not in git config. */
async function annexRemoteUuid(cwd: string, remote: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', ['annex', 'info', '--json', '--fast', remote], { cwd, maxBuffer: 16 << 20 })
    const j = JSON.parse(stdout) as { uuid?: unknown; remote?: unknown }
    return j.remote === remote && typeof j.uuid === 'string' ? j.uuid : undefined
  } catch {
    return undefined
  }
}

async function remoteNames(cwd: string): Promise<string[]> {
  try {
    const { stdout } = await run('git', ['remote'], { cwd })
    return stdout.split('\n').filter(Boolean)
  } catch {
    return []
  }
}

/**
 * The remote's annexUrl and UUID from `cwd`'s git config. A proxied remote (a cluster or a
 * node behind a gateway, named `<proxy remote>-<name>` by git-annex) has no URL of its own:
 * it is reached at its proxy's.
 */
export async function targetFromRemote(cwd: string, remote: string): Promise<{ url: string; uuid: string }> {
  const uuid = (await gitConfig(cwd, `remote.${remote}.annex-uuid`)) ?? (await annexRemoteUuid(cwd, remote))
  if (!uuid) throw new ConfigError(`git-annex knows no remote '${remote}' with a UUID in ${cwd} (run git annex sync, or give --url and --uuid)`)
  let url = await gitConfig(cwd, `remote.${remote}.annexurl`)
  if (!url) {
    const proxies = (await remoteNames(cwd)).filter((r) => remote.startsWith(`${r}-`)).sort((a, b) => b.length - a.length)
    for (const r of proxies) {
      url = await gitConfig(cwd, `remote.${r}.annexurl`)
      if (url) break
    }
  }
  if (!url) {
    const proxy = await gitConfig(cwd, `remote.${remote}.annex-proxied-by`)
    if (proxy) {
      for (const r of await remotesWithUuid(cwd, proxy)) {
        url = await gitConfig(cwd, `remote.${r}.annexurl`)
        if (url) break
      }
    }
  }
  if (!url) {
    const plain = await gitConfig(cwd, `remote.${remote}.url`)
    if (plain && /^annex\+https?:/i.test(plain)) url = plain
  }
  if (!url) throw new ConfigError(`remote '${remote}' has no annex+http URL (remote.${remote}.annexurl)`)
  return { url, uuid }
}

/** Takes user:password out of the URL; else GIT_ANNEX_P2PHTTP_USERNAME/PASSWORD from `env`. */
export function splitCredentials(rawUrl: string, env: NodeJS.ProcessEnv): { url: string; credentials: Credentials | undefined } {
  const m = /^(annex\+)?(https?):\/\//i.exec(rawUrl)
  if (!m) throw new ConfigError(`--url must be annex+http(s)://HOST[:PORT]/git-annex/, not ${rawUrl}`)
  let u: URL
  try {
    u = new URL(rawUrl.slice((m[1] ?? '').length))
  } catch {
    throw new ConfigError(`--url is not a URL: ${rawUrl}`)
  }
  let credentials: Credentials | undefined
  if (u.username !== '' || u.password !== '') {
    credentials = { user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
    u.username = ''
    u.password = ''
  } else if (env.GIT_ANNEX_P2PHTTP_USERNAME !== undefined || env.GIT_ANNEX_P2PHTTP_PASSWORD !== undefined) {
    credentials = { user: env.GIT_ANNEX_P2PHTTP_USERNAME ?? '', password: env.GIT_ANNEX_P2PHTTP_PASSWORD ?? '' }
  }
  return { url: `${m[1] ?? ''}${u.toString()}`, credentials }
}

export async function resolveTarget(o: { url?: string; uuid?: string; to?: string; cwd: string; env: NodeJS.ProcessEnv }): Promise<Target> {
  let url = o.url
  let uuid = o.uuid
  if (o.to !== undefined) {
    if (url !== undefined || uuid !== undefined) throw new ConfigError('give either --to REMOTE or --url and --uuid, not both')
    ;({ url, uuid } = await targetFromRemote(o.cwd, o.to))
  }
  if (url === undefined || uuid === undefined) throw new ConfigError('where to? give --url annex+http://HOST:PORT/git-annex/ --uuid UUID, or --to REMOTE')
  if (!UUID_RE.test(uuid)) throw new ConfigError(`--uuid ${uuid} is not a repository UUID`)
  const split = splitCredentials(url, o.env)
  return { url: split.url, uuid, credentials: split.credentials }
}

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem']

/**
 * The CAs HTTPS trusts: the system's store (Node ≥ 22.15 reads it itself; before, its bundle
 * file) plus Node's own bundle, and NODE_EXTRA_CA_CERTS as Node always adds them.
 */
export function systemCAs(): string[] | undefined {
  const get = (tls as { getCACertificates?: (kind: string) => string[] }).getCACertificates
  if (get) return [...get('system'), ...get('bundled'), ...get('extra')]
  const bundle = SYSTEM_BUNDLES.find((p) => existsSync(p))
  const extra = process.env.NODE_EXTRA_CA_CERTS
  const out = [...tls.rootCertificates]
  if (bundle) out.push(readFileSync(bundle, 'utf8'))
  if (extra && existsSync(extra)) out.push(readFileSync(extra, 'utf8'))
  return out
}
