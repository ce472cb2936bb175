// Opening paths inside a repository without trusting what is there. Whoever can write
// into .git/annex (the repository's owner, when the server runs as another user) could
// plant a symlink where the server writes (an upload's tmp file, an object directory) to
// make it overwrite, truncate or chmod a file elsewhere, or reveal its size; or a FIFO
// where it reads, to hang it. So the last component is never followed (O_NOFOLLOW), opens
// never block (O_NONBLOCK: a FIFO fails instead of waiting for a peer), and what was opened
// must be a regular file; directories the server writes into must be real directories.
import { constants, type Stats } from 'node:fs'
import { lstat, open, type FileHandle } from 'node:fs/promises'
import { dirname, relative, sep } from 'node:path'
import { UnsafePathError } from '../../errors.js'

const { O_NOFOLLOW, O_NONBLOCK, O_RDONLY } = constants

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code
}

function kindOf(s: Stats): string {
  if (s.isSymbolicLink()) return 'a symbolic link'
  if (s.isFIFO()) return 'a FIFO'
  if (s.isDirectory()) return 'a directory'
  if (s.isSocket()) return 'a socket'
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device'
  return 'not a regular file'
}

function unsafe(path: string, what: string): UnsafePathError {
  return new UnsafePathError(`refusing ${path}: it is ${what}, not a regular file (planted in the repository?)`)
}

/**
 * Opens a regular file inside a repository with `flags` (O_* from fs.constants), never
 * following a symlink at `path` and never blocking on a FIFO; anything but a regular file
 * is refused with UnsafePathError and left as it is. ENOENT passes through.
 */
export async function openRegular(path: string, flags: number, mode?: number): Promise<FileHandle> {
  let fh: FileHandle
  try {
    fh = await open(path, flags | O_NOFOLLOW | O_NONBLOCK, mode)
  } catch (e) {
    // ELOOP: the last component is a symlink. ENXIO: a FIFO opened for writing with no
    // reader. Either way, say what is there rather than the errno.
    if (errno(e) === 'ELOOP' || errno(e) === 'ENXIO') {
      const s = await lstat(path).catch(() => undefined)
      throw unsafe(path, s ? kindOf(s) : 'not a regular file')
    }
    throw e
  }
  const s = await fh.stat().catch(async (e: unknown) => {
    await fh.close()
    throw e
  })
  if (!s.isFile()) {
    await fh.close()
    throw unsafe(path, kindOf(s))
  }
  return fh
}

/** Opens for reading; see openRegular. */
export function openRegularForReading(path: string): Promise<FileHandle> {
  return openRegular(path, O_RDONLY)
}

/**
 * lstat of a path inside a repository that, when present, must be a regular file:
 * undefined when absent, UnsafePathError when it is anything else.
 */
export async function lstatRegular(path: string): Promise<Stats | undefined> {
  let s: Stats
  try {
    s = await lstat(path)
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return undefined
    throw e
  }
  if (!s.isFile()) throw unsafe(path, kindOf(s))
  return s
}

/**
 * Checks that every directory from below `base` down to `dir` is a real directory, not a
 * symlink (one planted in annex/objects would send a committed object, and the chmods
 * around it, elsewhere). Missing directories are fine: whoever creates them creates real ones.
 */
export async function assertRealDirs(base: string, dir: string): Promise<void> {
  const rel = relative(base, dir)
  if (rel === '' ) return
  if (rel.startsWith('..')) throw new UnsafePathError(`${dir} is not inside ${base}`)
  let d = dir
  const parts = rel.split(sep).length
  for (let i = 0; i < parts; i++, d = dirname(d)) {
    const s = await lstat(d).catch((e: unknown) => {
      if (errno(e) === 'ENOENT') return undefined
      throw e
    })
    if (s && !s.isDirectory()) throw new UnsafePathError(`refusing ${d}: it is ${kindOf(s)}, not a directory (planted in the repository?)`)
  }
}
