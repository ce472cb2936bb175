// Committing git-annex's journal into the git-annex branch, as git-annex's own
// Annex.Branch.commit does it (Annex/Branch.hs forceCommit → stageJournal → commitIndex),
// with git plumbing instead of a git-annex process: spawning `git annex merge` costs ~100 ms
// of a busy machine per commit; here a commit is two short git commands on git-annex's index
// (update-index, write-tree) next to long-lived helpers (the lock holder, `git hash-object
// --stdin-paths` for the journal files, `git update-ref --stdin`), which is what lets a served
// repository commit before every answer by default.
//
// The commit object is written by this process as git writes a loose object (writeLooseObject:
// a SHA-1 repository whose config asks nothing more of loose objects; otherwise it goes to
// `git hash-object --stdin`, one process per commit); a union-merged log goes on the stdin of
// a `git hash-object --stdin`, as git-annex hashes what it has in memory (Git/HashObject.hs
// hashObject). The only files written are git's (objects, git-annex's index, the ref) and
// git-annex's state (journal.lck; index.lck, replaced through a temp file beside it as
// git-annex's writeLogFile replaces it), nothing in .git/annex/othertmp or the system temp
// directory. A union-merged log exists only for a file both a pushed branch and the index
// changed since the last commit, so most commits hash none.
//
// Interoperable with real git-annex processes on the same repository because it takes the
// locks git-annex takes and leaves the files it leaves:
// - everything happens under the journal lock (.git/annex/journal.lck, an exclusive fcntl lock
//   taken by a perl helper as in journal-lock.ts, kept running between commits): git-annex
//   writes journal files, stages them and modifies its branch index only under it;
// - the journal is staged into git-annex's own index (.git/annex/index, which only holders of
//   the journal lock modify: a stale index.lock is removed, as prepareModifyIndex does) BEFORE
//   the branch is merged into it, so a journal file written before a push is union-merged with
//   the pushed lines, never put over them (`git annex merge` stages it after merging a pushed
//   branch into the index, and a publisher's lines were lost that way);
// - the branch the index was last updated to is in .git/annex/index.lck (set once a commit is
//   in); when the branch has moved since (a push into refs/heads/git-annex), it is union-merged
//   into the index first
//   (Git/UnionMerge.hs: per differing file, the sorted unique union of the lines, reusing a
//   side's blob when it already is that union);
// - the branch ref is moved with compare-and-swap from the commit's parent: a push landing
//   between our read and our update makes the update fail, and the pushed branch is merged
//   and committed over again (git-annex detects the same race after the fact and recovers the
//   same way);
// - journal files are deleted only once the commit is in the branch, the index.lck records the
//   commit, and a hooks/post-update-annex is run as git-annex runs it.
import { constants } from 'node:fs'
import { access, link, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { deflateSync } from 'node:zlib'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface, type Interface } from 'node:readline'
import { GitCommandError, LocationLogError } from '../errors.js'
import { repoEnv, runGitBytes } from './git.js'
import { lastValue, parseGitConfigList, type GitConfig } from './git-config-file.js'

const BRANCH = 'refs/heads/git-annex'
const NULL_SHA = /^0+$/
/** Pushes landing on every attempt: give up and leave the journal for the next commit. */
const CAS_ATTEMPTS = 5

/**
 * The branch path a journal file stands for (Annex/Journal.hs fileJournal): `__` is `_`, a
 * single `_` is `/`, a trailing single `_` is dropped.
 */
export function fileJournal(name: string): string {
  let out = ''
  for (let i = 0; i < name.length; i++) {
    const c = name[i]
    if (c !== '_') out += c
    else if (name[i + 1] === '_') {
      out += '_'
      i++
    } else if (i + 1 < name.length) out += '/'
  }
  return out
}

/** Lines as git-annex's L8.lines splits them: on \n, no empty last line after a final \n. */
function lines(text: string): string[] {
  if (text === '') return []
  const l = text.split('\n')
  if (l[l.length - 1] === '') l.pop()
  return l
}

