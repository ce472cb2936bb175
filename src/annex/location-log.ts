// The repository's own location log (spec §7.2, §7.3): after storing or removing
// content, the repository records its UUID as present/missing for the key, exactly
// as git-annex would. Written by this process into git-annex's journal under its journal
// lock (location-journal.ts: the bytes `git annex setpresentkey` would write, no git-annex
// process of ~45 MiB per repository); where the repository's configuration makes git-annex
// do more than that (private repositories, annex.tune.*, core.sharedRepository), by one
// long-lived `git annex setpresentkey --batch` per repository, one line per change.
// Records arriving while a write runs are written together, under one lock.
//
// When a record settles (Settle). 'journal' (default, what git annex p2phttp does): once
// git-annex has journalled it; the journal is committed into the git-annex branch when the log
// has been idle and on close. 'commit': once `git annex merge` has committed it, so the answer
// to the request that caused it is sent after the served branch holds it, as git-annex-shell's
// sessions end with a commit. Clients that fetch the branch right after an upload, merge it and
// push it back (DataLad's publish) need 'commit': an idle commit landing inside their
// fetch-merge-push window rejects the push, and a journal written before their push and
// committed after it overwrites their own lines (journal files replace branch files). Its
// price is a commit per answer group (records that arrive while one commit runs share the
// next): a sequential client waits for one git-annex process per upload. A commit that fails
// (e.g. a push holding the ref) is retried; if it keeps failing the record still settles, from
// the journal, and the next commit takes it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { BadKeyError, LocationLogChildGoneError as ChildGone, LocationLogError } from '../errors.js'
import { serializeKey, type Key } from '../keys/key.js'
import type { Logger, Uuid } from '../remotes/remote.js'
import { locationLogPath } from './branch-logs.js'
import { BranchReader, gitDirOf } from './branch-reader.js'
import { repoEnv, runGit } from './git.js'
import { JournalCommitter } from './journal-commit.js'
import { parseGitConfigList } from './git-config-file.js'
import { journalWritable, LocationJournal, type PresenceChange } from './location-journal.js'
import { candidateClock } from './presence-log.js'


/**
 * Whether setpresentkey can record the key: it splits its input on whitespace, so
 * such a key would be misread (or end the batch with "Batch input parse failure").
 */
export function loggable(key: Key): boolean {
  return !/\s/.test(serializeKey(key))
}


/**
 * When a record settles: 'commit' once the git-annex branch holds it (a served repository,
 * whose clients may fetch the branch right after an upload); 'journal' once git-annex has
 * journalled it, the commit following when the log has been idle and on close (what
 * git-annex-shell does: a p2pstdio session, whose client waits for it to end, or a cluster
 * node, whose branch no client of the gateway reads).
 */
export type Settle = 'commit' | 'journal'

export interface LocationLogOptions extends LocationLogOptionsInternal {
  /** Idle time after which, for 'journal', the journal is committed. */
  idleMs?: number
  /**
   * Idle time after which the batch child and the commit's helper processes are stopped and
   * the configuration is read again by the next record (default: idleMs, at least 10 s).
   */
  retireMs?: number
  /** Default 'journal' (what git annex p2phttp does); 'commit' for clients that fetch the branch right after an answer. */
  settle?: Settle
  /**
   * Longest a commit waits for lines the child has yet to answer, so that they share it
   * (default 1000 ms; reached only under a stream that never pauses).
   */
  groupWaitMs?: number
  log?: Logger
}

interface Deferred {
  readonly promise: Promise<void>
  resolve(): void
}

