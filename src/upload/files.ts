// What an upload sends: regular files named on the command line, every regular file under a
// named directory (recursively, `.git` directories left out), or the paths listed in a manifest.
// Each gets the name it is reported and recorded under: its path relative to the working
// directory, or, outside it, relative to the named directory's parent.
import { lstat, readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { ConfigError } from '../errors.js'

export interface SourceFile {
  /** Absolute path to read. */
  readonly path: string
  /** Relative name: reported, sent as associatedfile and used by --record; '/'-separated. */
  readonly name: string
  readonly size: number
}

export interface Skipped {
  readonly name: string
  readonly why: string
}

function nameFor(abs: string, root: string, cwd: string): string {
  const inCwd = relative(cwd, abs)
  const rel = inCwd !== '' && !inCwd.startsWith('..') ? inCwd : relative(dirname(root), abs)
  return rel.split(sep).join('/')
}

/** Expands `args` (files and directories) in order; symlinks and special files are skipped and listed. */
export async function listFiles(args: readonly string[], cwd: string): Promise<{ files: SourceFile[]; skipped: Skipped[] }> {
  const files: SourceFile[] = []
  const skipped: Skipped[] = []
  const seen = new Set<string>()
  const visit = async (abs: string, root: string): Promise<void> => {
    let st
    try {
      st = await lstat(abs)
    } catch (e) {
      skipped.push({ name: nameFor(abs, root, cwd), why: (e as Error).message })
      return
    }
    if (st.isDirectory()) {
      const entries = (await readdir(abs)).sort()
      for (const e of entries) {
        if (e === '.git') continue
        await visit(join(abs, e), root)
      }
    } else if (st.isFile()) {
      if (seen.has(abs)) return
      seen.add(abs)
      files.push({ path: abs, name: nameFor(abs, root, cwd), size: st.size })
    } else {
      // git annex add keeps symlinks in git and does not annex them; nor do we follow them.
      skipped.push({ name: nameFor(abs, root, cwd), why: st.isSymbolicLink() ? 'a symbolic link, not uploaded' : 'not a regular file' })
    }
  }
  for (const a of args) {
    const abs = resolve(cwd, a)
    await visit(abs, abs)
  }
  return { files, skipped }
}

/** Paths listed one per line in `manifest` ('-' for stdin); blank lines and lines starting with '#' ignored. */
export async function readManifest(manifest: string, cwd: string): Promise<string[]> {
  let text: string
  try {
    text = manifest === '-' ? await readStdin() : await readFile(resolve(cwd, manifest), 'utf8')
  } catch (e) {
    throw new ConfigError(`cannot read manifest ${manifest}: ${(e as Error).message}`)
  }
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l !== '' && !l.startsWith('#'))
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

