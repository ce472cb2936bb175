// Where the last run found the repositories beneath --directory, kept in a file under
// --state-dir so that after a restart a request for a known UUID need not wait for the first
// walk of a forge's estate to reach its repository. Only a hint: the registry reads the
// repository's config again before it serves anything from it (its annex.uuid must still
// be the one asked for, and it must still lie inside the folder, no symlink on the way),
// and the walk, which still runs, replaces the whole index once it is over.
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { RepoInfo } from './repo-scan.js'

const VERSION = 1

/** Where a repository was: its dir and git dir. */
export interface IndexedRepo {
  readonly dir: string
  readonly gitDir: string
}

/** UUID (own or claimed by config) → where the last run found repositories for it. */
export type EstateIndex = ReadonlyMap<string, readonly IndexedRepo[]>

interface IndexFile {
  readonly version: number
  readonly roots: readonly string[]
  /** [dir, gitDir, uuid, ...claims] per repository; compact: 10 000 of them are read at start. */
  readonly repos: ReadonlyArray<readonly string[]>
}

/** The index file for these --directory roots (one per set of roots: servers may share a state dir). */
export function indexPath(stateDir: string, roots: readonly string[]): string {
  const id = createHash('sha256').update(JSON.stringify([...roots].sort())).digest('hex').slice(0, 16)
  return join(stateDir, `directory-index-${id}.json`)
}

/** The file's text for what the walks know now. */
export function encodeIndex(roots: readonly string[], infos: Iterable<RepoInfo>): string {
  const repos: string[][] = []
  for (const i of infos) repos.push([i.dir, i.gitDir, i.uuid, ...i.claims])
  const f: IndexFile = { version: VERSION, roots: [...roots].sort(), repos }
  return JSON.stringify(f)
}

/**
 * The index in `text`, keeping only repositories inside `roots`; undefined when it is not an
 * index of this version for these roots (then the first walk is waited for as without one).
 */
export function decodeIndex(text: string, roots: readonly string[]): EstateIndex | undefined {
  let f: Partial<IndexFile>
  try {
    f = JSON.parse(text) as Partial<IndexFile>
  } catch {
    return undefined
  }
  if (f.version !== VERSION || !Array.isArray(f.repos) || JSON.stringify(f.roots) !== JSON.stringify([...roots].sort())) return undefined
  const inside = (d: string) => roots.some((r) => d === r || d.startsWith(r.endsWith('/') ? r : `${r}/`))
  const out = new Map<string, IndexedRepo[]>()
  for (const row of f.repos) {
    if (!Array.isArray(row) || row.length < 3 || !row.every((s) => typeof s === 'string' && s !== '')) continue
    const [dir, gitDir, ...uuids] = row as string[]
    if (!inside(dir!) || dir!.split('/').includes('..')) continue
    for (const u of uuids) {
      const at = out.get(u) ?? []
      at.push({ dir: dir!, gitDir: gitDir! })
      out.set(u, at)
    }
  }
  return out
}

/** Reads the index; a missing or unreadable file is no index (with a reason for the log when it is not simply missing). */
export async function loadIndex(file: string, roots: readonly string[]): Promise<{ index: EstateIndex | undefined; problem?: string }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { index: undefined }
    return { index: undefined, problem: (e as Error).message }
  }
  const index = decodeIndex(text, roots)
  return index ? { index } : { index: undefined, problem: `${file} is not an index of these --directory folders; ignored` }
}

/** Writes the index: a temporary file renamed into place, so a crash leaves the old one or the new one. */
export async function saveIndex(file: string, text: string): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  try {
    await writeFile(tmp, text, { mode: 0o600 })
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}
