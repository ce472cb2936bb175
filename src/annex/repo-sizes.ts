// How much each repository holds, as git-annex's RepoSize counts it for maxsize and
// size-balanced preferred content (spec §7.5): the sum of the `-s` sizes of the keys whose
// location log (branch with the journal overlaid) says the repository has them (uploads in
// flight are the placement coordinator's). Kept current incrementally: the branch is diffed commit to commit
// (one `git diff-tree`), journal files are re-read only when they change, and nothing is
// recomputed when neither moved. Only location logs of sized keys are kept in memory.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { keyOfFile } from '../keys/object-path.js'
import { runGit } from './git.js'
import type { Uuid } from '../remotes/remote.js'
import { locationLogKeyFile, locationLogOfJournal, locationLogPath, presentUuids } from './branch-logs.js'
import { tryParseKey, type Key } from '../keys/key.js'
import type { BranchReader } from './branch-reader.js'

/** Location logs read from git per request to cat-file. */
const READ_SLICE = 2000

/** What one location log adds to repository sizes: `size` bytes to each of `uuids`. */
interface Holding {
  readonly size: number
  readonly uuids: readonly Uuid[]
}

/** Adds what `h` holds to `totals` (sign 1), or takes it away (sign -1). */
function add(totals: Map<Uuid, number>, h: Holding | undefined, sign: 1 | -1): void {
  if (!h) return
  for (const u of h.uuids) {
    const v = (totals.get(u) ?? 0) + sign * h.size
    if (v === 0) totals.delete(u)
    else totals.set(u, v)
  }
}

/** The size of the key whose location log is at `path`, or undefined for other files and unsized keys. */
function sizeOfLog(path: string): number | undefined {
  const file = locationLogKeyFile(path)
  const size = file === undefined ? undefined : keyOfFile(file)?.size
  return size === undefined || size === 0 ? undefined : size
}

function holding(size: number, text: string | undefined): Holding | undefined {
  if (text === undefined) return undefined
  const uuids = presentUuids(text)
  return uuids.length > 0 ? { size, uuids } : undefined
}

export class RepoSizes {
  /** Branch commit the branch holdings are of. */
  private commit: string | undefined
  private readonly branch = new Map<string, Holding>()
  private readonly branchTotals = new Map<Uuid, number>()
  /** Journal overlay: path → what the journal says, with the stat it was read at. */
  private readonly journal = new Map<string, { print: string; holding: Holding | undefined }>()
  private updating: Promise<void> | undefined

  constructor(private readonly reader: BranchReader) {}

  /** Catches up with the branch and the journal as they are now. */
  async refresh(): Promise<void> {
    // One update at a time; callers that arrive during one wait for the next, so they see their own writes.
    while (this.updating) await this.updating
    this.updating = this.update().finally(() => (this.updating = undefined))
    await this.updating
  }

  /**
   * uuid → bytes held as of the last refresh() (absent = 0). Synchronous, so that a decision
   * made from it and the reservation that follows are one step.
   */
  sizes(): Map<Uuid, number> {
    const totals = new Map(this.branchTotals)
    for (const [path, j] of this.journal) {
      add(totals, this.branch.get(path), -1)
      add(totals, j.holding, 1)
    }
    return totals
  }

  /**
   * Every sized key some repository holds as of the last refresh(), with those repositories
   * (dead ones included, as logged): what a rebalance plans over.
   */
  holdings(): Array<{ key: Key; uuids: readonly Uuid[] }> {
    const out: Array<{ key: Key; uuids: readonly Uuid[] }> = []
    const visit = (path: string, h: Holding | undefined) => {
      const file = locationLogKeyFile(path)
      const key = file === undefined ? undefined : keyOfFile(file)
      if (key && h) out.push({ key, uuids: h.uuids })
    }
    for (const [path, h] of this.branch) if (!this.journal.has(path)) visit(path, h)
    for (const [path, j] of this.journal) visit(path, j.holding)
    return out
  }

  /**
   * Whether sizes() counts the key (serialized) on `uuid`: uploads in flight use it so that
   * their bytes, once logged, are not counted again as reserved.
   */
  counts(key: string, uuid: string): boolean {
    const k = tryParseKey(key)
    if (!k) return false
    const path = locationLogPath(k)
    const j = this.journal.get(path)
    const h = j ? j.holding : this.branch.get(path)
    return h?.uuids.includes(uuid as Uuid) ?? false
  }

