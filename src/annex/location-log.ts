// The repository's own location log (spec §7.2, §7.3): after storing or removing
// content, the repository records its UUID as present/missing for the key, exactly
// as git-annex would. Rather than re-implementing the journal (file format, vector
// clocks, journal.lck, branch hashing tunables) we let git-annex write it: one
// long-lived `git annex setpresentkey --batch` per repository, one line per change.
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
import { gitDirOf } from './branch-reader.js'
import { repoEnv } from './git.js'
import { JournalCommitter } from './journal-commit.js'


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

export interface LocationLogOptions {
  /** Idle time after which the batch child is stopped (and, for 'journal', the journal committed). */
  idleMs?: number
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

export class LocationLog {
  private child: Child | undefined
  private readonly idleMs: number
  private readonly settle: Settle
  private readonly groupWaitMs: number
  private readonly log: Logger | undefined
  private idleTimer: NodeJS.Timeout | undefined
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

  constructor(
    /** The repository (work tree or bare git dir) git-annex runs in. */
    readonly repo: string,
    opts: LocationLogOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? 1000
    this.settle = opts.settle ?? 'journal'
    this.groupWaitMs = opts.groupWaitMs ?? 1000
    this.log = opts.log
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
    // Setting a presence is idempotent, so a line whose child died unanswered (killed,
    // crashed) is sent once more to a fresh one.
    const p = this.send(line, k).catch((e: unknown) => {
      if (!(e instanceof ChildGone) || this.closed) throw e
      this.log?.warn({ err: e }, 'git annex setpresentkey went away; retrying')
      return this.send(line, k)
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
    if (!force && (this.child?.pending.length ?? 0) > 0) {
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
    // batch child may go on writing meanwhile: it waits for the journal lock.
    this.committer ??= new JournalCommitter(await gitDirOf(this.repo))
    await this.committer.commit().catch((e: unknown) => {
      this.dirty = true
      throw e
    })
  }

  private async send(line: string, key: string): Promise<void> {
    await this.flushing.catch(() => undefined)
    const c = this.child ?? (this.child = this.spawn())
    return new Promise<void>((resolve, reject) => {
      c.pending.push({ key, resolve, reject })
      c.proc.stdin.write(line)
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
    this.idleTimer = undefined
  }

  private scheduleIdle(): void {
    if (this.closed || this.inFlight.size > 0) return
    this.cancelIdle()
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      if (this.inFlight.size > 0) return
      this.flushing = this.flushing.then(async () => {
        await this.stop()
        // 'journal': the idle commit; 'commit': only one that kept failing leaves it dirty.
        if (this.dirty) await this.committed()
        await this.committer?.stop()
      })
    }, this.idleMs)
    this.idleTimer.unref()
  }

  /** Ends the batch child (idle, or closing): every line it answered is in the journal. */
  private async stop(): Promise<void> {
    // The committer's helpers go with the batch child (a commit that follows starts them again).
    await this.committer?.stop()
    const c = this.child
    if (!c) return
    this.child = undefined
    c.proc.stdin.end()
    await c.exited
  }
}