function deferred(): Deferred {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

/** Attempts at committing the journal before a record settles without it. */
const COMMIT_ATTEMPTS = 3

interface Pending {
  readonly key: string
  resolve(): void
  reject(e: Error): void
}

interface Child {
  readonly proc: ChildProcessWithoutNullStreams
  readonly pending: Pending[]
  readonly exited: Promise<void>
  stderr: string
}

const STDERR_KEEP = 4096

interface Queued {
  readonly change: PresenceChange
  resolve(): void
  reject(e: Error): void
}

/** Writing into the journal ourselves: the queue of the next write, and the one running. */
interface Direct {
  readonly journal: LocationJournal
  readonly reader: BranchReader
  readonly queued: Queued[]
  running: number
  /** Resolved when nothing is queued or running any more (stop waits for it). */
  drained: Deferred | undefined
}

export interface LocationLogOptionsInternal {
  /** Always use `git annex setpresentkey --batch` (tests comparing the two). */
  readonly viaGitAnnex?: boolean
}

export class LocationLog {
  private child: Child | undefined
  private readonly idleMs: number
  private readonly retireMs: number
  private readonly settle: Settle
  private readonly groupWaitMs: number
  private readonly log: Logger | undefined
  private idleTimer: NodeJS.Timeout | undefined
  private retireTimer: NodeJS.Timeout | undefined
  // Stopping the child; new records wait for it.
  private flushing: Promise<void> = Promise.resolve()
  private readonly inFlight = new Set<Promise<void>>()
  // Something reached the journal since the last commit began.
  private dirty = false
  private closed = false
  // Records answered while a commit runs wait for the next one, which starts when it ends.
  private nextCommit: Deferred | undefined
  private committing: Promise<void> | undefined
  private groupTimer: NodeJS.Timeout | undefined
  private committer: JournalCommitter | undefined
  // How records are written, decided when the first record of a run (until idle) arrives.
  private writer: Promise<Direct | undefined> | undefined
  private direct: Direct | undefined
  private readonly viaGitAnnex: boolean

  constructor(
    /** The repository (work tree or bare git dir) git-annex runs in. */
    readonly repo: string,
    opts: LocationLogOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? 1000
    // Apart from the idle commit: a cluster upload's records come in waves ~2 s apart (-J4 of
    // 64 MiB files), and stopping the helpers between them made each wave spawn them again
    // (~8 processes per repository forked from the server: 10 % of its main thread's samples).
    this.retireMs = opts.retireMs ?? Math.max(this.idleMs, 10_000)
    this.settle = opts.settle ?? 'journal'
    this.groupWaitMs = opts.groupWaitMs ?? 1000
    this.log = opts.log
    this.viaGitAnnex = opts.viaGitAnnex ?? false
  }

  /**
   * Records `uuid` as having (or no longer having) the key's content. Resolves once the
   * change is in the git-annex branch (or, if committing kept failing, in the journal); with
   * settle 'journal', once it is in the journal.
   */
  record(key: Key, uuid: Uuid, present: boolean): Promise<void> {
    if (this.closed) return Promise.reject(new LocationLogError('location log is closed'))
    const k = serializeKey(key)
    if (!loggable(key)) return Promise.reject(new BadKeyError(`cannot record a key containing whitespace in the location log: ${JSON.stringify(k)}`))
    if (/\s/.test(uuid) || uuid === '') return Promise.reject(new LocationLogError(`invalid repository UUID ${JSON.stringify(uuid)}`))
    // Cancel a pending idle stop before yielding, so it cannot close the child
    // between our wait and our write.
    this.cancelIdle()
    const line = `${k} ${uuid} ${present ? '1' : '0'}\n`
    const change: PresenceChange = { path: locationLogPath(key), info: uuid, status: present ? '1' : '0' }
    // Setting a presence is idempotent, so a line whose child died unanswered (killed,
    // crashed) is sent once more to a fresh one.
    const p = this.send(line, k, change).catch((e: unknown) => {
      if (!(e instanceof ChildGone) || this.closed) throw e
      this.log?.warn({ err: e }, 'git annex setpresentkey went away; retrying')
      return this.send(line, k, change)
    })
    this.inFlight.add(p)
    void p
      .catch(() => undefined)
      .then(() => {
        this.inFlight.delete(p)
        this.scheduleIdle()
      })
    return this.settle === 'commit' ? p.then(() => this.committed()) : p
  }

  /** Waits for outstanding records, stops the batch child and commits the journal. */
  async flush(): Promise<void> {
    this.cancelIdle()
    await Promise.allSettled([...this.inFlight])
    const f = this.flushing.then(() => this.stop())
    // Later records and flushes queue behind this one whether or not it failed.
    this.flushing = f.catch(() => undefined)
    await f
    if (this.dirty) await this.committed()
    await this.committer?.stop()
  }

  /** Waits for outstanding records, stops the child and commits the journal. */
  async close(): Promise<void> {
    this.closed = true
    await this.flush()
  }

  /** Resolves when a commit that begins after this call has ended. */
  private committed(): Promise<void> {
    const d = (this.nextCommit ??= deferred())
    this.startCommit()
    return d.promise
  }

  private startCommit(force = false): void {
    if (this.committing || !this.nextCommit) return
    // Lines sent but not yet answered would each want a commit of their own: wait for them
    // (the child answers in milliseconds), but not for ever under a steady stream.
    if (!force && this.unanswered() > 0) {
      if (!this.groupTimer) {
        this.groupTimer = setTimeout(() => {
          this.groupTimer = undefined
          this.startCommit(true)
        }, this.groupWaitMs)
        this.groupTimer.unref()
      }
      return
    }
    if (this.groupTimer) clearTimeout(this.groupTimer)
    this.groupTimer = undefined
    const d = this.nextCommit
    this.nextCommit = undefined
    this.committing = this.commitRetrying().finally(() => {
      this.committing = undefined
      d.resolve()
      this.startCommit()
    })
  }

  private async commitRetrying(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.commit()
        return
      } catch (e) {
        // Another writer holding the branch's ref (a push landing) is the usual cause.
        if (attempt >= COMMIT_ATTEMPTS) {
          this.log?.warn({ err: e }, 'committing the location log journal failed; the journal keeps the change for the next commit')
          return
        }
        await new Promise((r) => setTimeout(r, 100 * attempt))
      }
    }
  }

  private async commit(): Promise<void> {
    if (!this.dirty) return
    this.dirty = false
    // A repository deleted while served has no branch left to commit to.
    if (!existsSync(this.repo)) return
    // Git plumbing under git-annex's journal lock, as Annex.Branch.commit (journal-commit.ts):
    // a fraction of a `git annex merge` process, and it stages the journal before merging a
    // pushed branch, so it never puts a journal file over a publisher's pushed lines. The
    // batch child may go on writing meanwhile: it waits for the journal lock; our own writes
    // queue behind the commit in the committer.
    try {
      await (await this.journalCommitter()).commit()
    } catch (e) {
      this.dirty = true
      throw e
    }
  }

  /** Records sent and not yet written to the journal (or failed). */
  private unanswered(): number {
    return (this.child?.pending.length ?? 0) + (this.direct ? this.direct.queued.length + this.direct.running : 0)
  }

  private async send(line: string, key: string, change: PresenceChange): Promise<void> {
    await this.flushing.catch(() => undefined)
    const w = (this.writer ??= this.openWriter())
    const direct = await w.catch((e: unknown) => {
      // Tried again by the next record.
      if (this.writer === w) this.writer = undefined
      throw e
    })
    if (direct) {
      return new Promise<void>((resolve, reject) => {
        direct.queued.push({ change, resolve, reject })
        if (direct.running === 0) queueMicrotask(() => this.pump(direct))
      })
    }
    const c = this.child ?? (this.child = this.spawn())
    return new Promise<void>((resolve, reject) => {
      c.pending.push({ key, resolve, reject })
      c.proc.stdin.write(line)
    })
  }
  /** Writing the journal ourselves when the repository allows it (location-journal.ts), else undefined. */
  private async openWriter(): Promise<Direct | undefined> {
    if (this.viaGitAnnex || !existsSync(this.repo)) return undefined
    // Read once for both: whether the journal is ours to write, and what the committer needs.
    const config = await runGit(this.repo, ['config', '-z', '--list']).then(parseGitConfigList, (e: unknown) => e as Error)
    const ok = config instanceof Error ? `its configuration could not be read: ${config.message}` : journalWritable(config)
    if (ok !== true || config instanceof Error) {
      this.log?.info({ repo: this.repo, reason: ok }, 'location log written by git annex setpresentkey')
      return undefined
    }
    const committer = await this.journalCommitter()
    committer.useConfig(config)
    // The committer's git directory is the reader's (gitDirOf): no `git rev-parse` again.
    const reader = await BranchReader.open(this.repo, { gitDir: committer.gitDir })
    this.direct = { journal: new LocationJournal(committer.gitDir, committer, reader), reader, queued: [], running: 0, drained: undefined }
    return this.direct
  }

  /** The one committer of this repository: its journal lock is also the writes'. */
  private async journalCommitter(): Promise<JournalCommitter> {
    if (!this.committer) {
      const gitDir = await gitDirOf(this.repo)
      this.committer ??= new JournalCommitter(gitDir)
    }
    return this.committer
  }

  /** Writes what is queued, under one journal lock; what arrives meanwhile goes next. */
  private pump(d: Direct): void {
    if (d.running > 0 || d.queued.length === 0) return
    const batch = d.queued.splice(0)
    d.running = batch.length
    // GIT_ANNEX_VECTOR_CLOCK is read as a git-annex process reads it: from the environment.
    const clock = () => candidateClock(process.env)
    void d.journal
      .apply(
        batch.map((q) => q.change),
        clock,
      )
      .then(
        (journalled) => {
          if (journalled) this.dirty = true
          for (const q of batch) q.resolve()
        },
        (e: unknown) => {
          const err = new LocationLogError(`writing the location log journal failed: ${(e as Error).message}`, { cause: e })
          for (const q of batch) q.reject(err)
        },
      )
      .finally(() => {
        d.running = 0
        if (d.queued.length > 0) return this.pump(d)
        d.drained?.resolve()
        d.drained = undefined
        queueMicrotask(() => this.startCommit())
      })
  }

  private spawn(): Child {
    const proc = spawn('git', ['annex', 'setpresentkey', '--batch'], { cwd: this.repo, env: repoEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    const pending: Pending[] = []
    const child: Child = {
      proc,
      pending,
      stderr: '',
      exited: new Promise<void>((resolve) => proc.once('close', () => resolve())),
    }
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      child.stderr = (child.stderr + d).slice(-STDERR_KEEP)
    })
    // A write after the child died fails with EPIPE; the close handler below reports it.
    proc.stdin.on('error', () => undefined)
    const rl = createInterface({ input: proc.stdout, crlfDelay: Infinity })
    rl.on('line', (text) => {
      const p = pending.shift()
      if (!p) {
        this.log?.warn({ line: text }, 'unexpected output from git annex setpresentkey')
        return
      }
      if (text === `setpresentkey ${p.key} ok`) {
        this.dirty = true
        p.resolve()
      } else {
        p.reject(new LocationLogError(`git annex setpresentkey failed for ${p.key}: ${text || child.stderr.trim() || 'no reason given'}`))
      }
      // The last line a waiting commit was holding back for.
      if (pending.length === 0) queueMicrotask(() => this.startCommit())
    })
    proc.once('error', (e) => this.fail(child, new LocationLogError(`cannot run git annex setpresentkey: ${e.message}`, { cause: e })))
    proc.once('close', (code, signal) => {
      this.fail(child, new ChildGone(`git annex setpresentkey exited ${code ?? signal}: ${child.stderr.trim()}`))
    })
    return child
  }

  private fail(child: Child, e: LocationLogError): void {
    if (this.child === child) this.child = undefined
    for (const p of child.pending.splice(0)) p.reject(e)
    queueMicrotask(() => this.startCommit())
  }

  private cancelIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer)
    if (this.retireTimer) clearTimeout(this.retireTimer)
    this.idleTimer = this.retireTimer = undefined
  }

  private scheduleIdle(): void {
    if (this.closed || this.inFlight.size > 0) return
    this.cancelIdle()
    // 'journal': the idle commit; 'commit': only one that kept failing leaves it dirty. Every
    // line the child answered is in the journal, so it commits with the child still running.
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      // Not a flush: records arriving meanwhile need not wait for it (the committer queues
      // their journal writes behind it).
      if (this.inFlight.size === 0 && this.dirty) void this.committed()
    }, this.idleMs)
    this.idleTimer.unref()
    this.retireTimer = setTimeout(() => {
      this.retireTimer = undefined
      if (this.inFlight.size > 0) return
      this.flushing = this.flushing.then(async () => {
        await this.stop()
        if (this.dirty) await this.committed()
        await this.committer?.stop()
      })
    }, this.retireMs)
    this.retireTimer.unref()
  }

  /** Ends the batch child (idle, or closing): every line it answered is in the journal. */
  private async stop(): Promise<void> {
    // The committer's helpers go with the batch child (a commit that follows starts them again).
    await this.committer?.stop()
    // The next record reads the configuration again, as a new setpresentkey would.
    const w = this.writer
    this.writer = undefined
    const d = await w?.catch(() => undefined)
    if (d && this.direct === d) this.direct = undefined
    if (d && (d.running > 0 || d.queued.length > 0)) await (d.drained ??= deferred()).promise
    await d?.reader.close()
    const c = this.child
    if (!c) return
    this.child = undefined
    c.proc.stdin.end()
    await c.exited
  }
}
