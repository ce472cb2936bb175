// The chunk logs of one repository's git-annex branch (spec §6): read with the journal
// overlay, written as git-annex's Annex.Branch.change writes them — the file's complete
// new content put atomically into .git/annex/journal (temp file in .git/annex/othertmp,
// then rename), from where the next git-annex command in the repository (or our own
// location log's `git annex merge`) commits it.
//
// That read-modify-write happens under git-annex's own journal lock (.git/annex/journal.lck,
// journal-lock.ts), so a git-annex process changing the same chunk log at the same moment
// (or committing the journal) waits for us and we for it: no line is lost.
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { journalFileName } from '../../annex/branch-logs.js'
import { BranchReader } from '../../annex/branch-reader.js'
import type { Key } from '../../keys/key.js'
import { withJournalLock } from '../../annex/journal-lock.js'
import type { Uuid } from '../remote.js'
import { changeChunkLog, chunkLogPath, loggedChunks, type LoggedChunks } from './chunks.js'

export class ChunkLog {
  private constructor(
    private readonly reader: BranchReader,
    private readonly ownsReader: boolean,
  ) {}

  /** Chunk logs of the git-annex repository `repo` (the gateway). */
  static async open(repo: string): Promise<ChunkLog> {
    return new ChunkLog(await BranchReader.open(repo), true)
  }

  /** Chunk logs read through an existing reader (closed by its owner). */
  static over(reader: BranchReader): ChunkLog {
    return new ChunkLog(reader, false)
  }

  /** What is logged for `uuid`: chunk sizes with a count > 0. */
  async logged(key: Key, uuid: Uuid): Promise<LoggedChunks[]> {
    return loggedChunks(await this.reader.readText(chunkLogPath(key)), uuid)
  }

  /** Logs `count` chunks of `chunkSize` for `uuid` (0: removed). */
  record(key: Key, uuid: Uuid, chunkSize: number, count: number): Promise<void> {
    const path = chunkLogPath(key)
    const gitDir = this.reader.gitDir
    return withJournalLock(gitDir, async () => {
      const before = await this.reader.readText(path)
      const after = changeChunkLog(before, uuid, chunkSize, count, Date.now() / 1000)
      const tmpDir = join(gitDir, 'annex', 'othertmp')
      const journal = this.reader.journalDir
      await mkdir(tmpDir, { recursive: true })
      await mkdir(journal, { recursive: true })
      const name = journalFileName(path)
      // git-annex deletes what is in othertmp whenever one of its processes can lock
      // othertmp.lck exclusively (Annex/Tmp.hs); only a shared fcntl lock keeps files there,
      // and Node cannot take one: a temp file gone before its rename is written again.
      for (let attempt = 1; ; attempt++) {
        const tmp = join(tmpDir, `${name}.${randomBytes(4).toString('hex')}`)
        await mkdir(tmpDir, { recursive: true })
        await writeFile(tmp, after, { flag: 'wx' })
        try {
          await rename(tmp, join(journal, name))
          return
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw e
        }
      }
    })
  }

  async close(): Promise<void> {
    if (this.ownsReader) await this.reader.close()
  }
}
