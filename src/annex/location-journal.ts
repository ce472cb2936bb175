// Location-log changes written into git-annex's journal by this process, as
// `git annex setpresentkey` writes them (Annex/Branch.hs maybeChange, Annex/Journal.hs
// setJournalFile), without a git-annex process per repository (~45 MiB each, a gateway and
// its local nodes had four) or its CPU per line:
// - under git-annex's journal lock (.git/annex/journal.lck, exclusive fcntl), taken by the
//   repository's JournalCommitter so that our commits and writes queue in-process and any
//   git-annex process working on the same repository waits for us and we for it; with it a
//   shared lock on othertmp.lck, as withOtherTmp takes, so no git-annex process cleans
//   othertmp while our temp file is there;
// - the current content is the journal file when there is one (a partial last line
//   discarded), else the file in refs/heads/git-annex (getLocal'; unmerged remote branches
//   are not read, as setpresentkey does not read them: a union merge joins them later);
// - the new content is presence-log.ts's, git-annex's maybeAddLog to the byte;
// - written to .git/annex/othertmp/<journal file name>, then renamed into .git/annex/journal.
// Only for repositories where that is the whole of what git-annex does: no private
// repositories (their logs go to journal-private), no annex.tune.* (other branch paths), no
// core.sharedRepository (file modes); location-log.ts checks (usable()).
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { journalFileName } from './branch-logs.js'
import { lastValue, type GitConfig } from './git-config-file.js'
import type { BranchReader } from './branch-reader.js'
import type { JournalCommitter } from './journal-commit.js'
import { changePresenceLog, discardIncompleteAppend, type Picos, type PresenceStatus } from './presence-log.js'

export interface PresenceChange {
  /** The log's path in the branch (e.g. locationLogPath(key)). */
  readonly path: string
  /** What the line is about: a repository UUID in a location log. */
  readonly info: string
  readonly status: PresenceStatus
}

/** 64-bit Linux: where the journal lock's struct flock is the kernel's (journal-commit.ts). */
const SUPPORTED = process.platform === 'linux' && ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(process.arch)

/**
 * Whether the repository's configuration (parsed `git config -z --list` output) leaves a
 * location-log change to be exactly a write of the shared journal; otherwise the reason it
 * does not.
 */
export function journalWritable(config: GitConfig): true | string {
  if (!SUPPORTED) return `taking git-annex's journal lock needs 64-bit Linux (this is ${process.platform}/${process.arch})`
  for (const key of config.keys()) {
    // The last value is the one git-annex acts on, as `git config --get` answers.
    const value = lastValue(config, key)!.toLowerCase()
    const truthy = !['false', 'no', 'off', '0', ''].includes(value)
    if (key.startsWith('annex.tune.')) return `${key} is set (other branch paths)`
    if ((key === 'annex.private' || /^remote\..*\.annex-private$/.test(key)) && truthy) return `${key} is set (private repositories log to journal-private)`
    if (key === 'core.sharedrepository' && !['false', 'umask', 'no', 'off', '0'].includes(value)) return 'core.sharedRepository is set (file modes)'
  }
  return true
}

export class LocationJournal {
  constructor(
    private readonly gitDir: string,
    private readonly committer: JournalCommitter,
    private readonly reader: BranchReader,
  ) {}

  /**
   * Applies the changes in order under the journal lock. Resolves with whether the journal
   * now holds something for them (written now, or already there) that a commit would take.
   */
  apply(changes: readonly PresenceChange[], clock: () => Picos): Promise<boolean> {
    return this.committer.journalled(async () => {
      const annexDir = join(this.gitDir, 'annex')
      const journalDir = join(annexDir, 'journal')
      const paths = [...new Set(changes.map((c) => c.path))]
      const current = new Map<string, string>()
      const fromBranch: string[] = []
      let journalled = false
      await Promise.all(
        paths.map(async (p) => {
          const j = await readFile(join(journalDir, journalFileName(p)), 'latin1').catch((e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined
            throw e
          })
          if (j === undefined) fromBranch.push(p)
          else {
            journalled = true
            current.set(p, discardIncompleteAppend(j))
          }
        }),
      )
      if (fromBranch.length > 0) {
        const blobs = await this.reader.readObjects(fromBranch.map((p) => `refs/heads/git-annex:${p}`))
        fromBranch.forEach((p, i) => current.set(p, blobs[i]?.toString('latin1') ?? ''))
      }
      const changed = new Set<string>()
      for (const c of changes) {
        const next = changePresenceLog(current.get(c.path)!, c.info, c.status, clock())
        if (next === undefined) continue
        current.set(c.path, next)
        changed.add(c.path)
      }
      if (changed.size === 0) return journalled
      const tmpDir = join(annexDir, 'othertmp')
      await mkdir(tmpDir, { recursive: true })
      for (const p of changed) {
        const name = journalFileName(p)
        const tmp = join(tmpDir, name)
        const dest = join(journalDir, name)
        await writeFile(tmp, current.get(p)!, 'latin1')
        await rename(tmp, dest).catch(async (e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e
          // createAnnexDirectory, as setJournalFile does when the move fails.
          await mkdir(journalDir, { recursive: true })
          await rename(tmp, dest)
        })
      }
      return true
    })
  }
}
