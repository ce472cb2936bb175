// A directory special remote's storage, laid out as git-annex's Remote/Directory.hs does:
// `<dir>/<hashdirlower><keyFile>/<keyFile>` (the mixed-case hash directory is also read,
// as git-annex once wrote there), written into `<dir>/tmp/<keyFile>/` and renamed into
// place once committed, then write-protected. Chunk objects are stored like any key.
import { createWriteStream } from 'node:fs'
import { chmod, mkdir, open, rename, rm, rmdir, stat } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { RemoteUnavailableError } from '../../errors.js'
import type { Key } from '../../keys/key.js'
import { hashDirLower, hashDirMixed, keyFile } from '../../keys/object-path.js'
import type { ObjectRead, ObjectStore } from '../special/object-store.js'

const READ_CHUNK_BYTES = 1024 * 1024

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code
}

export class DirectoryStore implements ObjectStore {
  readonly description: string

  constructor(readonly dir: string) {
    this.description = `directory ${dir}`
  }

  private storeDir(key: Key): string {
    return join(this.dir, hashDirLower(key), keyFile(key))
  }

  private locations(key: Key): string[] {
    const f = keyFile(key)
    return [join(this.dir, hashDirLower(key), f, f), join(this.dir, hashDirMixed(key), f, f)]
  }

  /** checkPresentGeneric: a missing top directory means the remote is not reachable, not that the key is absent. */
  private async accessible(): Promise<void> {
    const s = await stat(this.dir).catch(() => undefined)
    if (!s?.isDirectory()) throw new RemoteUnavailableError(`directory ${this.dir} is not accessible`)
  }

  private async found(key: Key): Promise<string | undefined> {
    for (const p of this.locations(key)) {
      const s = await stat(p).catch(() => undefined)
      if (s?.isFile()) return p
    }
    await this.accessible()
    return undefined
  }

  async has(key: Key, _signal: AbortSignal): Promise<boolean> {
    return (await this.found(key)) !== undefined
  }

  async read(key: Key, start: number, signal: AbortSignal): Promise<ObjectRead | undefined> {
    const path = await this.found(key)
    if (!path) return undefined
    let fh
    try {
      fh = await open(path, 'r')
    } catch (e) {
      if (errno(e) === 'ENOENT') return undefined
      throw e
    }
    const { size } = await fh.stat()
    if (start >= size) {
      await fh.close()
      return { size, body: Readable.from([], { objectMode: false }) }
    }
    return { size, body: fh.createReadStream({ start, end: size - 1, highWaterMark: READ_CHUNK_BYTES, signal }) }
  }

  async write(key: Key, body: Readable, _length: number | undefined, commit: Promise<boolean>, signal: AbortSignal): Promise<boolean> {
    await this.accessible()
    const f = keyFile(key)
    const tmpDir = join(this.dir, 'tmp', f)
    const tmp = join(tmpDir, f)
    try {
      await mkdir(tmpDir, { recursive: true })
      const out = createWriteStream(tmp, { flags: 'w' })
      await pipeline(body, out, { signal })
      const fh = await open(tmp, 'r')
      await fh.sync().finally(() => fh.close())
      if (!(await commit)) {
        await rm(tmpDir, { recursive: true, force: true })
        return false
      }
      // finalizeStoreGeneric: replace whatever is there, then write-protect.
      const dest = this.storeDir(key)
      await this.removeDir(dest, false)
      await mkdir(dirname(dest), { recursive: true })
      await rename(tmpDir, dest)
      await chmod(join(dest, f), 0o444).catch(() => undefined)
      await chmod(dest, 0o555).catch(() => undefined)
      return true
    } catch (e) {
      await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined)
      throw e
    }
  }

  async delete(key: Key, _signal: AbortSignal): Promise<void> {
    await this.accessible()
    const f = keyFile(key)
    await this.removeDir(this.storeDir(key), true)
    await this.removeDir(join(this.dir, hashDirMixed(key), f), true)
  }

  /** removeDirGeneric: the key's directory (made writable first), then empty parents below the top. */
  private async removeDir(d: string, parents: boolean): Promise<void> {
    await chmod(d, 0o755).catch(() => undefined)
    await rm(d, { recursive: true, force: true })
    if (!parents) return
    let p = dirname(d)
    while (relative(this.dir, p) !== '' && !relative(this.dir, p).startsWith('..')) {
      try {
        await rmdir(p)
      } catch {
        return
      }
      p = dirname(p)
    }
  }

  async close(): Promise<void> {}
}
