// A forge's estate for --directory tests and the bench: thousands of bare git-annex
// repositories made in seconds, as copies of one template (`git init --bare` + `git annex
// init`) each with a fresh annex.uuid written into its config. Copied in this process from
// the template's bytes held in memory: a `cp -r` per repository costs a process each.
import { randomUUID } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { annex, sh } from './annex.js'

interface TemplateFile {
  readonly path: string
  readonly data: Buffer
  readonly mode: number
}

export interface Template {
  readonly files: readonly TemplateFile[]
  readonly dirs: readonly string[]
  readonly uuid: string
}

/** A fresh bare git-annex repository at `dir`, read into memory (hook samples left out). */
export async function makeTemplate(dir: string): Promise<Template> {
  await sh(join(dir, '..'), 'git', ['init', '-q', '--bare', dir])
  await annex(dir, 'init', '-q', 'estate template')
  const files: TemplateFile[] = []
  const dirs: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) {
        dirs.push(relative(dir, p))
        await walk(p)
      } else if (e.isFile() && !e.name.endsWith('.sample')) {
        files.push({ path: relative(dir, p), data: await readFile(p), mode: (await stat(p)).mode & 0o777 })
      }
    }
  }
  await walk(dir)
  const uuid = /^\s*uuid\s*=\s*(\S+)\s*$/m.exec(readFileSync(join(dir, 'config'), 'utf8'))![1]!
  return { files, dirs, uuid }
}

/**
 * A copy of the template at `dest` with its own UUID, made in a sibling folder and renamed
 * into place, so a watcher never sees a half-made repository.
 */
export async function copyTemplate(t: Template, dest: string, uuid: string = randomUUID()): Promise<string> {
  return copyTemplateSync(t, dest, uuid)
}

// Synchronous: a copy is a few dozen small writes, which cost far less without the thread pool.
function copyTemplateSync(t: Template, dest: string, uuid: string): string {
  const tmp = `${dest}.making`
  mkdirSync(tmp, { recursive: true })
  for (const d of t.dirs) mkdirSync(join(tmp, d), { recursive: true })
  for (const f of t.files) {
    const data = f.path === 'config' ? Buffer.from(f.data.toString('utf8').replace(t.uuid, uuid)) : f.data
    writeFileSync(join(tmp, f.path), data, { mode: f.mode })
  }
  renameSync(tmp, dest)
  return uuid
}

export interface Estate {
  /** dir → uuid, in creation order. */
  readonly repos: ReadonlyArray<{ readonly dir: string; readonly uuid: string }>
}

/** `n` copies beneath `root`, in folders of `perFolder` (root/f000/r00000.git …). */
export async function makeEstate(t: Template, root: string, n: number, opts: { perFolder?: number } = {}): Promise<Estate> {
  const per = opts.perFolder ?? 100
  const repos: { dir: string; uuid: string }[] = []
  for (let i = 0; i < n; i++) {
    const r = { dir: join(root, `f${String(Math.floor(i / per)).padStart(3, '0')}`, `r${String(i).padStart(5, '0')}.git`), uuid: randomUUID() }
    mkdirSync(join(r.dir, '..'), { recursive: true })
    copyTemplateSync(t, r.dir, r.uuid)
    repos.push(r)
    // Let timers and I/O of the caller run now and then.
    if (i % 200 === 199) await new Promise<void>((r) => setImmediate(r))
  }
  return { repos }
}

/** Child processes of `pid` right now (Linux /proc). */
export function childPids(pid = process.pid): number[] {
  const out: number[] = []
  let tasks: string[]
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim() !== '') out.push(Number(c))
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out
}
