// Reads files of a repository's git-annex branch as git-annex itself sees them (spec §7.2):
// the journal copy `.git/annex/journal/<path with '_'→'__', '/'→'_'>` holds the complete
// newest content and wins over the branch; `journal-private` content (private repositories)
// is appended, as Annex/Branch.hs does. Branch files come from one long-lived
// `git cat-file --batch` per repository, asked one request at a time, restarted if it dies.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { BranchReaderChildGoneError as ChildGone, BranchReaderError } from '../errors.js'
import { repoEnv, runGit } from './git.js'
import { journalFileName } from './branch-logs.js'


interface Pending {
  readonly resolve: (b: Buffer | undefined) => void
  readonly reject: (e: Error) => void
}

interface Child {
  readonly proc: ChildProcessWithoutNullStreams
  readonly pending: Pending[]
  buf: Buffer
  /** Output received since `buf` was last assembled, and how many bytes the current answer needs. */
  more: Buffer[]
  moreLength: number
  need: number
  stderr: string
}

const STDERR_KEEP = 4096

/**
 * The absolute git directory of `repo` (a work tree or a bare repository). For a linked
 * work tree that is the common directory: git-annex keeps annex/ (and the journal) there.
 */
export async function gitDirOf(repo: string): Promise<string> {
  const d = (await runGit(repo, ['rev-parse', '--path-format=absolute', '--git-common-dir'])).trim()
  return isAbsolute(d) ? d : join(repo, d)
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined
    throw e
  }
}

export class BranchReader {
  private child: Child | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false

  private constructor(
    readonly repo: string,
    readonly gitDir: string,
    private readonly branch: string,
  ) {}

  /**
   * A reader for `repo`; `gitDir` when the caller knows it already (gitDirOf(repo), which
   * otherwise costs a `git rev-parse`); `branch` is for tests (default the `git-annex` branch).
   */
  static async open(repo: string, opts: { branch?: string; gitDir?: string } = {}): Promise<BranchReader> {
    return new BranchReader(repo, opts.gitDir ?? (await gitDirOf(repo)), opts.branch ?? 'git-annex')
  }

  get journalDir(): string {
    return join(this.gitDir, 'annex', 'journal')
  }

  get privateJournalDir(): string {
    return join(this.gitDir, 'annex', 'journal-private')
  }

  /**
   * The file at `path` in the branch with the journal overlay, or undefined when neither
   * the journal nor the branch has it.
   */
  async read(path: string): Promise<Buffer | undefined> {
    const name = journalFileName(path)
    const journal = await readIfExists(join(this.journalDir, name))
    const main = journal ?? (await this.readBranch(path))
    const priv = await readIfExists(join(this.privateJournalDir, name))
    if (priv === undefined) return main
    return main === undefined ? priv : Buffer.concat([main, priv])
  }

  /** As read(), decoded as UTF-8; '' when absent. */
  async readText(path: string): Promise<string> {
    return (await this.read(path))?.toString('utf8') ?? ''
  }

  /** The file at `path` in the branch itself, ignoring the journal. */
  readBranch(path: string): Promise<Buffer | undefined> {
    if (/[\n\r]/.test(path)) return Promise.reject(new BranchReaderError(`invalid branch path ${JSON.stringify(path)}`))
    return this.readObject(`${this.branch}:${path}`)
  }