/** Sorted unique lines; strings hold bytes as latin1, so < compares as git-annex's ByteStrings do. */
function sortedUnique(ls: readonly string[]): string[] {
  return [...new Set(ls)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * The union merge of files' contents (Git/UnionMerge.hs calcMerge): the sorted unique
 * lines of all, as the index of a side whose content already is exactly that, else as new
 * content.
 */
export function unionMerge(contents: readonly string[]): { readonly reuse: number } | { readonly content: string } {
  const split = contents.map(lines)
  const merged = sortedUnique(split.flat())
  const reuse = split.findIndex((l) => sameLines(sortedUnique(l), merged))
  return reuse >= 0 ? { reuse } : { content: merged.map((l) => l + '\n').join('') }
}

/** `git cat-file --batch` of blobs, as latin1 strings (bytes preserved). */
async function catBlobs(gitDir: string, shas: readonly string[]): Promise<Map<string, string>> {
  const out = await runGitBytes(gitDir, ['cat-file', '--batch'], { input: shas.join('\n') + '\n' })
  const m = new Map<string, string>()
  let at = 0
  for (const sha of shas) {
    const nl = out.indexOf(0x0a, at)
    const header = out.toString('latin1', at, nl).split(' ')
    if (header[1] !== 'blob' || header.length !== 3) throw new LocationLogError(`git cat-file: unexpected answer for ${sha}: ${header.join(' ')}`)
    const size = Number(header[2])
    m.set(sha, out.toString('latin1', nl + 1, nl + 1 + size))
    at = nl + 1 + size + 1
  }
  return m
}

/** update-index --index-info lines; `encoding` is how the paths' bytes are held (diff output: latin1; file names: utf8). */
function indexInfo(entries: ReadonlyArray<readonly [sha: string, path: string]>, encoding: 'latin1' | 'utf8'): Buffer {
  return Buffer.from(entries.map(([sha, path]) => `100644 blob ${sha}\t${path}\0`).join(''), encoding)
}

const SHA = /^[0-9a-f]{40}([0-9a-f]{24})?$/

/** `git hash-object -w --stdin` of `content` (a process per object): its sha. */
async function hashObject(gitDir: string, type: 'blob' | 'commit', content: Buffer): Promise<string> {
  const args = ['hash-object', '-w', '-t', type, '--stdin', ...(type === 'blob' ? ['--no-filters'] : [])]
  const sha = (await runGitBytes(gitDir, args, { input: content })).toString('latin1').trim()
  if (!SHA.test(sha)) throw new LocationLogError(`git ${args.join(' ')} answered ${JSON.stringify(sha)}`)
  return sha
}

/**
 * Writes a small object as git writes a loose object (object-file.c): `<type> <size>\0<body>`,
 * zlib-deflated, into objects/<2 hex>/<38 hex> through a read-only tmp_obj_* file beside it that
 * is hard-linked into place and removed; an object already there is kept. SHA-1 repositories
 * whose configuration asks nothing more of a loose object (no fsync, no shared permissions).
 */
async function writeLooseObject(gitDir: string, type: 'commit', body: Buffer): Promise<string> {
  const data = Buffer.concat([Buffer.from(`${type} ${body.length}\0`), body])
  const sha = createHash('sha1').update(data).digest('hex')
  const dir = join(gitDir, 'objects', sha.slice(0, 2))
  const dest = join(dir, sha.slice(2))
  if (await access(dest).then(() => true, () => false)) return sha
  await mkdir(dir, { recursive: true })
  const tmp = join(dir, `tmp_obj_${randomBytes(6).toString('base64url')}`)
  await writeFile(tmp, deflateSync(data, { level: 1 }), { flag: 'wx', mode: 0o444 })
  try {
    await link(tmp, dest)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
  } finally {
    await rm(tmp, { force: true })
  }
  return sha
}

/**
 * Whether this process may write the commit object itself (writeLooseObject): a SHA-1
 * repository without settings that change how git writes loose objects.
 */
function looseObjectsPlain(config: GitConfig): boolean {
  const format = lastValue(config, 'extensions.objectformat') ?? 'sha1'
  if (format.toLowerCase() !== 'sha1' || config.has('extensions.compatobjectformat')) return false
  const shared = lastValue(config, 'core.sharedrepository')
  if (shared !== undefined && !['false', 'umask', 'no', 'off', '0'].includes(shared.toLowerCase())) return false
  for (const k of config.keys()) if (k.startsWith('core.fsync')) return false
  return true
}

interface Settings {
  readonly message: string
  readonly looseObjects: boolean
}

/**
 * The commit's settings from `git config -z --list` output: git-annex (Annex/Branch.hs
 * commitMessage) commits the branch with annex.commitmessage when set (10.20250416 ignored it
 * for journal commits; upstream uses it), else "update". The last value of a key wins, as
 * `git config --get` answers.
 */
function settingsOf(config: GitConfig): Settings {
  return { message: lastValue(config, 'annex.commitmessage') ?? 'update', looseObjects: looseObjectsPlain(config) }
}

/** Union-merges `ref` into the index (Git/UnionMerge.hs mergeIndex). Staged changes take part. */
async function mergeIntoIndex(gitDir: string, env: NodeJS.ProcessEnv, ref: string): Promise<void> {
  const diff = (await runGitBytes(gitDir, ['diff-index', '--raw', '-z', '-r', '--no-renames', '-l0', '--cached', ref, '--'], { env })).toString('latin1').split('\0')
  const direct: Array<[string, string]> = []
  const both: Array<[a: string, b: string, path: string]> = []
  for (let i = 0; i + 1 < diff.length; i += 2) {
    const [, , a, b] = diff[i]!.split(' ')
    const path = diff[i + 1]!
    if (a === undefined || b === undefined) continue
    const shas = [a, b].filter((s) => !NULL_SHA.test(s))
    if (shas.length === 1) direct.push([shas[0]!, path])
    else if (shas.length === 2) both.push([a, b, path])
  }
  const entries = direct
  if (both.length > 0) {
    const blobs = await catBlobs(gitDir, [...new Set(both.flatMap(([a, b]) => [a, b]))])
    const fresh: Array<[content: string, path: string]> = []
    for (const [a, b, path] of both) {
      const r = unionMerge([blobs.get(a)!, blobs.get(b)!])
      if ('reuse' in r) entries.push([r.reuse === 0 ? a : b, path])
      else fresh.push([r.content, path])
    }
    // Few (files both sides changed since the last commit), each hashed by its own process.
    for (const [content, path] of fresh) entries.push([await hashObject(gitDir, 'blob', Buffer.from(content, 'latin1')), path])
  }
  if (entries.length > 0) await runGitBytes(gitDir, ['update-index', '-z', '--index-info'], { env, input: indexInfo(entries, 'latin1') })
}

async function revParse(gitDir: string, ref: string): Promise<string> {
  // A loose ref file, when there is one, is the ref (git reads packed-refs only without it):
  // read without a process; packed or reftable refs ask git.
  const loose = await readFile(join(gitDir, ref), 'latin1').catch(() => '')
  if (/^[0-9a-f]{40}([0-9a-f]{24})?\n$/.test(loose)) return loose.trim()
  return (await runGitBytes(gitDir, ['rev-parse', '--verify', '-q', ref])).toString('latin1').trim()
}

/** .git/annex/index.lck: the branch commit the index was last updated to (Logs/File.hs writeLogFile: via a temp file). */
async function setIndexSha(annexDir: string, sha: string): Promise<void> {
  const f = join(annexDir, 'index.lck')
  const tmp = `${f}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, sha + '\n')
  await rename(tmp, f)
}

async function indexSha(annexDir: string): Promise<string> {
  try {
    return (await readFile(join(annexDir, 'index.lck'), 'latin1')).split('\n')[0]!.trim()
  } catch {
    return ''
  }
}

function runHook(gitDir: string, hook: string): Promise<void> {
  return new Promise((resolve) => {
    const p = spawn(hook, [], { cwd: gitDir, env: repoEnv(), stdio: 'ignore' })
    p.once('error', () => resolve())
    p.once('close', () => resolve())
  })
}

/** A long-lived helper process answering one line per request line. */
class LineHelper {
  private readonly proc: ChildProcessWithoutNullStreams
  private readonly lines: Interface
  private readonly waiting: Array<{ resolve(l: string): void; reject(e: Error): void }> = []
  private gone: Error | undefined
  private stderr = ''

  constructor(what: string, cmd: string, args: string[], cwd: string) {
    this.proc = spawn(cmd, args, { cwd, env: repoEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    this.proc.stdin.on('error', () => undefined)
    this.proc.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4096)))
    this.lines = createInterface({ input: this.proc.stdout, crlfDelay: Infinity })
    this.lines.on('line', (l) => this.waiting.shift()?.resolve(l))
    const fail = (e: Error) => {
      this.gone ??= e
      for (const w of this.waiting.splice(0)) w.reject(this.gone)
    }
    this.proc.once('error', (e) => fail(new LocationLogError(`cannot run ${what}: ${e.message}`, { cause: e })))
    this.proc.once('close', (code, signal) => fail(new LocationLogError(`${what} exited ${code ?? signal}: ${this.stderr.trim()}`)))
  }

  /** Sends `line`, which gets no answer. */
  send(line: string): void {
    if (!this.gone) this.proc.stdin.write(line + '\n')
  }

  /** Sends `data` as it is, resolves with the next line answered. */
  askRaw(data: Buffer): Promise<string> {
    if (this.gone) return Promise.reject(this.gone)
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.proc.stdin.write(data)
    })
  }

  /** Sends `line`, resolves with the next line answered. */
  ask(line: string): Promise<string> {
    if (this.gone) return Promise.reject(this.gone)
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.proc.stdin.write(line + '\n')
    })
  }

  get alive(): boolean {
    return this.gone === undefined
  }

  async stop(): Promise<void> {
    if (this.gone) return
    const closed = new Promise<void>((r) => this.proc.once('close', () => r()))
    this.proc.stdin.end()
    await closed
  }
}

// The journal lock (journal-lock.ts) taken and released on command by one perl process, so a
// commit spawns none for it. 'lockw' (a journal write, location-journal.ts) also takes a shared
// lock on othertmp.lck, as git-annex's withOtherTmp does around its temp file. 'git' runs the
// commit's git commands on git-annex's index (gitOnIndex), forked from this small process
// rather than from the server. A process dying releases its fcntl locks: a killed server never
// leaves the journal locked.
const LOCKER = `
use strict; use Fcntl qw(O_RDWR O_RDONLY O_CREAT F_SETLKW F_WRLCK F_RDLCK F_UNLCK); use IPC::Open3 qw(open3); use Symbol qw(gensym); use IO::Select;
$| = 1;
$SIG{PIPE} = 'IGNORE';
binmode(STDIN); binmode(STDOUT);
sub readn { my ($n) = @_; my $buf = ''; while (length($buf) < $n) { my $r = read(STDIN, $buf, $n - length($buf), length($buf)); die "short request\\n" unless $r } $buf }
sub oneline { my ($t) = @_; $t =~ s/[\\r\\n\\t]+/ /g; $t =~ s/^ +| +$//g; substr($t, 0, 2000) }
my ($journal, $othertmp) = @ARGV;
sysopen(my $j, $journal, O_RDWR | O_CREAT, 0666) or die "cannot open $journal: $!\\n";
my $o;
sub setlk { my ($fh, $type) = @_; fcntl($fh, F_SETLKW, pack('s s x4 q q i x4', $type, 0, 0, 0, 0)) }
while (my $cmd = <STDIN>) {
  if ($cmd =~ /^git (\\d+) (\\d+)\\n$/) {
    # git ARGS with GIT_INDEX_FILE (the first NUL-separated field) and INPUT on stdin; answers
    # its exit code, stdout and stderr on one line (commands whose output is one line or none).
    my ($alen, $ilen) = ($1, $2);
    my ($index, @args) = split(/\\0/, readn($alen), -1);
    my $input = readn($ilen);
    local $ENV{GIT_INDEX_FILE} = $index;
    my $err = gensym;
    my $pid = open3(my $to, my $from, $err, 'git', @args);
    binmode($to); binmode($from);
    print $to $input; close($to);
    # Both pipes drained together: reading stdout to its end first would wait forever on a
    # git blocked writing more than a pipe's worth of stderr.
    my %got = ($from => '', $err => '');
    my $sel = IO::Select->new($from, $err);
    while ($sel->count) {
      for my $h ($sel->can_read) {
        my $r = sysread($h, my $piece, 65536);
        if (!$r) { $sel->remove($h); next }
        $got{$h} .= $piece if length($got{$h}) < 65536;
      }
    }
    my ($out, $errs) = ($got{$from}, $got{$err});
    waitpid($pid, 0);
    my $code = ($? & 127) ? 128 + ($? & 127) : $? >> 8;
    print "ran " . $code . "\\t" . oneline($out) . "\\t" . oneline($errs) . "\\n";
  } elsif ($cmd eq "lock\\n" || $cmd eq "lockw\\n") {
    setlk($j, F_WRLCK) or die "cannot lock $journal: $!\\n";
    if ($cmd eq "lockw\\n") {
      if (!$o) { sysopen($o, $othertmp, O_RDONLY | O_CREAT, 0666) or die "cannot open $othertmp: $!\\n" }
      setlk($o, F_RDLCK) or die "cannot lock $othertmp: $!\\n";
    }
    print "locked\\n";
  } else {
    setlk($j, F_UNLCK) or die "cannot unlock $journal: $!\\n";
    if ($o) { setlk($o, F_UNLCK) or die "cannot unlock $othertmp: $!\\n" }
    print "unlocked\\n";
  }
}
`

/** 64-bit Linux: where the struct flock packed above is the kernel's. */
const SUPPORTED = process.platform === 'linux' && ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(process.arch)

export interface JournalCommitOptions {
  /** The commit message (default: the repository's annex.commitmessage, else git-annex's "update"). */
  readonly message?: string
}

/**
 * Commits the journal of one repository (`gitDir`: its git directory) into its git-annex
 * branch. Keeps a journal-lock holder and a `git hash-object` running between commits; stop()
 * ends them (and a later commit starts them again).
 */
export class JournalCommitter {
  private locker: LineHelper | undefined
  private hasher: LineHelper | undefined
  private refUpdater: LineHelper | undefined
  // Who commits (git var GIT_AUTHOR_IDENT / GIT_COMMITTER_IDENT without the date), read once.
  private idents: { author: string; committer: string } | undefined
  // What the configuration says (the message when the caller gives none, how the commit object
  // is written), read once as a git-annex process reads its config, or handed over (useConfig).
  private settings: Settings | undefined
  // One commit at a time from this process (the lock is per process for fcntl).
  private queue: Promise<unknown> = Promise.resolve()

  constructor(readonly gitDir: string) {}

  /**
   * Resolves true once the branch holds every journal file present when the journal lock was
   * taken (they are then gone from the journal), false when the journal was empty.
   */
  commit(opts: JournalCommitOptions = {}): Promise<boolean> {
    const run = this.queue.then(
      () => this.locked(() => this.commitLocked(opts.message)),
      () => this.locked(() => this.commitLocked(opts.message)),
    )
    this.queue = run.catch(() => undefined)
    return run
  }

  /**
   * Runs `fn` under the journal lock, and a shared lock on othertmp.lck (withOtherTmp), queued
   * with this committer's commits: a journal write (location-journal.ts).
   */
  journalled<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(
      () => this.locked(fn, 'lockw'),
      () => this.locked(fn, 'lockw'),
    )
    this.queue = run.catch(() => undefined)
    return run
  }

  /**
   * The repository's configuration (parsed `git config -z --list`), when the caller has just
   * read it anyway (location-log.ts, for journalWritable): the next commit then does not read
   * it again. Forgotten by stop(), as what the committer reads itself.
   */
  useConfig(config: GitConfig): void {
    this.settings = settingsOf(config)
  }

  /** Ends the helper processes, after the commits queued before (never under one). */
  stop(): Promise<void> {
    const run = this.queue.then(() => {
      const helpers = [this.locker, this.hasher, this.refUpdater]
      this.locker = this.hasher = this.refUpdater = this.idents = this.settings = undefined
      return Promise.all(helpers.map((h) => h?.stop())).then(() => undefined)
    })
    this.queue = run.catch(() => undefined)
    return run
  }

  private async locked<T>(fn: () => Promise<T>, how: 'lock' | 'lockw' = 'lock'): Promise<T> {
    if (!SUPPORTED) throw new LocationLogError(`taking git-annex's journal lock needs 64-bit Linux (this is ${process.platform}/${process.arch})`)
    if (!this.locker?.alive) {
      await mkdir(join(this.gitDir, 'annex'), { recursive: true })
      const annexDir = join(this.gitDir, 'annex')
      this.locker = new LineHelper("perl (git-annex's journal lock)", 'perl', ['-e', LOCKER, join(annexDir, 'journal.lck'), join(annexDir, 'othertmp.lck')], this.gitDir)
    }
    const locker = this.locker
    const answer = await locker.ask(how)
    if (answer !== 'locked') throw new LocationLogError(`unexpected answer from the journal lock holder: ${answer}`)
    try {
      return await fn()
    } finally {
      // Not waited for: the holder unlocks before it reads the next lock request. One that
      // cannot unlock is ended: its exit releases the lock.
      void locker.ask('unlock').catch(async () => {
        if (this.locker === locker) this.locker = undefined
        await locker.stop()
      })
    }
  }

  /**
   * `git ARGS` on git-annex's index with `input`, run by the lock holder (a small process, so
   * the commit's git processes are not forked from this one: a fork of a Node process of
   * 100+ MiB cost milliseconds of its main thread each). Called under the lock. Resolves with
   * its one-line stdout.
   */
  private async gitOnIndex(index: string, args: readonly string[], input: Buffer = Buffer.alloc(0)): Promise<string> {
    const locker = this.locker
    if (!locker?.alive) throw new LocationLogError('the journal lock holder is gone')
    const fields = Buffer.from([index, ...args].join('\0'), 'utf8')
    const answer = await locker.askRaw(Buffer.concat([Buffer.from(`git ${fields.length} ${input.length}\n`), fields, input]))
    const m = /^ran (\d+)\t([^\t]*)\t(.*)$/.exec(answer)
    if (!m) throw new LocationLogError(`unexpected answer from the journal lock holder: ${answer.slice(0, 200)}`)
    if (m[1] !== '0') throw new GitCommandError(`git ${args.join(' ')} exited ${m[1]}: ${m[3]}`, m[3]!)
    return m[2]!
  }

  /** Called under the lock (the lock holder runs `git var`). */
  private async who(): Promise<{ author: string; committer: string } & Settings> {
    this.settings ??= settingsOf(parseGitConfigList((await runGitBytes(this.gitDir, ['config', '-z', '--list'])).toString('utf8')))
    if (!this.idents) {
      // git var, as git commit-tree (what git-annex commits with) computes them, in the same
      // directory and environment; run by the lock holder, so not forked from this process.
      const index = join(this.gitDir, 'annex', 'index')
      const ident = async (v: string) => {
        const m = /^(.*) \d+ [+-]\d{4}$/.exec((await this.gitOnIndex(index, ['var', v])).trim())
        if (!m) throw new LocationLogError(`git var ${v}: unexpected answer`)
        return m[1]!
      }
      const author = await ident('GIT_AUTHOR_IDENT')
      const committer = await ident('GIT_COMMITTER_IDENT')
      this.idents = { author, committer }
    }
    return { ...this.idents, ...this.settings }
  }

  /** `git commit-tree --no-gpg-sign TREE -p PARENT -m MESSAGE`, the object written through stdin. */
  private async commitTree(tree: string, parent: string, message: string): Promise<string> {
    const { author, committer, looseObjects } = await this.who()
    const now = new Date()
    const off = -now.getTimezoneOffset()
    const tz = `${off < 0 ? '-' : '+'}${String(Math.floor(Math.abs(off) / 60)).padStart(2, '0')}${String(Math.abs(off) % 60).padStart(2, '0')}`
    const date = `${Math.floor(now.getTime() / 1000)} ${tz}`
    const body = Buffer.from(`tree ${tree}\nparent ${parent}\nauthor ${author} ${date}\ncommitter ${committer} ${date}\n\n${message}\n`)
    // Written here, it costs no git process (one of the three a commit spawned).
    return looseObjects ? writeLooseObject(this.gitDir, 'commit', body) : hashObject(this.gitDir, 'commit', body)
  }

  /**
   * `git update-ref BRANCH NEW OLD` as a transaction of one long-lived `git update-ref --stdin`;
   * a ref no longer at OLD ends that process with the reason (a later update starts another).
   */
  private async updateRef(commit: string, old: string, message: string): Promise<void> {
    if (!this.refUpdater?.alive) this.refUpdater = new LineHelper('git update-ref --stdin', 'git', ['update-ref', '-m', message, '--stdin'], this.gitDir)
    const u = this.refUpdater
    // Sent at once (one wait for the helper, not three); answered in order.
    const answers = [u.ask('start')]
    u.send(`update ${BRANCH} ${commit} ${old}`)
    answers.push(u.ask('prepare'), u.ask('commit'))
    const got = await Promise.all(answers)
    if (got.join('|') !== 'start: ok|prepare: ok|commit: ok') throw new LocationLogError(`git update-ref --stdin answered ${got.join(', ')}`)
  }

  /** The journal files as blobs, by one long-lived `git hash-object --stdin-paths` (Git/HashObject.hs hashFile). */
  private async hashPaths(paths: readonly string[]): Promise<string[]> {
    if (!this.hasher?.alive) this.hasher = new LineHelper('git hash-object', 'git', ['hash-object', '-w', '--no-filters', '--stdin-paths'], this.gitDir)
    const h = this.hasher
    const shas = await Promise.all(paths.map((p) => h.ask(p)))
    for (const sha of shas) if (!SHA.test(sha)) throw new LocationLogError(`git hash-object answered ${JSON.stringify(sha)}`)
    return shas
  }

  private async commitLocked(asked: string | undefined): Promise<boolean> {
    const gitDir = this.gitDir
    const annexDir = join(gitDir, 'annex')
    const journalDir = join(annexDir, 'journal')
    const index = join(annexDir, 'index')
    const env = { GIT_INDEX_FILE: index }
    let names: string[]
    try {
      names = (await readdir(journalDir, { withFileTypes: true }))
        .filter((d) => d.isFile() && !d.name.includes('\n'))
        .map((d) => d.name)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw e
    }
    if (names.length === 0) return false
    let branch = await revParse(gitDir, BRANCH).catch(() => '')
    if (branch === '') throw new LocationLogError(`${gitDir} has no git-annex branch to commit the journal to (not initialised with git annex init?)`)
    // withIndex: an absent index is built from the branch (genIndex); index.lck is then unset
    // and the branch is merged over it below, as git-annex would.
    await access(index).catch(() => runGitBytes(gitDir, ['read-tree', BRANCH], { env }))
    // Only journal-lock holders write this index: a lock file left behind is a crash's.
    await rm(`${index}.lock`, { force: true })
    // stageJournal: each journal file replaces its branch file in the index.
    const paths = names.map((n) => join(journalDir, n))
    const shas = await this.hashPaths(paths)
    await this.gitOnIndex(index, ['update-index', '-z', '--index-info'], indexInfo(names.map((n, i) => [shas[i]!, fileJournal(n)]), 'utf8'))
    const message = asked ?? (await this.who()).message
    for (let attempt = 1; ; attempt++) {
      // commitIndex: the index is brought up to the branch first, so the commit keeps what was pushed.
      // index.lck is not set to the merged branch: until the commit is in, the index may hold the
      // journal staged again over the merge (a commit that fails, or a server killed here, is
      // followed by one that stages the journal first), so only a merge after that keeps the
      // pushed lines.
      if ((await indexSha(annexDir)) !== branch) await mergeIntoIndex(gitDir, env, branch)
      const tree = await this.gitOnIndex(index, ['write-tree'])
      if (!SHA.test(tree)) throw new LocationLogError(`git write-tree answered ${JSON.stringify(tree)}`)
      const commit = await this.commitTree(tree, branch, message)
      try {
        await this.updateRef(commit, branch, message)
        await setIndexSha(annexDir, commit)
        break
      } catch (e) {
        // The branch moved under us (a push): merge what it has now and commit again.
        const now = await revParse(gitDir, BRANCH).catch(() => '')
        if (now === branch || now === '' || attempt >= CAS_ATTEMPTS) throw e
        branch = now
      }
    }
    await Promise.all(paths.map((p) => rm(p, { force: true })))
    const hook = join(gitDir, 'hooks', 'post-update-annex')
    if (await access(hook, constants.X_OK).then(() => true, () => false)) await runHook(gitDir, hook)
    return true
  }
}

/** Commits the journal once, with helpers started and ended for it. */
export async function commitJournal(gitDir: string, opts: JournalCommitOptions = {}): Promise<boolean> {
  const c = new JournalCommitter(gitDir)
  try {
    return await c.commit(opts)
  } finally {
    await c.stop()
  }
}
