// Which repositories this server answers for, by UUID: one repository (--repo / cwd)
// or every git-annex repository found beneath --directory folders. Repositories
// added later are found by a rescan when an unknown UUID is asked for (as the
// reference does); ones removed are dropped when next looked up.
import { execFile } from 'node:child_process'
import { access, readdir, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { BadRequestError, RemoteUnavailableError } from '../errors.js'
import type { Logger, Remote } from '../remotes/remote.js'
import type { IndirectUploadOptions } from '../remotes/s3/indirect-upload.js'
import type { IndirectTarget } from './gateway.js'

const run = promisify(execFile)

/** One served repository: its own UUID and, for a gateway, the clusters and remotes it proxies. */
export interface ServedRepo {
  readonly uuid: string
  serves(uuid: string): boolean
  /** `bypass`: gateways already on the request's path (spec §3.3). */
  lookup(uuid: string, bypass?: readonly string[]): Promise<Remote | undefined>
  uuids(): string[]
  /** An S3 remote served here that takes presigned uploads (--indirect-upload); throws why not. */
  indirect?(uuid: string, opts: IndirectUploadOptions): Promise<IndirectTarget>
  close(): Promise<void>
}

export type OpenRepo = (dir: string) => Promise<ServedRepo>

interface Entry {
  readonly dir: string
  readonly gitDir: string
  readonly repo: ServedRepo
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  )

/** The git dir of `dir` if it is a git-annex repository (has an annex.uuid), else undefined. */
export async function annexGitDir(dir: string): Promise<string | undefined> {
  const candidates = [join(dir, '.git'), dir]
  for (const gitDir of candidates) {
    if (!(await exists(join(gitDir, 'config'))) || !(await exists(join(gitDir, 'HEAD')))) continue
    try {
      const { stdout } = await run('git', ['config', '--file', join(gitDir, 'config'), 'annex.uuid'])
      if (stdout.trim() !== '') return gitDir
    } catch {
      // no annex.uuid: a plain git repository, not served
    }
  }
  return undefined
}

/** Every git-annex repository beneath `root`, not following symlinks, not descending into repos. */
export async function findRepos(root: string): Promise<string[]> {
  const found: string[] = []
  const walk = async (dir: string): Promise<void> => {
    if (await annexGitDir(dir)) {
      found.push(dir)
      return
    }
    let entries
    try {
      entries = await readdir(dir, { withFileTypes: true })
    } catch {
      return
    }
    await Promise.all(entries.filter((e) => e.isDirectory() && e.name !== '.git').map((e) => walk(join(dir, e.name))))
  }
  await walk(resolve(root))
  return found.sort()
}

export interface RegistryOptions {
  readonly repos: readonly string[]
  readonly directories: readonly string[]
  readonly open: OpenRepo
  readonly log: Logger
}

export class Registry {
  private readonly byDir = new Map<string, Entry>()
  private scanning: Promise<void> | undefined
  private closed = false

  constructor(private readonly opts: RegistryOptions) {}

  async start(): Promise<void> {
    await this.scan()
    if (this.opts.directories.length === 0 && this.byDir.size === 0) {
      throw new Error(`not a git-annex repository: ${this.opts.repos.join(', ')}`)
    }
  }

  get uuids(): string[] {
    return [...this.byDir.values()].flatMap((e) => e.repo.uuids())
  }

  private find(uuid: string): Entry | undefined {
    for (const e of this.byDir.values()) if (e.repo.serves(uuid)) return e
    return undefined
  }

  /** The Remote for `uuid`; undefined when nothing here serves it (404). */
  async lookup(uuid: string, bypass: readonly string[] = []): Promise<Remote | undefined> {
    let e = this.find(uuid)
    if (e && !(await exists(join(e.gitDir, 'config')))) {
      await this.forget(e)
      e = undefined
    }
    if (!e && this.opts.directories.length > 0) {
      await this.scan()
      e = this.find(uuid)
    }
    if (!e) return undefined
    const remote = await e.repo.lookup(uuid, bypass)
    // Served by configuration, but not reachable from here (spec §2.7: 502).
    if (!remote) throw new RemoteUnavailableError(`cannot proxy to repository ${uuid}: it cannot be reached from this gateway`)
    return remote
  }

  /** The indirect-upload target for `uuid`; undefined when nothing here serves it (404). */
  async indirect(uuid: string, opts: IndirectUploadOptions): Promise<IndirectTarget | undefined> {
    let e = this.find(uuid)
    if (!e && this.opts.directories.length > 0) {
      await this.scan()
      e = this.find(uuid)
    }
    if (!e) return undefined
    if (!e.repo.indirect) throw new BadRequestError(`indirect upload is not available for ${uuid}`)
    return e.repo.indirect(uuid, opts)
  }

  private scan(): Promise<void> {
    this.scanning ??= this.doScan().finally(() => (this.scanning = undefined))
    return this.scanning
  }

  private async doScan(): Promise<void> {
    const dirs = [...this.opts.repos.map((r) => resolve(r))]
    for (const d of this.opts.directories) dirs.push(...(await findRepos(d)))
    for (const dir of dirs) {
      if (this.closed || this.byDir.has(dir)) continue
      const gitDir = await annexGitDir(dir)
      if (!gitDir) continue
      try {
        const repo = await this.opts.open(dir)
        this.byDir.set(dir, { dir, gitDir, repo })
        this.opts.log.info({ repo: dir, uuids: repo.uuids() }, 'serving repository')
      } catch (err) {
        this.opts.log.warn({ repo: dir, err }, 'cannot serve repository')
      }
    }
  }

  private async forget(e: Entry): Promise<void> {
    this.byDir.delete(e.dir)
    this.opts.log.info({ repo: e.dir }, 'repository gone; no longer served')
    await e.repo.close().catch(() => {})
  }

  async close(): Promise<void> {
    this.closed = true
    await this.scanning
    await Promise.all([...this.byDir.values()].map((e) => e.repo.close()))
    this.byDir.clear()
  }
}

export async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  )
}