  /** Any object git names `name` (a blob sha, `<commit>:<path>`), as git cat-file reads it; undefined when missing or not a blob. */
  readObject(name: string): Promise<Buffer | undefined> {
    if (this.closed) return Promise.reject(new BranchReaderError('branch reader is closed'))
    if (/[\n\r]/.test(name)) return Promise.reject(new BranchReaderError(`invalid object name ${JSON.stringify(name)}`))
    const run = () =>
      this.ask(`${name}\n`).catch((e: unknown) => {
        if (!(e instanceof ChildGone) || this.closed) throw e
        return this.ask(`${name}\n`)
      })
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  /**
   * Many objects at once, in order: the requests go to git cat-file together and the answers
   * are read as they stream back, so a thousand small blobs cost one round trip, not a thousand.
   */
  readObjects(names: readonly string[]): Promise<(Buffer | undefined)[]> {
    if (this.closed) return Promise.reject(new BranchReaderError('branch reader is closed'))
    const bad = names.find((n) => /[\n\r]/.test(n))
    if (bad !== undefined) return Promise.reject(new BranchReaderError(`invalid object name ${JSON.stringify(bad)}`))
    const all = () => Promise.all(names.map((n) => this.ask(`${n}\n`)))
    const run = () =>
      all().catch((e: unknown) => {
        if (!(e instanceof ChildGone) || this.closed) throw e
        return all()
      })
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  /** The name of the branch this reader reads (`git-annex` unless a test chose another). */
  get branchName(): string {
    return this.branch
  }

  /**
   * Fetched `refs/remotes/<r>/git-annex` branches not yet merged into the local branch.
   * git-annex merges these before it reads the branch (Annex/Branch.hs update); this
   * reader does not write, so a caller that wants their content runs `git annex merge`.
   */
  async unmergedRemoteBranches(): Promise<string[]> {
    const refs = (await runGit(this.repo, ['for-each-ref', '--format=%(objectname) %(refname)', `refs/remotes/*/${this.branch}`]))
      .split('\n')
      .filter(Boolean)
    const out: string[] = []
    for (const line of refs) {
      const [sha, ref] = line.split(' ') as [string, string]
      const merged = await runGit(this.repo, ['merge-base', '--is-ancestor', sha, `refs/heads/${this.branch}`]).then(
        () => true,
        () => false,
      )
      if (!merged) out.push(ref)
    }
    return out
  }

  /** Stops the cat-file child; later reads fail. */
  async close(): Promise<void> {
    this.closed = true
    await this.queue
    const c = this.child
    this.child = undefined
    if (!c) return
    const exited = new Promise<void>((r) => c.proc.once('close', () => r()))
    c.proc.stdin.end()
    await exited
  }

  private ask(request: string): Promise<Buffer | undefined> {
    const c = this.child ?? (this.child = this.spawn())
    return new Promise<Buffer | undefined>((resolve, reject) => {
      c.pending.push({ resolve, reject })
      c.proc.stdin.write(request)
    })
  }

  private spawn(): Child {
    const proc = spawn('git', ['cat-file', '--batch'], { cwd: this.repo, env: repoEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    const child: Child = { proc, pending: [], buf: Buffer.alloc(0), more: [], moreLength: 0, need: 0, stderr: '' }
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      child.stderr = (child.stderr + d).slice(-STDERR_KEEP)
    })
    proc.stdin.on('error', () => undefined)
    proc.stdout.on('data', (d: Buffer) => {
      child.more.push(d)
      child.moreLength += d.length
      // A large blob arrives in many pieces: assemble it once, when all of it is here.
      if (child.buf.length + child.moreLength < child.need) return
      child.buf = Buffer.concat([child.buf, ...child.more.splice(0)])
      child.moreLength = 0
      this.drain(child)
    })
    proc.once('error', (e) => this.fail(child, new BranchReaderError(`cannot run git cat-file: ${e.message}`, { cause: e })))
    proc.once('close', (code, signal) => this.fail(child, new ChildGone(`git cat-file --batch exited ${code ?? signal}: ${child.stderr.trim()}`)))
    return child
  }

  /** Answers: `<sha> <type> <size>\n<content>\n`, or `<name> missing\n` / `ambiguous`. */
  private drain(c: Child): void {
    for (;;) {
      c.need = 0
      const nl = c.buf.indexOf(10)
      if (nl < 0) return
      const header = c.buf.toString('utf8', 0, nl)
      if (header.endsWith(' missing') || header.endsWith(' ambiguous')) {
        c.buf = c.buf.subarray(nl + 1)
        c.pending.shift()?.resolve(undefined)
        continue
      }
      const m = /^[0-9a-f]+ (\w+) (\d+)$/.exec(header)
      if (!m) {
        this.fail(c, new BranchReaderError(`unexpected git cat-file output: ${JSON.stringify(header.slice(0, 200))}`))
        c.proc.kill()
        return
      }
      const size = Number(m[2])
      if (c.buf.length < nl + 1 + size + 1) {
        c.need = nl + 1 + size + 1
        return
      }
      const body = Buffer.from(c.buf.subarray(nl + 1, nl + 1 + size))
      c.buf = c.buf.subarray(nl + 1 + size + 1)
      // A path naming a directory (tree) is not a log file.
      c.pending.shift()?.resolve(m[1] === 'blob' ? body : undefined)
    }
  }

  private fail(c: Child, e: BranchReaderError): void {
    if (this.child === c) this.child = undefined
    for (const p of c.pending.splice(0)) p.reject(e)
  }
}
