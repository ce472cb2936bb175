// Where a repository keeps a key's content, and the permissions git-annex gives it
// (spec §5; Annex/Locations.hs gitAnnexLocation, Annex/Perms.hs freezeContent).
import { chmod, lstat, rmdir, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Key } from '../../keys/key.js'
import { hashDirLower, hashDirMixed, keyFile } from '../../keys/object-path.js'
import { assertRealDirs } from './safe-fs.js'

export interface Layout {
  /** Absolute git directory: `<repo>/.git`, or the repository itself when bare. */
  readonly gitDir: string
  readonly bare: boolean
  /** Bare repositories (and crippled filesystems without symlinks) put new content under hashdirlower. */
  readonly lowerFirst: boolean
  /** annex.tune.objecthashlower: only hashdirlower exists, nothing else is looked at. */
  readonly lowerOnly: boolean
  /** annex.tune.objecthash1: one level of hash directories instead of two. */
  readonly oneLevel: boolean
}

// Not keys/object-path's objectPaths: that one is relative to a work tree whose git
// directory is `.git`, which a worktree or --separate-git-dir repository does not have,
// and it knows neither objecthashlower nor crippled filesystems.
function hashDirs(layout: Layout, key: Key): string[] {
  const levels = layout.oneLevel ? 1 : 2
  const lower = hashDirLower(key, levels)
  if (layout.lowerOnly) return [lower]
  const mixed = hashDirMixed(key, levels)
  return layout.lowerFirst ? [lower, mixed] : [mixed, lower]
}

/**
 * Object file paths in the order git-annex checks them; the first is where new
 * content goes when none of them exists.
 */
export function objectCandidates(layout: Layout, key: Key): string[] {
  const f = keyFile(key)
  return hashDirs(layout, key).map((d) => join(layout.gitDir, 'annex', 'objects', d, f, f))
}

/** `.git/annex/tmp/<keyFile>`: a partial upload; its size is the resume offset. */
export function tmpPath(layout: Layout, key: Key): string {
  return join(layout.gitDir, 'annex', 'tmp', keyFile(key))
}

/** Scratch space on the same filesystem, for files renamed into place. */
export function otherTmpDir(layout: Layout): string {
  return join(layout.gitDir, 'annex', 'othertmp')
}

/** Hash directory levels below annex/objects, plus the key's own directory. */
export function objectDirLevels(layout: Layout): number {
  return layout.oneLevel ? 2 : 3
}

/**
 * The object file if the repository has the content, like git-annex's inAnnex. Only a
 * regular file counts (never a symlink or FIFO planted there), and one reached through an
 * object directory that is a symlink is refused (UnsafePathError): it is not ours.
 */
export async function locateObject(layout: Layout, key: Key): Promise<string | undefined> {
  for (const p of objectCandidates(layout, key)) {
    const s = await lstat(p).catch(() => undefined)
    if (s?.isFile()) {
      await assertRealDirs(layout.gitDir, dirname(p))
      return p
    }
  }
  return undefined
}

const WRITE = 0o222

// Unshared repositories only (core.sharedRepository unset): git-annex removes every
// write bit from the object file and its directory, so `rm` and editors refuse to
// touch content, and must thaw the directory (owner write) to change what is in it.

/** freezeContent: drop write bits, keep owner read. */
export async function freezeFile(path: string): Promise<void> {
  const m = (await stat(path)).mode & 0o7777
  await chmod(path, (m | 0o400) & ~WRITE)
}

/** freezeContentDir of the directory holding `path`. */
export async function freezeDirOf(path: string): Promise<void> {
  const d = dirname(path)
  const m = (await stat(d)).mode & 0o7777
  await chmod(d, m & ~WRITE)
}

/** thawContentDir of the directory holding `path`: owner write only. */
export async function thawDirOf(path: string): Promise<void> {
  const d = dirname(path)
  const m = (await stat(d)).mode & 0o7777
  if ((m & 0o200) === 0) await chmod(d, m | 0o200)
}

/**
 * cleanObjectDirs: remove the key directory and the hash directories above it,
 * stopping at the first one that is not empty (or cannot be removed).
 */
export async function cleanObjectDirs(file: string, levels: number): Promise<void> {
  let d = dirname(file)
  for (let i = 0; i < levels; i++) {
    try {
      await rmdir(d)
    } catch (e) {
      // A directory that is already gone does not stop the walk upwards (tryWhenExists).
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return
    }
    d = dirname(d)
  }
}
