// Which way the gateway serves one of its special remotes (pure): natively (S3, directory:
// streamed, no temp files) when annex-proxy can do exactly what git-annex does with it,
// otherwise through the gateway's own git-annex (via-git-annex.ts).
import { nativeS3Refusal } from '../s3/settings.js'

export type ServingPath =
  | { readonly kind: 'S3' }
  | { readonly kind: 'directory'; readonly dir: string }
  | { readonly kind: 'git-annex'; readonly why: string }

const isYes = (v: string | undefined) => v !== undefined && /^(yes|true)$/i.test(v)

/**
 * `remoteConfig`: its remote.log fields; `gitConfig`: the gateway's remote.<name>.* settings
 * (a directory remote's path lives there, not in remote.log).
 */
export function servingPath(remoteConfig: ReadonlyMap<string, string>, gitConfig: ReadonlyMap<string, string>): ServingPath {
  const type = remoteConfig.get('type')
  if (type === 'S3') {
    const why = nativeS3Refusal(remoteConfig)
    return why === undefined ? { kind: 'S3' } : { kind: 'git-annex', why: `S3 remote with ${why}` }
  }
  if (type === 'directory') {
    const enc = remoteConfig.get('encryption')
    if (enc !== undefined && enc !== 'none') return { kind: 'git-annex', why: `directory remote with encryption=${enc}` }
    if (isYes(remoteConfig.get('exporttree')) || isYes(remoteConfig.get('importtree'))) return { kind: 'git-annex', why: 'directory remote with an exported or imported tree' }
    if (remoteConfig.has('chunksize')) return { kind: 'git-annex', why: 'directory remote with legacy chunksize=' }
    const dir = gitConfig.get('directory')
    if (!dir) return { kind: 'git-annex', why: 'directory remote without remote.<name>.directory' }
    return { kind: 'directory', dir }
  }
  return { kind: 'git-annex', why: `type=${type ?? 'unknown'}` }
}