  private async update(): Promise<void> {
    // Journal first: a commit of the journal in between is then seen twice (journal and
    // branch agree), never not at all.
    await this.readJournal()
    const commit = await this.branchCommit()
    if (commit !== this.commit) await this.readBranch(commit)
  }

  private async branchCommit(): Promise<string | undefined> {
    const name = this.reader.branchName
    const loose = await readFile(join(this.reader.gitDir, 'refs', 'heads', name), 'utf8').catch(() => undefined)
    if (loose !== undefined && /^[0-9a-f]{40,64}\s*$/.test(loose)) return loose.trim()
    return runGit(this.reader.repo, ['rev-parse', '--verify', '-q', `refs/heads/${name}^{commit}`]).then(
      (s) => s.trim(),
      () => undefined,
    )
  }

  /** Brings the branch holdings from this.commit to `commit`: a diff when there was one, else every location log. */
  private async readBranch(commit: string | undefined): Promise<void> {
    const changed: { path: string; blob: string | undefined }[] = []
    if (commit === undefined) {
      for (const path of this.branch.keys()) changed.push({ path, blob: undefined })
    } else if (this.commit === undefined) {
      this.clearBranch()
      // `<mode> blob <sha>\t<path>\0`
      const out = await runGit(this.reader.repo, ['ls-tree', '-r', '-z', '--full-tree', commit])
      for (const rec of out.split('\0')) {
        const tab = rec.indexOf('\t')
        if (tab < 0) continue
        const path = rec.slice(tab + 1)
        if (sizeOfLog(path) !== undefined) changed.push({ path, blob: rec.slice(0, tab).split(' ')[2] })
      }
    } else {
      // `:<mode> <mode> <sha> <sha> <status>\0<path>\0`
      const out = await runGit(this.reader.repo, ['diff-tree', '-r', '-z', '--no-renames', this.commit, commit]).catch(() => undefined)
      if (out === undefined) {
        // The old commit is gone (a rewritten branch, gc): start over from the new one.
        this.commit = undefined
        return this.readBranch(commit)
      }
      const recs = out.split('\0')
      for (let i = 0; i + 1 < recs.length; i += 2) {
        const meta = recs[i]!.split(' ')
        const path = recs[i + 1]!
        if (sizeOfLog(path) === undefined) continue
        changed.push({ path, blob: meta[4]?.startsWith('D') ? undefined : meta[3] })
      }
    }
    // In slices, so a branch of a million keys is read in a few thousand round trips with bounded memory.
    for (let i = 0; i < changed.length; i += READ_SLICE) {
      const slice = changed.slice(i, i + READ_SLICE)
      const blobs = slice.map((c) => c.blob).filter((b): b is string => b !== undefined)
      const texts = new Map((await this.reader.readObjects(blobs)).map((b, j) => [blobs[j]!, b?.toString('utf8')]))
      for (const { path, blob } of slice) {
        add(this.branchTotals, this.branch.get(path), -1)
        const h = holding(sizeOfLog(path)!, blob === undefined ? undefined : texts.get(blob))
        if (h) this.branch.set(path, h)
        else this.branch.delete(path)
        add(this.branchTotals, h, 1)
      }
    }
    this.commit = commit
  }

  private clearBranch(): void {
    this.branch.clear()
    this.branchTotals.clear()
  }

  /** Re-reads the journal files (main and private) that appeared or changed; forgets the ones gone. */
  private async readJournal(): Promise<void> {
    const seen = new Map<string, string>()
    for (const dir of [this.reader.journalDir, this.reader.privateJournalDir]) {
      const names = await readdir(dir).catch(() => [] as string[])
      for (const name of names) {
        const path = locationLogOfJournal(name)
        if (path === undefined || sizeOfLog(path) === undefined) continue
        const st = await stat(join(dir, name)).catch(() => undefined)
        if (!st) continue
        seen.set(path, `${seen.get(path) ?? ''}${dir}:${st.ino}:${st.size}:${st.mtimeMs};`)
      }
    }
    for (const path of this.journal.keys()) if (!seen.has(path)) this.journal.delete(path)
    for (const [path, print] of seen) {
      if (this.journal.get(path)?.print === print) continue
      // read() overlays exactly as every other reader of the branch does (private journal appended).
      const text = (await this.reader.read(path))?.toString('utf8')
      this.journal.set(path, { print, holding: holding(sizeOfLog(path)!, text) })
    }
  }
}
